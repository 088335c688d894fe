/**
 * Signalling with the media network's gateway (`crates/rtn/PROTOCOL.md`): one WebSocket, one
 * JSON object per text frame. This module has the URL rules (pure functions), the message
 * shapes, and {@link connectAndJoin}: open the socket, send `join`, wait for `joined`, all
 * within one bound. The WebSocket class is passed in, so tests run it against a fake gateway.
 */

import type { EdgeOffer } from './control.js';
import { aborted } from './control.js';
import { CloudProxyError } from './errors.js';
import type { ProxyServerConfig, Transport } from './rules.js';

/** What the SDK needs of a WebSocket class; the browser's `WebSocket` fits. */
export type WebSocketCtor = new (url: string) => WebSocket;

/** Client → gateway. */
export type ClientMessage =
  | { type: 'join'; app_id: string; channel: string; uid: string; token: string }
  | { type: 'leave' }
  | { type: 'offer'; sdp: string }
  | { type: 'answer'; sdp: string }
  | { type: 'candidate'; candidate: string | null };

/** Gateway → client. */
export type ServerMessage =
  | { type: 'joined'; uid: string; members: string[] }
  | { type: 'left' }
  | { type: 'member-joined'; uid: string }
  | { type: 'member-left'; uid: string }
  | { type: 'offer'; sdp: string }
  | { type: 'answer'; sdp: string }
  | { type: 'error'; code: string; message: string };

/**
 * Parses one text frame from the gateway. Returns null for anything that is not a known
 * message with the fields it needs (unknown fields are ignored, as the protocol says).
 */
export function parseServerMessage(data: unknown): ServerMessage | null {
  if (typeof data !== 'string') return null;
  let v: unknown;
  try {
    v = JSON.parse(data);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const str = (k: string) => (typeof o[k] === 'string' ? (o[k] as string) : null);
  switch (o['type']) {
    case 'joined': {
      const uid = str('uid');
      const members = Array.isArray(o['members']) ? o['members'].filter((m): m is string => typeof m === 'string') : [];
      return uid === null ? null : { type: 'joined', uid, members };
    }
    case 'left':
      return { type: 'left' };
    case 'member-joined':
    case 'member-left': {
      const uid = str('uid');
      return uid === null ? null : { type: o['type'], uid };
    }
    case 'offer':
    case 'answer': {
      const sdp = str('sdp');
      return sdp === null ? null : { type: o['type'], sdp };
    }
    case 'error':
      return { type: 'error', code: str('code') ?? 'UNKNOWN', message: str('message') ?? '' };
    default:
      return null;
  }
}

/** `host` as it goes into a URL: IPv6 addresses in brackets. */
export function urlHost(address: string): string {
  return address.includes(':') && !address.startsWith('[') ? `[${address}]` : address;
}

/** Whether the page runs over https (then `ws://` is mixed content and browsers refuse it). */
export function pageIsHttps(): boolean {
  return (globalThis as { location?: { protocol?: string } }).location?.protocol === 'https:';
}

/** Where the signalling WebSocket of a cloud-proxy join goes. */
export interface CloudSignalTarget {
  /** The edge the join chose (the one that gave a relay candidate). */
  edge: Pick<EdgeOffer, 'id' | 'address' | 'tls_port' | 'signal_port'>;
  /** The mode's transport: `tls` (mode 5) always uses the TLS port. */
  transport: Transport;
  /** The proxy-info answer's `signal_upstreams` (host:port of the gateways the ticket admits). */
  signalUpstreams: readonly string[] | undefined;
  /** The proxy-info answer's ticket. */
  ticket: string;
  /** The page is https (see {@link pageIsHttps}). */
  pageHttps: boolean;
}

/**
 * The WebSocket URL of a cloud-proxy join:
 * `<scheme>://<edge.address>:<port>/ws?upstream=<signal_upstreams[0]>&ticket=<ticket>&path=/signal`.
 * Mode 5 (`tls`): `wss` on the edge's `tls_port`. Modes 3 and 4: `ws` on `signal_port` when
 * the page is not https and the edge has one, else `wss` on `tls_port` (an https page may not
 * open `ws://`). Throws UNEXPECTED_ANSWER when `signal_upstreams` is empty or the edge lacks
 * the port it needs.
 */
export function cloudSignalUrl(t: CloudSignalTarget): string {
  const upstream = t.signalUpstreams?.[0];
  if (typeof upstream !== 'string' || upstream === '') {
    throw new CloudProxyError(
      'UNEXPECTED_ANSWER',
      'the proxy-info answer names no signalling upstream (signal_upstreams is empty): cannot reach the media network',
    );
  }
  const signalPort = t.edge.signal_port ?? null;
  const tlsPort = t.edge.tls_port ?? null;
  let scheme: 'ws' | 'wss';
  let port: number;
  if (t.transport !== 'tls' && !t.pageHttps && signalPort) {
    scheme = 'ws';
    port = signalPort;
  } else if (tlsPort) {
    scheme = 'wss';
    port = tlsPort;
  } else {
    throw new CloudProxyError(
      'UNEXPECTED_ANSWER',
      `edge ${t.edge.id} has no TLS port for the signalling relay (${
        t.transport === 'tls' ? 'mode 5 needs wss' : 'an https page needs wss'
      })`,
    );
  }
  const q = `upstream=${encodeURIComponent(upstream)}&ticket=${encodeURIComponent(t.ticket)}&path=/signal`;
  return `${scheme}://${urlHost(t.edge.address)}:${port}/ws?${q}`;
}

/** A parsed `rtnSignalUrl` (`ws://10.0.0.2:8443/signal`). */
export interface RtnSignalUrl {
  url: string;
  /** `host:port` (the port made explicit), what a relay's `upstream=` names. */
  hostPort: string;
  /** The path (and query) on the gateway, `/signal` when the URL has none. */
  path: string;
}

/** Validates `ClientConfig.rtnSignalUrl`: a `ws://` or `wss://` URL. Throws INVALID_PARAMETER. */
export function parseRtnSignalUrl(url: unknown): RtnSignalUrl {
  const m = typeof url === 'string' ? /^(wss?):\/\/([^\s/?#@]+)([^\s#]*)$/i.exec(url) : null;
  if (!m) {
    throw new CloudProxyError(
      'INVALID_PARAMETER',
      `rtnSignalUrl must be a ws:// or wss:// URL (e.g. ws://10.0.0.2:8443/signal), got ${
        typeof url === 'string' ? JSON.stringify(url) : String(url)
      }`,
    );
  }
  const scheme = (m[1] as string).toLowerCase();
  let authority = m[2] as string;
  if (!/:\d{1,5}$/.test(authority) || (authority.startsWith('[') && authority.endsWith(']'))) {
    authority = `${authority}:${scheme === 'wss' ? 443 : 80}`;
  }
  const rest = m[3] as string;
  return { url: url as string, hostPort: authority, path: rest === '' || rest === '/' ? '/signal' : rest };
}

/**
 * The WebSocket URL through a self-deployed signalling proxy (`setProxyServer`): the same relay
 * interface as the cloud edges, `ws(s)://<address>:<port>/ws?upstream=<host:port of
 * rtnSignalUrl>&path=<its path>`, without a ticket (a self-hosted relay admits clients its own
 * way). `ws` on `signalPort` when the page is not https and it is set, else `wss` on `tlsPort`.
 */
export function selfHostedSignalUrl(proxy: ProxyServerConfig, rtn: RtnSignalUrl, pageHttps: boolean): string {
  let scheme: 'ws' | 'wss';
  let port: number;
  if (!pageHttps && proxy.signalPort) {
    scheme = 'ws';
    port = proxy.signalPort;
  } else if (proxy.tlsPort) {
    scheme = 'wss';
    port = proxy.tlsPort;
  } else {
    throw new CloudProxyError(
      'INVALID_PARAMETER',
      'setProxyServer has no tlsPort: an https page cannot open ws:// to the signalling proxy',
    );
  }
  return `${scheme}://${urlHost(proxy.address)}:${port}/ws?upstream=${encodeURIComponent(rtn.hostPort)}&path=${encodeURIComponent(rtn.path)}`;
}

/** The URL with its ticket hidden, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]ticket=)[^&]*/g, '$1<redacted>');
}

/** What the gateway's `joined` said. */
export interface Joined {
  uid: string;
  /** The other members already in the channel. */
  members: string[];
}

export interface ConnectOptions {
  WebSocket: WebSocketCtor;
  url: string;
  join: { app_id: string; channel: string; uid: string; token: string };
  /** Bound on opening the socket and getting `joined`, together. */
  timeoutMs: number;
  /** leave() during join. */
  signal?: AbortSignal | undefined;
}

/**
 * An open, joined signalling connection. Messages that arrive before {@link onMessage} is set
 * are kept and delivered when it is.
 */
export class SignalConnection {
  readonly #ws: WebSocket;
  readonly url: string;
  #handler: ((m: ServerMessage) => void) | null = null;
  #queue: ServerMessage[] = [];
  #closeHandler: ((why: string) => void) | null = null;
  #closed = false;
  /** Why the socket ended by itself, once it did. */
  #endedWhy: string | null = null;
  #keepalive: ReturnType<typeof setInterval> | null = null;

  /** @internal use {@link connectAndJoin}. */
  constructor(ws: WebSocket, url: string) {
    this.#ws = ws;
    this.url = url;
    ws.addEventListener('message', (ev: MessageEvent) => {
      const m = parseServerMessage(ev.data);
      if (!m) return;
      if (this.#handler) this.#handler(m);
      else this.#queue.push(m);
    });
    ws.addEventListener('close', (ev: CloseEvent) => this.#ended(`closed (${ev.code}${ev.reason ? ` ${ev.reason}` : ''})`));
    ws.addEventListener('error', () => this.#ended('error'));
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sets the message handler and delivers what was queued. */
  onMessage(h: (m: ServerMessage) => void): void {
    this.#handler = h;
    for (const m of this.#queue.splice(0)) h(m);
  }

  /**
   * Called once when the socket closes or fails (not after {@link close}); at once (in a
   * microtask) if that already happened.
   */
  onClose(h: (why: string) => void): void {
    this.#closeHandler = h;
    const why = this.#endedWhy;
    if (why !== null) queueMicrotask(() => h(why));
  }

  send(m: ClientMessage): void {
    if (this.#closed) return;
    try {
      this.#ws.send(JSON.stringify(m));
    } catch {
      // the close event follows
    }
  }

  /**
   * Sends `{"type":"candidate","candidate":null}` (accepted and ignored by the gateway) every
   * `ms`, so a relay's idle timeout does not end a quiet session. A browser cannot send
   * WebSocket pings itself.
   */
  startKeepalive(ms: number): void {
    if (this.#keepalive || this.#closed) return;
    this.#keepalive = setInterval(() => this.send({ type: 'candidate', candidate: null }), ms);
  }

  /** Sends `leave` (when `leave` is true), then closes. Idempotent. */
  close(leave = true): void {
    if (this.#closed) return;
    if (leave) this.send({ type: 'leave' });
    this.#closed = true;
    this.#stopKeepalive();
    this.#handler = null;
    try {
      this.#ws.close(1000, 'leave');
    } catch {
      // already closing
    }
  }

  #stopKeepalive(): void {
    if (this.#keepalive) clearInterval(this.#keepalive);
    this.#keepalive = null;
  }

  #ended(why: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#endedWhy = why;
    this.#stopKeepalive();
    this.#closeHandler?.(why);
  }
}

/**
 * Opens the signalling WebSocket, sends `join` and waits for `joined`, all within
 * `timeoutMs`. Rejects with SIGNAL_UNREACHABLE (did not open, closed before `joined`, no
 * answer in time), SIGNAL_REFUSED (`error` from the gateway; `details.signalCode`), or
 * INVALID_OPERATION "join cancelled by leave" when `signal` fires. The socket is closed on
 * every failure.
 */
export function connectAndJoin(o: ConnectOptions): Promise<{ conn: SignalConnection; joined: Joined }> {
  const t0 = Date.now();
  const shown = redactUrl(o.url);
  return new Promise((resolve, reject) => {
    let ws: WebSocket | undefined;
    let done = false;
    let opened = false;
    const finish = (err: CloudProxyError | null, value?: { conn: SignalConnection; joined: Joined }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      ws?.removeEventListener('open', onOpen);
      ws?.removeEventListener('message', onMessage);
      ws?.removeEventListener('close', onClose);
      ws?.removeEventListener('error', onError);
      if (err) {
        try {
          ws?.close();
        } catch {
          // not open yet
        }
        reject(err);
      } else resolve(value as { conn: SignalConnection; joined: Joined });
    };
    const unreachable = (why: string) =>
      new CloudProxyError('SIGNAL_UNREACHABLE', `signalling gateway ${shown}: ${why}`, {
        url: shown,
        elapsedMs: Date.now() - t0,
      });
    const onAbort = () => finish(aborted());
    const onOpen = () => {
      opened = true;
      try {
        ws?.send(JSON.stringify({ type: 'join', ...o.join } satisfies ClientMessage));
      } catch (e) {
        finish(unreachable(`send failed: ${e instanceof Error ? e.message : String(e)}`));
      }
    };
    const onMessage = (ev: MessageEvent) => {
      const m = parseServerMessage(ev.data);
      if (!m) return;
      if (m.type === 'joined') {
        // Hand the socket to a connection object; later messages queue until a handler is set.
        const conn = new SignalConnection(ws as WebSocket, shown);
        finish(null, { conn, joined: { uid: m.uid, members: m.members } });
      } else if (m.type === 'error') {
        finish(
          new CloudProxyError('SIGNAL_REFUSED', `the signalling gateway refused the join: ${m.code}: ${m.message}`, {
            signalCode: m.code,
            url: shown,
          }),
        );
      }
    };
    const onClose = (ev: CloseEvent) =>
      finish(
        unreachable(
          opened
            ? `closed before joined (code ${ev.code}${ev.reason ? ` ${ev.reason}` : ''})`
            : `the WebSocket did not open (code ${ev.code}${ev.reason ? ` ${ev.reason}` : ''})`,
        ),
      );
    const onError = () => finish(unreachable(opened ? 'WebSocket error before joined' : 'the WebSocket did not open'));
    const timer = setTimeout(
      () => finish(unreachable(opened ? `no joined within ${o.timeoutMs} ms` : `the WebSocket did not open within ${o.timeoutMs} ms`)),
      o.timeoutMs,
    );
    if (o.signal?.aborted) return finish(aborted());
    o.signal?.addEventListener('abort', onAbort);
    try {
      ws = new o.WebSocket(o.url);
    } catch (e) {
      return finish(unreachable(`new WebSocket: ${e instanceof Error ? e.message : String(e)}`));
    }
    ws.addEventListener('open', onOpen);
    ws.addEventListener('message', onMessage);
    ws.addEventListener('close', onClose);
    ws.addEventListener('error', onError);
  });
}
