// The one bundle definition shared by `npm run build` and `npm run check-bundle`, so the check
// compares the committed demo copy with exactly what a build would write.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The demo's committed copy of the bundle (served by `cloudproxy` at /cloudproxy-sdk.js). */
export const demoCopy = join(root, '..', 'crates', 'cloudproxy', 'assets', 'demo', 'cloudproxy-sdk.js');

/**
 * Bundles src/index.ts in memory. Returns { js, map }: the ES module (ending with a
 * sourceMappingURL comment naming cloudproxy-sdk.js.map) and its source map. esbuild's output
 * depends only on the sources and its version: no timestamps, no absolute paths.
 */
export async function bundle() {
  const r = await build({
    absWorkingDir: root,
    entryPoints: ['src/index.ts'],
    outfile: 'dist/cloudproxy-sdk.js',
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022', 'chrome100', 'firefox100', 'safari16'],
    sourcemap: 'linked',
    legalComments: 'none',
    logLevel: 'warning',
    write: false,
  });
  const js = r.outputFiles.find((f) => f.path.endsWith('.js'));
  const map = r.outputFiles.find((f) => f.path.endsWith('.js.map'));
  if (!js || !map) throw new Error('esbuild produced no bundle');
  return { js: js.text, map: map.text };
}

/** The demo copy: the bundle without its sourceMappingURL comment (the map is not served). */
export function demoText(js) {
  return js.replace(/\n\/\/# sourceMappingURL=[^\n]*\n?$/, '\n');
}
