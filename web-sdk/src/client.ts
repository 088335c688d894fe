/**
 * The client an app holds. It asks {@link ProxyRules} before every step and does the I/O:
 * the proxy-info request, the edge failover, the state events. Its semantics mirror the Rust
 * SDK's `client_sdk::Client` (routes, events, join cancelled by leave).
 *
 * What exists today: the proxy rules, and `join()` as far as the route to the media network:
 * with the cloud proxy, proxy info from the control plane and an edge chosen by a working
 * relay allocation; `rtcConfiguration()` / `createPeerConnection()` for relay-only media
 * through it. What does not: signalling with the media network (RTN) — `publish` / `subscribe`
 * reject with NOT_IMPLEMENTED.
 */

import {
  buildProxyRequest,
  normalizeControlUrl,
  releaseSession,
  requestProxyInfo,
  type ControlOptions,
  type EdgeOffer,
  type FetchLike,
  type IceServer,
  type ProxyResponse,
} from './control.js';
import { CloudProxyError, notImplemented, type EdgeAttempt } from './errors.js';
import { Emitter } from './events.js';
import { chooseRelay, relayConfiguration, type PeerConnectionCtor, type ProbeTarget } from './probe.js';
import {
  JOIN_CANCELLED,
  parseJoinArgs,
  ProxyRules,
  turnIceServer,
  type ConnectionState,
  type JoinArgs,
  type ProxyMode,
  type ProxyServerConfig,
  type ProxySetting,
  type StateChange,
  type Transport,
  type TurnServerConfig,
} from './rules.js';

export interface ClientConfig {
  /** Base URL of the control plane, `http(s)://host[:port][/prefix]`. */
  controlUrl: string;
  /** `fetch` to use (default `globalThis.fetch`); tests pass a mock. */
  fetch?: FetchLike;
  /** Peer-connection class (default `globalThis.RTCPeerConnection`). */
  RTCPeerConnection?: PeerConnectionCtor;
  /** Area hint sent with the proxy-info request (e.g. `CN`, `EU`); default: the control plane locates the client. */
  area?: string;
  /** ISP hint sent with the proxy-info request. */
  isp?: string;
  /** Bound on one control plane request, ms (default 10000). */
  controlTimeoutMs?: number;
  /** Bound on waiting for a relay candidate from one edge, ms (default 5000). */
  edgeProbeTimeoutMs?: number;
}

export interface ConnectionStateChangeEvent extends StateChange {
  /** Why: `LEAVE`, or the error code that ended a join (`EDGE_UNREACHABLE`, `APP_NOT_FOUND`, ...). */
  reason?: string;
}

export interface UsingCloudProxyEvent {
  /**
   * True after a join through the cloud proxy: the browser got a relay candidate from the
   * chosen edge, so media set up with rtcConfiguration() can only flow through it. False after
   * a direct or self-hosted join, and when a cloud-proxy session ends (leave).
   */
  using: boolean;
  /** The transport to the edge (`udp` | `tcp` | `tls`), null when not using the cloud proxy. */
  transport: Transport | null;
  /** The edge chosen. */
  edgeId?: string;
  /** Transport between the browser and the TURN server as the browser reported it, if it did. */
  relayProtocol?: string | null;
}

/** A remote user's track (reserved: emitted once RTN signalling exists). */
export interface RemoteTrackEvent {
  uid: string;
  mediaType: 'audio' | 'video';
  track: MediaStreamTrack | null;
}

export interface ClientEvents extends Record<string, unknown> {
  'connection-state-change': ConnectionStateChangeEvent;
  'is-using-cloud-proxy': UsingCloudProxyEvent;
  /** Not emitted yet: needs the RTN signalling gateway. */
  'user-published': RemoteTrackEvent;
  /** Not emitted yet: needs the RTN signalling gateway. */
  'user-unpublished': RemoteTrackEvent;
}

/** A cloud-proxy session: what the control plane answered and which edge gave a relay. */
export interface CloudProxySession {
  /** Session id (released on leave). */
  session: string;
  /** Unix time the session's lease ends unless an edge reports traffic for it. */
  expiresAt: number;
  /** Transport. */
  mode: Transport;
  /** The edge in use: the first in the answer's order that gave a relay candidate. */
  edge: EdgeOffer;
  /** Edges given up before `edge`, in order, with why. */
  tried: EdgeAttempt[];
  /** The chosen edge's ICE servers. */
  iceServers: IceServer[];
  /** TURN credentials (valid on every offered edge). */
  turn: ProxyResponse['turn'];
  /** Signed ticket for the edge's signalling relay. */
  ticket: string;
  /** Every edge the control plane offered, best first. */
  offered: EdgeOffer[];
  /** The relay candidate's protocol as the browser reported it, if it did. */
  relayProtocol: string | null;
}

/** How a joined client reaches the media network. */
export type Route =
  | { kind: 'direct' }
  | ({ kind: 'cloud-proxy' } & CloudProxySession)
  | {
      kind: 'self-hosted';
      proxy: Readonly<ProxyServerConfig> | null;
      turn: Readonly<TurnServerConfig> | null;
      /** The TURN server as ICE server (empty without one). */
      iceServers: IceServer[];
    };

/** A channel the client joined, and how. */
export interface JoinInfo {
  appId: string;
  channel: string;
  uid: string;
  route: Route;
  /**
   * The ICE configuration media uses: relay only through the chosen edge (cloud proxy) or the
   * TURN server (self-hosted); no ICE servers for a direct route.
   */
  rtcConfiguration: RTCConfiguration;
}

const DEFAULT_CONTROL_TIMEOUT_MS = 10_000;
const DEFAULT_EDGE_PROBE_TIMEOUT_MS = 5_000;
const RELEASE_TIMEOUT_MS = 2_000;

export class CloudProxyClient {
  readonly #rules = new ProxyRules();
  readonly #events = new Emitter<ClientEvents>();
  readonly #controlUrl: string;
  readonly #config: ClientConfig;
  #joined: JoinInfo | null = null;
  /** Cancels the running join (leave during join). */
  #joinAbort: AbortController | null = null;
  #leaving: Promise<void> | null = null;
  readonly #peerConnections = new Set<RTCPeerConnection>();

  constructor(config: ClientConfig) {
    if (typeof config !== 'object' || config === null) {
      throw new CloudProxyError('INVALID_PARAMETER', 'createClient needs { controlUrl }');
    }
    this.#controlUrl = normalizeControlUrl(config.controlUrl);
    for (const k of ['controlTimeoutMs', 'edgeProbeTimeoutMs'] as const) {
      const v = config[k];
      if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v > 0)) {
        throw new CloudProxyError('INVALID_PARAMETER', `${k} must be a positive number of milliseconds`);
      }
    }
    this.#config = { ...config };
  }

  /** `DISCONNECTED`, `CONNECTING`, `CONNECTED` or `DISCONNECTING`. */
  get connectionState(): ConnectionState {
    return this.#rules.connectionState;
  }

  /** The proxy the next join uses (`off`, `cloud` with its mode, or `self-hosted`). */
  get proxySetting(): ProxySetting {
    return this.#rules.proxy;
  }

  on<K extends keyof ClientEvents>(event: K, handler: (payload: ClientEvents[K]) => void): void {
    this.#events.on(event, handler);
  }

  off<K extends keyof ClientEvents>(event: K, handler: (payload: ClientEvents[K]) => void): void {
    this.#events.off(event, handler);
  }

  /**
   * Use the cloud proxy for the next join: 3 = UDP (default), 4 = TCP, 5 = TLS 443. Only while
   * disconnected; not after setProxyServer/setTurnServer. A second call replaces the mode.
   */
  startProxyServer(mode?: number): ProxyMode {
    return this.#rules.startProxyServer(mode);
  }

  /** Turn every proxy off (cloud and self-deployed). Only while disconnected. */
  stopProxyServer(): void {
    this.#rules.stopProxyServer();
  }

  /** Use a self-deployed signalling proxy. Only while disconnected; not after startProxyServer. */
  setProxyServer(cfg: ProxyServerConfig): void {
    this.#rules.setProxyServer(cfg);
  }

  /** Use a self-deployed TURN server (relay only). Only while disconnected; not after startProxyServer. */
  setTurnServer(cfg: TurnServerConfig): void {
    this.#rules.setTurnServer(cfg);
  }

  /**
   * Joins `channel` of `appId` as `uid`. With the cloud proxy: asks the control plane for
   * proxy info (`POST /v1/proxy`), then tries the offered edges in order and uses the first
   * on which a relay allocation succeeds. With setTurnServer: that TURN server is the only
   * ICE server. Without a proxy: a direct route.
   */
  async join(appId: string, channel: string, token: string, uid: string | number): Promise<JoinInfo> {
    this.#rules.assertCanJoin();
    const args = parseJoinArgs(appId, channel, token, uid);
    // Whatever the environment lacks is found before anything is sent.
    const cloud = this.#rules.proxy.kind === 'cloud';
    const Ctor = cloud ? this.#peerConnectionCtor() : null;
    const fetchFn = cloud ? this.#fetch() : null;

    const attempt = this.#rules.beginJoin();
    const abort = new AbortController();
    this.#joinAbort = abort;
    this.#emitState(attempt.change);
    let route: Route;
    try {
      const s = attempt.setting;
      if (s.kind === 'cloud') {
        route = await this.#joinCloud(args, s.transport, Ctor as PeerConnectionCtor, fetchFn as FetchLike, abort.signal);
      } else if (s.kind === 'self-hosted') {
        route = { kind: 'self-hosted', proxy: s.proxy, turn: s.turn, iceServers: s.turn ? [turnIceServer(s.turn)] : [] };
      } else {
        route = { kind: 'direct' };
      }
    } catch (e) {
      if (this.#joinAbort === abort) this.#joinAbort = null;
      const change = this.#rules.finishJoin(attempt.id, false);
      // A leave cancelled the join: it already reported the disconnection.
      if (!change) throw new CloudProxyError('INVALID_OPERATION', JOIN_CANCELLED);
      this.#emitState(change, e instanceof CloudProxyError ? e.code : 'ERROR');
      throw e;
    }
    if (this.#joinAbort === abort) this.#joinAbort = null;
    const change = this.#rules.finishJoin(attempt.id, true);
    if (!change) {
      if (route.kind === 'cloud-proxy') void this.#release(route.session);
      throw new CloudProxyError('INVALID_OPERATION', JOIN_CANCELLED);
    }
    const info: JoinInfo = {
      appId: args.appId,
      channel: args.channel,
      uid: args.uid,
      route,
      rtcConfiguration: configurationFor(route),
    };
    this.#joined = info;
    this.#emitState(change);
    this.#events.emit(
      'is-using-cloud-proxy',
      route.kind === 'cloud-proxy'
        ? { using: true, transport: route.mode, edgeId: route.edge.id, relayProtocol: route.relayProtocol }
        : { using: false, transport: null },
    );
    return info;
  }

  /**
   * Leaves: closes peer connections made by createPeerConnection() and releases a cloud-proxy
   * session (best effort, bounded). During a join, cancels it: the state is DISCONNECTED at
   * once and the join rejects with INVALID_OPERATION "join cancelled by leave". The proxy
   * setting stays until stopProxyServer(). Does nothing when not joined.
   */
  leave(): Promise<void> {
    if (this.#leaving) return this.#leaving;
    const a = this.#rules.beginLeave();
    switch (a.action) {
      case 'not-joined':
      case 'already-leaving':
        return Promise.resolve();
      case 'cancel-join':
        this.#joinAbort?.abort();
        this.#joinAbort = null;
        this.#emitState(a.change, 'LEAVE');
        return Promise.resolve();
      case 'leave':
        this.#emitState(a.change);
        this.#leaving = this.#leaveFlow().finally(() => {
          this.#leaving = null;
        });
        return this.#leaving;
    }
  }

  /** The ICE configuration for media (see {@link JoinInfo.rtcConfiguration}). Only while CONNECTED. */
  rtcConfiguration(): RTCConfiguration {
    this.#rules.requireConnected('rtcConfiguration()');
    return cloneConfiguration((this.#joined as JoinInfo).rtcConfiguration);
  }

  /** A peer connection configured by rtcConfiguration(); closed by leave(). */
  createPeerConnection(): RTCPeerConnection {
    const cfg = this.rtcConfiguration();
    const pc = new (this.#peerConnectionCtor())(cfg);
    this.#peerConnections.add(pc);
    return pc;
  }

  /** The current join (route, session, edge), or null. */
  joinInfo(): Readonly<JoinInfo> | null {
    return this.#joined;
  }

  /** Publishing local tracks: needs the RTN signalling gateway (not implemented yet). */
  async publish(tracks: MediaStreamTrack | MediaStreamTrack[]): Promise<void> {
    void tracks;
    this.#rules.requireConnected('publish()');
    throw notImplemented('publish()');
  }

  /** Needs the RTN signalling gateway (not implemented yet). */
  async unpublish(tracks?: MediaStreamTrack | MediaStreamTrack[]): Promise<void> {
    void tracks;
    this.#rules.requireConnected('unpublish()');
    throw notImplemented('unpublish()');
  }

  /** Receiving a remote user's track: needs the RTN signalling gateway (not implemented yet). */
  async subscribe(uid: string | number, mediaType: 'audio' | 'video'): Promise<MediaStreamTrack> {
    void uid;
    void mediaType;
    this.#rules.requireConnected('subscribe()');
    throw notImplemented('subscribe()');
  }

  /**
   * Cloud-proxy join: proxy info, then the first edge with a relay candidate. A session the
   * client will not use (no edge worked, or a leave cancelled the join) is released.
   */
  async #joinCloud(
    args: JoinArgs,
    transport: Transport,
    Ctor: PeerConnectionCtor,
    fetchFn: FetchLike,
    signal: AbortSignal,
  ): Promise<Route> {
    const opts = this.#controlOptions(fetchFn, this.#config.controlTimeoutMs ?? DEFAULT_CONTROL_TIMEOUT_MS, signal);
    const body = buildProxyRequest(args, transport, { area: this.#config.area, isp: this.#config.isp });
    const answer = await requestProxyInfo(opts, body);
    try {
      const targets: ProbeTarget[] = answer.edges.map((e) => ({
        id: e.id,
        address: e.address,
        transport,
        iceServers: e.ice_servers.map(toRtcIceServer),
      }));
      const chosen = await chooseRelay(Ctor, targets, this.#config.edgeProbeTimeoutMs ?? DEFAULT_EDGE_PROBE_TIMEOUT_MS, signal);
      const edge = answer.edges[chosen.index] as EdgeOffer;
      return {
        kind: 'cloud-proxy',
        session: answer.session,
        expiresAt: answer.expires_at,
        mode: answer.mode,
        edge,
        tried: chosen.tried,
        iceServers: edge.ice_servers,
        turn: answer.turn,
        ticket: answer.ticket,
        offered: answer.edges,
        relayProtocol: chosen.result.relayProtocol,
      };
    } catch (e) {
      void this.#release(answer.session, fetchFn);
      throw e;
    }
  }

  async #leaveFlow(): Promise<void> {
    for (const pc of this.#peerConnections) {
      try {
        pc.close();
      } catch {
        // already closed
      }
    }
    this.#peerConnections.clear();
    const route = this.#joined?.route;
    this.#joined = null;
    try {
      if (route?.kind === 'cloud-proxy') await this.#release(route.session);
    } finally {
      const change = this.#rules.finishLeave();
      if (change) this.#emitState(change, 'LEAVE');
      if (route?.kind === 'cloud-proxy') this.#events.emit('is-using-cloud-proxy', { using: false, transport: null });
    }
  }

  /** `DELETE /v1/proxy/{session}`, best effort and bounded; never throws. */
  async #release(session: string, fetchFn?: FetchLike): Promise<void> {
    let f = fetchFn;
    if (!f) {
      try {
        f = this.#fetch();
      } catch {
        return;
      }
    }
    await releaseSession(this.#controlOptions(f, RELEASE_TIMEOUT_MS), session);
  }

  #controlOptions(fetchFn: FetchLike, timeoutMs: number, signal?: AbortSignal): ControlOptions {
    return { controlUrl: this.#controlUrl, fetch: fetchFn, timeoutMs, signal };
  }

  #fetch(): FetchLike {
    if (this.#config.fetch) return this.#config.fetch;
    const f = (globalThis as { fetch?: FetchLike }).fetch;
    if (typeof f !== 'function') {
      throw new CloudProxyError('NOT_SUPPORTED', 'no fetch() in this environment; pass config.fetch');
    }
    return f.bind(globalThis);
  }

  #peerConnectionCtor(): PeerConnectionCtor {
    const C = this.#config.RTCPeerConnection ?? (globalThis as { RTCPeerConnection?: PeerConnectionCtor }).RTCPeerConnection;
    if (typeof C !== 'function') {
      throw new CloudProxyError(
        'NOT_SUPPORTED',
        'no RTCPeerConnection in this environment; pass config.RTCPeerConnection',
      );
    }
    return C;
  }

  #emitState(change: StateChange, reason?: string): void {
    const ev: ConnectionStateChangeEvent = reason === undefined ? { ...change } : { ...change, reason };
    this.#events.emit('connection-state-change', ev);
  }
}

/** Creates a client. Throws INVALID_PARAMETER on a bad config. */
export function createClient(config: ClientConfig): CloudProxyClient {
  return new CloudProxyClient(config);
}

/** The media ICE configuration of a route. */
export function configurationFor(route: Route): RTCConfiguration {
  switch (route.kind) {
    case 'direct':
      return { iceServers: [] };
    case 'cloud-proxy':
      return relayConfiguration(route.iceServers.map(toRtcIceServer));
    case 'self-hosted':
      return route.iceServers.length
        ? relayConfiguration(route.iceServers.map(toRtcIceServer))
        : { iceServers: [] };
  }
}

function toRtcIceServer(s: IceServer): RTCIceServer {
  return { urls: [...s.urls], username: s.username, credential: s.credential };
}

function cloneConfiguration(c: RTCConfiguration): RTCConfiguration {
  return {
    ...c,
    iceServers: (c.iceServers ?? []).map((s) => ({
      ...s,
      urls: Array.isArray(s.urls) ? [...s.urls] : s.urls,
    })),
  };
}
