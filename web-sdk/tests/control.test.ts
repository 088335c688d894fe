/** The proxy-info request: body shape, error-body mapping, answer checks. */

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  buildProxyRequest,
  CloudProxyError,
  createClient,
  errorFromAnswer,
  JOIN_ERROR_CODES,
  type CloudProxyErrorCode,
} from '../src/index.js';
import { parseProxyAnswer } from '../src/control.js';
import { answer, fakePeerConnection, gatewayConfig, recordingFetch } from './fakes.js';

const URL_ = 'https://control.test/v1/proxy';
const doc = JSON.parse(readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8'));

function body(code: string, retryable = false) {
  return JSON.stringify({ code, message: `the ${code} message`, retryable });
}

describe('request body', () => {
  it('has exactly the generated ProxyRequest fields', () => {
    const b = buildProxyRequest({ appId: 'app', channel: 'ch', token: 't', uid: '42' }, 'tls');
    expect(b).toEqual({ app_id: 'app', channel: 'ch', uid: '42', mode: 'tls', token: 't' });
    const schema = doc.components.schemas.ProxyRequest;
    for (const k of schema.required) expect(b).toHaveProperty(k);
    for (const k of Object.keys(b)) expect(Object.keys(schema.properties)).toContain(k);
  });

  it('carries area and isp hints when given', () => {
    const b = buildProxyRequest({ appId: 'a', channel: 'c', token: 't', uid: 'u' }, 'udp', { area: 'EU', isp: 'acme' });
    expect(b.area).toBe('EU');
    expect(b.isp).toBe('acme');
  });

  it.each([
    [undefined, 'udp'],
    [3, 'udp'],
    [4, 'tcp'],
    [5, 'tls'],
  ] as const)('join after startProxyServer(%s) POSTs mode %s to /v1/proxy', async (mode, transport) => {
    const { fetch, calls } = recordingFetch(async () => ({ status: 200, body: answer(['e1'], transport) }));
    const { Ctor } = fakePeerConnection(() => ({ kind: 'relay' }));
    const c = createClient({ controlUrl: 'https://control.test/', fetch, RTCPeerConnection: Ctor, ...gatewayConfig(), area: 'EU' });
    if (mode === undefined) c.startProxyServer();
    else c.startProxyServer(mode);
    await c.join('app-1', 'room', 'tok', 1234);
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    expect(call.url).toBe(URL_);
    expect(call.method).toBe('POST');
    expect(call.headers['content-type']).toBe('application/json');
    expect(call.body).toEqual({ app_id: 'app-1', channel: 'room', uid: '1234', mode: transport, token: 'tok', area: 'EU' });
  });

  it('validates join arguments before any request', async () => {
    const { fetch, calls } = recordingFetch(async () => ({ status: 200, body: answer(['e1']) }));
    const { Ctor } = fakePeerConnection(() => ({ kind: 'relay' }));
    const c = createClient({ controlUrl: 'https://control.test', fetch, RTCPeerConnection: Ctor, ...gatewayConfig() });
    c.startProxyServer();
    for (const args of [
      ['', 'ch', 't', 1],
      ['app', '', 't', 1],
      ['app', 'ch', undefined, 1],
      ['app', 'ch', 't', -1],
      ['app', 'ch', 't', 1.5],
      ['app', 'ch', 't', ''],
      ['app', 'ch', 't', null],
    ] as const) {
      await expect(c.join(...(args as unknown as [string, string, string, number]))).rejects.toMatchObject({
        code: 'INVALID_PARAMETER',
      });
    }
    expect(calls).toHaveLength(0);
    expect(c.connectionState).toBe('DISCONNECTED');
  });
});

describe('error bodies', () => {
  it('the join codes are control plane codes (the ones ARCHITECTURE §9 lists for joins, and BAD_REQUEST)', () => {
    const all: string[] = doc.components.schemas.ErrorCode.enum;
    for (const c of JOIN_ERROR_CODES) expect(all).toContain(c);
  });

  const statuses: Record<string, number> = {
    APP_NOT_FOUND: 404,
    PROXY_NOT_ENABLED: 403,
    MODE_NOT_ENABLED: 403,
    INVALID_TOKEN: 401,
    TOKEN_EXPIRED: 401,
    AREA_FORBIDDEN: 403,
    QUOTA_EXCEEDED: 429,
    NO_EDGE_AVAILABLE: 503,
    BAD_REQUEST: 400,
  };

  it.each(JOIN_ERROR_CODES.map((c) => [c, statuses[c]!] as const))('%s (%i) → %s', (code, status) => {
    const e = errorFromAnswer(status, body(code, code === 'QUOTA_EXCEEDED'), URL_);
    expect(e).toBeInstanceOf(CloudProxyError);
    expect(e.code).toBe(code);
    expect(e.message).toContain(`the ${code} message`);
    expect(e.details).toMatchObject({ status, serverCode: code, url: URL_ });
    expect(e.details.retryable).toBe(code === 'QUOTA_EXCEEDED');
    expect(e.retryable).toBe(code === 'QUOTA_EXCEEDED' || code === 'NO_EDGE_AVAILABLE');
  });

  it.each<[number, string, CloudProxyErrorCode]>([
    [401, body('UNAUTHORIZED'), 'UNEXPECTED_ANSWER'],
    [500, body('INTERNAL', true), 'UNEXPECTED_ANSWER'],
    [413, body('PAYLOAD_TOO_LARGE'), 'UNEXPECTED_ANSWER'],
    [404, body('NOT_FOUND'), 'UNEXPECTED_ANSWER'],
    [418, body('SOMETHING_NEW'), 'UNEXPECTED_ANSWER'],
    [500, 'Internal Server Error', 'UNEXPECTED_ANSWER'],
    [404, '', 'UNEXPECTED_ANSWER'],
    [502, '<html>Bad Gateway</html>', 'UNEXPECTED_ANSWER'],
    [503, '', 'UNEXPECTED_ANSWER'],
    [403, '{"error": "forbidden"}', 'UNEXPECTED_ANSWER'],
  ])('%i %s → %s', (status, text, code) => {
    const e = errorFromAnswer(status, text, URL_);
    expect(e.code).toBe(code);
    expect(e.details.status).toBe(status);
  });

  it.each(JOIN_ERROR_CODES.map((c) => [c]))('join rejects with %s and returns to DISCONNECTED', async (code) => {
    const { fetch } = recordingFetch(async () => ({ status: statuses[code]!, raw: body(code) }));
    const { Ctor, instances } = fakePeerConnection(() => ({ kind: 'relay' }));
    const c = createClient({ controlUrl: 'https://control.test', fetch, RTCPeerConnection: Ctor, ...gatewayConfig() });
    const states: string[] = [];
    c.on('connection-state-change', (e) => states.push(`${e.previous}>${e.current}${e.reason ? `:${e.reason}` : ''}`));
    c.startProxyServer(4);
    await expect(c.join('app', 'ch', 't', 'u')).rejects.toMatchObject({ code });
    expect(c.connectionState).toBe('DISCONNECTED');
    expect(states).toEqual(['DISCONNECTED>CONNECTING', `CONNECTING>DISCONNECTED:${code}`]);
    expect(instances).toHaveLength(0); // no edge was probed
    // Allowed again after the failure.
    c.startProxyServer(5);
  });

  it('a network error is CONTROL_PLANE_UNREACHABLE naming the URL', async () => {
    const fetch = async () => {
      throw new TypeError('fetch failed');
    };
    const { Ctor } = fakePeerConnection(() => ({ kind: 'relay' }));
    const c = createClient({ controlUrl: 'https://control.test', fetch, RTCPeerConnection: Ctor, ...gatewayConfig() });
    c.startProxyServer();
    const err = await c.join('app', 'ch', 't', 'u').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CONTROL_PLANE_UNREACHABLE', details: { url: URL_ } });
    expect((err as Error).message).toContain('fetch failed');
    expect((err as CloudProxyError).retryable).toBe(true);
  });

  it('a control plane that never answers is CONTROL_PLANE_UNREACHABLE after controlTimeoutMs', async () => {
    const { fetch } = recordingFetch(() => new Promise(() => undefined));
    const { Ctor } = fakePeerConnection(() => ({ kind: 'relay' }));
    const c = createClient({ controlUrl: 'https://control.test', fetch, RTCPeerConnection: Ctor, ...gatewayConfig(), controlTimeoutMs: 30 });
    c.startProxyServer();
    const t0 = Date.now();
    await expect(c.join('app', 'ch', 't', 'u')).rejects.toMatchObject({ code: 'CONTROL_PLANE_UNREACHABLE' });
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});

describe('answers', () => {
  it('accepts a well-formed answer', () => {
    const a = answer(['e1', 'e2'], 'tcp');
    expect(parseProxyAnswer(JSON.stringify(a), 'tcp', URL_)).toEqual(a);
  });

  it('an empty edge list is NO_EDGE_AVAILABLE', () => {
    expect(() => parseProxyAnswer(JSON.stringify(answer([])), 'udp', URL_)).toThrow(/NO_EDGE_AVAILABLE/);
  });

  it.each<[string, (a: Record<string, unknown>) => unknown]>([
    ['not JSON', () => 'nope{'],
    ['no session', (a) => ({ ...a, session: undefined })],
    ['another mode', (a) => ({ ...a, mode: 'tls' })],
    ['edges not a list', (a) => ({ ...a, edges: {} })],
    ['an edge without ice servers', (a) => ({ ...a, edges: [{ ...(a['edges'] as object[])[0], ice_servers: [] }] })],
    ['ice server urls not a list', (a) => ({ ...a, edges: [{ id: 'e', address: 'x', ice_servers: [{ urls: 'turn:x', username: 'u', credential: 'p' }] }] })],
  ])('rejects %s with UNEXPECTED_ANSWER', (_name, mutate) => {
    const m = mutate(answer(['e1']) as unknown as Record<string, unknown>);
    const text = typeof m === 'string' ? m : JSON.stringify(m);
    expect(() => parseProxyAnswer(text, 'udp', URL_)).toThrow(/UNEXPECTED_ANSWER/);
  });
});

describe('createClient', () => {
  it.each([undefined, '', 'control.test', 'ftp://control.test', 'https://'])('refuses controlUrl %s', (url) => {
    expect(() => createClient({ controlUrl: url as unknown as string })).toThrow(/INVALID_PARAMETER/);
  });
  it('refuses a bad timeout', () => {
    expect(() => createClient({ controlUrl: 'https://c.test', edgeProbeTimeoutMs: 0 })).toThrow(/INVALID_PARAMETER/);
  });
});
