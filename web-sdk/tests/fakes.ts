/**
 * Test doubles: a scripted RTCPeerConnection (Node has none) and a recording fetch. Nothing
 * here talks to a network.
 */

import type { FetchLike, PeerConnectionCtor, ProxyResponse, WebSocketCtor } from '../src/index.js';

/** How a fake peer connection behaves for a given ICE configuration. */
export type Behaviour =
  /** Gathers a relay candidate, then ends gathering. */
  | { kind: 'relay'; relayProtocol?: string }
  /** Reports an ICE error, then ends gathering without a relay candidate. */
  | { kind: 'error'; errorText: string; errorCode?: number }
  /** Never gathers anything (a firewall that drops silently): the probe times out. */
  | { kind: 'silent' }
  /** The constructor throws (bad ICE server URL, ...). */
  | { kind: 'throw'; message: string };

export interface FakePcRecord {
  config: RTCConfiguration | undefined;
  closed: boolean;
  dataChannels: string[];
  /** The fake itself, for the media tests to drive (connection state, stats). */
  pc: FakePc;
  /** Descriptions applied, in order: `local:offer`, `remote:answer`, ... */
  log: string[];
  /** Tracks added with addTransceiver. */
  transceivers: FakeTransceiver[];
}

/** The parts of a transceiver the SDK uses. */
export interface FakeTransceiver {
  mid: string | null;
  direction: string;
  currentDirection: string | null;
  stopped: boolean;
  sender: { track: unknown };
  receiver: { track: unknown };
  stop(): void;
}

/** What the media tests do with a fake peer connection. */
export interface FakePc {
  connectionState: string;
  signalingState: string;
  /** Sets connectionState and fires connectionstatechange. */
  setConnectionState(s: string): void;
  /** What getStats() returns. */
  stats: Record<string, unknown>[];
  getTransceivers(): FakeTransceiver[];
}

/** A fake remote/local track. */
export function fakeTrack(kind: 'audio' | 'video', id = `${kind}-${Math.random().toString(36).slice(2, 8)}`) {
  return { kind, id, readyState: 'live' } as unknown as MediaStreamTrack;
}

/**
 * A server SDP with one m-section per entry: `[mid, kind, streamId, port]` (port 0 = stopped).
 * The fake peer connection reads exactly these lines.
 */
export function serverSdp(sections: [string, 'audio' | 'video' | 'application', string, number][]): string {
  let sdp = 'v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n';
  for (const [mid, kind, stream, port] of sections) {
    sdp += `m=${kind} ${port} UDP/TLS/RTP/SAVPF 96\r\na=mid:${mid}\r\n`;
    if (kind !== 'application') sdp += `a=sendonly\r\na=msid:${stream} ${stream}-${kind}-${mid}\r\n`;
  }
  return sdp;
}

/** A fake RTCPeerConnection class whose behaviour is chosen from the first ICE URL. */
export function fakePeerConnection(choose: (firstUrl: string) => Behaviour): {
  Ctor: PeerConnectionCtor;
  instances: FakePcRecord[];
} {
  const instances: FakePcRecord[] = [];
  class FakePeerConnection extends EventTarget implements FakePc {
    readonly record: FakePcRecord;
    readonly #behaviour: Behaviour;
    connectionState = 'new';
    signalingState = 'stable';
    localDescription: { type: string; sdp: string } | null = null;
    stats: Record<string, unknown>[] = [];
    #transceivers: FakeTransceiver[] = [];
    #offers = 0;
    constructor(config?: RTCConfiguration) {
      super();
      const first = config?.iceServers?.[0]?.urls;
      const url = Array.isArray(first) ? (first[0] ?? '') : (first ?? '');
      this.#behaviour = choose(url);
      if (this.#behaviour.kind === 'throw') throw new Error(this.#behaviour.message);
      this.record = { config, closed: false, dataChannels: [], pc: this, log: [], transceivers: [] };
      instances.push(this.record);
    }
    createDataChannel(label: string) {
      this.record.dataChannels.push(label);
      return { label };
    }
    addTransceiver(track: MediaStreamTrack, init: { direction: string }) {
      const t = this.#transceiver(null, init.direction, track);
      this.record.transceivers.push(t);
      return t;
    }
    getTransceivers() {
      return this.#transceivers.filter((t) => !t.stopped);
    }
    removeTrack() {}
    setConnectionState(s: string) {
      this.connectionState = s;
      this.dispatchEvent(new Event('connectionstatechange'));
    }
    async getStats() {
      return new Map(this.stats.map((r) => [r['id'] as string, r]));
    }
    async createOffer() {
      this.#offers += 1;
      const lines = this.#transceivers.map((t) => `m=${(t.sender.track as { kind: string }).kind} ${t.stopped ? 0 : 9}`);
      return { type: 'offer', sdp: `v=0\r\no=- ${this.#offers}\r\n${lines.join('\r\n')}` };
    }
    async createAnswer() {
      return { type: 'answer', sdp: 'v=0\r\no=- answer\r\n' };
    }
    async setRemoteDescription(d: { type: string; sdp?: string }) {
      if (this.record.closed) throw new Error('closed');
      this.record.log.push(`remote:${d.type}`);
      if (d.type === 'rollback') {
        this.signalingState = 'stable';
        return;
      }
      if (d.type === 'offer' && this.signalingState !== 'stable') throw new Error(`offer in state ${this.signalingState}`);
      if (d.type === 'answer' && this.signalingState !== 'have-local-offer') throw new Error(`answer in state ${this.signalingState}`);
      if (d.sdp?.includes('BROKEN')) throw new Error('bad sdp');
      this.signalingState = d.type === 'offer' ? 'have-remote-offer' : 'stable';
      if (d.type !== 'offer') return;
      for (const sec of (d.sdp ?? '').split(/\r\n(?=m=)/).slice(1)) {
        const [, kind, port] = /^m=(\S+) (\d+)/.exec(sec) ?? [];
        const mid = /a=mid:(\S+)/.exec(sec)?.[1] ?? '';
        const msid = /a=msid:(\S+) (\S+)/.exec(sec);
        const existing = this.#transceivers.find((t) => t.mid === mid);
        if (port === '0') {
          if (existing) existing.stopped = true;
          continue;
        }
        if (existing || (kind !== 'audio' && kind !== 'video') || !msid) continue;
        const track = { kind, id: msid[2], readyState: 'live' };
        const t = this.#transceiver(mid, 'recvonly', null, track);
        const ev = Object.assign(new Event('track'), { track, streams: [{ id: msid[1] }], transceiver: t });
        this.dispatchEvent(ev);
      }
    }
    async setLocalDescription(d?: { type: string; sdp?: string }) {
      if (d) {
        this.record.log.push(`local:${d.type}`);
        if (d.type === 'rollback') this.signalingState = 'stable';
        else if (d.type === 'offer') this.signalingState = 'have-local-offer';
        else if (d.type === 'answer') this.signalingState = 'stable';
        if (d.type !== 'rollback') this.localDescription = { type: d.type, sdp: d.sdp ?? '' };
      }
      const b = this.#behaviour;
      setTimeout(() => {
        if (this.record.closed) return;
        if (b.kind === 'relay') {
          const line = 'candidate:1 1 udp 41885439 203.0.113.7 49152 typ relay raddr 0.0.0.0 rport 0';
          this.#candidate({ candidate: line, type: 'relay', relayProtocol: b.relayProtocol });
          this.#candidate(null);
        } else if (b.kind === 'error') {
          const ev = Object.assign(new Event('icecandidateerror'), {
            url: url(this.record.config),
            errorCode: b.errorCode ?? 701,
            errorText: b.errorText,
          });
          this.dispatchEvent(ev);
          this.#candidate(null);
        }
      }, 1);
    }
    close() {
      this.record.closed = true;
      this.connectionState = 'closed';
    }
    #transceiver(mid: string | null, direction: string, sent: unknown, received: unknown = null): FakeTransceiver {
      const t: FakeTransceiver = {
        mid,
        direction,
        currentDirection: null,
        stopped: false,
        sender: { track: sent },
        receiver: { track: received },
        stop() {
          t.stopped = true;
        },
      };
      this.#transceivers.push(t);
      return t;
    }
    #candidate(c: object | null) {
      this.dispatchEvent(Object.assign(new Event('icecandidate'), { candidate: c }));
    }
  }
  return { Ctor: FakePeerConnection as unknown as PeerConnectionCtor, instances };
}

function url(config: RTCConfiguration | undefined): string {
  const u = config?.iceServers?.[0]?.urls;
  return Array.isArray(u) ? (u[0] ?? '') : (u ?? '');
}

export interface FetchCall {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: unknown;
}

export type Responder = (call: FetchCall) => Promise<{ status: number; body?: unknown; raw?: string }>;

/** A fetch that records calls and answers with `respond`; DELETE answers 204 unless told. */
export function recordingFetch(respond: Responder): { fetch: FetchLike; calls: FetchCall[] } {
  const calls: FetchCall[] = [];
  const fetch: FetchLike = async (u, init) => {
    const call: FetchCall = {
      url: u,
      method: init.method,
      headers: init.headers,
      body: init.body === undefined ? undefined : JSON.parse(init.body),
    };
    calls.push(call);
    const aborted = new Promise<never>((_, reject) => {
      init.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
    });
    const r = await Promise.race([respond(call), aborted]);
    const text = r.raw ?? (r.body === undefined ? '' : JSON.stringify(r.body));
    return { ok: r.status >= 200 && r.status < 300, status: r.status, text: async () => text };
  };
  return { fetch, calls };
}

/** A proxy-info answer with edges `ids` (addresses `<id>.edge.test`) for `mode`. */
export function answer(ids: string[], mode: 'udp' | 'tcp' | 'tls' = 'udp'): ProxyResponse {
  const scheme = mode === 'tls' ? 'turns' : 'turn';
  const port = mode === 'tls' ? 443 : 3478;
  const transport = mode === 'tls' ? 'tcp' : mode;
  return {
    session: 'sess-1',
    expires_at: 1_900_000_000,
    ticket: 'ticket-1',
    signal_upstreams: ['10.0.0.9:8443'],
    mode,
    turn: { username: '1900000000:k1:sess-1', password: 'pw', expires_at: 1_900_000_000 },
    edges: ids.map((id) => ({
      id,
      region: 'EU',
      isp: 'any',
      address: `${id}.edge.test`,
      udp_ports: { first: 3478, last: 3500 },
      tcp_ports: { first: 3433, last: 3460 },
      tls_port: 443,
      signal_port: 4000,
      ice_servers: [
        {
          urls: [`${scheme}:${id}.edge.test:${port}?transport=${transport}`],
          username: '1900000000:k1:sess-1',
          credential: 'pw',
        },
      ],
    })),
  };
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** What a fake gateway does with `join`. */
export type GatewayBehaviour =
  /** Answers `joined` with these members, then sends `after` in the same task. */
  | { kind: 'ok'; members?: string[]; after?: Record<string, unknown>[] }
  /** Answers `error` with this rtn code. */
  | { kind: 'refuse'; code: string }
  /** The WebSocket never opens and closes with 1006 (a refused connection). */
  | { kind: 'unreachable' }
  /** Opens, then says nothing (a gateway or relay that hangs). */
  | { kind: 'silent' }
  /** Never opens and never closes (a firewall dropping SYNs). */
  | { kind: 'black-hole' }
  /** Opens, then closes before answering join. */
  | { kind: 'close-after-join' };

export interface FakeSocket {
  url: string;
  /** Messages the client sent, parsed. */
  sent: Record<string, unknown>[];
  closed: boolean;
  /** The gateway sends a message. */
  serverSend(m: Record<string, unknown>): void;
  /** The gateway (or a relay) closes the socket. */
  serverClose(code?: number): void;
}

/**
 * A fake WebSocket class standing in for the rtn gateway. `autoAnswer` answers every client
 * offer with an answer (as the real gateway does); turn it off to script crossing offers.
 */
export function fakeGateway(behaviour: GatewayBehaviour | ((url: string) => GatewayBehaviour) = { kind: 'ok' }, autoAnswer = true) {
  const sockets: FakeSocket[] = [];
  const choose = typeof behaviour === 'function' ? behaviour : () => behaviour;
  class FakeWebSocket extends EventTarget implements FakeSocket {
    readonly url: string;
    readonly sent: Record<string, unknown>[] = [];
    closed = false;
    readyState = 0;
    readonly #b: GatewayBehaviour;
    constructor(url: string) {
      super();
      this.url = url;
      this.#b = choose(url);
      sockets.push(this);
      setTimeout(() => {
        if (this.closed) return;
        if (this.#b.kind === 'unreachable') return this.serverClose(1006);
        if (this.#b.kind === 'black-hole') return;
        this.readyState = 1;
        this.dispatchEvent(new Event('open'));
      }, 1);
    }
    send(text: string) {
      if (this.readyState !== 1) throw new Error('not open');
      const m = JSON.parse(text) as Record<string, unknown>;
      this.sent.push(m);
      const b = this.#b;
      if (m['type'] === 'join') {
        if (b.kind === 'ok') {
          setTimeout(() => {
            this.serverSend({ type: 'joined', uid: m['uid'], members: b.members ?? [] });
            for (const x of b.after ?? []) this.serverSend(x);
          }, 1);
        }
        else if (b.kind === 'refuse') this.#later({ type: 'error', code: b.code, message: 'refused by the fake' });
        else if (b.kind === 'close-after-join') setTimeout(() => this.serverClose(1011), 1);
      } else if (m['type'] === 'offer' && autoAnswer) {
        this.#later({ type: 'answer', sdp: 'v=0\r\no=- server-answer\r\n' });
      } else if (m['type'] === 'leave') {
        this.#later({ type: 'left' });
      }
    }
    close() {
      if (this.closed) return;
      this.closed = true;
      this.readyState = 3;
      setTimeout(() => this.dispatchEvent(Object.assign(new Event('close'), { code: 1000, reason: '' })), 0);
    }
    serverSend(m: Record<string, unknown>) {
      if (this.closed) return;
      this.dispatchEvent(Object.assign(new Event('message'), { data: JSON.stringify(m) }));
    }
    serverClose(code = 1006) {
      if (this.closed) return;
      this.closed = true;
      this.readyState = 3;
      if (code === 1006) this.dispatchEvent(new Event('error'));
      this.dispatchEvent(Object.assign(new Event('close'), { code, reason: '' }));
    }
    #later(m: Record<string, unknown>) {
      setTimeout(() => this.serverSend(m), 1);
    }
  }
  return { Ctor: FakeWebSocket as unknown as WebSocketCtor, sockets };
}

/** Waits until `cond()` holds (polling), at most `ms`. */
export async function until(cond: () => boolean, ms = 1000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('until: condition not met in time');
    await sleep(2);
  }
}

/** Signalling for a client under test: a fake gateway that answers `joined`, and an rtnSignalUrl. */
export function gatewayConfig(behaviour: GatewayBehaviour = { kind: 'ok' }) {
  return { WebSocket: fakeGateway(behaviour).Ctor, rtnSignalUrl: 'ws://rtn.test:8443/signal' };
}
