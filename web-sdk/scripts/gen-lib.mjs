// Generates src/api.gen.ts from the control plane's OpenAPI document (../docs/openapi.json).
// Used by `npm run gen`, `npm run check-gen` and tests/gen.test.ts, so all three produce
// byte-identical output.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import openapiTS, { astToString, COMMENT_HEADER } from 'openapi-typescript';

const here = dirname(fileURLToPath(import.meta.url));
export const DOC_PATH = join(here, '..', '..', 'docs', 'openapi.json');
export const OUT_PATH = join(here, '..', 'src', 'api.gen.ts');

/**
 * Local `$ref`s (`#/components/...`) that point at nothing. openapi-typescript refuses such a
 * document; each one is replaced by `{}` (an unknown value) and reported, so that a bug in an
 * admin route's schema never blocks the SDK's types. The report makes it visible: fix the
 * schema in the control plane, regenerate docs/openapi.json, then `npm run gen`.
 */
export function repairDanglingRefs(doc) {
  const dangling = [];
  const resolves = (ref) => {
    let node = doc;
    for (const raw of ref.slice(2).split('/')) {
      const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
      if (node === null || typeof node !== 'object' || !(key in node)) return false;
      node = node[key];
    }
    return true;
  };
  const walk = (node, path) => {
    if (Array.isArray(node)) {
      node.forEach((child, i) => {
        if (isDangling(child)) {
          dangling.push({ at: `${path}/${i}`, ref: child.$ref });
          node[i] = {};
        } else walk(child, `${path}/${i}`);
      });
    } else if (node !== null && typeof node === 'object') {
      for (const [key, child] of Object.entries(node)) {
        if (isDangling(child)) {
          dangling.push({ at: `${path}/${key}`, ref: child.$ref });
          node[key] = {};
        } else walk(child, `${path}/${key}`);
      }
    }
  };
  const isDangling = (node) =>
    node !== null &&
    typeof node === 'object' &&
    typeof node.$ref === 'string' &&
    node.$ref.startsWith('#/') &&
    !resolves(node.$ref);
  walk(doc, '#');
  return dangling;
}

/** Returns `{ source, dangling }`: the TypeScript text and the repaired `$ref`s. */
export async function generate(docPath = DOC_PATH) {
  const doc = JSON.parse(readFileSync(docPath, 'utf8'));
  const dangling = repairDanglingRefs(doc);
  const ast = await openapiTS(doc, { silent: true });
  return { source: COMMENT_HEADER + astToString(ast), dangling };
}

export function reportDangling(dangling) {
  for (const d of dangling) {
    console.warn(
      `warning: docs/openapi.json: ${d.at} refers to ${d.ref}, which does not exist; typed as unknown`,
    );
  }
}
