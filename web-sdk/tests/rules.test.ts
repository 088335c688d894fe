/**
 * ARCHITECTURE.md §5, rule by rule: a table of call sequences and what the last call gives.
 * Every earlier call in a sequence must succeed. The same table runs against the pure rules
 * (ProxyRules) and against the client (CloudProxyClient with a mocked control plane and a
 * fake RTCPeerConnection), so the client cannot drift from the rules.
 */

import { describe, expect, it } from 'vitest';
import {
  CloudProxyError,
  createClient,
  ProxyRules,
  turnIceServer,
  type CloudProxyClient,
  type CloudProxyErrorCode,
  type ProxySetting,
} from '../src/index.js';
import { answer, fakePeerConnection, gatewayConfig, recordingFetch } from './fakes.js';

const PROXY = { address: 'proxy.corp.example', tlsPort: 443 };
const TURN = { host: 'turn.corp.example', port: 3478, username: 'u', password: 'p', transport: 'udp' };

type Step =
  | ['start', unknown?]
  | ['stop']
  | ['setProxy', unknown]
  | ['setTurn', unknown]
  /** A join that completes. */
  | ['join']
  /** A join still in progress (CONNECTING). */
  | ['joining']
  /** A leave that completes. */
  | ['leave'];

interface Row {
  name: string;
  steps: Step[];
  /** What the last step gives: 'ok' or an error code. */
  expect: 'ok' | CloudProxyErrorCode;
  /** Message fragment of the error. */
  message?: string;
  /** The proxy setting after the sequence (checked when given). */
  proxy?: ProxySetting['kind'] | ['cloud', 3 | 4 | 5];
}

const ROWS: Row[] = [
  // Modes.
  { name: 'start with no mode = mode 3', steps: [['start']], expect: 'ok', proxy: ['cloud', 3] },
  { name: 'start(3)', steps: [['start', 3]], expect: 'ok', proxy: ['cloud', 3] },
  { name: 'start(4)', steps: [['start', 4]], expect: 'ok', proxy: ['cloud', 4] },
  { name: 'start(5)', steps: [['start', 5]], expect: 'ok', proxy: ['cloud', 5] },
  { name: 'start(1) not supported', steps: [['start', 1]], expect: 'NOT_SUPPORTED', proxy: 'off' },
  { name: 'start(2) not supported', steps: [['start', 2]], expect: 'NOT_SUPPORTED', proxy: 'off' },
  { name: 'start(0) invalid', steps: [['start', 0]], expect: 'INVALID_PARAMETER', proxy: 'off' },
  { name: 'start(6) invalid', steps: [['start', 6]], expect: 'INVALID_PARAMETER' },
  { name: 'start(7) invalid', steps: [['start', 7]], expect: 'INVALID_PARAMETER' },
  { name: 'start(-3) invalid', steps: [['start', -3]], expect: 'INVALID_PARAMETER' },
  { name: 'start(3.5) invalid', steps: [['start', 3.5]], expect: 'INVALID_PARAMETER' },
  { name: 'start(NaN) invalid', steps: [['start', NaN]], expect: 'INVALID_PARAMETER' },
  { name: 'start("3") invalid', steps: [['start', '3']], expect: 'INVALID_PARAMETER' },
  { name: 'start(null) invalid', steps: [['start', null]], expect: 'INVALID_PARAMETER' },
  { name: 'a bad mode keeps the previous mode', steps: [['start', 4], ['start', 7]], expect: 'INVALID_PARAMETER', proxy: ['cloud', 4] },
  // Last start wins.
  { name: 'start twice keeps the last mode (3 then 5)', steps: [['start', 3], ['start', 5]], expect: 'ok', proxy: ['cloud', 5] },
  { name: 'start twice keeps the last mode (5 then omitted)', steps: [['start', 5], ['start']], expect: 'ok', proxy: ['cloud', 3] },
  // Only while disconnected.
  { name: 'start after join', steps: [['start'], ['join'], ['start', 4]], expect: 'INVALID_OPERATION', message: 'start proxy server before join', proxy: ['cloud', 3] },
  { name: 'start during join', steps: [['start'], ['joining'], ['start', 4]], expect: 'INVALID_OPERATION', message: 'start proxy server before join' },
  { name: 'stop after join', steps: [['start'], ['join'], ['stop']], expect: 'INVALID_OPERATION', message: 'stop proxy server', proxy: ['cloud', 3] },
  { name: 'stop during join', steps: [['start'], ['joining'], ['stop']], expect: 'INVALID_OPERATION' },
  { name: 'setProxyServer after join', steps: [['setTurn', TURN], ['join'], ['setProxy', PROXY]], expect: 'INVALID_OPERATION', message: 'set proxy server before join' },
  { name: 'setTurnServer after join', steps: [['setTurn', TURN], ['join'], ['setTurn', TURN]], expect: 'INVALID_OPERATION', message: 'set turn server before join' },
  { name: 'state is checked before the mode', steps: [['start'], ['join'], ['start', 7]], expect: 'INVALID_OPERATION' },
  { name: 'join twice', steps: [['start'], ['join'], ['join']], expect: 'INVALID_OPERATION', message: 'already joined' },
  { name: 'join during join', steps: [['start'], ['joining'], ['join']], expect: 'INVALID_OPERATION', message: 'join already in progress' },
  { name: 'join without a proxy (direct route)', steps: [['join']], expect: 'ok', proxy: 'off' },
  { name: 'start after a direct join', steps: [['join'], ['start']], expect: 'INVALID_OPERATION', message: 'start proxy server before join' },
  { name: 'start after a direct join and leave', steps: [['join'], ['leave'], ['start']], expect: 'ok' },
  // A leave during a join cancels it: disconnected at once, the proxy calls work again.
  { name: 'start after a join cancelled by leave', steps: [['start', 3], ['joining'], ['leave'], ['start', 4]], expect: 'ok', proxy: ['cloud', 4] },
  { name: 'join after a join cancelled by leave', steps: [['start'], ['joining'], ['leave'], ['join']], expect: 'ok' },
  // After leave, allowed again; the setting survives leave.
  { name: 'start after leave', steps: [['start', 3], ['join'], ['leave'], ['start', 5]], expect: 'ok', proxy: ['cloud', 5] },
  { name: 'the setting survives leave', steps: [['start', 4], ['join'], ['leave']], expect: 'ok', proxy: ['cloud', 4] },
  { name: 'stop after leave', steps: [['start'], ['join'], ['leave'], ['stop']], expect: 'ok', proxy: 'off' },
  { name: 'setTurnServer after leave and stop', steps: [['start'], ['join'], ['leave'], ['stop'], ['setTurn', TURN]], expect: 'ok', proxy: 'self-hosted' },
  { name: 'leave when not joined is a no-op', steps: [['leave']], expect: 'ok', proxy: 'off' },
  // Mutual exclusion, both orders.
  { name: 'setTurnServer after startProxyServer', steps: [['start'], ['setTurn', TURN]], expect: 'INVALID_OPERATION', message: 'proxy already set', proxy: ['cloud', 3] },
  { name: 'setProxyServer after startProxyServer', steps: [['start'], ['setProxy', PROXY]], expect: 'INVALID_OPERATION', message: 'proxy already set', proxy: ['cloud', 3] },
  { name: 'startProxyServer after setProxyServer', steps: [['setProxy', PROXY], ['start']], expect: 'INVALID_OPERATION', message: 'proxy already set', proxy: 'self-hosted' },
  { name: 'startProxyServer after setTurnServer', steps: [['setTurn', TURN], ['start', 5]], expect: 'INVALID_OPERATION', message: 'proxy already set', proxy: 'self-hosted' },
  { name: 'exclusion holds after a join and leave', steps: [['start'], ['join'], ['leave'], ['setTurn', TURN]], expect: 'INVALID_OPERATION', message: 'proxy already set' },
  { name: 'bad arguments are reported before the exclusion', steps: [['start'], ['setTurn', { ...TURN, port: 0 }]], expect: 'INVALID_PARAMETER' },
  // Self-deployed proxies combine with each other.
  { name: 'setProxyServer then setTurnServer', steps: [['setProxy', PROXY], ['setTurn', TURN]], expect: 'ok', proxy: 'self-hosted' },
  { name: 'setTurnServer then setProxyServer', steps: [['setTurn', TURN], ['setProxy', PROXY]], expect: 'ok', proxy: 'self-hosted' },
  { name: 'setTurnServer twice', steps: [['setTurn', TURN], ['setTurn', TURN]], expect: 'ok', proxy: 'self-hosted' },
  // Stop turns everything off.
  { name: 'stop with nothing set', steps: [['stop']], expect: 'ok', proxy: 'off' },
  { name: 'stop turns off the cloud proxy', steps: [['start', 5], ['stop']], expect: 'ok', proxy: 'off' },
  { name: 'stop turns off self-deployed proxies', steps: [['setProxy', PROXY], ['setTurn', TURN], ['stop']], expect: 'ok', proxy: 'off' },
  { name: 'start after setTurnServer and stop', steps: [['setTurn', TURN], ['stop'], ['start', 4]], expect: 'ok', proxy: ['cloud', 4] },
  { name: 'setProxyServer after start and stop', steps: [['start'], ['stop'], ['setProxy', PROXY]], expect: 'ok', proxy: 'self-hosted' },
  // Arguments of the self-deployed calls (the Rust SDK's ProxyServer / TurnServer checks).
  { name: 'setProxyServer(null)', steps: [['setProxy', null]], expect: 'INVALID_PARAMETER' },
  { name: 'setProxyServer without address', steps: [['setProxy', { tlsPort: 443 }]], expect: 'INVALID_PARAMETER' },
  { name: 'setProxyServer with an empty address', steps: [['setProxy', { address: '', tlsPort: 443 }]], expect: 'INVALID_PARAMETER' },
  { name: 'setProxyServer with a URL as address', steps: [['setProxy', { address: 'https://proxy.corp', tlsPort: 443 }]], expect: 'INVALID_PARAMETER' },
  { name: 'setProxyServer with a space in the address', steps: [['setProxy', { address: 'a b', tlsPort: 443 }]], expect: 'INVALID_PARAMETER' },
  { name: 'setProxyServer without a port', steps: [['setProxy', { address: 'proxy.corp' }]], expect: 'INVALID_PARAMETER', message: 'signalPort or a tlsPort' },
  { name: 'setProxyServer with port 0', steps: [['setProxy', { address: 'proxy.corp', signalPort: 4000, tlsPort: 0 }]], expect: 'INVALID_PARAMETER' },
  { name: 'setProxyServer with port 65536', steps: [['setProxy', { address: 'proxy.corp', signalPort: 65536 }]], expect: 'INVALID_PARAMETER' },
  { name: 'setProxyServer with a signal port only', steps: [['setProxy', { address: '192.0.2.1', signalPort: 4000 }]], expect: 'ok' },
  { name: 'setProxyServer with an IPv6 address', steps: [['setProxy', { address: '2001:db8::1', tlsPort: 443 }]], expect: 'ok' },
  { name: 'setTurnServer(null)', steps: [['setTurn', null]], expect: 'INVALID_PARAMETER' },
  { name: 'setTurnServer with an empty host', steps: [['setTurn', { ...TURN, host: '' }]], expect: 'INVALID_PARAMETER' },
  { name: 'setTurnServer with port 0', steps: [['setTurn', { ...TURN, port: 0 }]], expect: 'INVALID_PARAMETER' },
  { name: 'setTurnServer with port 3478.5', steps: [['setTurn', { ...TURN, port: 3478.5 }]], expect: 'INVALID_PARAMETER' },
  { name: 'setTurnServer without username', steps: [['setTurn', { ...TURN, username: '' }]], expect: 'INVALID_PARAMETER' },
  { name: 'setTurnServer without password', steps: [['setTurn', { ...TURN, password: undefined }]], expect: 'INVALID_PARAMETER' },
  { name: 'setTurnServer with transport dtls', steps: [['setTurn', { ...TURN, transport: 'dtls' }]], expect: 'INVALID_PARAMETER' },
  { name: 'setTurnServer over TLS', steps: [['setTurn', { ...TURN, port: 443, transport: 'tls' }]], expect: 'ok' },
];

/** Runs steps against one subject; returns the last step's outcome. */
interface Subject {
  run(step: Step): Promise<void>;
  proxy(): ProxySetting;
}

function rulesSubject(): Subject {
  const r = new ProxyRules();
  return {
    async run(step) {
      switch (step[0]) {
        case 'start':
          r.startProxyServer(...(step.length > 1 ? [step[1]] : []));
          return;
        case 'stop':
          return r.stopProxyServer();
        case 'setProxy':
          r.setProxyServer(step[1]);
          return;
        case 'setTurn':
          r.setTurnServer(step[1]);
          return;
        case 'join': {
          const a = r.beginJoin();
          expect(r.finishJoin(a.id, true)).toEqual({ previous: 'CONNECTING', current: 'CONNECTED' });
          return;
        }
        case 'joining':
          r.beginJoin();
          return;
        case 'leave':
          if (r.beginLeave().action === 'leave') r.finishLeave();
          return;
      }
    },
    proxy: () => r.proxy,
  };
}

function clientSubject(): Subject {
  const { Ctor } = fakePeerConnection(() => ({ kind: 'relay' }));
  // 'joining' holds the proxy-info answer back until the test ends.
  let hold = false;
  const { fetch } = recordingFetch(async (call) => {
    if (call.method === 'DELETE') return { status: 204 };
    if (hold) await new Promise(() => undefined);
    return { status: 200, body: answer(['e1'], (call.body as { mode: 'udp' | 'tcp' | 'tls' }).mode) };
  });
  const c: CloudProxyClient = createClient({ controlUrl: 'https://control.test', fetch, RTCPeerConnection: Ctor, ...gatewayConfig() });
  return {
    async run(step) {
      switch (step[0]) {
        case 'start':
          // The public signature takes a number; the table also feeds it wrong types.
          c.startProxyServer(...((step.length > 1 ? [step[1]] : []) as [number?]));
          return;
        case 'stop':
          return c.stopProxyServer();
        case 'setProxy':
          return c.setProxyServer(step[1] as never);
        case 'setTurn':
          return c.setTurnServer(step[1] as never);
        case 'join':
          await c.join('app', 'ch', 'tok', 1);
          return;
        case 'joining':
          hold = true;
          void c.join('app', 'ch', 'tok', 1).catch(() => undefined);
          await Promise.resolve();
          expect(c.connectionState).toBe('CONNECTING');
          hold = false;
          return;
        case 'leave':
          return c.leave();
      }
    },
    proxy: () => c.proxySetting,
  };
}

async function outcome(subject: Subject, row: Row): Promise<{ code: 'ok' | string; message: string }> {
  const steps = row.steps.slice(0, -1);
  for (const s of steps) await subject.run(s);
  try {
    await subject.run(row.steps[row.steps.length - 1] as Step);
    return { code: 'ok', message: '' };
  } catch (e) {
    if (!(e instanceof CloudProxyError)) throw e;
    return { code: e.code, message: e.message };
  }
}

function checkProxy(subject: Subject, row: Row) {
  if (row.proxy === undefined) return;
  const p = subject.proxy();
  if (Array.isArray(row.proxy)) {
    expect(p).toMatchObject({ kind: 'cloud', mode: row.proxy[1] });
  } else {
    expect(p.kind).toBe(row.proxy);
  }
}

describe.each([
  ['ProxyRules', rulesSubject],
  ['CloudProxyClient', clientSubject],
])('%s follows ARCHITECTURE §5', (_name, make) => {
  it.each(ROWS.map((r) => [r.name, r] as const))('%s', async (_n, row) => {
    const subject = make();
    const got = await outcome(subject, row);
    expect(got.code).toBe(row.expect);
    if (row.message) expect(got.message).toContain(row.message);
    checkProxy(subject, row);
  });
});

describe('proxy errors', () => {
  it('are CloudProxyError with a code and the code in the message', () => {
    const r = new ProxyRules();
    let err: unknown;
    try {
      r.startProxyServer(1);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CloudProxyError);
    expect(err).toBeInstanceOf(Error);
    expect((err as CloudProxyError).code).toBe('NOT_SUPPORTED');
    expect((err as CloudProxyError).name).toBe('CloudProxyError');
    expect((err as CloudProxyError).message).toMatch(/^NOT_SUPPORTED: /);
  });

  it('messages are the Rust SDK\'s strings', () => {
    const r = new ProxyRules();
    r.startProxyServer();
    const msg = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as CloudProxyError).message;
      }
      return 'ok';
    };
    expect(msg(() => r.setTurnServer({ host: 'h', port: 1, username: 'u', password: 'p', transport: 'udp' }))).toBe(
      'INVALID_OPERATION: proxy already set',
    );
    r.beginJoin();
    expect(msg(() => r.startProxyServer())).toBe('INVALID_OPERATION: start proxy server before join');
    expect(msg(() => r.stopProxyServer())).toBe('INVALID_OPERATION: stop proxy server before join');
    expect(msg(() => r.setProxyServer({}))).toBe('INVALID_OPERATION: set proxy server before join');
    expect(msg(() => r.setTurnServer({}))).toBe('INVALID_OPERATION: set turn server before join');
  });

  it('a join cancelled by leave cannot finish: its late result is discarded', () => {
    const r = new ProxyRules();
    const a = r.beginJoin();
    expect(r.beginLeave()).toEqual({ action: 'cancel-join', change: { previous: 'CONNECTING', current: 'DISCONNECTED' } });
    expect(r.finishJoin(a.id, true)).toBeNull();
    expect(r.connectionState).toBe('DISCONNECTED');
    // A newer join is not confused with the cancelled one.
    const b = r.beginJoin();
    expect(r.finishJoin(a.id, true)).toBeNull();
    expect(r.finishJoin(b.id, true)).not.toBeNull();
    expect(r.connectionState).toBe('CONNECTED');
  });

  it('leave transitions', () => {
    const r = new ProxyRules();
    expect(r.beginLeave()).toEqual({ action: 'not-joined' });
    expect(r.finishLeave()).toBeNull();
    r.finishJoin(r.beginJoin().id, true);
    expect(r.beginLeave()).toEqual({ action: 'leave', change: { previous: 'CONNECTED', current: 'DISCONNECTING' } });
    expect(r.beginLeave()).toEqual({ action: 'already-leaving' });
    expect(() => r.startProxyServer()).toThrow(/start proxy server before join/);
    expect(() => r.beginJoin()).toThrow(/leave in progress/);
    expect(r.finishLeave()).toEqual({ previous: 'DISCONNECTING', current: 'DISCONNECTED' });
  });

  it('the TURN server becomes an ICE server as in the Rust SDK', () => {
    const t = { host: 'turn.example', port: 3478, username: 'u', password: 'p' };
    expect(turnIceServer({ ...t, transport: 'udp' }).urls).toEqual(['turn:turn.example:3478?transport=udp']);
    expect(turnIceServer({ ...t, transport: 'tcp' }).urls).toEqual(['turn:turn.example:3478?transport=tcp']);
    expect(turnIceServer({ ...t, host: '2001:db8::1', port: 443, transport: 'tls' })).toEqual({
      urls: ['turns:[2001:db8::1]:443?transport=tcp'],
      username: 'u',
      credential: 'p',
    });
  });
});
