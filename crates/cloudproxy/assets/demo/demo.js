// The cloudproxy demo page: the web SDK (./cloudproxy-sdk.js, a committed copy of
// web-sdk/dist/cloudproxy-sdk.js) joins the demo channel through the cloud proxy, publishes the
// camera and microphone, and shows every remote user's video.
//
// The page's server (`cloudproxy`) answers:
//   GET /demo/config  → {"appId","channel","controlUrl","defaultMode","botUid"[,"rtnSignalUrl"]}
//   GET /demo/token?channel=C&uid=U → {"token"}
// and forwards POST /v1/proxy and DELETE /v1/proxy/{session} to the control plane (controlUrl
// is the page's own origin). With "rtnSignalUrl" in the config, a "direct" mode is offered too.
//
// window.demoState is refreshed every second from the SDK's events and mediaStats(), for tests:
//   {ready, state, media, using, transport, relayProtocol, candidateType, edgeId, uid, channel,
//    mode, remote: {<uid>: {framesDecoded, frameWidth, frameHeight}}, local, error}

import { createClient } from './cloudproxy-sdk.js';

const $ = (id) => document.getElementById(id);
const TRANSPORT = { udp: 'UDP', tcp: 'TCP', tls: 'TLS 443' };

const demoState = {
  ready: false,
  state: 'DISCONNECTED',
  media: null,
  using: false,
  transport: null,
  relayProtocol: null,
  candidateType: null,
  edgeId: null,
  uid: null,
  channel: null,
  mode: null,
  remote: {},
  local: null,
  error: null,
};
window.demoState = demoState;

let config = null;
let client = null;
let localStream = null;
let statsTimer = null;
let busy = false;

function randomUid() {
  const b = new Uint8Array(2);
  crypto.getRandomValues(b);
  return `web-${[...b].map((x) => x.toString(16).padStart(2, '0')).join('')}`;
}

function describeError(e) {
  if (e && typeof e === 'object' && 'code' in e && typeof e.message === 'string') {
    // CloudProxyError: the message starts with the code.
    return e.message.startsWith(e.code) ? e.message : `${e.code}: ${e.message}`;
  }
  return String(e?.message ?? e);
}

function showError(text) {
  demoState.error = text;
  $('error').textContent = text;
  $('error').hidden = !text;
}

function pill(el, text, kind) {
  el.textContent = text;
  el.className = `pill ${kind ?? ''}`;
}

function render() {
  const joined = demoState.state === 'CONNECTED';
  $('join').disabled = busy || !config || demoState.state !== 'DISCONNECTED';
  // Leave also cancels a join in progress.
  $('leave').disabled = demoState.state === 'DISCONNECTED';
  $('mode').disabled = demoState.state !== 'DISCONNECTED';
  $('uid').disabled = demoState.state !== 'DISCONNECTED';

  const s = demoState.state;
  pill($('conn'), s, s === 'CONNECTED' ? 'ok' : s === 'DISCONNECTED' ? '' : 'warn');
  const m = demoState.media;
  pill($('media'), m ?? '–', m === 'connected' ? 'ok' : m === 'failed' || m === 'disconnected' ? 'bad' : m ? 'warn' : '');

  const line = $('proxy-line');
  if (demoState.using) {
    const rp = demoState.relayProtocol ?? '…';
    line.textContent = `in use over ${TRANSPORT[demoState.transport] ?? demoState.transport} via edge ${demoState.edgeId} (relayProtocol ${rp})`;
    line.className = 'on';
  } else {
    line.textContent = joined ? 'not in use (direct)' : demoState.mode && demoState.mode !== 'direct' ? 'off (joins through the proxy)' : 'off';
    line.className = '';
  }

  $('path').textContent = demoState.candidateType
    ? `local candidate ${demoState.candidateType}${demoState.relayProtocol ? ` / ${demoState.relayProtocol}` : ''}`
    : '–';
  const l = demoState.local;
  $('sending').textContent = l ? `${l.kbps} kbit/s video, ${l.framesEncoded} frames encoded` : '–';
  const uids = Object.keys(demoState.remote);
  $('members').textContent = uids.length ? uids.join(', ') : joined ? 'nobody else yet' : '–';

  const hint = $('remote-hint');
  if (joined && uids.length === 0) {
    hint.textContent = config?.botUid ? `Waiting for others to join (the demo's bot is "${config.botUid}")…` : 'Waiting for others to join…';
  } else hint.textContent = '';

  for (const uid of uids) {
    const r = demoState.remote[uid];
    const el = document.querySelector(`[data-uid="${CSS.escape(uid)}"] .stats`);
    if (el) {
      el.hidden = !r.framesDecoded;
      el.textContent = r.frameWidth ? `${r.frameWidth}×${r.frameHeight} · ${r.fps ?? 0} fps` : '';
    }
  }
  const ls = $('local-stats');
  ls.hidden = !l;
  if (l) ls.textContent = `${l.kbps} kbit/s`;
}

function tile(uid) {
  let t = document.querySelector(`[data-uid="${CSS.escape(uid)}"]`);
  if (t) return t;
  t = document.createElement('div');
  t.className = 'tile';
  t.dataset.uid = uid;
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true;
  const audio = document.createElement('audio');
  audio.autoplay = true;
  const empty = document.createElement('div');
  empty.className = 'empty';
  empty.textContent = `${uid} has not published video`;
  const label = document.createElement('div');
  label.className = 'label';
  label.textContent = uid;
  const stats = document.createElement('div');
  stats.className = 'stats';
  stats.hidden = true;
  t.append(video, audio, empty, label, stats);
  $('tiles').append(t);
  demoState.remote[uid] ??= { framesDecoded: 0 };
  return t;
}

function attach(uid, mediaType, track) {
  const t = tile(uid);
  const el = t.querySelector(mediaType === 'video' ? 'video' : 'audio');
  el.srcObject = track ? new MediaStream([track]) : null;
  el.play?.().catch(() => {});
  if (mediaType === 'video') t.querySelector('.empty').hidden = Boolean(track);
}

function removeTile(uid) {
  document.querySelector(`[data-uid="${CSS.escape(uid)}"]`)?.remove();
  delete demoState.remote[uid];
}

function resetMedia() {
  clearInterval(statsTimer);
  statsTimer = null;
  for (const t of document.querySelectorAll('.tile[data-uid]')) t.remove();
  demoState.remote = {};
  demoState.local = null;
  demoState.candidateType = null;
  demoState.relayProtocol = null;
  demoState.media = null;
  localStream?.getTracks().forEach((t) => t.stop());
  localStream = null;
  $('local-video').srcObject = null;
  $('local-empty').hidden = false;
}

let last = null;
async function updateStats() {
  if (!client || demoState.state !== 'CONNECTED') return;
  let st;
  try {
    st = await client.mediaStats();
  } catch {
    return;
  }
  const now = performance.now();
  const dt = last ? (now - last.at) / 1000 : 0;
  demoState.candidateType = st.candidateType;
  if (st.relayProtocol) demoState.relayProtocol = st.relayProtocol;
  for (const [uid, r] of Object.entries(st.inbound)) {
    const entry = (demoState.remote[uid] ??= { framesDecoded: 0 });
    const prev = last?.inbound[uid]?.video?.framesDecoded ?? 0;
    entry.framesDecoded = r.video?.framesDecoded ?? 0;
    entry.frameWidth = r.video?.frameWidth ?? null;
    entry.frameHeight = r.video?.frameHeight ?? null;
    entry.fps = dt ? Math.round((entry.framesDecoded - prev) / dt) : 0;
  }
  const v = st.outbound.video;
  if (v) {
    const prevBytes = last?.outbound.video?.bytesSent ?? v.bytesSent;
    demoState.local = {
      framesEncoded: v.framesEncoded,
      bytesSent: v.bytesSent,
      kbps: dt ? Math.round(((v.bytesSent - prevBytes) * 8) / dt / 1000) : 0,
    };
  }
  last = { at: now, inbound: st.inbound, outbound: st.outbound };
  render();
}

function wire(c) {
  c.on('connection-state-change', ({ current, reason }) => {
    demoState.state = current;
    if (current === 'DISCONNECTED') {
      demoState.using = false;
      demoState.transport = null;
      demoState.edgeId = null;
      resetMedia();
      if (reason && reason !== 'LEAVE' && !demoState.error) showError(`disconnected: ${reason}`);
    }
    render();
  });
  c.on('is-using-cloud-proxy', (e) => {
    demoState.using = e.using;
    demoState.transport = e.transport;
    demoState.edgeId = e.edgeId ?? null;
    if (e.relayProtocol) demoState.relayProtocol = e.relayProtocol;
    render();
  });
  c.on('media-state-change', ({ state }) => {
    demoState.media = state;
    render();
  });
  c.on('user-joined', ({ uid }) => {
    tile(uid);
    render();
  });
  c.on('user-left', ({ uid }) => {
    removeTile(uid);
    render();
  });
  c.on('user-published', ({ uid, mediaType, track }) => {
    attach(uid, mediaType, track);
    render();
  });
  c.on('user-unpublished', ({ uid, mediaType }) => {
    if (document.querySelector(`[data-uid="${CSS.escape(uid)}"]`)) attach(uid, mediaType, null);
    render();
  });
}

async function join() {
  if (busy) return;
  busy = true;
  showError(null);
  last = null;
  const uid = $('uid').value.trim() || randomUid();
  $('uid').value = uid;
  const mode = $('mode').value;
  demoState.uid = uid;
  demoState.mode = mode;
  render();
  try {
    const r = await fetch(`/demo/token?channel=${encodeURIComponent(config.channel)}&uid=${encodeURIComponent(uid)}`);
    if (!r.ok) throw new Error(`token: HTTP ${r.status} ${await r.text()}`);
    const { token } = await r.json();
    client = createClient({
      controlUrl: config.controlUrl,
      ...(config.rtnSignalUrl ? { rtnSignalUrl: config.rtnSignalUrl } : {}),
    });
    wire(client);
    if (mode !== 'direct') client.startProxyServer(Number(mode));
    await client.join(config.appId, config.channel, token, uid);
    statsTimer = setInterval(updateStats, 1000);
  } catch (e) {
    // Leave pressed during the join: not an error.
    const cancelled = e?.code === 'INVALID_OPERATION' && /cancelled by leave/.test(e.message);
    showError(cancelled ? null : describeError(e));
    busy = false;
    render();
    return;
  }
  try {
    localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
    $('local-video').srcObject = localStream;
    $('local-empty').hidden = true;
    await client.publish(localStream.getTracks());
  } catch (e) {
    // Still joined: remote users are seen and heard.
    showError(`camera/microphone: ${describeError(e)}`);
  }
  busy = false;
  render();
}

async function leave() {
  if (!client) return;
  busy = true;
  render();
  try {
    await client.leave();
  } finally {
    client = null;
    busy = false;
    resetMedia();
    render();
  }
}

async function init() {
  $('uid').value = randomUid();
  $('join').addEventListener('click', join);
  $('leave').addEventListener('click', leave);
  $('mode').addEventListener('change', () => {
    demoState.mode = $('mode').value;
    render();
  });
  try {
    const r = await fetch('/demo/config');
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    config = await r.json();
  } catch (e) {
    showError(`could not load /demo/config: ${describeError(e)}`);
    return;
  }
  if (config.rtnSignalUrl) {
    const o = document.createElement('option');
    o.value = 'direct';
    o.textContent = 'direct · no proxy';
    $('mode').append(o);
  }
  $('mode').value = String(config.defaultMode ?? 3);
  demoState.mode = $('mode').value;
  demoState.channel = config.channel;
  $('channel').textContent = `${config.channel} (App ID ${config.appId})`;
  demoState.ready = true;
  render();
}

init();
