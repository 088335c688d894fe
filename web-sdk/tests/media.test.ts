/**
 * Joining the media network: signalling (join → joined / error / unreachable), the negotiation
 * rules of crates/rtn/PROTOCOL.md (first offer, server offers, crossing offers), remote tracks
 * and members as events, publish / unpublish / subscribe, stats, leave. A fake gateway
 * (WebSocket) and a fake RTCPeerConnection; no network.
 */

import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  CloudProxyError,
  createClient,
  msidToken,
  stoppedMids,
  type ClientConfig,
  type CloudProxyClient,
  type RemoteTrackEvent,
  type UsingCloudProxyEvent,
} from '../src/index.js';
import {
  answer,
  fakeGateway,
  fakePeerConnection,
  fakeTrack,
  recordingFetch,
  serverSdp,
  sleep,
  until,
  type FakeSocket,
  type GatewayBehaviour,
} from './fakes.js';

const RTN = 'ws://10.0.0.2:8443/signal';

function setup(opts: {
  gateway?: GatewayBehaviour;
  autoAnswer?: boolean;
  edges?: string[];
  upstreams?: string[];
  config?: Partial<ClientConfig>;
} = {}) {
  const { fetch, calls } = recordingFetch(async (call) => {
    if (call.method === 'DELETE') return { status: 204 };
    const a = answer(opts.edges ?? ['e1'], (call.body as { mode: 'udp' | 'tcp' | 'tls' }).mode);
    if (opts.upstreams) a.signal_upstreams = opts.upstreams;
    return { status: 200, body: a };
  });
  const pcs = fakePeerConnection((url) => (url.includes('bad') ? { kind: 'silent' } : { kind: 'relay' }));
  const gw = fakeGateway(opts.gateway ?? { kind: 'ok' }, opts.autoAnswer ?? true);
  const client = createClient({
    controlUrl: 'https://control.test',
    fetch,
    RTCPeerConnection: pcs.Ctor,
    WebSocket: gw.Ctor,
    rtnSignalUrl: RTN,
    edgeProbeTimeoutMs: 30,
    signalTimeoutMs: 200,
    subscribeTimeoutMs: 100,
    ...opts.config,
  });
  const log: string[] = [];
  const tracks: RemoteTrackEvent[] = [];
  const proxyEvents: UsingCloudProxyEvent[] = [];
  client.on('connection-state-change', (e) => log.push(`state ${e.previous}>${e.current}${e.reason ? `:${e.reason}` : ''}`));
  client.on('user-joined', (e) => log.push(`user-joined ${e.uid}`));
  client.on('user-left', (e) => log.push(`user-left ${e.uid}`));
  client.on('user-published', (e) => {
    tracks.push(e);
    log.push(`user-published ${e.uid} ${e.mediaType}`);
  });
  client.on('user-unpublished', (e) => log.push(`user-unpublished ${e.uid} ${e.mediaType}`));
  client.on('media-state-change', (e) => log.push(`media ${e.state}`));
  client.on('is-using-cloud-proxy', (e) => proxyEvents.push(e));
  const sock = () => gw.sockets.at(-1) as FakeSocket;
  const mediaPc = () => pcs.instances.at(-1)!;
  return { client, calls, pcs, gw, log, tracks, proxyEvents, sock, mediaPc };
}

async function failure(p: Promise<unknown>): Promise<CloudProxyError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(CloudProxyError);
  return e as CloudProxyError;
}

const offers = (s: FakeSocket) => s.sent.filter((m) => m['type'] === 'offer');
const answers = (s: FakeSocket) => s.sent.filter((m) => m['type'] === 'answer');

afterEach(() => {
  vi.unstubAllGlobals();
});

describe('join: signalling', () => {
  it('direct: WebSocket to rtnSignalUrl, join message, resolves after joined with the members', async () => {
    const t = setup({ gateway: { kind: 'ok', members: ['alice', 'bob'] } });
    const info = await t.client.join('app', 'room', 'tok', 'me');
    expect(t.sock().url).toBe(RTN);
    expect(t.sock().sent[0]).toEqual({ type: 'join', app_id: 'app', channel: 'room', uid: 'me', token: 'tok' });
    expect(info.members).toEqual(['alice', 'bob']);
    expect(info.signalUrl).toBe(RTN);
    expect(info.route).toEqual({ kind: 'direct' });
    expect(t.client.connectionState).toBe('CONNECTED');
    expect(t.log).toEqual([
      'state DISCONNECTED>CONNECTING',
      'state CONNECTING>CONNECTED',
      'user-joined alice',
      'user-joined bob',
    ]);
    expect(t.client.remoteUsers().map((u) => u.uid)).toEqual(['alice', 'bob']);
    // One media connection, no ICE servers, and the first offer right away (with a data channel).
    expect(t.pcs.instances).toHaveLength(1);
    expect(t.mediaPc().config).toEqual({ iceServers: [] });
    expect(t.mediaPc().dataChannels).toEqual(['cloudproxy']);
    await until(() => offers(t.sock()).length === 1);
    await until(() => t.mediaPc().log.includes('remote:answer'));
    expect(t.mediaPc().log).toEqual(['local:offer', 'remote:answer']);
  });

  it('messages right after joined are reported after CONNECTED and the members known at join', async () => {
    const t = setup({ gateway: { kind: 'ok', members: ['alice'], after: [{ type: 'member-joined', uid: 'bob' }] } });
    await t.client.join('app', 'room', 'tok', 'me');
    await until(() => t.log.includes('user-joined bob'));
    expect(t.log).toEqual(['state DISCONNECTED>CONNECTING', 'state CONNECTING>CONNECTED', 'user-joined alice', 'user-joined bob']);
  });

  it('cloud proxy: through the relay of the edge the join chose, with the ticket; relay-only media', async () => {
    const t = setup({ edges: ['bad1', 'e2'] });
    t.client.startProxyServer(3);
    const info = await t.client.join('app', 'room', 'tok', 'me');
    if (info.route.kind !== 'cloud-proxy') throw new Error('route');
    expect(info.route.edge.id).toBe('e2');
    expect(t.sock().url).toBe('ws://e2.edge.test:4000/ws?upstream=10.0.0.9%3A8443&ticket=ticket-1&path=/signal');
    expect(info.signalUrl).toBe('ws://e2.edge.test:4000/ws?upstream=10.0.0.9%3A8443&ticket=<redacted>&path=/signal');
    expect(t.mediaPc().config).toEqual({ iceServers: info.route.iceServers, iceTransportPolicy: 'relay' });
    expect(t.proxyEvents).toEqual([{ using: true, transport: 'udp', edgeId: 'e2', relayProtocol: null }]);
  });

  it('cloud proxy on an https page: wss on the TLS port even for mode 3', async () => {
    vi.stubGlobal('location', { protocol: 'https:' });
    const t = setup();
    t.client.startProxyServer(3);
    await t.client.join('app', 'room', 'tok', 'me');
    expect(t.sock().url).toBe('wss://e1.edge.test:443/ws?upstream=10.0.0.9%3A8443&ticket=ticket-1&path=/signal');
  });

  it('mode 5: wss on the TLS port', async () => {
    const t = setup();
    t.client.startProxyServer(5);
    await t.client.join('app', 'room', 'tok', 'me');
    expect(t.sock().url).toMatch(/^wss:\/\/e1\.edge\.test:443\/ws\?/);
  });

  it('setProxyServer: the proxy relay, no ticket', async () => {
    const t = setup();
    t.client.setProxyServer({ address: 'proxy.corp', signalPort: 4000, tlsPort: 443 });
    await t.client.join('app', 'room', 'tok', 'me');
    expect(t.sock().url).toBe('ws://proxy.corp:4000/ws?upstream=10.0.0.2%3A8443&path=%2Fsignal');
  });

  it('empty signal_upstreams: a CloudProxyError, the session is released, nothing is opened', async () => {
    const t = setup({ upstreams: [] });
    t.client.startProxyServer();
    const e = await failure(t.client.join('app', 'room', 'tok', 'me'));
    expect(e.code).toBe('UNEXPECTED_ANSWER');
    expect(t.gw.sockets).toHaveLength(0);
    expect(t.client.connectionState).toBe('DISCONNECTED');
    expect(t.log.at(-1)).toBe('state CONNECTING>DISCONNECTED:UNEXPECTED_ANSWER');
    await sleep(5);
    expect(t.calls.at(-1)).toMatchObject({ method: 'DELETE', url: 'https://control.test/v1/proxy/sess-1' });
  });

  it('a join without the cloud proxy and without rtnSignalUrl is INVALID_PARAMETER, nothing happens', async () => {
    const t = setup({ config: { rtnSignalUrl: undefined } });
    const e = await failure(t.client.join('app', 'room', 'tok', 'me'));
    expect(e.code).toBe('INVALID_PARAMETER');
    expect(e.message).toMatch(/rtnSignalUrl/);
    expect(t.log).toEqual([]);
    expect(t.gw.sockets).toHaveLength(0);
    t.client.setTurnServer({ host: 't.corp', port: 3478, username: 'u', password: 'p', transport: 'udp' });
    expect((await failure(t.client.join('app', 'room', 'tok', 'me'))).code).toBe('INVALID_PARAMETER');
  });

  it.each(['INVALID_TOKEN', 'TOKEN_EXPIRED', 'UID_IN_USE', 'UNKNOWN_APP'])(
    'the gateway answers join with error %s → SIGNAL_REFUSED, session released, DISCONNECTED',
    async (code) => {
      const t = setup({ gateway: { kind: 'refuse', code } });
      t.client.startProxyServer();
      const e = await failure(t.client.join('app', 'room', 'tok', 'me'));
      expect(e.code).toBe('SIGNAL_REFUSED');
      expect(e.details.signalCode).toBe(code);
      expect(e.message).toContain(code);
      expect(e.retryable).toBe(false);
      expect(t.sock().closed).toBe(true);
      expect(t.client.connectionState).toBe('DISCONNECTED');
      expect(t.log.at(-1)).toBe('state CONNECTING>DISCONNECTED:SIGNAL_REFUSED');
      await sleep(5);
      expect(t.calls.at(-1)).toMatchObject({ method: 'DELETE' });
      // No media connection was made (only the probe).
      expect(t.pcs.instances).toHaveLength(1);
    },
  );

  it('a refused WebSocket → SIGNAL_UNREACHABLE at once', async () => {
    const t = setup({ gateway: { kind: 'unreachable' } });
    const t0 = Date.now();
    const e = await failure(t.client.join('app', 'room', 'tok', 'me'));
    expect(e.code).toBe('SIGNAL_UNREACHABLE');
    expect(e.message).toMatch(/did not open/);
    expect(e.details.url).toBe(RTN);
    expect(e.retryable).toBe(true);
    expect(Date.now() - t0).toBeLessThan(150);
    expect(t.log).toEqual(['state DISCONNECTED>CONNECTING', 'state CONNECTING>DISCONNECTED:SIGNAL_UNREACHABLE']);
  });

  it('a firewall that drops everything → SIGNAL_UNREACHABLE after signalTimeoutMs, not a hang', async () => {
    const t = setup({ gateway: { kind: 'black-hole' } });
    const t0 = Date.now();
    const e = await failure(t.client.join('app', 'room', 'tok', 'me'));
    const took = Date.now() - t0;
    expect(e.code).toBe('SIGNAL_UNREACHABLE');
    expect(e.message).toMatch(/did not open within 200 ms/);
    expect(took).toBeGreaterThanOrEqual(190);
    expect(took).toBeLessThan(1000);
    expect(t.sock().closed).toBe(true);
  });

  it('opened but no joined within the bound → SIGNAL_UNREACHABLE', async () => {
    const t = setup({ gateway: { kind: 'silent' } });
    const e = await failure(t.client.join('app', 'room', 'tok', 'me'));
    expect(e.code).toBe('SIGNAL_UNREACHABLE');
    expect(e.message).toMatch(/no joined within 200 ms/);
  });

  it('closed before joined → SIGNAL_UNREACHABLE', async () => {
    const t = setup({ gateway: { kind: 'close-after-join' } });
    const e = await failure(t.client.join('app', 'room', 'tok', 'me'));
    expect(e.code).toBe('SIGNAL_UNREACHABLE');
    expect(e.message).toMatch(/closed before joined \(code 1011\)/);
  });

  it('the ticket never shows in an error', async () => {
    const t = setup({ gateway: { kind: 'unreachable' } });
    t.client.startProxyServer();
    const e = await failure(t.client.join('app', 'room', 'tok', 'me'));
    expect(e.message).toContain('ticket=<redacted>');
    expect(e.message).not.toContain('ticket-1');
  });

  it('leave while the WebSocket opens cancels the join and closes the socket', async () => {
    const t = setup({ gateway: { kind: 'black-hole' }, config: { signalTimeoutMs: 10_000 } });
    t.client.startProxyServer();
    const joining = t.client.join('app', 'room', 'tok', 'me').catch((e: unknown) => e);
    await until(() => t.gw.sockets.length === 1);
    await t.client.leave();
    expect(await joining).toMatchObject({ message: 'INVALID_OPERATION: join cancelled by leave' });
    expect(t.sock().closed).toBe(true);
    expect(t.client.connectionState).toBe('DISCONNECTED');
    await sleep(5);
    expect(t.calls.at(-1)).toMatchObject({ method: 'DELETE' });
  });
});

describe('negotiation (PROTOCOL.md rules)', () => {
  it('a server offer is applied and answered; remote tracks map to uids by stream id', async () => {
    const t = setup({ gateway: { kind: 'ok', members: ['alice'] } });
    await t.client.join('app', 'room', 'tok', 'me');
    await until(() => t.mediaPc().log.includes('remote:answer'));
    t.sock().serverSend({
      type: 'offer',
      sdp: serverSdp([
        ['0', 'application', '', 9],
        ['1', 'audio', 'alice', 9],
        ['2', 'video', 'alice', 9],
      ]),
    });
    await until(() => answers(t.sock()).length === 1);
    expect(t.log.filter((l) => l.startsWith('user-published'))).toEqual(['user-published alice audio', 'user-published alice video']);
    expect(t.tracks[1]!.track).toMatchObject({ kind: 'video', id: 'alice-video-2' });
    const video = await t.client.subscribe('alice', 'video');
    expect(video).toBe(t.tracks[1]!.track);
    expect(t.client.remoteUsers()).toEqual([{ uid: 'alice', audioTrack: t.tracks[0]!.track, videoTrack: t.tracks[1]!.track }]);
  });

  it('a stopped m-line in a later server offer → user-unpublished', async () => {
    const t = setup({ gateway: { kind: 'ok', members: ['alice'] } });
    await t.client.join('app', 'room', 'tok', 'me');
    await until(() => t.mediaPc().log.includes('remote:answer'));
    t.sock().serverSend({ type: 'offer', sdp: serverSdp([['1', 'audio', 'alice', 9], ['2', 'video', 'alice', 9]]) });
    await until(() => answers(t.sock()).length === 1);
    t.sock().serverSend({ type: 'offer', sdp: serverSdp([['1', 'audio', 'alice', 9], ['2', 'video', 'alice', 0]]) });
    await until(() => answers(t.sock()).length === 2);
    expect(t.log.filter((l) => l.startsWith('user-unpublished'))).toEqual(['user-unpublished alice video']);
    expect(t.client.remoteUsers()[0]).toMatchObject({ uid: 'alice', videoTrack: null });
  });

  it('crossing offers: a server offer while ours is outstanding is ignored; the re-offer is answered', async () => {
    const t = setup({ autoAnswer: false });
    await t.client.join('app', 'room', 'tok', 'me');
    await until(() => offers(t.sock()).length === 1);
    // The server's offer crosses ours: ignored, no answer, not applied.
    t.sock().serverSend({ type: 'offer', sdp: serverSdp([['1', 'video', 'bob', 9]]) });
    await sleep(10);
    expect(answers(t.sock())).toHaveLength(0);
    expect(t.mediaPc().log).toEqual(['local:offer']);
    expect(t.tracks).toHaveLength(0);
    // The server answers ours, then offers again.
    t.sock().serverSend({ type: 'answer', sdp: 'v=0\r\n' });
    await until(() => t.mediaPc().log.includes('remote:answer'));
    t.sock().serverSend({ type: 'offer', sdp: serverSdp([['1', 'video', 'bob', 9]]) });
    await until(() => answers(t.sock()).length === 1);
    expect(t.mediaPc().log).toEqual(['local:offer', 'remote:answer', 'remote:offer', 'local:answer']);
    expect(t.log).toContain('user-published bob video');
  });

  it('an answer without an outstanding offer is ignored', async () => {
    const t = setup();
    await t.client.join('app', 'room', 'tok', 'me');
    await until(() => t.mediaPc().log.includes('remote:answer'));
    t.sock().serverSend({ type: 'answer', sdp: 'v=0\r\n' });
    await sleep(10);
    expect(t.mediaPc().log).toEqual(['local:offer', 'remote:answer']);
  });

  it('publish: sendonly transceivers, a new offer; resolves when the answer is applied', async () => {
    const t = setup({ autoAnswer: false });
    await t.client.join('app', 'room', 'tok', 'me');
    await until(() => offers(t.sock()).length === 1);
    const cam = fakeTrack('video');
    const mic = fakeTrack('audio');
    let published = false;
    const p = t.client.publish([mic, cam]).then(() => {
      published = true;
    });
    // The first offer is still outstanding: publish waits for it, then offers once more.
    await sleep(10);
    expect(offers(t.sock())).toHaveLength(1);
    expect(t.mediaPc().transceivers.map((x) => x.direction)).toEqual(['sendonly', 'sendonly']);
    t.sock().serverSend({ type: 'answer', sdp: 'v=0\r\n' });
    await until(() => offers(t.sock()).length === 2);
    expect(offers(t.sock())[1]!['sdp']).toContain('m=audio 9');
    expect(offers(t.sock())[1]!['sdp']).toContain('m=video 9');
    expect(published).toBe(false);
    t.sock().serverSend({ type: 'answer', sdp: 'v=0\r\n' });
    await p;
    expect(t.client.localTracks()).toEqual([mic, cam]);
    // Publishing the same track again changes nothing.
    await t.client.publish(cam);
    expect(offers(t.sock())).toHaveLength(2);
  });

  it('unpublish stops the transceivers and renegotiates', async () => {
    const t = setup();
    await t.client.join('app', 'room', 'tok', 'me');
    const cam = fakeTrack('video');
    await t.client.publish(cam);
    await t.client.unpublish();
    expect(t.mediaPc().transceivers[0]!.stopped).toBe(true);
    expect(offers(t.sock()).at(-1)!['sdp']).toContain('m=video 0');
    expect(t.client.localTracks()).toEqual([]);
  });

  it('the gateway refuses our offer (BAD_SDP): publish rejects with SIGNAL_REFUSED, rolled back', async () => {
    const t = setup({ autoAnswer: false });
    await t.client.join('app', 'room', 'tok', 'me');
    await until(() => offers(t.sock()).length === 1);
    t.sock().serverSend({ type: 'answer', sdp: 'v=0\r\n' });
    await until(() => t.mediaPc().log.includes('remote:answer'));
    const p = t.client.publish(fakeTrack('video'));
    await until(() => offers(t.sock()).length === 2);
    t.sock().serverSend({ type: 'error', code: 'BAD_SDP', message: 'offer refused' });
    const e = await failure(p);
    expect(e.code).toBe('SIGNAL_REFUSED');
    expect(e.details.signalCode).toBe('BAD_SDP');
    expect(t.mediaPc().log.at(-1)).toBe('local:rollback');
    expect(t.client.connectionState).toBe('CONNECTED');
  });

  it('a server offer that cannot be applied is rolled back and answered with a new offer of ours', async () => {
    const t = setup();
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    await t.client.join('app', 'room', 'tok', 'me');
    await until(() => t.mediaPc().log.includes('remote:answer'));
    t.sock().serverSend({ type: 'offer', sdp: 'v=0\r\nBROKEN' });
    await until(() => offers(t.sock()).length === 2);
    expect(answers(t.sock())).toHaveLength(0);
    warn.mockRestore();
  });
});

describe('members and subscribe', () => {
  it('member-joined / member-left → user-joined / user-left; a leaving member’s tracks are unpublished', async () => {
    const t = setup();
    await t.client.join('app', 'room', 'tok', 'me');
    await until(() => t.mediaPc().log.includes('remote:answer'));
    t.sock().serverSend({ type: 'member-joined', uid: 'carol' });
    t.sock().serverSend({ type: 'offer', sdp: serverSdp([['1', 'video', 'carol', 9]]) });
    await until(() => answers(t.sock()).length === 1);
    t.sock().serverSend({ type: 'member-left', uid: 'carol' });
    expect(t.log.slice(2)).toEqual(['user-joined carol', 'user-published carol video', 'user-unpublished carol video', 'user-left carol']);
    // The server's stop offer that follows does not report it twice.
    t.sock().serverSend({ type: 'offer', sdp: serverSdp([['1', 'video', 'carol', 0]]) });
    await until(() => answers(t.sock()).length === 2);
    expect(t.log.filter((l) => l.startsWith('user-unpublished'))).toHaveLength(1);
    expect(t.client.remoteUsers()).toEqual([]);
  });

  it('subscribe waits for a track that has not arrived yet', async () => {
    const t = setup({ gateway: { kind: 'ok', members: ['dave'] } });
    await t.client.join('app', 'room', 'tok', 'me');
    await until(() => t.mediaPc().log.includes('remote:answer'));
    const sub = t.client.subscribe('dave', 'audio');
    t.sock().serverSend({ type: 'offer', sdp: serverSdp([['1', 'audio', 'dave', 9]]) });
    expect(await sub).toMatchObject({ kind: 'audio', id: 'dave-audio-1' });
  });

  it('subscribe is bounded: SUBSCRIBE_TIMEOUT', async () => {
    const t = setup();
    await t.client.join('app', 'room', 'tok', 'me');
    const e = await failure(t.client.subscribe('nobody', 'video'));
    expect(e.code).toBe('SUBSCRIBE_TIMEOUT');
    expect(e.message).toMatch(/no video track from nobody within 100 ms \(nobody is not in the channel\)/);
    await expect(t.client.subscribe('x', 'screen' as 'video')).rejects.toMatchObject({ code: 'INVALID_PARAMETER' });
  });

  it('uids with characters outside the msid token set still map back to the member', async () => {
    expect(msidToken('web user/1')).toBe('webuser1');
    const t = setup({ gateway: { kind: 'ok', members: ['web user/1'] } });
    await t.client.join('app', 'room', 'tok', 'me');
    await until(() => t.mediaPc().log.includes('remote:answer'));
    t.sock().serverSend({ type: 'offer', sdp: serverSdp([['1', 'video', 'webuser1', 9]]) });
    await until(() => t.tracks.length === 1);
    expect(t.tracks[0]!.uid).toBe('web user/1');
  });

  it('stoppedMids reads port-0 m-sections', () => {
    expect([...stoppedMids(serverSdp([['0', 'audio', 'a', 9], ['1', 'video', 'a', 0], ['2', 'audio', 'b', 0]]))]).toEqual(['1', '2']);
  });
});

describe('leave and lost signalling', () => {
  it('leave sends leave, closes the socket and the peer connection, rejects waiting subscribes', async () => {
    const t = setup({ config: { subscribeTimeoutMs: 10_000 } });
    t.client.startProxyServer();
    await t.client.join('app', 'room', 'tok', 'me');
    const sub = t.client.subscribe('zed', 'video').catch((e: unknown) => e);
    await t.client.leave();
    expect(t.sock().sent.at(-1)).toEqual({ type: 'leave' });
    expect(t.sock().closed).toBe(true);
    expect(t.mediaPc().closed).toBe(true);
    expect(await sub).toMatchObject({ code: 'INVALID_OPERATION' });
    expect(t.client.connectionState).toBe('DISCONNECTED');
    expect(t.log.slice(-2)).toEqual(['state CONNECTED>DISCONNECTING', 'state DISCONNECTING>DISCONNECTED:LEAVE']);
    expect(t.calls.at(-1)).toMatchObject({ method: 'DELETE' });
    expect(t.client.remoteUsers()).toEqual([]);
    // A new join opens a new socket and a new peer connection.
    await t.client.join('app', 'room', 'tok', 'me');
    expect(t.gw.sockets).toHaveLength(2);
    expect(t.mediaPc().closed).toBe(false);
  });

  it('the socket closing by itself ends the join: DISCONNECTED with SIGNAL_UNREACHABLE', async () => {
    const t = setup();
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    t.client.startProxyServer();
    await t.client.join('app', 'room', 'tok', 'me');
    t.sock().serverClose(1001);
    await until(() => t.client.connectionState === 'DISCONNECTED');
    expect(t.log.at(-1)).toBe('state DISCONNECTING>DISCONNECTED:SIGNAL_UNREACHABLE');
    expect(t.mediaPc().closed).toBe(true);
    await sleep(5);
    expect(t.calls.at(-1)).toMatchObject({ method: 'DELETE' });
    expect(warn).toHaveBeenCalled();
    warn.mockRestore();
  });
});

describe('stats', () => {
  const STATS = [
    { id: 'T1', type: 'transport', selectedCandidatePairId: 'P1' },
    { id: 'P1', type: 'candidate-pair', localCandidateId: 'L1', remoteCandidateId: 'R1', state: 'succeeded', nominated: true, bytesSent: 5000, bytesReceived: 7000 },
    { id: 'L1', type: 'local-candidate', candidateType: 'relay', relayProtocol: 'tls', address: '203.0.113.7', port: 50000, protocol: 'udp' },
    { id: 'R1', type: 'remote-candidate', candidateType: 'host', address: '10.0.0.2', port: 10000 },
    { id: 'I1', type: 'inbound-rtp', kind: 'video', trackIdentifier: 'alice-video-2', framesDecoded: 42, bytesReceived: 9000, frameWidth: 640, frameHeight: 480 },
    { id: 'I2', type: 'inbound-rtp', kind: 'audio', mid: '1', bytesReceived: 1200 },
    { id: 'O1', type: 'outbound-rtp', kind: 'video', framesEncoded: 40, bytesSent: 8000 },
    { id: 'O2', type: 'outbound-rtp', kind: 'audio', bytesSent: 1000 },
  ];

  it('mediaStats: selected pair, per-uid inbound video, outbound; is-using-cloud-proxy from stats once connected', async () => {
    const t = setup({ gateway: { kind: 'ok', members: ['alice'] } });
    t.client.startProxyServer(5);
    await t.client.join('app', 'room', 'tok', 'me');
    await until(() => t.mediaPc().log.includes('remote:answer'));
    t.sock().serverSend({ type: 'offer', sdp: serverSdp([['1', 'audio', 'alice', 9], ['2', 'video', 'alice', 9]]) });
    await until(() => answers(t.sock()).length === 1);
    t.mediaPc().pc.stats = STATS;
    t.mediaPc().pc.setConnectionState('connected');
    const st = await t.client.mediaStats();
    expect(st).toEqual({
      connectionState: 'connected',
      candidateType: 'relay',
      relayProtocol: 'tls',
      local: { address: '203.0.113.7', port: 50000, protocol: 'udp' },
      remote: { candidateType: 'host', address: '10.0.0.2', port: 10000 },
      pairBytesSent: 5000,
      pairBytesReceived: 7000,
      inbound: { alice: { video: { framesDecoded: 42, bytesReceived: 9000, frameWidth: 640, frameHeight: 480 }, audio: { bytesReceived: 1200 } } },
      outbound: { video: { framesEncoded: 40, bytesSent: 8000 }, audio: { bytesSent: 1000 } },
    });
    expect(t.log).toContain('media connected');
    await until(() => t.proxyEvents.length === 2);
    expect(t.proxyEvents[1]).toEqual({ using: true, transport: 'tls', edgeId: 'e1', relayProtocol: 'tls' });
    expect(await t.client.getStats()).toBeInstanceOf(Map);
  });

  it('before a pair is selected the numbers are empty, not an error', async () => {
    const t = setup();
    await t.client.join('app', 'room', 'tok', 'me');
    expect(await t.client.mediaStats()).toMatchObject({ candidateType: null, relayProtocol: null, inbound: {}, outbound: {} });
  });
});

describe('a client used twice', () => {
  it('join, leave, join again on the same client', async () => {
    const t = setup();
    const c: CloudProxyClient = t.client;
    await c.join('app', 'room', 'tok', 'me');
    await c.leave();
    await c.join('app', 'room', 'tok', 'me');
    expect(c.connectionState).toBe('CONNECTED');
  });
});

describe('a publisher that stops a track and publishes a new one', () => {
  it('subscribe and remoteUsers give the newest track', async () => {
    const t = setup({ gateway: { kind: 'ok', members: ['alice'] } });
    await t.client.join('app', 'room', 'tok', 'me');
    await until(() => t.mediaPc().log.includes('remote:answer'));
    t.sock().serverSend({ type: 'offer', sdp: serverSdp([['1', 'video', 'alice', 9]]) });
    await until(() => t.tracks.length === 1);
    t.sock().serverSend({ type: 'offer', sdp: serverSdp([['1', 'video', 'alice', 9], ['2', 'video', 'alice', 9]]) });
    await until(() => t.tracks.length === 2);
    expect(await t.client.subscribe('alice', 'video')).toBe(t.tracks[1]!.track);
    expect(t.client.remoteUsers()[0]!.videoTrack).toBe(t.tracks[1]!.track);
  });
});

describe('keepalive', () => {
  it('sends an ignored candidate message every 25 s while joined, and stops after leave', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const t = setup();
      await t.client.join('app', 'room', 'tok', 'me');
      const keepalives = () => t.sock().sent.filter((m) => m['type'] === 'candidate');
      vi.advanceTimersByTime(24_000);
      expect(keepalives()).toHaveLength(0);
      vi.advanceTimersByTime(1_000);
      expect(keepalives()).toEqual([{ type: 'candidate', candidate: null }]);
      vi.advanceTimersByTime(50_000);
      expect(keepalives()).toHaveLength(3);
      await t.client.leave();
      vi.advanceTimersByTime(100_000);
      expect(keepalives()).toHaveLength(3);
    } finally {
      vi.useRealTimers();
    }
  });
});
