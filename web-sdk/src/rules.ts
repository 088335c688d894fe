/**
 * The proxy rules of ARCHITECTURE.md §5 as a pure state machine: no DOM, no I/O, no timers.
 * `tsconfig.pure.json` compiles this file with the ES library only, so a DOM or Node API
 * creeping in fails the type check. It mirrors the Rust SDK's `client_sdk::rules` (same
 * messages, same order of checks, same join/leave transitions).
 *
 * - Modes: 3 (UDP, the default when none is given), 4 (TCP), 5 (TLS 443). 1 and 2 are
 *   NOT_SUPPORTED; anything else is INVALID_PARAMETER.
 * - The four proxy calls work only while DISCONNECTED (before join, after leave); otherwise
 *   INVALID_OPERATION: "start proxy server before join", "stop proxy server before join",
 *   "set proxy server before join", "set turn server before join".
 * - setProxyServer / setTurnServer (self-deployed; they may be combined) and startProxyServer
 *   (the cloud proxy) exclude each other in both orders: INVALID_OPERATION "proxy already set".
 * - stopProxyServer turns every proxy off; starting twice keeps the last mode; setting the same
 *   self-deployed server twice keeps the last one.
 * - Checks run in this order: connection state, then the arguments, then the exclusion. A call
 *   that fails changes nothing.
 * - One join at a time. A leave during a join cancels it (`cancel-join`): the state is
 *   DISCONNECTED at once and the join's late result is discarded (`finishJoin` returns false).
 */

import type { components } from './api.gen.js';
import { CloudProxyError } from './errors.js';

/** A transport the proxy carries media over (the control plane's `TransportMode`). */
export type Transport = components['schemas']['TransportMode'];

/** The cloud-proxy modes this SDK accepts: 3 = UDP, 4 = TCP, 5 = TLS 443. */
export type ProxyMode = 3 | 4 | 5;

/** The mode `startProxyServer()` uses when none is given. */
export const DEFAULT_MODE: ProxyMode = 3;

/** SDK mode → the `mode` of the proxy-info request. */
export const MODE_TRANSPORT: Readonly<Record<ProxyMode, Transport>> = Object.freeze({
  3: 'udp',
  4: 'tcp',
  5: 'tls',
});

/** Modes of the product this replaces that are refused with NOT_SUPPORTED. */
export const UNSUPPORTED_MODES: readonly number[] = Object.freeze([1, 2]);

/** INVALID_OPERATION messages (the same strings as the Rust SDK). */
export const START_BEFORE_JOIN = 'start proxy server before join';
export const STOP_BEFORE_JOIN = 'stop proxy server before join';
export const SET_PROXY_BEFORE_JOIN = 'set proxy server before join';
export const SET_TURN_BEFORE_JOIN = 'set turn server before join';
export const PROXY_ALREADY_SET = 'proxy already set';
export const JOIN_IN_PROGRESS = 'join already in progress';
export const ALREADY_JOINED = 'already joined';
export const LEAVE_IN_PROGRESS = 'leave in progress';
/** What `join` rejects with when a leave cancelled it. */
export const JOIN_CANCELLED = 'join cancelled by leave';

/**
 * Validates a mode argument. `undefined` (omitted) means {@link DEFAULT_MODE}; 3, 4 and 5 are
 * accepted; 1 and 2 throw NOT_SUPPORTED; anything else (0, 6, 7, 3.5, NaN, "3", null, ...)
 * throws INVALID_PARAMETER.
 */
export function parseMode(mode: unknown): ProxyMode {
  if (mode === undefined) return DEFAULT_MODE;
  if (typeof mode === 'number' && UNSUPPORTED_MODES.includes(mode)) {
    throw new CloudProxyError(
      'NOT_SUPPORTED',
      `proxy mode ${mode} is not supported (use 3 = UDP, 4 = TCP, 5 = TLS 443)`,
    );
  }
  if (mode === 3 || mode === 4 || mode === 5) return mode;
  throw new CloudProxyError(
    'INVALID_PARAMETER',
    `proxy mode ${describe(mode)} is not a mode (3 = UDP, 4 = TCP, 5 = TLS 443)`,
  );
}

/** The transport a mode asks the control plane for: 3 → `udp`, 4 → `tcp`, 5 → `tls`. */
export function modeToTransport(mode: ProxyMode): Transport {
  return MODE_TRANSPORT[mode];
}

/**
 * Connection states. The proxy calls are allowed only in `DISCONNECTED`.
 */
export type ConnectionState = 'DISCONNECTED' | 'CONNECTING' | 'CONNECTED' | 'DISCONNECTING';

/** A self-deployed proxy (`setProxyServer`): where the app's own edge serves signalling. */
export interface ProxyServerConfig {
  /** Host name or IP address. */
  address: string;
  /** Plain signalling relay port (TCP), if served. */
  signalPort?: number;
  /** TLS port (WSS signalling and TURN-TLS), if served. */
  tlsPort?: number;
}

/** A self-deployed TURN server (`setTurnServer`), used as the only ICE server (relay only). */
export interface TurnServerConfig {
  /** Host name or IP address. */
  host: string;
  port: number;
  /** Long-term credential user name. */
  username: string;
  /** Long-term credential password. */
  password: string;
  /** Transport to the TURN server: `udp`, `tcp`, or `tls` (`turns:`). */
  transport: Transport;
}

/** What proxy, if any, the next join uses. */
export type ProxySetting =
  | { readonly kind: 'off' }
  | { readonly kind: 'cloud'; readonly mode: ProxyMode; readonly transport: Transport }
  | {
      readonly kind: 'self-hosted';
      readonly proxy: Readonly<ProxyServerConfig> | null;
      readonly turn: Readonly<TurnServerConfig> | null;
    };

/** A change of connection state, for the `connection-state-change` event. */
export interface StateChange {
  previous: ConnectionState;
  current: ConnectionState;
}

/** A join that {@link ProxyRules.beginJoin} let start. */
export interface JoinAttempt {
  /** Identifies the attempt for {@link ProxyRules.finishJoin}. */
  id: number;
  /** The setting the join must use (a snapshot: it cannot change during the join). */
  setting: ProxySetting;
  change: StateChange;
}

/**
 * What a leave has to do: nothing (`not-joined`, `already-leaving`); a join was running and is
 * cancelled, the state is DISCONNECTED already (`cancel-join`); joined: release the session,
 * then call {@link ProxyRules.finishLeave} (`leave`).
 */
export type LeaveAction =
  | { action: 'not-joined' }
  | { action: 'already-leaving' }
  | { action: 'cancel-join'; change: StateChange }
  | { action: 'leave'; change: StateChange };

const OFF: ProxySetting = Object.freeze({ kind: 'off' });

/**
 * The rules. One instance per client; the client performs the I/O and asks this object
 * before and after each step.
 */
export class ProxyRules {
  #state: ConnectionState = 'DISCONNECTED';
  #setting: ProxySetting = OFF;
  #attempt = 0;

  get connectionState(): ConnectionState {
    return this.#state;
  }

  /** The proxy the next join will use. */
  get proxy(): ProxySetting {
    return this.#setting;
  }

  /** Turns the cloud proxy on (mode 3 when omitted). A second call before join replaces the mode. */
  startProxyServer(mode?: unknown): ProxyMode {
    this.#disconnected(START_BEFORE_JOIN);
    const m = parseMode(mode);
    if (this.#setting.kind === 'self-hosted') throw invalidOperation(PROXY_ALREADY_SET);
    this.#setting = Object.freeze({ kind: 'cloud', mode: m, transport: modeToTransport(m) });
    return m;
  }

  /** Turns every proxy off: the cloud proxy and any self-deployed proxy or TURN server. */
  stopProxyServer(): void {
    this.#disconnected(STOP_BEFORE_JOIN);
    this.#setting = OFF;
  }

  /** Sets a self-deployed signalling proxy (replaces a previous one). */
  setProxyServer(cfg: unknown): ProxyServerConfig {
    this.#disconnected(SET_PROXY_BEFORE_JOIN);
    const proxy = parseProxyServer(cfg);
    if (this.#setting.kind === 'cloud') throw invalidOperation(PROXY_ALREADY_SET);
    const turn = this.#setting.kind === 'self-hosted' ? this.#setting.turn : null;
    this.#setting = Object.freeze({ kind: 'self-hosted', proxy, turn });
    return proxy;
  }

  /** Sets a self-deployed TURN server (replaces a previous one). */
  setTurnServer(cfg: unknown): TurnServerConfig {
    this.#disconnected(SET_TURN_BEFORE_JOIN);
    const turn = parseTurnServer(cfg);
    if (this.#setting.kind === 'cloud') throw invalidOperation(PROXY_ALREADY_SET);
    const proxy = this.#setting.kind === 'self-hosted' ? this.#setting.proxy : null;
    this.#setting = Object.freeze({ kind: 'self-hosted', proxy, turn });
    return turn;
  }

  /** Throws INVALID_OPERATION unless a join may start now. Changes nothing. */
  assertCanJoin(): void {
    switch (this.#state) {
      case 'DISCONNECTED':
        return;
      case 'CONNECTING':
        throw invalidOperation(JOIN_IN_PROGRESS);
      case 'CONNECTED':
        throw invalidOperation(ALREADY_JOINED);
      case 'DISCONNECTING':
        throw invalidOperation(LEAVE_IN_PROGRESS);
    }
  }

  /** DISCONNECTED → CONNECTING; the attempt carries a snapshot of the setting. */
  beginJoin(): JoinAttempt {
    this.assertCanJoin();
    this.#attempt += 1;
    return { id: this.#attempt, setting: this.#setting, change: this.#to('CONNECTING') };
  }

  /**
   * A join ended (`ok`: it succeeded): CONNECTING → CONNECTED or DISCONNECTED. Returns `null`,
   * changing nothing, when the attempt is no longer current (a leave cancelled it): its result
   * must be discarded.
   */
  finishJoin(id: number, ok: boolean): StateChange | null {
    if (this.#state !== 'CONNECTING' || id !== this.#attempt) return null;
    return this.#to(ok ? 'CONNECTED' : 'DISCONNECTED');
  }

  /** A leave starts. See {@link LeaveAction}. */
  beginLeave(): LeaveAction {
    switch (this.#state) {
      case 'DISCONNECTED':
        return { action: 'not-joined' };
      case 'CONNECTING':
        return { action: 'cancel-join', change: this.#to('DISCONNECTED') };
      case 'CONNECTED':
        return { action: 'leave', change: this.#to('DISCONNECTING') };
      case 'DISCONNECTING':
        return { action: 'already-leaving' };
    }
  }

  /** The leave that beginLeave answered `leave` is done: DISCONNECTING → DISCONNECTED. */
  finishLeave(): StateChange | null {
    if (this.#state !== 'DISCONNECTING') return null;
    return this.#to('DISCONNECTED');
  }

  /** Throws INVALID_OPERATION unless CONNECTED (publish, subscribe, rtcConfiguration). */
  requireConnected(what: string): void {
    if (this.#state !== 'CONNECTED') {
      throw invalidOperation(`${what} needs a joined channel (state ${this.#state})`);
    }
  }

  #disconnected(refusal: string): void {
    if (this.#state !== 'DISCONNECTED') throw invalidOperation(refusal);
  }

  #to(current: ConnectionState): StateChange {
    const previous = this.#state;
    this.#state = current;
    return { previous, current };
  }
}

function invalidOperation(message: string): CloudProxyError {
  return new CloudProxyError('INVALID_OPERATION', message);
}

/** A host name or IP address, as the Rust SDK accepts it. */
const HOST = /^[A-Za-z0-9\-.:_]{1,253}$/;

function checkHost(host: unknown, what: string): string {
  if (typeof host !== 'string' || !HOST.test(host)) {
    throw new CloudProxyError('INVALID_PARAMETER', `${what} must be a host name or IP address, not ${describe(host)}`);
  }
  return host;
}

function checkPort(port: unknown, what: string): number {
  if (port === 0) throw new CloudProxyError('INVALID_PARAMETER', `${what} 0 is not a port`);
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new CloudProxyError('INVALID_PARAMETER', `${what} must be a port (1-65535), not ${describe(port)}`);
  }
  return port;
}

/** Validates a `setProxyServer` argument: a host, and at least one non-zero port. */
export function parseProxyServer(cfg: unknown): ProxyServerConfig {
  if (!isRecord(cfg)) {
    throw new CloudProxyError('INVALID_PARAMETER', 'setProxyServer needs { address, signalPort?, tlsPort? }');
  }
  const address = checkHost(cfg['address'], 'proxy server address');
  const out: ProxyServerConfig = { address };
  if (cfg['signalPort'] !== undefined) out.signalPort = checkPort(cfg['signalPort'], 'proxy server port');
  if (cfg['tlsPort'] !== undefined) out.tlsPort = checkPort(cfg['tlsPort'], 'proxy server port');
  if (out.signalPort === undefined && out.tlsPort === undefined) {
    throw new CloudProxyError('INVALID_PARAMETER', 'proxy server needs a signalPort or a tlsPort');
  }
  return Object.freeze(out);
}

/** Validates a `setTurnServer` argument: a host, a port, a transport, and a credential. */
export function parseTurnServer(cfg: unknown): TurnServerConfig {
  if (!isRecord(cfg)) {
    throw new CloudProxyError('INVALID_PARAMETER', 'setTurnServer needs { host, port, username, password, transport }');
  }
  const host = checkHost(cfg['host'], 'turn server host');
  const port = checkPort(cfg['port'], 'turn server port');
  const { username, password, transport } = cfg;
  if (typeof username !== 'string' || username === '' || typeof password !== 'string' || password === '') {
    throw new CloudProxyError('INVALID_PARAMETER', 'turn server needs a username and a password');
  }
  if (transport !== 'udp' && transport !== 'tcp' && transport !== 'tls') {
    throw new CloudProxyError('INVALID_PARAMETER', `turn server transport must be udp, tcp or tls, not ${describe(transport)}`);
  }
  return Object.freeze({ host, port, username, password, transport });
}

/** The ICE server for a self-deployed TURN server (`turn:` for UDP and TCP, `turns:` for TLS). */
export function turnIceServer(t: TurnServerConfig): { urls: string[]; username: string; credential: string } {
  const host = t.host.includes(':') ? `[${t.host}]` : t.host;
  const url =
    t.transport === 'tls'
      ? `turns:${host}:${t.port}?transport=tcp`
      : `turn:${host}:${t.port}?transport=${t.transport}`;
  return { urls: [url], username: t.username, credential: t.password };
}

/** Join arguments after validation. */
export interface JoinArgs {
  appId: string;
  channel: string;
  token: string;
  uid: string;
}

/**
 * Validates join arguments: App ID, channel and uid non-empty (a uid may also be a
 * non-negative safe integer, sent as its decimal string); the token a string.
 */
export function parseJoinArgs(appId: unknown, channel: unknown, token: unknown, uid: unknown): JoinArgs {
  if (typeof appId !== 'string' || appId === '') {
    throw new CloudProxyError('INVALID_PARAMETER', `app_id is empty or not a string (${describe(appId)})`);
  }
  if (typeof channel !== 'string' || channel === '') {
    throw new CloudProxyError('INVALID_PARAMETER', `channel is empty or not a string (${describe(channel)})`);
  }
  if (typeof token !== 'string') {
    throw new CloudProxyError('INVALID_PARAMETER', `token must be a string, not ${describe(token)}`);
  }
  let id: string;
  if (typeof uid === 'number' && Number.isSafeInteger(uid) && uid >= 0) id = String(uid);
  else if (typeof uid === 'string' && uid !== '') id = uid;
  else {
    throw new CloudProxyError(
      'INVALID_PARAMETER',
      `uid must be a non-empty string or a non-negative integer, not ${describe(uid)}`,
    );
  }
  return { appId, channel, token, uid: id };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  return typeof v;
}
