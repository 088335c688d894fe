// `npm run check-bundle`: fails when the demo's committed copy of the SDK bundle
// (crates/cloudproxy/assets/demo/cloudproxy-sdk.js) differs from a fresh build of src/.
import { existsSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { bundle, demoCopy, demoText, root } from './bundle-lib.mjs';

const rel = relative(root, demoCopy);
const want = demoText((await bundle()).js);
if (!existsSync(demoCopy)) {
  console.error(`check-bundle: ${rel} is missing. Run \`npm run build\` in web-sdk/ and commit it.`);
  process.exit(1);
}
const have = readFileSync(demoCopy, 'utf8');
if (have !== want) {
  const a = have.split('\n');
  const b = want.split('\n');
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  console.error(
    `check-bundle: ${rel} is stale: it differs from a fresh build of web-sdk/src at line ${i + 1}\n` +
      `  committed: ${JSON.stringify((a[i] ?? '<end of file>').slice(0, 120))}\n` +
      `  fresh:     ${JSON.stringify((b[i] ?? '<end of file>').slice(0, 120))}\n` +
      'Run `npm run build` in web-sdk/ and commit the copy with the source change.',
  );
  process.exit(1);
}
console.log(`check-bundle: ${rel} matches a fresh build (${want.length} characters)`);
