/**
 * src/api.gen.ts is what openapi-typescript makes of docs/openapi.json, byte for byte: a
 * change to the control plane's API that is not regenerated (`npm run gen`) fails here.
 */

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs helper shared with the npm scripts, without type declarations
import { generate, OUT_PATH } from '../scripts/gen-lib.mjs';

describe('generated API types', () => {
  it('src/api.gen.ts is up to date with docs/openapi.json (run `npm run gen`)', async () => {
    const { source, dangling } = (await generate()) as { source: string; dangling: unknown[] };
    expect(dangling, 'docs/openapi.json has $refs that point at nothing: fix the schema').toEqual([]);
    const committed = readFileSync(OUT_PATH as string, 'utf8');
    expect(committed === source, 'src/api.gen.ts is stale: run `npm run gen` and commit it').toBe(true);
  });
});
