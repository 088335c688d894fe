/**
 * The SDK's one error type. Apps switch on `code`, never on `message`.
 *
 * No DOM use: shared by the pure rules and the browser client.
 */

import type { components } from './api.gen.js';

/** Error codes the control plane returns (generated from its OpenAPI document). */
export type ControlPlaneCode = components['schemas']['ErrorCode'];

/**
 * Join-time codes that mirror the control plane's codes one to one (ARCHITECTURE §9), as the
 * Rust SDK's `JoinError` variants do. An answer with one of these codes becomes a
 * `CloudProxyError` with the same code.
 */
export const JOIN_ERROR_CODES = [
  'APP_NOT_FOUND',
  'PROXY_NOT_ENABLED',
  'MODE_NOT_ENABLED',
  'INVALID_TOKEN',
  'TOKEN_EXPIRED',
  'AREA_FORBIDDEN',
  'QUOTA_EXCEEDED',
  'NO_EDGE_AVAILABLE',
  'BAD_REQUEST',
] as const satisfies readonly ControlPlaneCode[];

export type JoinErrorCode = (typeof JOIN_ERROR_CODES)[number];

/** Every code a `CloudProxyError` can carry. */
export type CloudProxyErrorCode =
  /** A bad argument (mode 0/6/7, an empty channel, a malformed TURN URL, ...). */
  | 'INVALID_PARAMETER'
  /** Modes 1 and 2 of the product this replaces: refused. */
  | 'NOT_SUPPORTED'
  /**
   * The call is not allowed in the current state: proxy calls after join, "proxy already set",
   * a second join, and a join that leave() cancelled ("join cancelled by leave").
   */
  | 'INVALID_OPERATION'
  | JoinErrorCode
  /** The proxy-info request did not get an HTTP answer (network error or timeout). */
  | 'CONTROL_PLANE_UNREACHABLE'
  /** The control plane answered something else: another code, a body that is not JSON, a malformed answer. */
  | 'UNEXPECTED_ANSWER'
  /** No offered edge produced a relay candidate; `details.tried` lists what was tried. */
  | 'EDGE_UNREACHABLE'
  /**
   * The media network's signalling gateway could not be reached: the WebSocket did not open,
   * closed before the gateway's `joined`, or no answer came within `signalTimeoutMs`. What a
   * firewalled direct join reports. `details.url` is the WebSocket URL (ticket redacted).
   */
  | 'SIGNAL_UNREACHABLE'
  /**
   * The signalling gateway answered `join` with an `error`: `details.signalCode` is the media
   * network's code (`INVALID_TOKEN`, `TOKEN_EXPIRED`, `UID_IN_USE`, `UNKNOWN_APP`, ...).
   */
  | 'SIGNAL_REFUSED'
  /** `subscribe(uid, mediaType)`: that user's track did not arrive within `subscribeTimeoutMs`. */
  | 'SUBSCRIBE_TIMEOUT';

/** One edge the SDK tried during failover, and why it was given up. */
export interface EdgeAttempt {
  /** Edge id from the proxy-info answer. */
  id: string;
  /** The mode's transport: `udp`, `tcp` or `tls`. */
  transport: string;
  /** Public address of the edge. */
  address: string;
  /** The ICE server URLs that were tried. */
  urls: string[];
  /** Why it was given up: `timeout`, `no relay candidate`, or the browser's ICE error text. */
  reason: string;
}

export interface CloudProxyErrorDetails {
  /** HTTP status of the control plane's answer, when there was one. */
  status?: number;
  /** The code in the control plane's error body, when there was one. */
  serverCode?: string;
  /** The control plane's `retryable` flag. */
  retryable?: boolean;
  /** The URL that was requested (CONTROL_PLANE_UNREACHABLE / UNEXPECTED_ANSWER). */
  url?: string;
  /** Edges tried, in order (EDGE_UNREACHABLE). */
  tried?: EdgeAttempt[];
  /** The media network's error code (SIGNAL_REFUSED): `INVALID_TOKEN`, `UID_IN_USE`, ... */
  signalCode?: string;
  /** How long the failed step took, ms (SIGNAL_UNREACHABLE). */
  elapsedMs?: number;
  /** The underlying error, if any. */
  cause?: unknown;
}

export class CloudProxyError extends Error {
  override readonly name = 'CloudProxyError';
  readonly code: CloudProxyErrorCode;
  readonly details: CloudProxyErrorDetails;

  constructor(code: CloudProxyErrorCode, message: string, details: CloudProxyErrorDetails = {}) {
    super(`${code}: ${message}`);
    this.code = code;
    this.details = details;
  }

  /**
   * Whether the same join may succeed later without changes (as in the Rust SDK): quota
   * exceeded, no edge available, control plane or edges unreachable. The control plane's own
   * flag, when it sent one, is in `details.retryable`.
   */
  get retryable(): boolean {
    return RETRYABLE.includes(this.code);
  }
}

const RETRYABLE: readonly CloudProxyErrorCode[] = [
  'QUOTA_EXCEEDED',
  'NO_EDGE_AVAILABLE',
  'CONTROL_PLANE_UNREACHABLE',
  'EDGE_UNREACHABLE',
  'SIGNAL_UNREACHABLE',
];

export function isCloudProxyError(e: unknown): e is CloudProxyError {
  return e instanceof CloudProxyError;
}
