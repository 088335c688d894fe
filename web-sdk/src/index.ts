/**
 * cloudproxy web SDK: join RTC channels through a firewall-friendly cloud proxy.
 *
 * ```ts
 * import { createClient } from './cloudproxy-sdk.js';
 * const client = createClient({ controlUrl: 'https://proxy.example.com' });
 * client.on('is-using-cloud-proxy', (e) => console.log(e.using, e.transport));
 * client.startProxyServer(5);                 // TLS 443 only
 * await client.join(appId, channel, token, uid);
 * const pc = client.createPeerConnection();   // relay-only through the chosen edge
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
  type RemoteTrackEvent,
  type Route,
  type UsingCloudProxyEvent,
} from './client.js';
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
  type EdgeOffer,
  type FetchLike,
  type IceServer,
  type ProxyRequest,
  type ProxyResponse,
} from './control.js';
export { describeAttempt, relayConfiguration, type PeerConnectionCtor } from './probe.js';
export type { components, paths } from './api.gen.js';
