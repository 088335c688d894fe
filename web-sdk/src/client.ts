/**
 * The client an app holds. It asks {@link ProxyRules} before every step and does the I/O:
 * the proxy-info request, the edge failover, the signalling with the media network (RTN) and
 * the media peer connection, the events. Its semantics mirror the Rust SDK's
 * `client_sdk::Client` (routes, events, join cancelled by leave).
 *
 * A join: (cloud proxy) proxy info from the control plane and an edge chosen by a working relay
 * allocation; then the signalling WebSocket (through the edge's relay, a self-deployed proxy,
 * or directly), `join` → `joined`; then one `RTCPeerConnection` with the SFU, configured by
 * {@link configurationFor} (relay only through the edge or TURN server), and the first offer.
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
import { CloudProxyError, type EdgeAttempt } from './errors.js';
import { Emitter } from './events.js';
import {
  MediaSession,
  type MediaStateEvent,
  type MediaStats,
  type MediaType,
  type RemoteTrackEvent,
  type RemoteUser,
  type UserEvent,
} from './media.js';
import {
  cloudSignalUrl,
  connectAndJoin,
  pageIsHttps,
  parseRtnSignalUrl,
  redactUrl,
  selfHostedSignalUrl,
  type RtnSignalUrl,
  type SignalConnection,
  type WebSocketCtor,
} from './signal.js';
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
  /**
   * The media network's signalling gateway, `ws://host:port/signal` or `wss://...`. Needed for
   * a join without the cloud proxy: direct (the WebSocket goes there) or through
   * `setProxyServer` (its relay is asked for this `host:port` and path). Not used with the
   * cloud proxy (the proxy-info answer names the gateway).
   */
  rtnSignalUrl?: string;
  /**
   * Bound on opening the signalling WebSocket and getting `joined`, ms (default 10000). A
   * gateway that cannot be reached fails the join with SIGNAL_UNREACHABLE within it.
   */
  signalTimeoutMs?: number;
  /** Bound on `subscribe()` waiting for a remote user's track, ms (default 10000). */
  subscribeTimeoutMs?: number;
  /** WebSocket class (default `globalThis.WebSocket`); tests pass a fake gateway. */
  WebSocket?: WebSocketCtor;
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

export interface ClientEvents extends Record<string, unknown> {
  'connection-state-change': ConnectionStateChangeEvent;
  'is-using-cloud-proxy': UsingCloudProxyEvent;
  /** A remote user's track arrived (`uid` from the track's stream id, which the SFU sets). */
  'user-published': RemoteTrackEvent;
  /** A remote user's track stopped (its m-line stopped in a server offer, or the user left). */
  'user-unpublished': RemoteTrackEvent;
  /** Another member is in the channel: one per member already there at join, then as they join. */
  'user-joined': UserEvent;
  /** A member left the channel. */
  'user-left': UserEvent;
  /** The media peer connection's `connectionState` changed. */
  'media-state-change': MediaStateEvent;
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
  /** The media network's signalling gateways (host:port) the ticket admits; the first is used. */
  signalUpstreams: string[];
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
  /** The signalling WebSocket URL used (ticket redacted). */
  signalUrl: string;
  /** The other members in the channel when the gateway answered `joined`. */
  members: string[];
}

const DEFAULT_CONTROL_TIMEOUT_MS = 10_000;
const DEFAULT_EDGE_PROBE_TIMEOUT_MS = 5_000;
const DEFAULT_SIGNAL_TIMEOUT_MS = 10_000;
const DEFAULT_SUBSCRIBE_TIMEOUT_MS = 10_000;
/** Under the edge relay's idle timeout (120 s by default). */
const SIGNAL_KEEPALIVE_MS = 25_000;
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
  #media: MediaSession | null = null;
  #rtnSignalUrl: RtnSignalUrl | null = null;

  constructor(config: ClientConfig) {
    if (typeof config !== 'object' || config === null) {
      throw new CloudProxyError('INVALID_PARAMETER', 'createClient needs { controlUrl }');
    }
    this.#controlUrl = normalizeControlUrl(config.controlUrl);
    if (config.rtnSignalUrl !== undefined) this.#rtnSignalUrl = parseRtnSignalUrl(config.rtnSignalUrl);
    for (const k of ['controlTimeoutMs', 'edgeProbeTimeoutMs', 'signalTimeoutMs', 'subscribeTimeoutMs'] as const) {
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
   * Joins `channel` of `appId` as `uid`, and resolves once the media network's gateway has
   * answered `joined`.
   *
   * 1. The route. With the cloud proxy: proxy info from the control plane (`POST /v1/proxy`),
   *    then the offered edges in order, the first on which a relay allocation succeeds. With
   *    setTurnServer: that TURN server is the only ICE server. Without a proxy: direct.
   * 2. Signalling: a WebSocket to the gateway (see {@link signalUrlFor}), `join`, `joined`,
   *    within `signalTimeoutMs` (SIGNAL_UNREACHABLE / SIGNAL_REFUSED otherwise).
   * 3. Media: one RTCPeerConnection with {@link rtcConfiguration} and the first offer (sent
   *    right away; `publish()` waits for its answer).
   *
   * A failure releases a cloud-proxy session and ends in DISCONNECTED with the error code as
   * the reason.
   */
  async join(appId: string, channel: string, token: string, uid: string | number): Promise<JoinInfo> {
    this.#rules.assertCanJoin();
    const args = parseJoinArgs(appId, channel, token, uid);
    // Whatever the environment or the config lacks is found before anything is sent.
    const setting = this.#rules.proxy;
    const cloud = setting.kind === 'cloud';
    if (!cloud && !this.#rtnSignalUrl) {
      throw new CloudProxyError(
        'INVALID_PARAMETER',
        'a join without the cloud proxy needs config.rtnSignalUrl (the media network\'s signalling gateway, ws://host:port/signal)',
      );
    }
    const Ctor = this.#peerConnectionCtor();
    const WS = this.#webSocketCtor();
    const fetchFn = cloud ? this.#fetch() : null;

    const attempt = this.#rules.beginJoin();
    const abort = new AbortController();
    this.#joinAbort = abort;
    this.#emitState(attempt.change);
    let route: Route | null = null;
    let conn: SignalConnection | null = null;
    let members: string[] = [];
    let signalUrl = '';
    let pc: RTCPeerConnection | null = null;
    try {
      const s = attempt.setting;
      if (s.kind === 'cloud') {
        route = await this.#joinCloud(args, s.transport, Ctor, fetchFn as FetchLike, abort.signal);
      } else if (s.kind === 'self-hosted') {
        route = { kind: 'self-hosted', proxy: s.proxy, turn: s.turn, iceServers: s.turn ? [turnIceServer(s.turn)] : [] };
      } else {
        route = { kind: 'direct' };
      }
      const url = signalUrlFor(route, this.#rtnSignalUrl, pageIsHttps());
      signalUrl = redactUrl(url);
      const r = await connectAndJoin({
        WebSocket: WS,
        url,
        join: { app_id: args.appId, channel: args.channel, uid: args.uid, token: args.token },
        timeoutMs: this.#config.signalTimeoutMs ?? DEFAULT_SIGNAL_TIMEOUT_MS,
        signal: abort.signal,
      });
      conn = r.conn;
      members = r.joined.members;
      try {
        pc = new Ctor(configurationFor(route));
      } catch (e) {
        throw new CloudProxyError('NOT_SUPPORTED', `RTCPeerConnection: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
    } catch (e) {
      conn?.close();
      if (this.#joinAbort === abort) this.#joinAbort = null;
      if (route?.kind === 'cloud-proxy') void this.#release(route.session, fetchFn ?? undefined);
      const change = this.#rules.finishJoin(attempt.id, false);
      // A leave cancelled the join: it already reported the disconnection.
      if (!change) throw new CloudProxyError('INVALID_OPERATION', JOIN_CANCELLED);
      this.#emitState(change, e instanceof CloudProxyError ? e.code : 'ERROR');
      throw e;
    }
    if (this.#joinAbort === abort) this.#joinAbort = null;
    const change = this.#rules.finishJoin(attempt.id, true);
    if (!change) {
      conn.close();
      pc.close();
      if (route.kind === 'cloud-proxy') void this.#release(route.session);
      throw new CloudProxyError('INVALID_OPERATION', JOIN_CANCELLED);
    }
    const rtcConfiguration = configurationFor(route);
    const info: JoinInfo = {
      appId: args.appId,
      channel: args.channel,
      uid: args.uid,
      route,
      rtcConfiguration,
      signalUrl,
      members: [...members],
    };
    const media = new MediaSession({
      pc,
      conn,
      uid: args.uid,
      members,
      emit: (event, payload) => this.#events.emit(event, payload as never),
      onSignalLost: (why) => this.#signalLost(media, why),
    });
    this.#media = media;
    this.#joined = info;
    conn.startKeepalive(SIGNAL_KEEPALIVE_MS);
    if (route.kind === 'cloud-proxy') this.#watchRelay(media, route);
    this.#emitState(change);
    this.#events.emit(
      'is-using-cloud-proxy',
      route.kind === 'cloud-proxy'
        ? { using: true, transport: route.mode, edgeId: route.edge.id, relayProtocol: route.relayProtocol }
        : { using: false, transport: null },
    );
    // An event handler may have left already.
    if (this.#media === media) {
      for (const m of members) this.#events.emit('user-joined', { uid: m });
    }
    if (this.#media === media) {
      // Messages that came after `joined` (member-joined, ...), then the first offer.
      media.listen();
      media.start().catch((e: unknown) => {
        if (this.#media === media) console.warn('cloudproxy: the first offer failed', e);
      });
    }
    return info;
  }

  /**
   * Leaves: sends `leave` to the gateway, closes the signalling socket and the media peer
   * connection (and those made by createPeerConnection()), and releases a cloud-proxy session
   * (best effort, bounded). During a join, cancels it: the state is DISCONNECTED at once and
   * the join rejects with INVALID_OPERATION "join cancelled by leave". The proxy setting stays
   * until stopProxyServer(). Does nothing when not joined.
   */
  leave(): Promise<void> {
    return this.#leave('LEAVE');
  }

  #leave(reason: string): Promise<void> {
    if (this.#leaving) return this.#leaving;
    const a = this.#rules.beginLeave();
    switch (a.action) {
      case 'not-joined':
      case 'already-leaving':
        return Promise.resolve();
      case 'cancel-join':
        this.#joinAbort?.abort();
        this.#joinAbort = null;
        this.#emitState(a.change, reason);
        return Promise.resolve();
      case 'leave':
        this.#emitState(a.change);
        this.#leaving = this.#leaveFlow(reason).finally(() => {
          this.#leaving = null;
        });
        return this.#leaving;
    }
  }

  /** The signalling socket closed by itself (gateway or relay gone): leave with that reason. */
  #signalLost(media: MediaSession, why: string): void {
    if (this.#media !== media) return;
    console.warn(`cloudproxy: signalling connection lost: ${why}`);
    void this.#leave('SIGNAL_UNREACHABLE');
  }

  /**
   * Cloud proxy: once media is connected, reads the selected candidate pair and emits
   * `is-using-cloud-proxy` again with what getStats says (candidate type relay, and the real
   * relayProtocol, which the ICE candidate event does not give for UDP).
   */
  #watchRelay(media: MediaSession, route: Extract<Route, { kind: 'cloud-proxy' }>): void {
    const onState = () => {
      if (this.#media !== media) return media.pc.removeEventListener('connectionstatechange', onState);
      if (media.pc.connectionState !== 'connected') return;
      media.pc.removeEventListener('connectionstatechange', onState);
      media
        .stats()
        .then((st) => {
          if (this.#media !== media || st.candidateType === null) return;
          this.#events.emit('is-using-cloud-proxy', {
            using: st.candidateType === 'relay',
            transport: route.mode,
            edgeId: route.edge.id,
            relayProtocol: st.relayProtocol,
          });
        })
        .catch(() => undefined);
    };
    media.pc.addEventListener('connectionstatechange', onState);
  }

  /** The ICE configuration for media (see {@link JoinInfo.rtcConfiguration}). Only while CONNECTED. */
  rtcConfiguration(): RTCConfiguration {
    this.#rules.requireConnected('rtcConfiguration()');
    return cloneConfiguration((this.#joined as JoinInfo).rtcConfiguration);
  }

  /**
   * An extra peer connection configured by rtcConfiguration() (the SDK's own media connection
   * is separate); closed by leave().
   */
  createPeerConnection(): RTCPeerConnection {
    const cfg = this.rtcConfiguration();
    const pc = new (this.#peerConnectionCtor())(cfg);
    this.#peerConnections.add(pc);
    return pc;
  }

  /** The current join (route, session, edge, signalling URL), or null. */
  joinInfo(): Readonly<JoinInfo> | null {
    return this.#joined;
  }

  /**
   * Publishes local tracks (e.g. from getUserMedia): one sendonly transceiver each, then a new
   * offer. Resolves when the gateway's answer is applied. Only while CONNECTED.
   */
  async publish(tracks: MediaStreamTrack | MediaStreamTrack[]): Promise<void> {
    this.#rules.requireConnected('publish()');
    await (this.#media as MediaSession).publish(Array.isArray(tracks) ? tracks : [tracks]);
  }

  /** Stops publishing `tracks` (all when omitted) and renegotiates. Only while CONNECTED. */
  async unpublish(tracks?: MediaStreamTrack | MediaStreamTrack[]): Promise<void> {
    this.#rules.requireConnected('unpublish()');
    await (this.#media as MediaSession).unpublish(tracks === undefined ? undefined : Array.isArray(tracks) ? tracks : [tracks]);
  }

  /**
   * A remote user's track. The SFU forwards every published track to every member, so this
   * asks the server nothing: it returns the track once it has arrived, waiting up to
   * `subscribeTimeoutMs` (SUBSCRIBE_TIMEOUT after that). Only while CONNECTED.
   */
  async subscribe(uid: string | number, mediaType: MediaType): Promise<MediaStreamTrack> {
    this.#rules.requireConnected('subscribe()');
    if (mediaType !== 'audio' && mediaType !== 'video') {
      throw new CloudProxyError('INVALID_PARAMETER', `mediaType must be 'audio' or 'video', not ${JSON.stringify(mediaType)}`);
    }
    const id = typeof uid === 'number' && Number.isSafeInteger(uid) && uid >= 0 ? String(uid) : uid;
    if (typeof id !== 'string' || id === '') {
      throw new CloudProxyError('INVALID_PARAMETER', 'uid must be a non-empty string or a non-negative integer');
    }
    return (this.#media as MediaSession).subscribe(id, mediaType, this.#config.subscribeTimeoutMs ?? DEFAULT_SUBSCRIBE_TIMEOUT_MS);
  }

  /** Other members of the channel and the tracks received from them (empty when not joined). */
  remoteUsers(): RemoteUser[] {
    return this.#media?.remoteUsers() ?? [];
  }

  /** Tracks this client publishes. */
  localTracks(): MediaStreamTrack[] {
    return this.#media?.localTracks() ?? [];
  }

  /** The media peer connection's own `getStats()`. Only while CONNECTED. */
  async getStats(): Promise<RTCStatsReport> {
    this.#rules.requireConnected('getStats()');
    return (this.#media as MediaSession).pc.getStats();
  }

  /**
   * The numbers that matter, from the media connection's getStats(): the selected pair's local
   * candidate type and relayProtocol, video frames decoded per remote uid, frames encoded and
   * bytes sent. Only while CONNECTED.
   */
  async mediaStats(): Promise<MediaStats> {
    this.#rules.requireConnected('mediaStats()');
    return (this.#media as MediaSession).stats();
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
        signalUpstreams: answer.signal_upstreams ?? [],
        offered: answer.edges,
        relayProtocol: chosen.result.relayProtocol,
      };
    } catch (e) {
      void this.#release(answer.session, fetchFn);
      throw e;
    }
  }

  async #leaveFlow(reason: string): Promise<void> {
    this.#media?.close(true);
    this.#media = null;
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
      if (change) this.#emitState(change, reason);
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

  #webSocketCtor(): WebSocketCtor {
    const C = this.#config.WebSocket ?? (globalThis as { WebSocket?: WebSocketCtor }).WebSocket;
    if (typeof C !== 'function') {
      throw new CloudProxyError('NOT_SUPPORTED', 'no WebSocket in this environment; pass config.WebSocket');
    }
    return C;
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

/**
 * The signalling WebSocket URL of a route (see signal.ts for the rules):
 * - cloud proxy: the chosen edge's relay, `/ws?upstream=<signal_upstreams[0]>&ticket=...&path=/signal`;
 * - setProxyServer: that proxy's relay, `/ws?upstream=<host:port of rtnSignalUrl>&path=...`, no ticket;
 * - direct and setTurnServer alone: `rtnSignalUrl` itself.
 */
export function signalUrlFor(route: Route, rtn: RtnSignalUrl | null, pageHttps: boolean): string {
  if (route.kind === 'cloud-proxy') {
    return cloudSignalUrl({
      edge: route.edge,
      transport: route.mode,
      signalUpstreams: route.signalUpstreams,
      ticket: route.ticket,
      pageHttps,
    });
  }
  if (!rtn) throw new CloudProxyError('INVALID_PARAMETER', 'config.rtnSignalUrl is needed without the cloud proxy');
  if (route.kind === 'self-hosted' && route.proxy) return selfHostedSignalUrl(route.proxy, rtn, pageHttps);
  return rtn.url;
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
