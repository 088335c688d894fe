// src/errors.ts
var JOIN_ERROR_CODES = [
  "APP_NOT_FOUND",
  "PROXY_NOT_ENABLED",
  "MODE_NOT_ENABLED",
  "INVALID_TOKEN",
  "TOKEN_EXPIRED",
  "AREA_FORBIDDEN",
  "QUOTA_EXCEEDED",
  "NO_EDGE_AVAILABLE",
  "BAD_REQUEST"
];
var CloudProxyError = class extends Error {
  name = "CloudProxyError";
  code;
  details;
  constructor(code, message2, details = {}) {
    super(`${code}: ${message2}`);
    this.code = code;
    this.details = details;
  }
  /**
   * Whether the same join may succeed later without changes (as in the Rust SDK): quota
   * exceeded, no edge available, control plane or edges unreachable. The control plane's own
   * flag, when it sent one, is in `details.retryable`.
   */
  get retryable() {
    return RETRYABLE.includes(this.code);
  }
};
var RETRYABLE = [
  "QUOTA_EXCEEDED",
  "NO_EDGE_AVAILABLE",
  "CONTROL_PLANE_UNREACHABLE",
  "EDGE_UNREACHABLE",
  "SIGNAL_UNREACHABLE"
];
function isCloudProxyError(e) {
  return e instanceof CloudProxyError;
}

// src/rules.ts
var DEFAULT_MODE = 3;
var MODE_TRANSPORT = Object.freeze({
  3: "udp",
  4: "tcp",
  5: "tls"
});
var UNSUPPORTED_MODES = Object.freeze([1, 2]);
var START_BEFORE_JOIN = "start proxy server before join";
var STOP_BEFORE_JOIN = "stop proxy server before join";
var SET_PROXY_BEFORE_JOIN = "set proxy server before join";
var SET_TURN_BEFORE_JOIN = "set turn server before join";
var PROXY_ALREADY_SET = "proxy already set";
var JOIN_IN_PROGRESS = "join already in progress";
var ALREADY_JOINED = "already joined";
var LEAVE_IN_PROGRESS = "leave in progress";
var JOIN_CANCELLED = "join cancelled by leave";
function parseMode(mode) {
  if (mode === void 0) return DEFAULT_MODE;
  if (typeof mode === "number" && UNSUPPORTED_MODES.includes(mode)) {
    throw new CloudProxyError(
      "NOT_SUPPORTED",
      `proxy mode ${mode} is not supported (use 3 = UDP, 4 = TCP, 5 = TLS 443)`
    );
  }
  if (mode === 3 || mode === 4 || mode === 5) return mode;
  throw new CloudProxyError(
    "INVALID_PARAMETER",
    `proxy mode ${describe(mode)} is not a mode (3 = UDP, 4 = TCP, 5 = TLS 443)`
  );
}
function modeToTransport(mode) {
  return MODE_TRANSPORT[mode];
}
var OFF = Object.freeze({ kind: "off" });
var ProxyRules = class {
  #state = "DISCONNECTED";
  #setting = OFF;
  #attempt = 0;
  get connectionState() {
    return this.#state;
  }
  /** The proxy the next join will use. */
  get proxy() {
    return this.#setting;
  }
  /** Turns the cloud proxy on (mode 3 when omitted). A second call before join replaces the mode. */
  startProxyServer(mode) {
    this.#disconnected(START_BEFORE_JOIN);
    const m = parseMode(mode);
    if (this.#setting.kind === "self-hosted") throw invalidOperation(PROXY_ALREADY_SET);
    this.#setting = Object.freeze({ kind: "cloud", mode: m, transport: modeToTransport(m) });
    return m;
  }
  /** Turns every proxy off: the cloud proxy and any self-deployed proxy or TURN server. */
  stopProxyServer() {
    this.#disconnected(STOP_BEFORE_JOIN);
    this.#setting = OFF;
  }
  /** Sets a self-deployed signalling proxy (replaces a previous one). */
  setProxyServer(cfg) {
    this.#disconnected(SET_PROXY_BEFORE_JOIN);
    const proxy = parseProxyServer(cfg);
    if (this.#setting.kind === "cloud") throw invalidOperation(PROXY_ALREADY_SET);
    const turn = this.#setting.kind === "self-hosted" ? this.#setting.turn : null;
    this.#setting = Object.freeze({ kind: "self-hosted", proxy, turn });
    return proxy;
  }
  /** Sets a self-deployed TURN server (replaces a previous one). */
  setTurnServer(cfg) {
    this.#disconnected(SET_TURN_BEFORE_JOIN);
    const turn = parseTurnServer(cfg);
    if (this.#setting.kind === "cloud") throw invalidOperation(PROXY_ALREADY_SET);
    const proxy = this.#setting.kind === "self-hosted" ? this.#setting.proxy : null;
    this.#setting = Object.freeze({ kind: "self-hosted", proxy, turn });
    return turn;
  }
  /** Throws INVALID_OPERATION unless a join may start now. Changes nothing. */
  assertCanJoin() {
    switch (this.#state) {
      case "DISCONNECTED":
        return;
      case "CONNECTING":
        throw invalidOperation(JOIN_IN_PROGRESS);
      case "CONNECTED":
        throw invalidOperation(ALREADY_JOINED);
      case "DISCONNECTING":
        throw invalidOperation(LEAVE_IN_PROGRESS);
    }
  }
  /** DISCONNECTED → CONNECTING; the attempt carries a snapshot of the setting. */
  beginJoin() {
    this.assertCanJoin();
    this.#attempt += 1;
    return { id: this.#attempt, setting: this.#setting, change: this.#to("CONNECTING") };
  }
  /**
   * A join ended (`ok`: it succeeded): CONNECTING → CONNECTED or DISCONNECTED. Returns `null`,
   * changing nothing, when the attempt is no longer current (a leave cancelled it): its result
   * must be discarded.
   */
  finishJoin(id, ok) {
    if (this.#state !== "CONNECTING" || id !== this.#attempt) return null;
    return this.#to(ok ? "CONNECTED" : "DISCONNECTED");
  }
  /** A leave starts. See {@link LeaveAction}. */
  beginLeave() {
    switch (this.#state) {
      case "DISCONNECTED":
        return { action: "not-joined" };
      case "CONNECTING":
        return { action: "cancel-join", change: this.#to("DISCONNECTED") };
      case "CONNECTED":
        return { action: "leave", change: this.#to("DISCONNECTING") };
      case "DISCONNECTING":
        return { action: "already-leaving" };
    }
  }
  /** The leave that beginLeave answered `leave` is done: DISCONNECTING → DISCONNECTED. */
  finishLeave() {
    if (this.#state !== "DISCONNECTING") return null;
    return this.#to("DISCONNECTED");
  }
  /** Throws INVALID_OPERATION unless CONNECTED (publish, subscribe, rtcConfiguration). */
  requireConnected(what) {
    if (this.#state !== "CONNECTED") {
      throw invalidOperation(`${what} needs a joined channel (state ${this.#state})`);
    }
  }
  #disconnected(refusal) {
    if (this.#state !== "DISCONNECTED") throw invalidOperation(refusal);
  }
  #to(current) {
    const previous = this.#state;
    this.#state = current;
    return { previous, current };
  }
};
function invalidOperation(message2) {
  return new CloudProxyError("INVALID_OPERATION", message2);
}
var HOST = /^[A-Za-z0-9\-.:_]{1,253}$/;
function checkHost(host, what) {
  if (typeof host !== "string" || !HOST.test(host)) {
    throw new CloudProxyError("INVALID_PARAMETER", `${what} must be a host name or IP address, not ${describe(host)}`);
  }
  return host;
}
function checkPort(port, what) {
  if (port === 0) throw new CloudProxyError("INVALID_PARAMETER", `${what} 0 is not a port`);
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new CloudProxyError("INVALID_PARAMETER", `${what} must be a port (1-65535), not ${describe(port)}`);
  }
  return port;
}
function parseProxyServer(cfg) {
  if (!isRecord(cfg)) {
    throw new CloudProxyError("INVALID_PARAMETER", "setProxyServer needs { address, signalPort?, tlsPort? }");
  }
  const address = checkHost(cfg["address"], "proxy server address");
  const out = { address };
  if (cfg["signalPort"] !== void 0) out.signalPort = checkPort(cfg["signalPort"], "proxy server port");
  if (cfg["tlsPort"] !== void 0) out.tlsPort = checkPort(cfg["tlsPort"], "proxy server port");
  if (out.signalPort === void 0 && out.tlsPort === void 0) {
    throw new CloudProxyError("INVALID_PARAMETER", "proxy server needs a signalPort or a tlsPort");
  }
  return Object.freeze(out);
}
function parseTurnServer(cfg) {
  if (!isRecord(cfg)) {
    throw new CloudProxyError("INVALID_PARAMETER", "setTurnServer needs { host, port, username, password, transport }");
  }
  const host = checkHost(cfg["host"], "turn server host");
  const port = checkPort(cfg["port"], "turn server port");
  const { username, password, transport } = cfg;
  if (typeof username !== "string" || username === "" || typeof password !== "string" || password === "") {
    throw new CloudProxyError("INVALID_PARAMETER", "turn server needs a username and a password");
  }
  if (transport !== "udp" && transport !== "tcp" && transport !== "tls") {
    throw new CloudProxyError("INVALID_PARAMETER", `turn server transport must be udp, tcp or tls, not ${describe(transport)}`);
  }
  return Object.freeze({ host, port, username, password, transport });
}
function turnIceServer(t) {
  const host = t.host.includes(":") ? `[${t.host}]` : t.host;
  const url = t.transport === "tls" ? `turns:${host}:${t.port}?transport=tcp` : `turn:${host}:${t.port}?transport=${t.transport}`;
  return { urls: [url], username: t.username, credential: t.password };
}
function parseJoinArgs(appId, channel, token, uid) {
  if (typeof appId !== "string" || appId === "") {
    throw new CloudProxyError("INVALID_PARAMETER", `app_id is empty or not a string (${describe(appId)})`);
  }
  if (typeof channel !== "string" || channel === "") {
    throw new CloudProxyError("INVALID_PARAMETER", `channel is empty or not a string (${describe(channel)})`);
  }
  if (typeof token !== "string") {
    throw new CloudProxyError("INVALID_PARAMETER", `token must be a string, not ${describe(token)}`);
  }
  let id;
  if (typeof uid === "number" && Number.isSafeInteger(uid) && uid >= 0) id = String(uid);
  else if (typeof uid === "string" && uid !== "") id = uid;
  else {
    throw new CloudProxyError(
      "INVALID_PARAMETER",
      `uid must be a non-empty string or a non-negative integer, not ${describe(uid)}`
    );
  }
  return { appId, channel, token, uid: id };
}
function isRecord(v) {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
function describe(v) {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean" || v === null || v === void 0) return String(v);
  return typeof v;
}

// src/control.ts
function buildProxyRequest(args, transport, hints = {}) {
  const body = {
    app_id: args.appId,
    channel: args.channel,
    uid: args.uid,
    mode: transport,
    token: args.token
  };
  if (hints.area !== void 0) body.area = hints.area;
  if (hints.isp !== void 0) body.isp = hints.isp;
  return body;
}
function normalizeControlUrl(url) {
  const m = typeof url === "string" ? /^(https?):\/\/([^\s/?#]+)(\/[^\s?#]*)?$/i.exec(url) : null;
  if (!m) {
    throw new CloudProxyError(
      "INVALID_PARAMETER",
      `controlUrl must be an https:// URL, got ${typeof url === "string" ? JSON.stringify(url) : typeof url}`
    );
  }
  if (m[1].toLowerCase() === "http" && !isLoopbackAuthority(m[2])) {
    throw new CloudProxyError(
      "INVALID_PARAMETER",
      `controlUrl must be https:// (http:// only for localhost, 127.0.0.0/8 or [::1]), got ${JSON.stringify(url)}`
    );
  }
  return url.replace(/\/+$/, "");
}
function isLoopbackAuthority(authority) {
  if (authority.includes("@")) return false;
  let host;
  if (authority.startsWith("[")) {
    const end = authority.indexOf("]");
    if (end < 0) return false;
    host = authority.slice(1, end);
    return /^[0:]*:0*1$/.test(host) && host.includes(":");
  }
  host = authority.replace(/:\d{1,5}$/, "").toLowerCase();
  if (host === "localhost" || host === "localhost.") return true;
  const parts = host.split(".");
  return parts.length === 4 && parts[0] === "127" && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}
function isApiError(v) {
  if (typeof v !== "object" || v === null) return false;
  const o = v;
  return typeof o["code"] === "string" && typeof o["message"] === "string";
}
function isJoinCode(code) {
  return JOIN_ERROR_CODES.includes(code);
}
function errorFromAnswer(status, bodyText, url) {
  let body;
  try {
    body = JSON.parse(bodyText);
  } catch {
    body = void 0;
  }
  if (isApiError(body)) {
    const details = {
      status,
      serverCode: body.code,
      url,
      ...typeof body.retryable === "boolean" ? { retryable: body.retryable } : {}
    };
    if (isJoinCode(body.code)) return new CloudProxyError(body.code, body.message, details);
    return new CloudProxyError("UNEXPECTED_ANSWER", `control plane answered HTTP ${status} ${body.code}: ${body.message}`, details);
  }
  const snippet = bodyText.length > 200 ? `${bodyText.slice(0, 200)}...` : bodyText;
  return new CloudProxyError("UNEXPECTED_ANSWER", `${url} answered HTTP ${status} without an error body${snippet ? `: ${snippet}` : ""}`, {
    status,
    url
  });
}
function parseProxyAnswer(bodyText, transport, url) {
  let v;
  try {
    v = JSON.parse(bodyText);
  } catch (cause) {
    throw new CloudProxyError("UNEXPECTED_ANSWER", "proxy-info answer is not JSON", { url, cause });
  }
  const bad = (what) => new CloudProxyError("UNEXPECTED_ANSWER", `malformed proxy-info answer: ${what}`, { url });
  if (typeof v !== "object" || v === null) throw bad("not an object");
  const a = v;
  if (typeof a["session"] !== "string") throw bad("session");
  if (typeof a["ticket"] !== "string") throw bad("ticket");
  if (a["mode"] !== transport) throw bad(`mode ${JSON.stringify(a["mode"])}, asked for ${JSON.stringify(transport)}`);
  if (!Array.isArray(a["edges"])) throw bad("edges");
  for (const [i, e] of a["edges"].entries()) {
    if (typeof e !== "object" || e === null) throw bad(`edges[${i}]`);
    const edge = e;
    if (typeof edge["id"] !== "string" || typeof edge["address"] !== "string") throw bad(`edges[${i}].id/address`);
    if (!Array.isArray(edge["ice_servers"]) || edge["ice_servers"].length === 0) throw bad(`edges[${i}].ice_servers`);
    for (const s of edge["ice_servers"]) {
      const ok = typeof s === "object" && s !== null && Array.isArray(s.urls) && s.urls.every((u) => typeof u === "string") && typeof s.username === "string" && typeof s.credential === "string";
      if (!ok) throw bad(`edges[${i}].ice_servers`);
    }
  }
  if (a["edges"].length === 0) {
    throw new CloudProxyError("NO_EDGE_AVAILABLE", "the control plane offered no edge", { url });
  }
  return v;
}
async function requestProxyInfo(opts, body) {
  const url = `${opts.controlUrl}/v1/proxy`;
  const { status, ok, text } = await send(opts, url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify(body)
  });
  if (!ok) throw errorFromAnswer(status, text, url);
  return parseProxyAnswer(text, body.mode, url);
}
async function releaseSession(opts, session) {
  const url = `${opts.controlUrl}/v1/proxy/${encodeURIComponent(session)}`;
  try {
    const { ok } = await send(opts, url, { method: "DELETE", headers: { accept: "application/json" } });
    return ok;
  } catch {
    return false;
  }
}
async function send(opts, url, init) {
  if (opts.signal?.aborted) throw aborted();
  const ctl = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ctl.abort();
  }, opts.timeoutMs);
  const onAbort = () => ctl.abort();
  opts.signal?.addEventListener("abort", onAbort);
  try {
    const res = await opts.fetch(url, { ...init, signal: ctl.signal });
    const text = await res.text();
    return { status: res.status, ok: res.ok, text };
  } catch (cause) {
    if (opts.signal?.aborted) throw aborted();
    const why = timedOut ? `no answer within ${opts.timeoutMs} ms` : String(cause instanceof Error ? cause.message : cause);
    throw new CloudProxyError("CONTROL_PLANE_UNREACHABLE", `could not reach ${url}: ${why}`, {
      url,
      retryable: true,
      cause
    });
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
  }
}
function aborted() {
  return new CloudProxyError("INVALID_OPERATION", JOIN_CANCELLED);
}

// src/events.ts
var Emitter = class {
  #handlers = /* @__PURE__ */ new Map();
  on(event, handler) {
    let set = this.#handlers.get(event);
    if (!set) {
      set = /* @__PURE__ */ new Set();
      this.#handlers.set(event, set);
    }
    set.add(handler);
  }
  off(event, handler) {
    this.#handlers.get(event)?.delete(handler);
  }
  /** Calls every handler; a throwing handler is reported and does not stop the others. */
  emit(event, payload) {
    for (const h of [...this.#handlers.get(event) ?? []]) {
      try {
        h(payload);
      } catch (e) {
        console.error(`cloudproxy: a "${String(event)}" handler threw`, e);
      }
    }
  }
};

// src/media.ts
function msidToken(uid) {
  return uid.replace(/[^A-Za-z0-9!#$%&'*+\-.^_`{|}~]/g, "");
}
function stoppedMids(sdp) {
  const out = /* @__PURE__ */ new Set();
  const sections = sdp.split(/\r?\n(?=m=)/).slice(1);
  for (const sec of sections) {
    const port = /^m=\S+ (\d+)/.exec(sec)?.[1];
    const mid = /\r?\na=mid:(\S+)/.exec(sec)?.[1];
    if (port === "0" && mid !== void 0) out.add(mid);
  }
  return out;
}
var MediaSession = class {
  pc;
  uid;
  #conn;
  #emit;
  #members = /* @__PURE__ */ new Set();
  #remotes = [];
  #local = /* @__PURE__ */ new Map();
  #localStream;
  #chain = Promise.resolve();
  /** Callers waiting for an offer that includes their change. */
  #wanted = [];
  /** The callers of the outstanding offer, or null when none is outstanding. */
  #inflight = null;
  #trackWaiters = [];
  #closed = false;
  #lastState = null;
  constructor(o) {
    this.pc = o.pc;
    this.uid = o.uid;
    this.#conn = o.conn;
    this.#emit = o.emit;
    for (const m of o.members) this.#members.add(m);
    this.pc.addEventListener("track", (ev) => this.#onTrack(ev));
    this.pc.addEventListener("connectionstatechange", () => {
      const state = this.pc.connectionState;
      if (this.#closed || state === this.#lastState) return;
      this.#lastState = state;
      this.#emit("media-state-change", { state });
    });
    o.conn.onClose((why) => {
      if (this.#closed) return;
      o.onSignalLost(why);
    });
  }
  /**
   * Starts handling the gateway's messages (those that arrived since `joined` first). Separate
   * from the constructor so the client reports CONNECTED and the members known at join first.
   */
  listen() {
    this.#conn.onMessage((m) => this.#handle(m));
  }
  /** The other members of the channel. */
  members() {
    return [...this.#members].sort();
  }
  /** Remote users and their tracks (members without tracks included). */
  remoteUsers() {
    const uids = /* @__PURE__ */ new Set([...this.#members, ...this.#remotes.map((r) => r.uid)]);
    return [...uids].sort().map((uid) => ({
      uid,
      audioTrack: this.#latest(uid, "audio")?.track ?? null,
      videoTrack: this.#latest(uid, "video")?.track ?? null
    }));
  }
  /**
   * The newest track of `uid` and `mediaType`. A publisher that stops a track and publishes a
   * new one may leave the old one in place (the stand-in SFU stops forwarded tracks only when
   * their publisher leaves), so the newest is the live one.
   */
  #latest(uid, mediaType) {
    for (let i = this.#remotes.length - 1; i >= 0; i--) {
      const r = this.#remotes[i];
      if (r.uid === uid && r.mediaType === mediaType) return r;
    }
    return void 0;
  }
  /** The first offer (rule 1): a data channel, so there is an m-line before anything is published. */
  start() {
    this.pc.createDataChannel("cloudproxy");
    return this.#negotiate();
  }
  /** Adds a sendonly transceiver per new track and renegotiates; resolves when the answer is applied. */
  async publish(tracks) {
    this.#assertOpen();
    const stream = this.#stream();
    let added = 0;
    for (const track of tracks) {
      if (this.#local.has(track)) continue;
      const init = { direction: "sendonly" };
      if (stream) {
        init.streams = [stream];
        stream.addTrack(track);
      }
      this.#local.set(track, this.pc.addTransceiver(track, init));
      added += 1;
    }
    if (added) await this.#negotiate();
  }
  /** Stops the transceivers of `tracks` (all published tracks when omitted) and renegotiates. */
  async unpublish(tracks) {
    this.#assertOpen();
    const which = tracks ?? [...this.#local.keys()];
    let removed = 0;
    for (const track of which) {
      const tr = this.#local.get(track);
      if (!tr) continue;
      this.#local.delete(track);
      this.#localStream?.removeTrack(track);
      try {
        if (typeof tr.stop === "function") tr.stop();
        else this.pc.removeTrack(tr.sender);
      } catch {
      }
      removed += 1;
    }
    if (removed) await this.#negotiate();
  }
  /** Published local tracks. */
  localTracks() {
    return [...this.#local.keys()];
  }
  /** `uid`'s track of `mediaType`: at once if it arrived, else the first that does within `timeoutMs`. */
  subscribe(uid, mediaType, timeoutMs) {
    this.#assertOpen();
    const have = this.#latest(uid, mediaType);
    if (have) return Promise.resolve(have.track);
    return new Promise((resolve, reject) => {
      const w = {
        uid,
        mediaType,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#trackWaiters = this.#trackWaiters.filter((x) => x !== w);
          reject(
            new CloudProxyError(
              "SUBSCRIBE_TIMEOUT",
              `no ${mediaType} track from ${uid} within ${timeoutMs} ms${this.#members.has(uid) ? "" : ` (${uid} is not in the channel)`}`
            )
          );
        }, timeoutMs)
      };
      this.#trackWaiters.push(w);
    });
  }
  /** Numbers for the app, the demo and the tests, from `pc.getStats()`. */
  async stats() {
    const out = {
      connectionState: this.pc.connectionState,
      candidateType: null,
      relayProtocol: null,
      local: null,
      remote: null,
      pairBytesSent: 0,
      pairBytesReceived: 0,
      inbound: {},
      outbound: {}
    };
    if (this.#closed) return { ...out, connectionState: "closed" };
    const report = await this.pc.getStats();
    const byId = /* @__PURE__ */ new Map();
    report.forEach((r) => byId.set(r["id"], r));
    let pair;
    byId.forEach((r) => {
      if (!pair && r["type"] === "transport" && typeof r["selectedCandidatePairId"] === "string") {
        pair = byId.get(r["selectedCandidatePairId"]);
      }
    });
    if (!pair) {
      byId.forEach((r) => {
        if (!pair && r["type"] === "candidate-pair" && r["nominated"] === true && r["state"] === "succeeded") pair = r;
      });
    }
    const num = (v) => typeof v === "number" ? v : 0;
    const strOrNull = (v) => typeof v === "string" ? v : null;
    if (pair) {
      const l = byId.get(pair["localCandidateId"]);
      const r = byId.get(pair["remoteCandidateId"]);
      out.pairBytesSent = num(pair["bytesSent"]);
      out.pairBytesReceived = num(pair["bytesReceived"]);
      if (l) {
        out.candidateType = strOrNull(l["candidateType"]);
        out.relayProtocol = out.candidateType === "relay" ? strOrNull(l["relayProtocol"]) : null;
        out.local = {
          address: strOrNull(l["address"]),
          port: typeof l["port"] === "number" ? l["port"] : null,
          protocol: strOrNull(l["protocol"])
        };
      }
      if (r) {
        out.remote = {
          candidateType: strOrNull(r["candidateType"]),
          address: strOrNull(r["address"]),
          port: typeof r["port"] === "number" ? r["port"] : null
        };
      }
    }
    byId.forEach((s) => {
      if (s["type"] === "inbound-rtp") {
        const kind = s["kind"];
        const remote = this.#remotes.find((x) => x.track.id === s["trackIdentifier"]) ?? this.#remotes.find((x) => x.mid !== null && x.mid === s["mid"]);
        if (!remote || kind !== "audio" && kind !== "video") return;
        const entry = out.inbound[remote.uid] ??= {};
        if (kind === "video") {
          const v = entry.video ??= { framesDecoded: 0, bytesReceived: 0 };
          v.framesDecoded += num(s["framesDecoded"]);
          v.bytesReceived += num(s["bytesReceived"]);
          if (typeof s["frameWidth"] === "number") v.frameWidth = s["frameWidth"];
          if (typeof s["frameHeight"] === "number") v.frameHeight = s["frameHeight"];
        } else {
          const a = entry.audio ??= { bytesReceived: 0 };
          a.bytesReceived += num(s["bytesReceived"]);
        }
      } else if (s["type"] === "outbound-rtp") {
        if (s["kind"] === "video") {
          const v = out.outbound.video ??= { framesEncoded: 0, bytesSent: 0 };
          v.framesEncoded += num(s["framesEncoded"]);
          v.bytesSent += num(s["bytesSent"]);
        } else if (s["kind"] === "audio") {
          const a = out.outbound.audio ??= { bytesSent: 0 };
          a.bytesSent += num(s["bytesSent"]);
        }
      }
    });
    return out;
  }
  /** Sends `leave` (when `leave`), closes the socket and the peer connection; rejects waiters. */
  close(leave = true) {
    if (this.#closed) return;
    this.#closed = true;
    this.#conn.close(leave);
    try {
      this.pc.close();
    } catch {
    }
    const gone = new CloudProxyError("INVALID_OPERATION", "left the channel");
    for (const w of [...this.#wanted, ...this.#inflight ?? []]) w.reject(gone);
    this.#wanted = [];
    this.#inflight = null;
    for (const w of this.#trackWaiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(gone);
    }
  }
  #assertOpen() {
    if (this.#closed) throw new CloudProxyError("INVALID_OPERATION", "left the channel");
  }
  #stream() {
    if (this.#localStream === void 0) {
      const MS = globalThis.MediaStream;
      this.#localStream = typeof MS === "function" ? new MS() : null;
    }
    return this.#localStream;
  }
  /** Runs `step` after every earlier step; a failing step does not stop later ones. */
  #enqueue(step) {
    const run = this.#chain.then(() => this.#closed ? void 0 : step());
    this.#chain = run.catch((e) => {
      if (!this.#closed) console.warn("cloudproxy: media negotiation step failed", e);
    });
    return run;
  }
  /** Asks for an offer that includes the current local state; resolves when its answer is applied. */
  #negotiate() {
    const p = new Promise((resolve, reject) => this.#wanted.push({ resolve, reject }));
    void this.#enqueue(() => this.#offer());
    return p;
  }
  async #offer() {
    if (this.#inflight || this.#wanted.length === 0) return;
    const group = this.#wanted.splice(0);
    this.#inflight = group;
    try {
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      this.#conn.send({ type: "offer", sdp: this.pc.localDescription?.sdp ?? offer.sdp ?? "" });
    } catch (e) {
      this.#inflight = null;
      for (const w of group) w.reject(e);
    }
  }
  #handle(m) {
    switch (m.type) {
      case "answer":
        void this.#enqueue(() => this.#onAnswer(m.sdp));
        return;
      case "offer":
        void this.#enqueue(() => this.#onOffer(m.sdp));
        return;
      case "error":
        void this.#enqueue(() => this.#onError(m.code, m.message));
        return;
      case "member-joined":
        if (m.uid === this.uid || this.#members.has(m.uid)) return;
        this.#members.add(m.uid);
        this.#emit("user-joined", { uid: m.uid });
        return;
      case "member-left":
        if (!this.#members.delete(m.uid)) return;
        for (const r of this.#remotes.filter((x) => x.uid === m.uid)) this.#removeRemote(r);
        this.#emit("user-left", { uid: m.uid });
        return;
      case "joined":
      case "left":
        return;
    }
  }
  async #onAnswer(sdp) {
    const group = this.#inflight;
    if (!group) return;
    try {
      await this.pc.setRemoteDescription({ type: "answer", sdp });
      this.#inflight = null;
      for (const w of group) w.resolve();
    } catch (e) {
      this.#inflight = null;
      await this.#rollback();
      for (const w of group) w.reject(e);
    }
    this.#checkRemoved(sdp);
    await this.#offer();
  }
  async #onOffer(sdp) {
    if (this.#inflight) return;
    try {
      await this.pc.setRemoteDescription({ type: "offer", sdp });
      const answer = await this.pc.createAnswer();
      await this.pc.setLocalDescription(answer);
      this.#conn.send({ type: "answer", sdp: this.pc.localDescription?.sdp ?? answer.sdp ?? "" });
    } catch (e) {
      console.warn("cloudproxy: could not apply the server offer; offering anew", e);
      if (this.pc.signalingState === "have-remote-offer") {
        await this.pc.setRemoteDescription({ type: "rollback" }).catch(() => void 0);
      }
      this.#wanted.push({ resolve: () => void 0, reject: () => void 0 });
    }
    this.#checkRemoved(sdp);
    await this.#offer();
  }
  async #onError(code, message2) {
    const group = this.#inflight;
    if (!group) {
      console.warn(`cloudproxy: signalling gateway error ${code}: ${message2}`);
      return;
    }
    this.#inflight = null;
    await this.#rollback();
    const err = new CloudProxyError("SIGNAL_REFUSED", `the signalling gateway refused the offer: ${code}: ${message2}`, {
      signalCode: code
    });
    for (const w of group) w.reject(err);
    await this.#offer();
  }
  async #rollback() {
    if (this.pc.signalingState !== "have-local-offer") return;
    try {
      await this.pc.setLocalDescription({ type: "rollback" });
    } catch {
    }
  }
  #uidOfStream(streamId) {
    if (streamId === void 0) return "";
    if (this.#members.has(streamId)) return streamId;
    for (const m of this.#members) if (msidToken(m) === streamId) return m;
    return streamId;
  }
  #onTrack(ev) {
    if (this.#closed) return;
    const kind = ev.track.kind;
    if (kind !== "audio" && kind !== "video") return;
    const uid = this.#uidOfStream(ev.streams[0]?.id);
    const transceiver = ev.transceiver ?? null;
    this.#remotes = this.#remotes.filter((r) => !(transceiver && r.transceiver === transceiver));
    const remote = { uid, mediaType: kind, track: ev.track, transceiver, mid: transceiver?.mid ?? null };
    this.#remotes.push(remote);
    this.#emit("user-published", { uid, mediaType: kind, track: ev.track });
    for (const w of this.#trackWaiters.filter((x) => x.uid === uid && x.mediaType === kind)) {
      clearTimeout(w.timer);
      w.resolve(ev.track);
    }
    this.#trackWaiters = this.#trackWaiters.filter((x) => !(x.uid === uid && x.mediaType === kind));
  }
  /** After a description is applied: remote tracks whose m-line is stopped are unpublished. */
  #checkRemoved(sdp) {
    const stopped = stoppedMids(sdp);
    const live = typeof this.pc.getTransceivers === "function" ? this.pc.getTransceivers() : null;
    for (const r of [...this.#remotes]) {
      const t = r.transceiver;
      if (r.mid === null && t?.mid) r.mid = t.mid;
      const gone = r.mid !== null && stopped.has(r.mid) || t !== null && (t.stopped === true || t.currentDirection === "stopped" || t.currentDirection === "inactive" || live !== null && !live.includes(t));
      if (gone) this.#removeRemote(r);
    }
  }
  #removeRemote(r) {
    this.#remotes = this.#remotes.filter((x) => x !== r);
    this.#emit("user-unpublished", { uid: r.uid, mediaType: r.mediaType, track: r.track });
  }
};

// src/signal.ts
function parseServerMessage(data) {
  if (typeof data !== "string") return null;
  let v;
  try {
    v = JSON.parse(data);
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null) return null;
  const o = v;
  const str = (k) => typeof o[k] === "string" ? o[k] : null;
  switch (o["type"]) {
    case "joined": {
      const uid = str("uid");
      const members = Array.isArray(o["members"]) ? o["members"].filter((m) => typeof m === "string") : [];
      return uid === null ? null : { type: "joined", uid, members };
    }
    case "left":
      return { type: "left" };
    case "member-joined":
    case "member-left": {
      const uid = str("uid");
      return uid === null ? null : { type: o["type"], uid };
    }
    case "offer":
    case "answer": {
      const sdp = str("sdp");
      return sdp === null ? null : { type: o["type"], sdp };
    }
    case "error":
      return { type: "error", code: str("code") ?? "UNKNOWN", message: str("message") ?? "" };
    default:
      return null;
  }
}
function urlHost(address) {
  return address.includes(":") && !address.startsWith("[") ? `[${address}]` : address;
}
function pageIsHttps() {
  return globalThis.location?.protocol === "https:";
}
function cloudSignalUrl(t) {
  const upstream = t.signalUpstreams?.[0];
  if (typeof upstream !== "string" || upstream === "") {
    throw new CloudProxyError(
      "UNEXPECTED_ANSWER",
      "the proxy-info answer names no signalling upstream (signal_upstreams is empty): cannot reach the media network"
    );
  }
  const signalPort = t.edge.signal_port ?? null;
  const tlsPort = t.edge.tls_port ?? null;
  let scheme;
  let port;
  if (t.transport !== "tls" && !t.pageHttps && signalPort) {
    scheme = "ws";
    port = signalPort;
  } else if (tlsPort) {
    scheme = "wss";
    port = tlsPort;
  } else {
    throw new CloudProxyError(
      "UNEXPECTED_ANSWER",
      `edge ${t.edge.id} has no TLS port for the signalling relay (${t.transport === "tls" ? "mode 5 needs wss" : "an https page needs wss"})`
    );
  }
  const q = `upstream=${encodeURIComponent(upstream)}&ticket=${encodeURIComponent(t.ticket)}&path=/signal`;
  return `${scheme}://${urlHost(t.edge.address)}:${port}/ws?${q}`;
}
function parseRtnSignalUrl(url) {
  const m = typeof url === "string" ? /^(wss?):\/\/([^\s/?#@]+)([^\s#]*)$/i.exec(url) : null;
  if (!m) {
    throw new CloudProxyError(
      "INVALID_PARAMETER",
      `rtnSignalUrl must be a ws:// or wss:// URL (e.g. ws://10.0.0.2:8443/signal), got ${typeof url === "string" ? JSON.stringify(url) : String(url)}`
    );
  }
  const scheme = m[1].toLowerCase();
  let authority = m[2];
  if (!/:\d{1,5}$/.test(authority) || authority.startsWith("[") && authority.endsWith("]")) {
    authority = `${authority}:${scheme === "wss" ? 443 : 80}`;
  }
  const rest = m[3];
  return { url, hostPort: authority, path: rest === "" || rest === "/" ? "/signal" : rest };
}
function selfHostedSignalUrl(proxy, rtn, pageHttps) {
  let scheme;
  let port;
  if (!pageHttps && proxy.signalPort) {
    scheme = "ws";
    port = proxy.signalPort;
  } else if (proxy.tlsPort) {
    scheme = "wss";
    port = proxy.tlsPort;
  } else {
    throw new CloudProxyError(
      "INVALID_PARAMETER",
      "setProxyServer has no tlsPort: an https page cannot open ws:// to the signalling proxy"
    );
  }
  return `${scheme}://${urlHost(proxy.address)}:${port}/ws?upstream=${encodeURIComponent(rtn.hostPort)}&path=${encodeURIComponent(rtn.path)}`;
}
function redactUrl(url) {
  return url.replace(/([?&]ticket=)[^&]*/g, "$1<redacted>");
}
var SignalConnection = class {
  #ws;
  url;
  #handler = null;
  #queue = [];
  #closeHandler = null;
  #closed = false;
  /** Why the socket ended by itself, once it did. */
  #endedWhy = null;
  #keepalive = null;
  /** @internal use {@link connectAndJoin}. */
  constructor(ws, url) {
    this.#ws = ws;
    this.url = url;
    ws.addEventListener("message", (ev) => {
      const m = parseServerMessage(ev.data);
      if (!m) return;
      if (this.#handler) this.#handler(m);
      else this.#queue.push(m);
    });
    ws.addEventListener("close", (ev) => this.#ended(`closed (${ev.code}${ev.reason ? ` ${ev.reason}` : ""})`));
    ws.addEventListener("error", () => this.#ended("error"));
  }
  get closed() {
    return this.#closed;
  }
  /** Sets the message handler and delivers what was queued. */
  onMessage(h) {
    this.#handler = h;
    for (const m of this.#queue.splice(0)) h(m);
  }
  /**
   * Called once when the socket closes or fails (not after {@link close}); at once (in a
   * microtask) if that already happened.
   */
  onClose(h) {
    this.#closeHandler = h;
    const why = this.#endedWhy;
    if (why !== null) queueMicrotask(() => h(why));
  }
  send(m) {
    if (this.#closed) return;
    try {
      this.#ws.send(JSON.stringify(m));
    } catch {
    }
  }
  /**
   * Sends `{"type":"candidate","candidate":null}` (accepted and ignored by the gateway) every
   * `ms`, so a relay's idle timeout does not end a quiet session. A browser cannot send
   * WebSocket pings itself.
   */
  startKeepalive(ms) {
    if (this.#keepalive || this.#closed) return;
    this.#keepalive = setInterval(() => this.send({ type: "candidate", candidate: null }), ms);
  }
  /** Sends `leave` (when `leave` is true), then closes. Idempotent. */
  close(leave = true) {
    if (this.#closed) return;
    if (leave) this.send({ type: "leave" });
    this.#closed = true;
    this.#stopKeepalive();
    this.#handler = null;
    try {
      this.#ws.close(1e3, "leave");
    } catch {
    }
  }
  #stopKeepalive() {
    if (this.#keepalive) clearInterval(this.#keepalive);
    this.#keepalive = null;
  }
  #ended(why) {
    if (this.#closed) return;
    this.#closed = true;
    this.#endedWhy = why;
    this.#stopKeepalive();
    this.#closeHandler?.(why);
  }
};
function connectAndJoin(o) {
  const t0 = Date.now();
  const shown = redactUrl(o.url);
  return new Promise((resolve, reject) => {
    let ws;
    let done = false;
    let opened = false;
    const finish = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      o.signal?.removeEventListener("abort", onAbort);
      ws?.removeEventListener("open", onOpen);
      ws?.removeEventListener("message", onMessage);
      ws?.removeEventListener("close", onClose);
      ws?.removeEventListener("error", onError);
      if (err) {
        try {
          ws?.close();
        } catch {
        }
        reject(err);
      } else resolve(value);
    };
    const unreachable = (why) => new CloudProxyError("SIGNAL_UNREACHABLE", `signalling gateway ${shown}: ${why}`, {
      url: shown,
      elapsedMs: Date.now() - t0
    });
    const onAbort = () => finish(aborted());
    const onOpen = () => {
      opened = true;
      try {
        ws?.send(JSON.stringify({ type: "join", ...o.join }));
      } catch (e) {
        finish(unreachable(`send failed: ${e instanceof Error ? e.message : String(e)}`));
      }
    };
    const onMessage = (ev) => {
      const m = parseServerMessage(ev.data);
      if (!m) return;
      if (m.type === "joined") {
        const conn = new SignalConnection(ws, shown);
        finish(null, { conn, joined: { uid: m.uid, members: m.members } });
      } else if (m.type === "error") {
        finish(
          new CloudProxyError("SIGNAL_REFUSED", `the signalling gateway refused the join: ${m.code}: ${m.message}`, {
            signalCode: m.code,
            url: shown
          })
        );
      }
    };
    const onClose = (ev) => finish(
      unreachable(
        opened ? `closed before joined (code ${ev.code}${ev.reason ? ` ${ev.reason}` : ""})` : `the WebSocket did not open (code ${ev.code}${ev.reason ? ` ${ev.reason}` : ""})`
      )
    );
    const onError = () => finish(unreachable(opened ? "WebSocket error before joined" : "the WebSocket did not open"));
    const timer = setTimeout(
      () => finish(unreachable(opened ? `no joined within ${o.timeoutMs} ms` : `the WebSocket did not open within ${o.timeoutMs} ms`)),
      o.timeoutMs
    );
    if (o.signal?.aborted) return finish(aborted());
    o.signal?.addEventListener("abort", onAbort);
    try {
      ws = new o.WebSocket(o.url);
    } catch (e) {
      return finish(unreachable(`new WebSocket: ${e instanceof Error ? e.message : String(e)}`));
    }
    ws.addEventListener("open", onOpen);
    ws.addEventListener("message", onMessage);
    ws.addEventListener("close", onClose);
    ws.addEventListener("error", onError);
  });
}

// src/probe.ts
function relayConfiguration(iceServers) {
  return { iceServers, iceTransportPolicy: "relay" };
}
function probeRelay(Ctor, iceServers, timeoutMs, signal) {
  return new Promise((resolve) => {
    const errors = [];
    let pc = null;
    let done = false;
    const finish = (r) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      try {
        pc?.close();
      } catch {
      }
      resolve(r);
    };
    const onAbort = () => finish({ ok: false, reason: "aborted" });
    const timer = setTimeout(
      () => finish({ ok: false, reason: withErrors(`no relay candidate within ${timeoutMs} ms`, errors) }),
      timeoutMs
    );
    signal?.addEventListener("abort", onAbort);
    if (signal?.aborted) return onAbort();
    try {
      pc = new Ctor(relayConfiguration(iceServers));
    } catch (e) {
      return finish({ ok: false, reason: `RTCPeerConnection: ${message(e)}` });
    }
    pc.addEventListener("icecandidate", (ev) => {
      const c = ev.candidate;
      if (!c) {
        finish({ ok: false, reason: withErrors("ICE gathering ended without a relay candidate", errors) });
      } else if (c.type === "relay" || / typ relay( |$)/.test(c.candidate)) {
        const proto = c.relayProtocol;
        finish({ ok: true, candidate: c.candidate, relayProtocol: proto ?? null });
      }
    });
    pc.addEventListener("icecandidateerror", (ev) => {
      const e = ev;
      errors.push([e.url, e.errorCode, e.errorText].filter((x) => x !== void 0 && x !== "").join(" "));
    });
    try {
      pc.createDataChannel("cloudproxy-probe");
      pc.createOffer().then((offer) => pc?.setLocalDescription(offer)).catch((e) => finish({ ok: false, reason: `createOffer/setLocalDescription: ${message(e)}` }));
    } catch (e) {
      finish({ ok: false, reason: `createDataChannel: ${message(e)}` });
    }
  });
}
async function chooseRelay(Ctor, targets, timeoutMs, signal) {
  const tried = [];
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
      reason: r.reason
    });
  }
  throw new CloudProxyError("EDGE_UNREACHABLE", `no edge reachable (tried ${tried.map(describeAttempt).join("; ") || "nothing"})`, {
    tried
  });
}
function describeAttempt(a) {
  return `${a.id} ${a.transport} ${a.address}: ${a.reason}`;
}
function urlsOf(servers) {
  return servers.flatMap((s) => Array.isArray(s.urls) ? s.urls : [s.urls]);
}
function withErrors(reason, errors) {
  return errors.length ? `${reason} (${errors.join("; ")})` : reason;
}
function message(e) {
  return e instanceof Error ? e.message : String(e);
}

// src/client.ts
var DEFAULT_CONTROL_TIMEOUT_MS = 1e4;
var DEFAULT_EDGE_PROBE_TIMEOUT_MS = 5e3;
var DEFAULT_SIGNAL_TIMEOUT_MS = 1e4;
var DEFAULT_SUBSCRIBE_TIMEOUT_MS = 1e4;
var SIGNAL_KEEPALIVE_MS = 25e3;
var RELEASE_TIMEOUT_MS = 2e3;
var CloudProxyClient = class {
  #rules = new ProxyRules();
  #events = new Emitter();
  #controlUrl;
  #config;
  #joined = null;
  /** Cancels the running join (leave during join). */
  #joinAbort = null;
  #leaving = null;
  #peerConnections = /* @__PURE__ */ new Set();
  #media = null;
  #rtnSignalUrl = null;
  constructor(config) {
    if (typeof config !== "object" || config === null) {
      throw new CloudProxyError("INVALID_PARAMETER", "createClient needs { controlUrl }");
    }
    this.#controlUrl = normalizeControlUrl(config.controlUrl);
    if (config.rtnSignalUrl !== void 0) this.#rtnSignalUrl = parseRtnSignalUrl(config.rtnSignalUrl);
    for (const k of ["controlTimeoutMs", "edgeProbeTimeoutMs", "signalTimeoutMs", "subscribeTimeoutMs"]) {
      const v = config[k];
      if (v !== void 0 && !(typeof v === "number" && Number.isFinite(v) && v > 0)) {
        throw new CloudProxyError("INVALID_PARAMETER", `${k} must be a positive number of milliseconds`);
      }
    }
    this.#config = { ...config };
  }
  /** `DISCONNECTED`, `CONNECTING`, `CONNECTED` or `DISCONNECTING`. */
  get connectionState() {
    return this.#rules.connectionState;
  }
  /** The proxy the next join uses (`off`, `cloud` with its mode, or `self-hosted`). */
  get proxySetting() {
    return this.#rules.proxy;
  }
  on(event, handler) {
    this.#events.on(event, handler);
  }
  off(event, handler) {
    this.#events.off(event, handler);
  }
  /**
   * Use the cloud proxy for the next join: 3 = UDP (default), 4 = TCP, 5 = TLS 443. Only while
   * disconnected; not after setProxyServer/setTurnServer. A second call replaces the mode.
   */
  startProxyServer(mode) {
    return this.#rules.startProxyServer(mode);
  }
  /** Turn every proxy off (cloud and self-deployed). Only while disconnected. */
  stopProxyServer() {
    this.#rules.stopProxyServer();
  }
  /** Use a self-deployed signalling proxy. Only while disconnected; not after startProxyServer. */
  setProxyServer(cfg) {
    this.#rules.setProxyServer(cfg);
  }
  /** Use a self-deployed TURN server (relay only). Only while disconnected; not after startProxyServer. */
  setTurnServer(cfg) {
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
  async join(appId, channel, token, uid) {
    this.#rules.assertCanJoin();
    const args = parseJoinArgs(appId, channel, token, uid);
    const setting = this.#rules.proxy;
    const cloud = setting.kind === "cloud";
    if (!cloud && !this.#rtnSignalUrl) {
      throw new CloudProxyError(
        "INVALID_PARAMETER",
        "a join without the cloud proxy needs config.rtnSignalUrl (the media network's signalling gateway, ws://host:port/signal)"
      );
    }
    const Ctor = this.#peerConnectionCtor();
    const WS = this.#webSocketCtor();
    const fetchFn = cloud ? this.#fetch() : null;
    const attempt = this.#rules.beginJoin();
    const abort = new AbortController();
    this.#joinAbort = abort;
    this.#emitState(attempt.change);
    let route = null;
    let conn = null;
    let members = [];
    let signalUrl = "";
    let pc = null;
    try {
      const s = attempt.setting;
      if (s.kind === "cloud") {
        route = await this.#joinCloud(args, s.transport, Ctor, fetchFn, abort.signal);
      } else if (s.kind === "self-hosted") {
        route = { kind: "self-hosted", proxy: s.proxy, turn: s.turn, iceServers: s.turn ? [turnIceServer(s.turn)] : [] };
      } else {
        route = { kind: "direct" };
      }
      const url = signalUrlFor(route, this.#rtnSignalUrl, pageIsHttps());
      signalUrl = redactUrl(url);
      const r = await connectAndJoin({
        WebSocket: WS,
        url,
        join: { app_id: args.appId, channel: args.channel, uid: args.uid, token: args.token },
        timeoutMs: this.#config.signalTimeoutMs ?? DEFAULT_SIGNAL_TIMEOUT_MS,
        signal: abort.signal
      });
      conn = r.conn;
      members = r.joined.members;
      try {
        pc = new Ctor(configurationFor(route));
      } catch (e) {
        throw new CloudProxyError("NOT_SUPPORTED", `RTCPeerConnection: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
    } catch (e) {
      conn?.close();
      if (this.#joinAbort === abort) this.#joinAbort = null;
      if (route?.kind === "cloud-proxy") void this.#release(route.session, fetchFn ?? void 0);
      const change2 = this.#rules.finishJoin(attempt.id, false);
      if (!change2) throw new CloudProxyError("INVALID_OPERATION", JOIN_CANCELLED);
      this.#emitState(change2, e instanceof CloudProxyError ? e.code : "ERROR");
      throw e;
    }
    if (this.#joinAbort === abort) this.#joinAbort = null;
    const change = this.#rules.finishJoin(attempt.id, true);
    if (!change) {
      conn.close();
      pc.close();
      if (route.kind === "cloud-proxy") void this.#release(route.session);
      throw new CloudProxyError("INVALID_OPERATION", JOIN_CANCELLED);
    }
    const rtcConfiguration = configurationFor(route);
    const info = {
      appId: args.appId,
      channel: args.channel,
      uid: args.uid,
      route,
      rtcConfiguration,
      signalUrl,
      members: [...members]
    };
    const media = new MediaSession({
      pc,
      conn,
      uid: args.uid,
      members,
      emit: (event, payload) => this.#events.emit(event, payload),
      onSignalLost: (why) => this.#signalLost(media, why)
    });
    this.#media = media;
    this.#joined = info;
    conn.startKeepalive(SIGNAL_KEEPALIVE_MS);
    if (route.kind === "cloud-proxy") this.#watchRelay(media, route);
    this.#emitState(change);
    this.#events.emit(
      "is-using-cloud-proxy",
      route.kind === "cloud-proxy" ? { using: true, transport: route.mode, edgeId: route.edge.id, relayProtocol: route.relayProtocol } : { using: false, transport: null }
    );
    if (this.#media === media) {
      for (const m of members) this.#events.emit("user-joined", { uid: m });
    }
    if (this.#media === media) {
      media.listen();
      media.start().catch((e) => {
        if (this.#media === media) console.warn("cloudproxy: the first offer failed", e);
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
  leave() {
    return this.#leave("LEAVE");
  }
  #leave(reason) {
    if (this.#leaving) return this.#leaving;
    const a = this.#rules.beginLeave();
    switch (a.action) {
      case "not-joined":
      case "already-leaving":
        return Promise.resolve();
      case "cancel-join":
        this.#joinAbort?.abort();
        this.#joinAbort = null;
        this.#emitState(a.change, reason);
        return Promise.resolve();
      case "leave":
        this.#emitState(a.change);
        this.#leaving = this.#leaveFlow(reason).finally(() => {
          this.#leaving = null;
        });
        return this.#leaving;
    }
  }
  /** The signalling socket closed by itself (gateway or relay gone): leave with that reason. */
  #signalLost(media, why) {
    if (this.#media !== media) return;
    console.warn(`cloudproxy: signalling connection lost: ${why}`);
    void this.#leave("SIGNAL_UNREACHABLE");
  }
  /**
   * Cloud proxy: once media is connected, reads the selected candidate pair and emits
   * `is-using-cloud-proxy` again with what getStats says (candidate type relay, and the real
   * relayProtocol, which the ICE candidate event does not give for UDP).
   */
  #watchRelay(media, route) {
    const onState = () => {
      if (this.#media !== media) return media.pc.removeEventListener("connectionstatechange", onState);
      if (media.pc.connectionState !== "connected") return;
      media.pc.removeEventListener("connectionstatechange", onState);
      media.stats().then((st) => {
        if (this.#media !== media || st.candidateType === null) return;
        this.#events.emit("is-using-cloud-proxy", {
          using: st.candidateType === "relay",
          transport: route.mode,
          edgeId: route.edge.id,
          relayProtocol: st.relayProtocol
        });
      }).catch(() => void 0);
    };
    media.pc.addEventListener("connectionstatechange", onState);
  }
  /** The ICE configuration for media (see {@link JoinInfo.rtcConfiguration}). Only while CONNECTED. */
  rtcConfiguration() {
    this.#rules.requireConnected("rtcConfiguration()");
    return cloneConfiguration(this.#joined.rtcConfiguration);
  }
  /**
   * An extra peer connection configured by rtcConfiguration() (the SDK's own media connection
   * is separate); closed by leave().
   */
  createPeerConnection() {
    const cfg = this.rtcConfiguration();
    const pc = new (this.#peerConnectionCtor())(cfg);
    this.#peerConnections.add(pc);
    return pc;
  }
  /** The current join (route, session, edge, signalling URL), or null. */
  joinInfo() {
    return this.#joined;
  }
  /**
   * Publishes local tracks (e.g. from getUserMedia): one sendonly transceiver each, then a new
   * offer. Resolves when the gateway's answer is applied. Only while CONNECTED.
   */
  async publish(tracks) {
    this.#rules.requireConnected("publish()");
    await this.#media.publish(Array.isArray(tracks) ? tracks : [tracks]);
  }
  /** Stops publishing `tracks` (all when omitted) and renegotiates. Only while CONNECTED. */
  async unpublish(tracks) {
    this.#rules.requireConnected("unpublish()");
    await this.#media.unpublish(tracks === void 0 ? void 0 : Array.isArray(tracks) ? tracks : [tracks]);
  }
  /**
   * A remote user's track. The SFU forwards every published track to every member, so this
   * asks the server nothing: it returns the track once it has arrived, waiting up to
   * `subscribeTimeoutMs` (SUBSCRIBE_TIMEOUT after that). Only while CONNECTED.
   */
  async subscribe(uid, mediaType) {
    this.#rules.requireConnected("subscribe()");
    if (mediaType !== "audio" && mediaType !== "video") {
      throw new CloudProxyError("INVALID_PARAMETER", `mediaType must be 'audio' or 'video', not ${JSON.stringify(mediaType)}`);
    }
    const id = typeof uid === "number" && Number.isSafeInteger(uid) && uid >= 0 ? String(uid) : uid;
    if (typeof id !== "string" || id === "") {
      throw new CloudProxyError("INVALID_PARAMETER", "uid must be a non-empty string or a non-negative integer");
    }
    return this.#media.subscribe(id, mediaType, this.#config.subscribeTimeoutMs ?? DEFAULT_SUBSCRIBE_TIMEOUT_MS);
  }
  /** Other members of the channel and the tracks received from them (empty when not joined). */
  remoteUsers() {
    return this.#media?.remoteUsers() ?? [];
  }
  /** Tracks this client publishes. */
  localTracks() {
    return this.#media?.localTracks() ?? [];
  }
  /** The media peer connection's own `getStats()`. Only while CONNECTED. */
  async getStats() {
    this.#rules.requireConnected("getStats()");
    return this.#media.pc.getStats();
  }
  /**
   * The numbers that matter, from the media connection's getStats(): the selected pair's local
   * candidate type and relayProtocol, video frames decoded per remote uid, frames encoded and
   * bytes sent. Only while CONNECTED.
   */
  async mediaStats() {
    this.#rules.requireConnected("mediaStats()");
    return this.#media.stats();
  }
  /**
   * Cloud-proxy join: proxy info, then the first edge with a relay candidate. A session the
   * client will not use (no edge worked, or a leave cancelled the join) is released.
   */
  async #joinCloud(args, transport, Ctor, fetchFn, signal) {
    const opts = this.#controlOptions(fetchFn, this.#config.controlTimeoutMs ?? DEFAULT_CONTROL_TIMEOUT_MS, signal);
    const body = buildProxyRequest(args, transport, { area: this.#config.area, isp: this.#config.isp });
    const answer = await requestProxyInfo(opts, body);
    try {
      const targets = answer.edges.map((e) => ({
        id: e.id,
        address: e.address,
        transport,
        iceServers: e.ice_servers.map(toRtcIceServer)
      }));
      const chosen = await chooseRelay(Ctor, targets, this.#config.edgeProbeTimeoutMs ?? DEFAULT_EDGE_PROBE_TIMEOUT_MS, signal);
      const edge = answer.edges[chosen.index];
      return {
        kind: "cloud-proxy",
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
        relayProtocol: chosen.result.relayProtocol
      };
    } catch (e) {
      void this.#release(answer.session, fetchFn);
      throw e;
    }
  }
  async #leaveFlow(reason) {
    this.#media?.close(true);
    this.#media = null;
    for (const pc of this.#peerConnections) {
      try {
        pc.close();
      } catch {
      }
    }
    this.#peerConnections.clear();
    const route = this.#joined?.route;
    this.#joined = null;
    try {
      if (route?.kind === "cloud-proxy") await this.#release(route.session);
    } finally {
      const change = this.#rules.finishLeave();
      if (change) this.#emitState(change, reason);
      if (route?.kind === "cloud-proxy") this.#events.emit("is-using-cloud-proxy", { using: false, transport: null });
    }
  }
  /** `DELETE /v1/proxy/{session}`, best effort and bounded; never throws. */
  async #release(session, fetchFn) {
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
  #controlOptions(fetchFn, timeoutMs, signal) {
    return { controlUrl: this.#controlUrl, fetch: fetchFn, timeoutMs, signal };
  }
  #fetch() {
    if (this.#config.fetch) return this.#config.fetch;
    const f = globalThis.fetch;
    if (typeof f !== "function") {
      throw new CloudProxyError("NOT_SUPPORTED", "no fetch() in this environment; pass config.fetch");
    }
    return f.bind(globalThis);
  }
  #webSocketCtor() {
    const C = this.#config.WebSocket ?? globalThis.WebSocket;
    if (typeof C !== "function") {
      throw new CloudProxyError("NOT_SUPPORTED", "no WebSocket in this environment; pass config.WebSocket");
    }
    return C;
  }
  #peerConnectionCtor() {
    const C = this.#config.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    if (typeof C !== "function") {
      throw new CloudProxyError(
        "NOT_SUPPORTED",
        "no RTCPeerConnection in this environment; pass config.RTCPeerConnection"
      );
    }
    return C;
  }
  #emitState(change, reason) {
    const ev = reason === void 0 ? { ...change } : { ...change, reason };
    this.#events.emit("connection-state-change", ev);
  }
};
function createClient(config) {
  return new CloudProxyClient(config);
}
function signalUrlFor(route, rtn, pageHttps) {
  if (route.kind === "cloud-proxy") {
    return cloudSignalUrl({
      edge: route.edge,
      transport: route.mode,
      signalUpstreams: route.signalUpstreams,
      ticket: route.ticket,
      pageHttps
    });
  }
  if (!rtn) throw new CloudProxyError("INVALID_PARAMETER", "config.rtnSignalUrl is needed without the cloud proxy");
  if (route.kind === "self-hosted" && route.proxy) return selfHostedSignalUrl(route.proxy, rtn, pageHttps);
  return rtn.url;
}
function configurationFor(route) {
  switch (route.kind) {
    case "direct":
      return { iceServers: [] };
    case "cloud-proxy":
      return relayConfiguration(route.iceServers.map(toRtcIceServer));
    case "self-hosted":
      return route.iceServers.length ? relayConfiguration(route.iceServers.map(toRtcIceServer)) : { iceServers: [] };
  }
}
function toRtcIceServer(s) {
  return { urls: [...s.urls], username: s.username, credential: s.credential };
}
function cloneConfiguration(c) {
  return {
    ...c,
    iceServers: (c.iceServers ?? []).map((s) => ({
      ...s,
      urls: Array.isArray(s.urls) ? [...s.urls] : s.urls
    }))
  };
}
export {
  ALREADY_JOINED,
  CloudProxyClient,
  CloudProxyError,
  DEFAULT_MODE,
  JOIN_CANCELLED,
  JOIN_ERROR_CODES,
  JOIN_IN_PROGRESS,
  LEAVE_IN_PROGRESS,
  MODE_TRANSPORT,
  PROXY_ALREADY_SET,
  ProxyRules,
  SET_PROXY_BEFORE_JOIN,
  SET_TURN_BEFORE_JOIN,
  START_BEFORE_JOIN,
  STOP_BEFORE_JOIN,
  buildProxyRequest,
  cloudSignalUrl,
  configurationFor,
  createClient,
  describeAttempt,
  errorFromAnswer,
  isCloudProxyError,
  isLoopbackAuthority,
  modeToTransport,
  msidToken,
  parseMode,
  parseRtnSignalUrl,
  parseServerMessage,
  redactUrl,
  relayConfiguration,
  selfHostedSignalUrl,
  signalUrlFor,
  stoppedMids,
  turnIceServer
};
