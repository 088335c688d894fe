/**
 * The control plane's proxy-info API (`POST /v1/proxy`, `DELETE /v1/proxy/{session}`), with
 * request and answer types generated from its OpenAPI document. `fetch` is passed in, so this
 * runs unchanged in a browser, in Node and in unit tests.
 */

import type { components } from './api.gen.js';
import { CloudProxyError, JOIN_ERROR_CODES, type JoinErrorCode } from './errors.js';
import { JOIN_CANCELLED, type JoinArgs, type Transport } from './rules.js';

export type ProxyRequest = components['schemas']['ProxyRequest'];
export type ProxyResponse = components['schemas']['ProxyResponse'];
export type EdgeOffer = components['schemas']['EdgeOffer'];
export type IceServer = components['schemas']['IceServer'];
export type ApiError = components['schemas']['ApiError'];

/** The part of `fetch` the SDK uses; `globalThis.fetch` fits. */
export type FetchLike = (
  url: string,
  init: {
    method: string;
    headers: Record<string, string>;
    body?: string;
    signal?: AbortSignal;
  },
) => Promise<{ ok: boolean; status: number; text(): Promise<string> }>;

/** The request body for a join: exactly the generated `ProxyRequest`. */
export function buildProxyRequest(
  args: JoinArgs,
  transport: Transport,
  hints: { area?: string | undefined; isp?: string | undefined } = {},
): ProxyRequest {
  const body: ProxyRequest = {
    app_id: args.appId,
    channel: args.channel,
    uid: args.uid,
    mode: transport,
    token: args.token,
  };
  if (hints.area !== undefined) body.area = hints.area;
  if (hints.isp !== undefined) body.isp = hints.isp;
  return body;
}

/**
 * `https://control.example.com/` → `https://control.example.com`. `http://` only for a
 * loopback host (`localhost`, `127.0.0.0/8`, `[::1]`), which browsers treat as a secure
 * context (a demo page served by `cloudproxy` on this machine); anything else must be
 * `https://`. Throws INVALID_PARAMETER otherwise.
 */
export function normalizeControlUrl(url: unknown): string {
  const m = typeof url === 'string' ? /^(https?):\/\/([^\s/?#]+)(\/[^\s?#]*)?$/i.exec(url) : null;
  if (!m) {
    throw new CloudProxyError(
      'INVALID_PARAMETER',
      `controlUrl must be an https:// URL, got ${typeof url === 'string' ? JSON.stringify(url) : typeof url}`,
    );
  }
  if ((m[1] as string).toLowerCase() === 'http' && !isLoopbackAuthority(m[2] as string)) {
    throw new CloudProxyError(
      'INVALID_PARAMETER',
      `controlUrl must be https:// (http:// only for localhost, 127.0.0.0/8 or [::1]), got ${JSON.stringify(url)}`,
    );
  }
  return (url as string).replace(/\/+$/, '');
}

/** `host[:port]` names a loopback host: `localhost`, an address in 127.0.0.0/8, or `[::1]`. */
export function isLoopbackAuthority(authority: string): boolean {
  if (authority.includes('@')) return false;
  let host: string;
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    if (end < 0) return false;
    host = authority.slice(1, end);
    // ::1 in any spelling (0:0:0:0:0:0:0:1, 0::1, ...).
    return /^[0:]*:0*1$/.test(host) && host.includes(':');
  }
  host = authority.replace(/:\d{1,5}$/, '').toLowerCase();
  if (host === 'localhost' || host === 'localhost.') return true;
  const parts = host.split('.');
  return (
    parts.length === 4 &&
    parts[0] === '127' &&
    parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)
  );
}

function isApiError(v: unknown): v is ApiError {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return typeof o['code'] === 'string' && typeof o['message'] === 'string';
}

function isJoinCode(code: string): code is JoinErrorCode {
  return (JOIN_ERROR_CODES as readonly string[]).includes(code);
}

/**
 * Maps a non-2xx answer to an error (as the Rust SDK does):
 * - an error body with a join code (APP_NOT_FOUND, ..., NO_EDGE_AVAILABLE, BAD_REQUEST) → that code;
 * - any other error body (UNAUTHORIZED, INTERNAL, ...) or no error body → UNEXPECTED_ANSWER.
 * `details` keep the status, the server's code and its `retryable` flag.
 */
export function errorFromAnswer(status: number, bodyText: string, url: string): CloudProxyError {
  let body: unknown;
  try {
    body = JSON.parse(bodyText);
  } catch {
    body = undefined;
  }
  if (isApiError(body)) {
    const details = {
      status,
      serverCode: body.code,
      url,
      ...(typeof body.retryable === 'boolean' ? { retryable: body.retryable } : {}),
    };
    if (isJoinCode(body.code)) return new CloudProxyError(body.code, body.message, details);
    return new CloudProxyError('UNEXPECTED_ANSWER', `control plane answered HTTP ${status} ${body.code}: ${body.message}`, details);
  }
  const snippet = bodyText.length > 200 ? `${bodyText.slice(0, 200)}...` : bodyText;
  return new CloudProxyError('UNEXPECTED_ANSWER', `${url} answered HTTP ${status} without an error body${snippet ? `: ${snippet}` : ''}`, {
    status,
    url,
  });
}

/**
 * Checks a 2xx answer's shape (it crosses the network; never trust it blindly). Returns the
 * answer, or throws UNEXPECTED_ANSWER; an empty edge list is NO_EDGE_AVAILABLE.
 */
export function parseProxyAnswer(bodyText: string, transport: Transport, url: string): ProxyResponse {
  let v: unknown;
  try {
    v = JSON.parse(bodyText);
  } catch (cause) {
    throw new CloudProxyError('UNEXPECTED_ANSWER', 'proxy-info answer is not JSON', { url, cause });
  }
  const bad = (what: string) => new CloudProxyError('UNEXPECTED_ANSWER', `malformed proxy-info answer: ${what}`, { url });
  if (typeof v !== 'object' || v === null) throw bad('not an object');
  const a = v as Record<string, unknown>;
  if (typeof a['session'] !== 'string') throw bad('session');
  if (typeof a['ticket'] !== 'string') throw bad('ticket');
  if (a['mode'] !== transport) throw bad(`mode ${JSON.stringify(a['mode'])}, asked for ${JSON.stringify(transport)}`);
  if (!Array.isArray(a['edges'])) throw bad('edges');
  for (const [i, e] of (a['edges'] as unknown[]).entries()) {
    if (typeof e !== 'object' || e === null) throw bad(`edges[${i}]`);
    const edge = e as Record<string, unknown>;
    if (typeof edge['id'] !== 'string' || typeof edge['address'] !== 'string') throw bad(`edges[${i}].id/address`);
    if (!Array.isArray(edge['ice_servers']) || edge['ice_servers'].length === 0) throw bad(`edges[${i}].ice_servers`);
    for (const s of edge['ice_servers'] as unknown[]) {
      const ok =
        typeof s === 'object' &&
        s !== null &&
        Array.isArray((s as IceServer).urls) &&
        (s as IceServer).urls.every((u) => typeof u === 'string') &&
        typeof (s as IceServer).username === 'string' &&
        typeof (s as IceServer).credential === 'string';
      if (!ok) throw bad(`edges[${i}].ice_servers`);
    }
  }
  if ((a['edges'] as unknown[]).length === 0) {
    throw new CloudProxyError('NO_EDGE_AVAILABLE', 'the control plane offered no edge', { url });
  }
  return v as ProxyResponse;
}

export interface ControlOptions {
  controlUrl: string;
  fetch: FetchLike;
  timeoutMs: number;
  /** Aborts the request (leave() during join). */
  signal?: AbortSignal | undefined;
}

/** `POST /v1/proxy`: returns the answer or throws a `CloudProxyError`. */
export async function requestProxyInfo(opts: ControlOptions, body: ProxyRequest): Promise<ProxyResponse> {
  const url = `${opts.controlUrl}/v1/proxy`;
  const { status, ok, text } = await send(opts, url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(body),
  });
  if (!ok) throw errorFromAnswer(status, text, url);
  return parseProxyAnswer(text, body.mode, url);
}

/** `DELETE /v1/proxy/{session}`: frees the session's quota slot. Never throws. */
export async function releaseSession(opts: ControlOptions, session: string): Promise<boolean> {
  const url = `${opts.controlUrl}/v1/proxy/${encodeURIComponent(session)}`;
  try {
    const { ok } = await send(opts, url, { method: 'DELETE', headers: { accept: 'application/json' } });
    return ok;
  } catch {
    return false;
  }
}

async function send(
  opts: ControlOptions,
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string },
): Promise<{ status: number; ok: boolean; text: string }> {
  if (opts.signal?.aborted) throw aborted();
  const ctl = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ctl.abort();
  }, opts.timeoutMs);
  const onAbort = () => ctl.abort();
  opts.signal?.addEventListener('abort', onAbort);
  try {
    const res = await opts.fetch(url, { ...init, signal: ctl.signal });
    const text = await res.text();
    return { status: res.status, ok: res.ok, text };
  } catch (cause) {
    if (opts.signal?.aborted) throw aborted();
    const why = timedOut ? `no answer within ${opts.timeoutMs} ms` : String(cause instanceof Error ? cause.message : cause);
    throw new CloudProxyError('CONTROL_PLANE_UNREACHABLE', `could not reach ${url}: ${why}`, {
      url,
      retryable: true,
      cause,
    });
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

/** What a join rejects with when leave() cancelled it. */
export function aborted(): CloudProxyError {
  return new CloudProxyError('INVALID_OPERATION', JOIN_CANCELLED);
}
