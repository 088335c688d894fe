// `npm run gen`: regenerate src/api.gen.ts from ../docs/openapi.json.
import { writeFileSync } from 'node:fs';
import { generate, OUT_PATH, reportDangling } from './gen-lib.mjs';

const { source, dangling } = await generate();
reportDangling(dangling);
writeFileSync(OUT_PATH, source);
console.log(`wrote ${OUT_PATH}`);
