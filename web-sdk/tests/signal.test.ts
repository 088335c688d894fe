/** The signalling URL rules and the gateway's message shapes (pure functions). */

import { describe, expect, it } from 'vitest';
import {
  CloudProxyError,
  cloudSignalUrl,
  createClient,
  isLoopbackAuthority,
  parseRtnSignalUrl,
  parseServerMessage,
  redactUrl,
  selfHostedSignalUrl,
  signalUrlFor,
  type CloudSignalTarget,
  type Route,
} from '../src/index.js';

const EDGE = { id: 'e1', address: 'e1.edge.test', tls_port: 443, signal_port: 4000 };

function target(over: Partial<CloudSignalTarget> = {}): CloudSignalTarget {
  return { edge: EDGE, transport: 'udp', signalUpstreams: ['10.0.0.9:8443'], ticket: 'v1.tick+et/=', pageHttps: false, ...over };
}

const Q = 'upstream=10.0.0.9%3A8443&ticket=v1.tick%2Bet%2F%3D&path=/signal';

describe('cloud proxy signalling URL', () => {
  it.each([
    ['udp', false, `ws://e1.edge.test:4000/ws?${Q}`],
    ['tcp', false, `ws://e1.edge.test:4000/ws?${Q}`],
    ['udp', true, `wss://e1.edge.test:443/ws?${Q}`],
    ['tcp', true, `wss://e1.edge.test:443/ws?${Q}`],
    ['tls', false, `wss://e1.edge.test:443/ws?${Q}`],
    ['tls', true, `wss://e1.edge.test:443/ws?${Q}`],
  ] as const)('mode %s, https page %s → %s', (transport, pageHttps, url) => {
    expect(cloudSignalUrl(target({ transport, pageHttps }))).toBe(url);
  });

  it('modes 3/4 on an http page use wss on the TLS port when the edge has no signal port', () => {
    expect(cloudSignalUrl(target({ edge: { ...EDGE, signal_port: null } }))).toBe(`wss://e1.edge.test:443/ws?${Q}`);
  });

  it('uses non-default ports as the edge gives them, and brackets IPv6 addresses', () => {
    const edge = { id: 'e6', address: '2001:db8::7', tls_port: 8443, signal_port: 14000 };
    expect(cloudSignalUrl(target({ edge }))).toBe(`ws://[2001:db8::7]:14000/ws?${Q}`);
    expect(cloudSignalUrl(target({ edge, transport: 'tls' }))).toBe(`wss://[2001:db8::7]:8443/ws?${Q}`);
  });

  it('uses the first signalling upstream', () => {
    expect(cloudSignalUrl(target({ signalUpstreams: ['rtn-a.test:8443', 'rtn-b.test:8443'] }))).toContain(
      'upstream=rtn-a.test%3A8443&',
    );
  });

  it.each([[[]], [undefined], [['']]])('signal_upstreams %j → UNEXPECTED_ANSWER', (ups) => {
    const e = (() => {
      try {
        cloudSignalUrl(target({ signalUpstreams: ups as string[] | undefined }));
      } catch (err) {
        return err;
      }
      return null;
    })();
    expect(e).toBeInstanceOf(CloudProxyError);
    expect((e as CloudProxyError).code).toBe('UNEXPECTED_ANSWER');
    expect((e as CloudProxyError).message).toMatch(/signal_upstreams is empty/);
  });

  it('mode 5 with an edge without a TLS port is an error, not a ws:// fallback', () => {
    expect(() => cloudSignalUrl(target({ transport: 'tls', edge: { ...EDGE, tls_port: null } }))).toThrow(/UNEXPECTED_ANSWER.*no TLS port/);
    expect(() => cloudSignalUrl(target({ pageHttps: true, edge: { ...EDGE, tls_port: null } }))).toThrow(/https page needs wss/);
  });
});

describe('rtnSignalUrl and the self-hosted proxy', () => {
  it('parses ws:// and wss:// URLs, making the port explicit', () => {
    expect(parseRtnSignalUrl('ws://10.0.0.2:8443/signal')).toEqual({
      url: 'ws://10.0.0.2:8443/signal',
      hostPort: '10.0.0.2:8443',
      path: '/signal',
    });
    expect(parseRtnSignalUrl('wss://rtn.example')).toMatchObject({ hostPort: 'rtn.example:443', path: '/signal' });
    expect(parseRtnSignalUrl('ws://rtn.example/')).toMatchObject({ hostPort: 'rtn.example:80', path: '/signal' });
    expect(parseRtnSignalUrl('ws://[::1]:8443/x')).toMatchObject({ hostPort: '[::1]:8443', path: '/x' });
    expect(parseRtnSignalUrl('ws://[::1]/x')).toMatchObject({ hostPort: '[::1]:80' });
  });

  it.each(['', 'http://10.0.0.2:8443/signal', '10.0.0.2:8443', 'ws://', 'ws://a b/'])('refuses %j', (u) => {
    expect(() => parseRtnSignalUrl(u)).toThrow(/INVALID_PARAMETER: rtnSignalUrl must be a ws:\/\/ or wss:\/\//);
  });

  it('createClient checks rtnSignalUrl and the new timeouts', () => {
    expect(() => createClient({ controlUrl: 'https://c.test', rtnSignalUrl: 'http://x' })).toThrow(/INVALID_PARAMETER/);
    expect(() => createClient({ controlUrl: 'https://c.test', signalTimeoutMs: 0 })).toThrow(/signalTimeoutMs/);
    expect(() => createClient({ controlUrl: 'https://c.test', subscribeTimeoutMs: -1 })).toThrow(/subscribeTimeoutMs/);
  });

  const rtn = parseRtnSignalUrl('ws://10.0.0.2:8443/signal');

  it('setProxyServer: the proxy relay with upstream = host:port of rtnSignalUrl and no ticket', () => {
    const both = { address: 'proxy.corp', signalPort: 4000, tlsPort: 443 };
    expect(selfHostedSignalUrl(both, rtn, false)).toBe('ws://proxy.corp:4000/ws?upstream=10.0.0.2%3A8443&path=%2Fsignal');
    expect(selfHostedSignalUrl(both, rtn, true)).toBe('wss://proxy.corp:443/ws?upstream=10.0.0.2%3A8443&path=%2Fsignal');
    expect(selfHostedSignalUrl({ address: 'proxy.corp', tlsPort: 8443 }, rtn, false)).toBe(
      'wss://proxy.corp:8443/ws?upstream=10.0.0.2%3A8443&path=%2Fsignal',
    );
    expect(() => selfHostedSignalUrl({ address: 'proxy.corp', signalPort: 4000 }, rtn, true)).toThrow(/INVALID_PARAMETER.*no tlsPort/);
  });

  it('signalUrlFor: direct and TURN-only routes go to rtnSignalUrl itself', () => {
    const direct: Route = { kind: 'direct' };
    expect(signalUrlFor(direct, rtn, true)).toBe('ws://10.0.0.2:8443/signal');
    const turnOnly: Route = { kind: 'self-hosted', proxy: null, turn: null, iceServers: [] };
    expect(signalUrlFor(turnOnly, rtn, false)).toBe('ws://10.0.0.2:8443/signal');
    const proxied: Route = { kind: 'self-hosted', proxy: { address: 'p.corp', tlsPort: 443 }, turn: null, iceServers: [] };
    expect(signalUrlFor(proxied, rtn, false)).toBe('wss://p.corp:443/ws?upstream=10.0.0.2%3A8443&path=%2Fsignal');
    expect(() => signalUrlFor(direct, null, false)).toThrow(/INVALID_PARAMETER/);
  });

  it('redacts tickets', () => {
    expect(redactUrl('wss://e:443/ws?upstream=a%3A1&ticket=secret.x&path=/signal')).toBe(
      'wss://e:443/ws?upstream=a%3A1&ticket=<redacted>&path=/signal',
    );
  });
});

describe('gateway messages', () => {
  it.each([
    ['{"type":"joined","uid":"a","members":["b","c"]}', { type: 'joined', uid: 'a', members: ['b', 'c'] }],
    ['{"type":"joined","uid":"a"}', { type: 'joined', uid: 'a', members: [] }],
    ['{"type":"left"}', { type: 'left' }],
    ['{"type":"member-joined","uid":"b","extra":1}', { type: 'member-joined', uid: 'b' }],
    ['{"type":"member-left","uid":"b"}', { type: 'member-left', uid: 'b' }],
    ['{"type":"offer","sdp":"v=0"}', { type: 'offer', sdp: 'v=0' }],
    ['{"type":"answer","sdp":"v=0"}', { type: 'answer', sdp: 'v=0' }],
    ['{"type":"error","code":"UID_IN_USE","message":"m"}', { type: 'error', code: 'UID_IN_USE', message: 'm' }],
  ])('%s', (text, msg) => {
    expect(parseServerMessage(text)).toEqual(msg);
  });

  it.each(['not json', '[]', 'null', '{"type":"nope"}', '{"type":"offer"}', '{"type":"joined"}', '{"type":"member-left","uid":5}'])(
    'ignores %s',
    (text) => {
      expect(parseServerMessage(text)).toBeNull();
    },
  );

  it('ignores binary frames', () => {
    expect(parseServerMessage(new ArrayBuffer(3))).toBeNull();
  });
});

describe('controlUrl: https, or http on a loopback host only', () => {
  it.each(['https://control.test', 'http://127.0.0.1:8080', 'http://127.5.6.7', 'http://localhost:3000/x', 'http://[::1]:9000', 'HTTP://LOCALHOST'])(
    'accepts %s',
    (url) => {
      expect(() => createClient({ controlUrl: url })).not.toThrow();
    },
  );

  it.each(['http://control.test', 'http://10.0.0.1', 'http://128.0.0.1', 'http://127.0.0.1.evil.test', 'http://localhost.evil.test', 'http://[::2]', 'http://user@127.0.0.1'])(
    'refuses %s',
    (url) => {
      expect(() => createClient({ controlUrl: url })).toThrow(/INVALID_PARAMETER: controlUrl must be https:\/\//);
    },
  );

  it('isLoopbackAuthority', () => {
    expect(isLoopbackAuthority('127.0.0.1:80')).toBe(true);
    expect(isLoopbackAuthority('[0:0:0:0:0:0:0:1]:80')).toBe(true);
    expect(isLoopbackAuthority('127.0.0.256')).toBe(false);
    expect(isLoopbackAuthority('[::ffff:127.0.0.1]')).toBe(false);
  });
});
