// `npm run build`: one ES module (dist/cloudproxy-sdk.js + .map) with esbuild, a copy of it for
// the demo page (crates/cloudproxy/assets/demo/cloudproxy-sdk.js, without the source map
// comment; committed, embedded by the Rust binary), then type declarations (dist/*.d.ts) with
// tsc, which also type-checks the sources. `npm run check-bundle` fails when the committed copy
// is stale.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join, relative } from 'node:path';
import { bundle, demoCopy, demoText, root } from './bundle-lib.mjs';

rmSync(join(root, 'dist'), { recursive: true, force: true });
mkdirSync(join(root, 'dist'), { recursive: true });
const { js, map } = await bundle();
writeFileSync(join(root, 'dist/cloudproxy-sdk.js'), js);
writeFileSync(join(root, 'dist/cloudproxy-sdk.js.map'), map);
mkdirSync(dirname(demoCopy), { recursive: true });
writeFileSync(demoCopy, demoText(js));
console.log(`dist/cloudproxy-sdk.js (${js.length} characters) and ${relative(root, demoCopy)} written`);

const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], {
  cwd: root,
  stdio: 'inherit',
});
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
console.log('dist/*.d.ts written');
