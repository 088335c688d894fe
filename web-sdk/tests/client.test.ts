/** The client: edge failover, events, rtcConfiguration, leave, and what is not implemented. */

import { describe, expect, it, vi } from 'vitest';
import { CloudProxyError, createClient, type ClientConfig, type EdgeAttempt, type UsingCloudProxyEvent } from '../src/index.js';
import { answer, fakeGateway, fakePeerConnection, gatewayConfig, recordingFetch, sleep, type Behaviour } from './fakes.js';

function setup(
  edges: string[],
  behave: (url: string) => Behaviour,
  extra: Partial<ClientConfig> = {},
) {
  // The answer is for the mode the request asked for.
  const { fetch, calls } = recordingFetch(async (call) =>
    call.method === 'DELETE'
      ? { status: 204 }
      : { status: 200, body: answer(edges, (call.body as { mode: 'udp' | 'tcp' | 'tls' }).mode) },
  );
  const pcs = fakePeerConnection(behave);
  const gw = fakeGateway();
  const client = createClient({
    controlUrl: 'https://control.test',
    fetch,
    RTCPeerConnection: pcs.Ctor,
    WebSocket: gw.Ctor,
    rtnSignalUrl: 'ws://rtn.test:8443/signal',
    edgeProbeTimeoutMs: 50,
    ...extra,
  });
  const events: string[] = [];
  const proxyEvents: UsingCloudProxyEvent[] = [];
  client.on('connection-state-change', (e) => events.push(`${e.previous}>${e.current}${e.reason ? `:${e.reason}` : ''}`));
  client.on('is-using-cloud-proxy', (e) => proxyEvents.push(e));
  return { client, calls, pcs, events, proxyEvents, gw };
}

describe('join through the cloud proxy', () => {
  it('uses the first edge with a relay candidate and exposes a relay-only configuration', async () => {
    const { client, pcs, events, proxyEvents } = setup(['e1', 'e2'], () => ({ kind: 'relay', relayProtocol: 'tls' }));
    client.startProxyServer(5);
    const r = await client.join('app', 'ch', 'tok', 'u1');
    expect(r).toMatchObject({ appId: 'app', channel: 'ch', uid: 'u1' });
    expect(r.route).toMatchObject({ kind: 'cloud-proxy', mode: 'tls', session: 'sess-1', ticket: 'ticket-1', tried: [] });
    if (r.route.kind !== 'cloud-proxy') throw new Error('route');
    expect(r.route.edge.id).toBe('e1');
    expect(r.route.offered.map((e) => e.id)).toEqual(['e1', 'e2']);
    expect(r).not.toHaveProperty('token');
    expect(client.connectionState).toBe('CONNECTED');
    const cfg = client.rtcConfiguration();
    expect(cfg).toEqual({
      iceServers: [{ urls: ['turns:e1.edge.test:443?transport=tcp'], username: '1900000000:k1:sess-1', credential: 'pw' }],
      iceTransportPolicy: 'relay',
    });
    expect(r.rtcConfiguration).toEqual(cfg);
    // The probe used exactly that configuration, had a data channel to gather for, and was closed.
    // The second one is the media connection, with the same configuration.
    expect(pcs.instances).toHaveLength(2);
    expect(pcs.instances[0]!.config).toEqual(cfg);
    expect(pcs.instances[0]!.dataChannels).toEqual(['cloudproxy-probe']);
    expect(pcs.instances[0]!.closed).toBe(true);
    expect(pcs.instances[1]!.config).toEqual(cfg);
    expect(pcs.instances[1]!.closed).toBe(false);
    expect(events).toEqual(['DISCONNECTED>CONNECTING', 'CONNECTING>CONNECTED']);
    expect(proxyEvents).toEqual([{ using: true, transport: 'tls', edgeId: 'e1', relayProtocol: 'tls' }]);
    expect(client.joinInfo()).toEqual(r);
  });

  it('fails over to the next edge, in the answer order', async () => {
    const { client, pcs, proxyEvents } = setup(['e1', 'e2', 'e3'], (url) =>
      url.includes('e1.') ? { kind: 'silent' } : url.includes('e2.') ? { kind: 'error', errorText: 'TURN allocate failed' } : { kind: 'relay' },
    );
    client.startProxyServer();
    const r = await client.join('app', 'ch', 'tok', 7);
    if (r.route.kind !== 'cloud-proxy') throw new Error('route');
    expect(r.route.edge.id).toBe('e3');
    expect(r.route.tried.map((f) => f.id)).toEqual(['e1', 'e2']);
    expect(r.route.tried[0]!.reason).toContain('no relay candidate within 50 ms');
    expect(r.route.tried[1]!.reason).toContain('TURN allocate failed');
    expect(client.rtcConfiguration().iceServers![0]!.urls).toEqual(['turn:e3.edge.test:3478?transport=udp']);
    expect(pcs.instances.map((p) => p.closed)).toEqual([true, true, true, false]);
    expect(proxyEvents).toEqual([{ using: true, transport: 'udp', edgeId: 'e3', relayProtocol: null }]);
  });

  it('stops at the first working edge', async () => {
    const { client, pcs } = setup(['e1', 'e2'], () => ({ kind: 'relay' }));
    client.startProxyServer();
    await client.join('app', 'ch', 'tok', 7);
    expect(pcs.instances).toHaveLength(2); // one probe, then media
  });

  it('EDGE_UNREACHABLE lists every edge tried and releases the session', async () => {
    const { client, calls, events, proxyEvents } = setup(['e1', 'e2'], (url) =>
      url.includes('e1.') ? { kind: 'silent' } : { kind: 'throw', message: 'bad url' },
    );
    client.startProxyServer(4);
    const err = (await client.join('app', 'ch', 'tok', 7).catch((e: unknown) => e)) as CloudProxyError;
    expect(err).toBeInstanceOf(CloudProxyError);
    expect(err.code).toBe('EDGE_UNREACHABLE');
    const tried = err.details.tried as EdgeAttempt[];
    expect(tried.map((t) => t.id)).toEqual(['e1', 'e2']);
    expect(tried[0]).toMatchObject({ transport: 'tcp', address: 'e1.edge.test', urls: ['turn:e1.edge.test:3478?transport=tcp'] });
    expect(tried[1]!.reason).toContain('bad url');
    // The Rust SDK's wording: "<edge id> <transport> <address>: <why>" per edge.
    expect(err.message).toBe(
      'EDGE_UNREACHABLE: no edge reachable (tried e1 tcp e1.edge.test: no relay candidate within 50 ms; ' +
        'e2 tcp e2.edge.test: RTCPeerConnection: bad url)',
    );
    expect(err.retryable).toBe(true);
    expect(client.connectionState).toBe('DISCONNECTED');
    expect(events).toEqual(['DISCONNECTED>CONNECTING', 'CONNECTING>DISCONNECTED:EDGE_UNREACHABLE']);
    expect(proxyEvents).toEqual([]);
    await sleep(5);
    expect(calls.map((c) => `${c.method} ${c.url}`)).toEqual([
      'POST https://control.test/v1/proxy',
      'DELETE https://control.test/v1/proxy/sess-1',
    ]);
  });

  it('leave releases the session, closes peer connections and keeps the proxy setting', async () => {
    const { client, calls, events, proxyEvents } = setup(['e1'], () => ({ kind: 'relay' }));
    client.startProxyServer(4);
    await client.join('app', 'ch', 'tok', 7);
    const pc = client.createPeerConnection() as unknown as { record?: unknown; close(): void };
    const closed = vi.spyOn(pc, 'close');
    await client.leave();
    expect(closed).toHaveBeenCalled();
    expect(client.connectionState).toBe('DISCONNECTED');
    expect(calls.at(-1)).toMatchObject({ method: 'DELETE', url: 'https://control.test/v1/proxy/sess-1' });
    expect(events.slice(2)).toEqual(['CONNECTED>DISCONNECTING', 'DISCONNECTING>DISCONNECTED:LEAVE']);
    expect(client.proxySetting).toMatchObject({ kind: 'cloud', mode: 4 });
    expect(() => client.rtcConfiguration()).toThrow(/INVALID_OPERATION/);
    expect(client.joinInfo()).toBeNull();
    expect(proxyEvents.map((e) => e.using)).toEqual([true, false]);
    // A second leave does nothing.
    await client.leave();
    expect(events).toHaveLength(4);
  });

  it('leave during the edge probe cancels the join: disconnected at once, session released', async () => {
    const { client, calls, events, pcs } = setup(['e1'], () => ({ kind: 'silent' }), { edgeProbeTimeoutMs: 10_000 });
    client.startProxyServer();
    const joining = client.join('app', 'ch', 'tok', 7).catch((e: unknown) => e);
    await sleep(10);
    expect(client.connectionState).toBe('CONNECTING');
    const t0 = Date.now();
    await client.leave();
    expect(client.connectionState).toBe('DISCONNECTED');
    expect(await joining).toMatchObject({ message: 'INVALID_OPERATION: join cancelled by leave' });
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(events).toEqual(['DISCONNECTED>CONNECTING', 'CONNECTING>DISCONNECTED:LEAVE']);
    expect(pcs.instances[0]!.closed).toBe(true);
    await sleep(5);
    expect(calls.at(-1)).toMatchObject({ method: 'DELETE', url: 'https://control.test/v1/proxy/sess-1' });
    // The proxy calls work again at once.
    client.startProxyServer(5);
  });

  it('leave while the proxy-info request is in flight cancels it', async () => {
    const { fetch } = recordingFetch(() => new Promise(() => undefined));
    const { Ctor } = fakePeerConnection(() => ({ kind: 'relay' }));
    const client = createClient({ controlUrl: 'https://control.test', fetch, RTCPeerConnection: Ctor, ...gatewayConfig() });
    client.startProxyServer();
    const joining = client.join('app', 'ch', 'tok', 7).catch((e: unknown) => e);
    await client.leave();
    expect(await joining).toMatchObject({ code: 'INVALID_OPERATION', message: 'INVALID_OPERATION: join cancelled by leave' });
  });

  it('a join cancelled by leave and a new join: the old result does not leak into the new one', async () => {
    let n = 0;
    const gates: (() => void)[] = [];
    const { fetch, calls } = recordingFetch(async (call) => {
      if (call.method === 'DELETE') return { status: 204 };
      n += 1;
      const a = answer([`e${n}`]);
      a.session = `sess-${n}`;
      if (n === 1) await new Promise<void>((r) => gates.push(r));
      return { status: 200, body: a };
    });
    const { Ctor } = fakePeerConnection(() => ({ kind: 'relay' }));
    const client = createClient({ controlUrl: 'https://control.test', fetch, RTCPeerConnection: Ctor, ...gatewayConfig() });
    client.startProxyServer();
    const first = client.join('app', 'ch', 'tok', 7).catch((e: unknown) => e);
    await client.leave();
    const second = await client.join('app', 'ch', 'tok', 7);
    gates.forEach((g) => g());
    expect(await first).toMatchObject({ message: 'INVALID_OPERATION: join cancelled by leave' });
    expect(second.route).toMatchObject({ kind: 'cloud-proxy', session: 'sess-2' });
    expect(client.joinInfo()?.route).toMatchObject({ session: 'sess-2' });
    expect(client.connectionState).toBe('CONNECTED');
    expect(calls.filter((c) => c.method === 'DELETE')).toEqual([]);
  });

  it('a throwing event handler does not break the join', async () => {
    const { client } = setup(['e1'], () => ({ kind: 'relay' }));
    const errors = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    client.on('connection-state-change', () => {
      throw new Error('app bug');
    });
    client.startProxyServer();
    await client.join('app', 'ch', 'tok', 7);
    expect(client.connectionState).toBe('CONNECTED');
    expect(errors).toHaveBeenCalled();
    errors.mockRestore();
  });

  it('off removes a handler', async () => {
    const { client } = setup(['e1'], () => ({ kind: 'relay' }));
    const seen: unknown[] = [];
    const h = (e: unknown) => seen.push(e);
    client.on('is-using-cloud-proxy', h);
    client.off('is-using-cloud-proxy', h);
    client.startProxyServer();
    await client.join('app', 'ch', 'tok', 7);
    expect(seen).toEqual([]);
  });

  it('without RTCPeerConnection the join fails at once with NOT_SUPPORTED, before any request', async () => {
    const { fetch, calls } = recordingFetch(async () => ({ status: 200, body: answer(['e1']) }));
    const client = createClient({ controlUrl: 'https://control.test', fetch, ...gatewayConfig() });
    client.startProxyServer();
    await expect(client.join('app', 'ch', 'tok', 7)).rejects.toMatchObject({ code: 'NOT_SUPPORTED' });
    expect(calls).toHaveLength(0);
    expect(client.connectionState).toBe('DISCONNECTED');
  });
});

describe('routes without the cloud proxy (as the Rust SDK)', () => {
  it('setTurnServer: the TURN server is the only ICE server, relay only; the control plane is not asked', async () => {
    const { client, calls, proxyEvents, pcs } = setup([], () => ({ kind: 'relay' }));
    client.setTurnServer({ host: 'turn.corp', port: 443, username: 'u', password: 'p', transport: 'tls' });
    const r = await client.join('app', 'ch', 'tok', 7);
    expect(r.route).toEqual({
      kind: 'self-hosted',
      proxy: null,
      turn: { host: 'turn.corp', port: 443, username: 'u', password: 'p', transport: 'tls' },
      iceServers: [{ urls: ['turns:turn.corp:443?transport=tcp'], username: 'u', credential: 'p' }],
    });
    expect(client.rtcConfiguration()).toEqual({
      iceServers: [{ urls: ['turns:turn.corp:443?transport=tcp'], username: 'u', credential: 'p' }],
      iceTransportPolicy: 'relay',
    });
    expect(calls).toHaveLength(0);
    expect(pcs.instances).toHaveLength(1); // media only, no probe
    expect(pcs.instances[0]!.config).toEqual(client.rtcConfiguration());
    expect(proxyEvents).toEqual([{ using: false, transport: null }]);
  });

  it('setProxyServer only: a self-hosted route with no ICE servers', async () => {
    const { client } = setup([], () => ({ kind: 'relay' }));
    client.setProxyServer({ address: 'proxy.corp', tlsPort: 443 });
    const r = await client.join('app', 'ch', 'tok', 7);
    expect(r.route).toEqual({ kind: 'self-hosted', proxy: { address: 'proxy.corp', tlsPort: 443 }, turn: null, iceServers: [] });
    expect(r.rtcConfiguration).toEqual({ iceServers: [] });
  });

  it('no proxy: a direct route, no request to the control plane', async () => {
    const { fetch, calls } = recordingFetch(async () => ({ status: 500 }));
    const { Ctor } = fakePeerConnection(() => ({ kind: 'silent' }));
    const client = createClient({ controlUrl: 'https://control.test', fetch, RTCPeerConnection: Ctor, ...gatewayConfig() });
    const seen: unknown[] = [];
    client.on('is-using-cloud-proxy', (e) => seen.push(e));
    const r = await client.join('app', 'ch', 'tok', 7);
    expect(r.route).toEqual({ kind: 'direct' });
    expect(client.rtcConfiguration()).toEqual({ iceServers: [] });
    expect(calls).toHaveLength(0);
    expect(seen).toEqual([{ using: false, transport: null }]);
    await client.leave();
    expect(seen).toHaveLength(1); // only a cloud-proxy session reports its end
  });
});

describe('media calls need a joined channel', () => {
  it('publish, unpublish, subscribe, mediaStats before join are INVALID_OPERATION', async () => {
    const { client } = setup(['e1'], () => ({ kind: 'relay' }));
    await expect(client.publish([])).rejects.toMatchObject({ code: 'INVALID_OPERATION' });
    await expect(client.unpublish()).rejects.toMatchObject({ code: 'INVALID_OPERATION' });
    await expect(client.subscribe('u', 'video')).rejects.toMatchObject({ code: 'INVALID_OPERATION' });
    await expect(client.mediaStats()).rejects.toMatchObject({ code: 'INVALID_OPERATION' });
    expect(() => client.createPeerConnection()).toThrow(/INVALID_OPERATION/);
  });
});
