/**
 * Edge failover in the browser: for each offered edge, in order, open an `RTCPeerConnection`
 * with that edge's ICE servers and `iceTransportPolicy: 'relay'`, and wait (bounded) for a
 * relay candidate, which proves a TURN allocation on that edge worked over the chosen
 * transport. The first edge that yields one wins.
 */

import { CloudProxyError, type EdgeAttempt } from './errors.js';
import { aborted } from './control.js';

/** What the SDK needs of a peer-connection class; the browser's `RTCPeerConnection` fits. */
export type PeerConnectionCtor = new (configuration?: RTCConfiguration) => RTCPeerConnection;

/** An ICE path to try: an edge of the answer, or a self-deployed TURN server. */
export interface ProbeTarget {
  id: string;
  address: string;
  /** The mode's transport (`udp` | `tcp` | `tls`), for reports. */
  transport: string;
  iceServers: RTCIceServer[];
}

export interface ProbeSuccess {
  ok: true;
  /** The relay candidate line (`candidate:... typ relay ...`). */
  candidate: string;
  /** Transport between the browser and the TURN server, when the browser reports it. */
  relayProtocol: string | null;
}

export interface ProbeFailure {
  ok: false;
  reason: string;
}

/** ICE configuration for relay-only media through the given ICE servers. */
export function relayConfiguration(iceServers: RTCIceServer[]): RTCConfiguration {
  return { iceServers, iceTransportPolicy: 'relay' };
}

/** Opens one peer connection and waits up to `timeoutMs` for a relay candidate. */
export function probeRelay(
  Ctor: PeerConnectionCtor,
  iceServers: RTCIceServer[],
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<ProbeSuccess | ProbeFailure> {
  return new Promise((resolve) => {
    const errors: string[] = [];
    let pc: RTCPeerConnection | null = null;
    let done = false;
    const finish = (r: ProbeSuccess | ProbeFailure) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      try {
        pc?.close();
      } catch {
        // closing a half-built connection may throw; nothing to do
      }
      resolve(r);
    };
    const onAbort = () => finish({ ok: false, reason: 'aborted' });
    const timer = setTimeout(
      () => finish({ ok: false, reason: withErrors(`no relay candidate within ${timeoutMs} ms`, errors) }),
      timeoutMs,
    );
    signal?.addEventListener('abort', onAbort);
    if (signal?.aborted) return onAbort();
    try {
      pc = new Ctor(relayConfiguration(iceServers));
    } catch (e) {
      return finish({ ok: false, reason: `RTCPeerConnection: ${message(e)}` });
    }
    pc.addEventListener('icecandidate', (ev: RTCPeerConnectionIceEvent) => {
      const c = ev.candidate;
      if (!c) {
        // End of gathering without a relay candidate.
        finish({ ok: false, reason: withErrors('ICE gathering ended without a relay candidate', errors) });
      } else if (c.type === 'relay' || / typ relay( |$)/.test(c.candidate)) {
        const proto = (c as RTCIceCandidate & { relayProtocol?: string }).relayProtocol;
        finish({ ok: true, candidate: c.candidate, relayProtocol: proto ?? null });
      }
    });
    pc.addEventListener('icecandidateerror', (ev: Event) => {
      const e = ev as RTCPeerConnectionIceErrorEvent;
      errors.push([e.url, e.errorCode, e.errorText].filter((x) => x !== undefined && x !== '').join(' '));
    });
    try {
      pc.createDataChannel('cloudproxy-probe');
      pc.createOffer()
        .then((offer) => pc?.setLocalDescription(offer))
        .catch((e: unknown) => finish({ ok: false, reason: `createOffer/setLocalDescription: ${message(e)}` }));
    } catch (e) {
      finish({ ok: false, reason: `createDataChannel: ${message(e)}` });
    }
  });
}

export interface Chosen {
  target: ProbeTarget;
  index: number;
  result: ProbeSuccess;
  /** Targets that were given up before this one. */
  tried: EdgeAttempt[];
}

/**
 * Tries targets in order; the first with a relay candidate wins. Throws EDGE_UNREACHABLE with
 * every attempt when none works, INVALID_OPERATION "join cancelled by leave" when `signal` fires.
 */
export async function chooseRelay(
  Ctor: PeerConnectionCtor,
  targets: ProbeTarget[],
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Chosen> {
  const tried: EdgeAttempt[] = [];
  for (const [index, target] of targets.entries()) {
    if (signal?.aborted) throw aborted();
    const r = await probeRelay(Ctor, target.iceServers, timeoutMs, signal);
    if (signal?.aborted) throw aborted();
    if (r.ok) return { target, index, result: r, tried };
    tried.push({
      id: target.id,
      transport: target.transport,
      address: target.address,
      urls: urlsOf(target.iceServers),
      reason: r.reason,
    });
  }
  throw new CloudProxyError('EDGE_UNREACHABLE', `no edge reachable (tried ${tried.map(describeAttempt).join('; ') || 'nothing'})`, {
    tried,
  });
}

/** One line per attempt, as the Rust SDK writes them: `<edge id> <transport> <address>: <why>`. */
export function describeAttempt(a: EdgeAttempt): string {
  return `${a.id} ${a.transport} ${a.address}: ${a.reason}`;
}

function urlsOf(servers: RTCIceServer[]): string[] {
  return servers.flatMap((s) => (Array.isArray(s.urls) ? s.urls : [s.urls]));
}

function withErrors(reason: string, errors: string[]): string {
  return errors.length ? `${reason} (${errors.join('; ')})` : reason;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
