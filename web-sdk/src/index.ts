/**
 * cloudproxy web SDK: join RTC channels through a firewall-friendly cloud proxy.
 *
 * ```ts
 * import { createClient } from './cloudproxy-sdk.js';
 * const client = createClient({ controlUrl: 'https://proxy.example.com' });
 * client.on('is-using-cloud-proxy', (e) => console.log(e.using, e.transport, e.relayProtocol));
 * client.on('user-published', ({ uid, mediaType, track }) => show(uid, mediaType, track));
 * client.startProxyServer(5);                 // TLS 443 only
 * await client.join(appId, channel, token, uid);
 * const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
 * await client.publish(media.getTracks());
 * ```
 */

export {
  configurationFor,
  createClient,
  CloudProxyClient,
  type ClientConfig,
  type ClientEvents,
  type CloudProxySession,
  type ConnectionStateChangeEvent,
  type JoinInfo,
  type Route,
  type UsingCloudProxyEvent,
  signalUrlFor,
} from './client.js';
export {
  msidToken,
  stoppedMids,
  type MediaStateEvent,
  type MediaStats,
  type MediaType,
  type RemoteTrackEvent,
  type RemoteUser,
  type UserEvent,
} from './media.js';
export {
  cloudSignalUrl,
  parseRtnSignalUrl,
  parseServerMessage,
  redactUrl,
  selfHostedSignalUrl,
  type ClientMessage,
  type CloudSignalTarget,
  type RtnSignalUrl,
  type ServerMessage,
  type WebSocketCtor,
} from './signal.js';
export {
  CloudProxyError,
  isCloudProxyError,
  JOIN_ERROR_CODES,
  type CloudProxyErrorCode,
  type CloudProxyErrorDetails,
  type ControlPlaneCode,
  type EdgeAttempt,
  type JoinErrorCode,
} from './errors.js';
export {
  ALREADY_JOINED,
  DEFAULT_MODE,
  JOIN_CANCELLED,
  JOIN_IN_PROGRESS,
  LEAVE_IN_PROGRESS,
  MODE_TRANSPORT,
  modeToTransport,
  parseMode,
  PROXY_ALREADY_SET,
  ProxyRules,
  SET_PROXY_BEFORE_JOIN,
  SET_TURN_BEFORE_JOIN,
  START_BEFORE_JOIN,
  STOP_BEFORE_JOIN,
  turnIceServer,
  type ConnectionState,
  type JoinAttempt,
  type LeaveAction,
  type ProxyMode,
  type ProxyServerConfig,
  type ProxySetting,
  type Transport,
  type TurnServerConfig,
} from './rules.js';
export {
  buildProxyRequest,
  errorFromAnswer,
  isLoopbackAuthority,
  type EdgeOffer,
  type FetchLike,
  type IceServer,
  type ProxyRequest,
  type ProxyResponse,
} from './control.js';
export { describeAttempt, relayConfiguration, type PeerConnectionCtor } from './probe.js';
export type { components, paths } from './api.gen.js';
