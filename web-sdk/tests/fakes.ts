/**
 * Test doubles: a scripted RTCPeerConnection (Node has none) and a recording fetch. Nothing
 * here talks to a network.
 */

import type { FetchLike, PeerConnectionCtor, ProxyResponse } from '../src/index.js';

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
}

/** A fake RTCPeerConnection class whose behaviour is chosen from the first ICE URL. */
export function fakePeerConnection(choose: (firstUrl: string) => Behaviour): {
  Ctor: PeerConnectionCtor;
  instances: FakePcRecord[];
} {
  const instances: FakePcRecord[] = [];
  class FakePeerConnection extends EventTarget {
    readonly record: FakePcRecord;
    readonly #behaviour: Behaviour;
    constructor(config?: RTCConfiguration) {
      super();
      const first = config?.iceServers?.[0]?.urls;
      const url = Array.isArray(first) ? (first[0] ?? '') : (first ?? '');
      this.#behaviour = choose(url);
      if (this.#behaviour.kind === 'throw') throw new Error(this.#behaviour.message);
      this.record = { config, closed: false, dataChannels: [] };
      instances.push(this.record);
    }
    createDataChannel(label: string) {
      this.record.dataChannels.push(label);
      return { label };
    }
    async createOffer() {
      return { type: 'offer', sdp: 'v=0\r\n' };
    }
    async setLocalDescription() {
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
