// `npm run check-gen`: fail when src/api.gen.ts is not what ../docs/openapi.json generates.
import { readFileSync } from 'node:fs';
import { generate, OUT_PATH, reportDangling } from './gen-lib.mjs';

const { source, dangling } = await generate();
reportDangling(dangling);
const committed = readFileSync(OUT_PATH, 'utf8');
if (committed !== source) {
  console.error('src/api.gen.ts is stale: docs/openapi.json changed. Run `npm run gen` and commit the result.');
  process.exit(1);
}
console.log('src/api.gen.ts is up to date with docs/openapi.json');
