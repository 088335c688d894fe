/** Mode numbers → transports, and the mapping agrees with the control plane's document. */

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CloudProxyError, DEFAULT_MODE, MODE_TRANSPORT, modeToTransport, parseMode } from '../src/index.js';

describe('modes', () => {
  it.each([
    [undefined, 3, 'udp'],
    [3, 3, 'udp'],
    [4, 4, 'tcp'],
    [5, 5, 'tls'],
  ] as const)('mode %s → %s → %s', (input, mode, transport) => {
    const m = parseMode(input);
    expect(m).toBe(mode);
    expect(modeToTransport(m)).toBe(transport);
  });

  it('the default is 3 (UDP)', () => {
    expect(DEFAULT_MODE).toBe(3);
  });

  it.each([
    [1, 'NOT_SUPPORTED'],
    [2, 'NOT_SUPPORTED'],
    [0, 'INVALID_PARAMETER'],
    [6, 'INVALID_PARAMETER'],
    [7, 'INVALID_PARAMETER'],
    [-1, 'INVALID_PARAMETER'],
    [4.5, 'INVALID_PARAMETER'],
    [Infinity, 'INVALID_PARAMETER'],
    [NaN, 'INVALID_PARAMETER'],
    ['3', 'INVALID_PARAMETER'],
    [null, 'INVALID_PARAMETER'],
    [{}, 'INVALID_PARAMETER'],
  ])('mode %s → %s', (input, code) => {
    expect(() => parseMode(input)).toThrow(CloudProxyError);
    try {
      parseMode(input);
    } catch (e) {
      expect((e as CloudProxyError).code).toBe(code);
    }
  });

  it("every transport is one of the control plane's TransportMode values, and all of them are reachable", () => {
    const doc = JSON.parse(readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8'));
    const values: string[] = doc.components.schemas.TransportMode.enum;
    expect(Object.values(MODE_TRANSPORT).sort()).toEqual([...values].sort());
  });
});
