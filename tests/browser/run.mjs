// A real browser against the edge's TLS port (issue 4): headless Chromium (Debian `chromium`,
// driven by playwright-core) with a test CA imported into its own NSS database.
//
// Scenarios:
//   wss        new WebSocket(wssUrl): N messages (text and binary, small to 70 kB) sent at once,
//              N echoes expected back in order (the upstream behind the relay is an echo server).
//   turns      two RTCPeerConnections in one page, both with iceTransportPolicy 'relay': pc1 (the
//              client) has only `turn`, pc2 (the far peer) has `peerTurn` (default: `turn`); a
//              data channel; N messages each way; getStats: the selected pair's local candidate
//              is candidateType 'relay' on both sides, with relayProtocol 'tls' for pc1 and the
//              protocol of peerTurn's URL for pc2 (tls for turns:, else tcp/udp by transport).
//              A TURN server that refuses to relay to its own relay addresses (our edge does)
//              needs a second server for pc2: pass it as peerTurn.
//   untrusted  the negative control: same browser set-up but the CA is NOT imported. Whichever
//              of `turn` / `wssUrl` the config has must fail: no relay candidate within
//              `untrustedWaitMs`, and the WebSocket errors without ever opening.
//   join       the web SDK (the built bundle) joins a channel of the media network, through the
//              cloud proxy (mode 3/4/5) or directly (mode null), publishes the fake camera and
//              microphone and receives `expectUid`'s video; stats sampled twice >= 1 s apart:
//              selected local candidate `relay` (with a mode) with `expectRelayProtocol`,
//              framesDecoded from expectUid and outbound video bytesSent both grow. Optional
//              `checkRules` (the §5 proxy rules in the browser) and `blockedDirect` (after leave
//              and stopProxyServer a direct join must fail with SIGNAL_UNREACHABLE in bounded time).
//   demo       the demo page (`url`, served by `cloudproxy`): pick `mode`, click Join, wait for
//              window.demoState to show expectUid's video with framesDecoded growing, screenshot.
//
// Config: JSON in argv[2], or in $BROWSER_E2E_CONFIG, or a file named by `@path` in argv[2].
//   {
//     "scenario": "wss" | "turns" | "untrusted",
//     "caFile": "/path/ca.pem",                    // required (imported except for untrusted)
//     "wssUrl": "wss://127.0.0.1:443/ws?upstream=127.0.0.1:9000&ticket=...",
//     "turn": { "urls": "turns:127.0.0.1:443?transport=tcp", "username": "u", "credential": "p" },
//     "peerTurn": { ... same shape, optional: the far peer's only ICE server },
//     // or instead of turn.urls: "edgeHost": "127.0.0.1", "edgePort": 443
//     "chromium": "/usr/lib/chromium/chromium",    // the real binary, not Debian's /usr/bin wrapper
//     "netns": null,                               // run the browser inside this network namespace
//     "messages": 20, "stepTimeoutMs": 15000, "untrustedWaitMs": 12000,
//     "keepTmp": false, "verbose": false
//   }
//
//   join: {
//     "scenario": "join", "caFile": "/path/ca.pem" (optional; imported when given),
//     "netns": null, "pageOrigin": "https://app.test",
//     "bundleFile": "web-sdk/dist/cloudproxy-sdk.js",
//     "controlUrl": "https://10.200.1.1", "appId": "demo", "channel": "room1", "uid": "web-1",
//     "token": "v1:demo:...", "mode": 3 | 4 | 5 | null, "rtnSignalUrl": "ws://10.200.2.2:8443/signal",
//     "expectUid": "rust-1", "expectRelayProtocol": "udp" | "tcp" | "tls" | null,
//     "expectRelay": true (default: mode != null), "publish": true, "durationMs": 8000,
//     "screenshot": "/tmp/join.png", "checkRules": true,
//     "blockedDirect": { "rtnSignalUrl": "ws://10.200.2.2:8443/signal", "pageOrigin": (optional) },
//     "signalTimeoutMs": 5000, "stepTimeoutMs": 15000, "area": "EU" (optional: the area hint)
//   }
//   demo: { "scenario": "demo", "url": "http://127.0.0.1:8080/", "mode": 3, "uid": "web-x" (optional),
//           "expectUid": "bot", "expectRelayProtocol": null, "screenshot": "/tmp/demo.png",
//           "netns": null, "caFile": null, "stepTimeoutMs": 20000 }
//
// Output: exactly one JSON line on stdout: {"scenario", "ok", "expected", "elapsedMs", ...}.
// Exit 0 only when the expected outcome happened (for "untrusted": when everything failed).
// Diagnostics (browser console, Chromium argv) go to stderr.

import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const started = Date.now();
const log = (...a) => console.error('[browser-e2e]', ...a);

function loadConfig() {
  let raw = process.argv[2] ?? process.env.BROWSER_E2E_CONFIG;
  if (!raw) throw new Error('no config: pass JSON as argv[2] (or @file), or set BROWSER_E2E_CONFIG');
  if (raw.startsWith('@')) raw = readFileSync(raw.slice(1), 'utf8');
  const c = JSON.parse(raw);
  const cfg = {
    chromium: '/usr/lib/chromium/chromium',
    netns: null,
    messages: 20,
    stepTimeoutMs: 15000,
    untrustedWaitMs: 12000,
    keepTmp: false,
    verbose: false,
    ...c,
  };
  if (!['wss', 'turns', 'untrusted', 'join', 'demo'].includes(cfg.scenario)) {
    throw new Error(`scenario must be wss, turns, untrusted, join or demo, not ${JSON.stringify(cfg.scenario)}`);
  }
  if (cfg.scenario === 'join' || cfg.scenario === 'demo') {
    if (cfg.caFile && !existsSync(cfg.caFile)) throw new Error(`caFile missing: ${cfg.caFile}`);
    if (cfg.scenario === 'demo') {
      for (const k of ['url', 'expectUid']) if (!cfg[k]) throw new Error(`scenario demo needs ${k}`);
      return { mode: 3, ...cfg };
    }
    for (const k of ['bundleFile', 'controlUrl', 'appId', 'channel', 'uid', 'token', 'expectUid']) {
      if (!cfg[k]) throw new Error(`scenario join needs ${k}`);
    }
    if (!existsSync(cfg.bundleFile)) throw new Error(`bundleFile missing: ${cfg.bundleFile} (npm run build in web-sdk/)`);
    if (cfg.mode === undefined) throw new Error('scenario join needs mode (3, 4, 5, or null for a direct join)');
    if (cfg.mode === null && !cfg.rtnSignalUrl) throw new Error('a direct join (mode null) needs rtnSignalUrl');
    return {
      pageOrigin: 'https://app.test',
      publish: true,
      durationMs: 6000,
      signalTimeoutMs: 10000,
      expectRelayProtocol: null,
      expectRelay: cfg.mode !== null,
      checkRules: false,
      blockedDirect: null,
      ...cfg,
    };
  }
  if (cfg.turn && !cfg.turn.urls && cfg.edgeHost) {
    cfg.turn = { ...cfg.turn, urls: `turns:${cfg.edgeHost}:${cfg.edgePort ?? 443}?transport=tcp` };
  }
  if (!cfg.caFile || !existsSync(cfg.caFile)) throw new Error(`caFile missing: ${cfg.caFile}`);
  if (cfg.scenario === 'wss' && !cfg.wssUrl) throw new Error('scenario wss needs wssUrl');
  if (cfg.scenario === 'turns' && !cfg.turn?.urls) throw new Error('scenario turns needs turn.urls');
  if (cfg.peerTurn && !cfg.peerTurn.urls) throw new Error('peerTurn needs urls');
  if (cfg.scenario === 'untrusted' && !cfg.wssUrl && !cfg.turn?.urls) {
    throw new Error('scenario untrusted needs wssUrl and/or turn');
  }
  return cfg;
}

// A fresh HOME whose NSS database trusts the test CA (or nothing, for "untrusted"), and a
// wrapper that Playwright launches instead of Chromium: it merges every --disable-features /
// --enable-features switch into one (Chromium keeps only the last occurrence, and Playwright
// passes its own), optionally enters a network namespace, and records the final argv.
function prepareHome(cfg, trustCa) {
  const home = mkdtempSync(join(tmpdir(), 'cloudproxy-browser-'));
  const nssdb = join(home, '.pki', 'nssdb');
  mkdirSync(nssdb, { recursive: true });
  for (const d of ['.config', '.cache', '.local/share']) mkdirSync(join(home, d), { recursive: true });
  execFileSync('certutil', ['-d', `sql:${nssdb}`, '-N', '--empty-password'], { stdio: 'pipe' });
  if (trustCa) {
    execFileSync('certutil', ['-d', `sql:${nssdb}`, '-A', '-t', 'C,,', '-n', 'test-ca', '-i', cfg.caFile], {
      stdio: 'pipe',
    });
  }
  const listed = execFileSync('certutil', ['-d', `sql:${nssdb}`, '-L'], { encoding: 'utf8' });
  const caInDb = /\btest-ca\b/.test(listed);
  if (caInDb !== trustCa) throw new Error(`NSS db state wrong: test-ca present=${caInDb}`);

  const q = (s) => `'${String(s).replaceAll("'", `'\\''`)}'`;
  const prefix = cfg.netns ? `ip netns exec ${q(cfg.netns)} ` : '';
  const wrapper = join(home, 'chromium-wrapper.sh');
  writeFileSync(
    wrapper,
    `#!/bin/bash
# Generated by tests/browser/run.mjs.
dis=(); en=(); out=()
for a in "$@"; do
  case "$a" in
    --disable-features=*) v="\${a#--disable-features=}"; [ -n "$v" ] && dis+=("$v");;
    --enable-features=*) v="\${a#--enable-features=}"; [ -n "$v" ] && en+=("$v");;
    "") ;;
    *) out+=("$a");;
  esac
done
join() { local IFS=,; echo "$*"; }
[ \${#dis[@]} -gt 0 ] && out+=("--disable-features=$(join "\${dis[@]}")")
[ \${#en[@]} -gt 0 ] && out+=("--enable-features=$(join "\${en[@]}")")
printf '%s\\n' "\${out[@]}" > ${q(join(home, 'chromium-argv.txt'))}
exec ${prefix}${q(cfg.chromium)} "\${out[@]}"
`,
  );
  chmodSync(wrapper, 0o755);
  return { home, wrapper };
}

const PAGE_ORIGIN = 'https://app.cloudproxy.test';
const PAGE_HTML = '<!doctype html><meta charset="utf-8"><title>cloudproxy browser e2e</title><p>e2e</p>';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  // Real host candidates instead of <uuid>.local names (merged with Playwright's list).
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

// ---------------------------------------------------------------------------------------------
// In-page code (serialised by page.evaluate; must be self-contained)
// ---------------------------------------------------------------------------------------------

async function pageWss({ url, n, stepMs, expectFailure }) {
  const t0 = performance.now();
  const withTimeout = (p, ms, what) =>
    Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`timeout: ${what}`)), ms))]);
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const events = [];
  const closed = new Promise((res) => {
    ws.onclose = (e) => {
      events.push(`close:${e.code}`);
      res({ code: e.code, reason: e.reason, wasClean: e.wasClean });
    };
  });
  ws.onerror = () => events.push('error');
  const opened = await withTimeout(
    new Promise((res) => {
      ws.onopen = () => {
        events.push('open');
        res(true);
      };
      closed.then(() => res(false));
    }),
    stepMs,
    'websocket open or close',
  ).catch((e) => String(e));
  if (opened !== true) {
    return { opened: false, openResult: opened, events, close: await withTimeout(closed, 2000, 'close').catch(() => null), ms: performance.now() - t0 };
  }
  if (expectFailure) {
    ws.close();
    return { opened: true, events, ms: Math.round(performance.now() - t0) };
  }
  // Message i: even i text, odd i binary; sizes from 1 byte to 70 kB (7-bit, 16-bit and 64-bit
  // WebSocket lengths).
  const sizes = Array.from({ length: n }, (_, i) => (i === n - 1 ? 70000 : i === n - 2 ? 126 : 1 + i * 523));
  const msgs = sizes.map((len, i) => {
    if (i % 2 === 0) {
      const head = `m${i}:`;
      return head + 'x'.repeat(Math.max(0, len - head.length));
    }
    const b = new Uint8Array(len);
    for (let k = 0; k < len; k++) b[k] = (k * 31 + i) & 0xff;
    return b.buffer;
  });
  const got = [];
  const allEchoed = new Promise((res) => {
    ws.onmessage = (e) => {
      got.push(e.data);
      if (got.length === n) res();
    };
  });
  for (const m of msgs) ws.send(m);
  const echoErr = await withTimeout(allEchoed, stepMs, `${n} echoes`).then(() => null, (e) => String(e));
  const same = (a, b) => {
    if (typeof a === 'string' || typeof b === 'string') return a === b;
    const x = new Uint8Array(a), y = new Uint8Array(b);
    return x.length === y.length && x.every((v, k) => v === y[k]);
  };
  const mismatches = [];
  for (let i = 0; i < got.length; i++) if (!same(msgs[i], got[i])) mismatches.push(i);
  ws.close(1000, 'done');
  const close = await withTimeout(closed, 3000, 'close').catch(() => null);
  return {
    opened: true,
    sent: n,
    echoed: got.length,
    bytesSent: sizes.reduce((a, b) => a + b, 0),
    mismatches,
    echoErr,
    events,
    close,
    ms: Math.round(performance.now() - t0),
  };
}

async function pageTurns({ turn, peerTurn, n, stepMs, expectFailure, untrustedWaitMs }) {
  const t0 = performance.now();
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const withTimeout = (p, ms, what) =>
    Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`timeout: ${what}`)), ms))]);
  const candErrors = [];
  const mk = (name, server) => {
    const pc = new RTCPeerConnection({ iceServers: [server], iceTransportPolicy: 'relay' });
    pc.onicecandidateerror = (e) =>
      candErrors.push({ pc: name, url: e.url, errorCode: e.errorCode, errorText: e.errorText });
    return pc;
  };

  if (expectFailure) {
    // Gather only: a TURN server whose certificate is not trusted yields no relay candidate (and
    // no error event either, so wait a bounded time).
    const pc = mk('pc1', turn);
    const cands = [];
    let complete = false;
    pc.onicecandidate = (e) => {
      if (e.candidate) cands.push({ type: e.candidate.type, candidate: e.candidate.candidate });
      else complete = true;
    };
    pc.createDataChannel('probe');
    await pc.setLocalDescription(await pc.createOffer());
    const deadline = performance.now() + untrustedWaitMs;
    while (performance.now() < deadline && !complete && cands.length === 0) await sleep(100);
    // A relay candidate can only appear after the TLS handshake; give stragglers a moment.
    if (complete) await sleep(500);
    const result = {
      relayCandidates: cands.filter((c) => c.type === 'relay').length,
      candidates: cands,
      gatheringComplete: complete,
      gatheringState: pc.iceGatheringState,
      candidateErrors: candErrors,
      ms: Math.round(performance.now() - t0),
    };
    pc.close();
    return result;
  }

  const pc1 = mk('pc1', turn);
  const pc2 = mk('pc2', peerTurn ?? turn);
  const cands = { pc1: [], pc2: [] };
  // Trickle ICE inside the page, queueing until the other side has its remote description.
  const link = (from, to, name) => {
    const queue = [];
    let ready = false;
    from.onicecandidate = (e) => {
      if (!e.candidate) return;
      cands[name].push({ type: e.candidate.type, candidate: e.candidate.candidate });
      if (ready) to.addIceCandidate(e.candidate).catch(() => {});
      else queue.push(e.candidate);
    };
    return () => {
      ready = true;
      for (const c of queue.splice(0)) to.addIceCandidate(c).catch(() => {});
    };
  };
  const flushTo2 = link(pc1, pc2, 'pc1');
  const flushTo1 = link(pc2, pc1, 'pc2');
  const dc1 = pc1.createDataChannel('e2e', { ordered: true });
  const dc2p = new Promise((res) => (pc2.ondatachannel = (e) => res(e.channel)));
  const connected = (pc) =>
    new Promise((res, rej) => {
      const check = () => {
        if (pc.connectionState === 'connected') res();
        if (pc.connectionState === 'failed') rej(new Error('connectionState failed'));
      };
      pc.addEventListener('connectionstatechange', check);
      check();
    });

  const offer = await pc1.createOffer();
  await pc1.setLocalDescription(offer);
  await pc2.setRemoteDescription(offer);
  flushTo2();
  const answer = await pc2.createAnswer();
  await pc2.setLocalDescription(answer);
  await pc1.setRemoteDescription(answer);
  flushTo1();

  // Fails fast when gathering finished without a relay candidate on either side (a refused
  // TLS handshake or a wrong password ends gathering early; a blocked port does not, and then
  // the bounded wait below decides).
  const noRelay = new Promise((_, rej) => {
    const t = setInterval(() => {
      for (const [name, pc] of [['pc1', pc1], ['pc2', pc2]]) {
        if (pc.iceGatheringState === 'complete' && !cands[name].some((c) => c.type === 'relay')) {
          clearInterval(t);
          rej(new Error(`${name}: ICE gathering complete without a relay candidate`));
        }
      }
      if (pc1.connectionState === 'connected' && pc2.connectionState === 'connected') clearInterval(t);
    }, 100);
  });
  noRelay.catch(() => {});
  const out = { candidates: cands, candidateErrors: candErrors };
  try {
    await withTimeout(
      Promise.race([Promise.all([connected(pc1), connected(pc2)]), noRelay]),
      stepMs,
      'both peer connections connected',
    );
    out.connectedMs = Math.round(performance.now() - t0);
    const dc2 = await withTimeout(dc2p, stepMs, 'data channel on pc2');
    if (dc1.readyState !== 'open') {
      await withTimeout(new Promise((r) => (dc1.onopen = r)), stepMs, 'data channel open');
    }
    // pc2 answers every message with "echo:" + message; pc1 sends n at once.
    dc2.onmessage = (e) => dc2.send(`echo:${e.data}`);
    const got = [];
    const received2 = [];
    dc2.addEventListener('message', (e) => received2.push(e.data));
    const all = new Promise((res) => {
      dc1.onmessage = (e) => {
        got.push(e.data);
        if (got.length === n) res();
      };
    });
    const msgs = Array.from({ length: n }, (_, i) => `dc-${i}-${'y'.repeat(i * 50)}`);
    for (const m of msgs) dc1.send(m);
    await withTimeout(all, stepMs, `${n} data channel echoes`);
    out.sent = n;
    out.receivedByPc2 = received2.length;
    out.echoedToPc1 = got.length;
    out.mismatches = msgs.map((m, i) => (got[i] === `echo:${m}` && received2[i] === m ? -1 : i)).filter((i) => i >= 0);
  } catch (e) {
    out.error = String(e);
    out.connectionState = { pc1: pc1.connectionState, pc2: pc2.connectionState };
    out.iceConnectionState = { pc1: pc1.iceConnectionState, pc2: pc2.iceConnectionState };
  }

  const selected = async (pc) => {
    const stats = await pc.getStats();
    const byId = new Map();
    stats.forEach((r) => byId.set(r.id, r));
    let pair = null;
    stats.forEach((r) => {
      if (r.type === 'transport' && r.selectedCandidatePairId) pair = byId.get(r.selectedCandidatePairId);
    });
    if (!pair) {
      stats.forEach((r) => {
        if (!pair && r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r;
      });
    }
    if (!pair) return null;
    const pick = (c) =>
      c && {
        candidateType: c.candidateType,
        relayProtocol: c.relayProtocol ?? null,
        protocol: c.protocol,
        address: c.address,
        port: c.port,
        url: c.url ?? null,
      };
    return {
      state: pair.state,
      nominated: pair.nominated,
      bytesSent: pair.bytesSent,
      bytesReceived: pair.bytesReceived,
      local: pick(byId.get(pair.localCandidateId)),
      remote: pick(byId.get(pair.remoteCandidateId)),
    };
  };
  out.selected = { pc1: await selected(pc1), pc2: await selected(pc2) };
  out.ms = Math.round(performance.now() - t0);
  pc1.close();
  pc2.close();
  return out;
}

// The web SDK in a page (scenario join). The page and the bundle are served by Playwright's
// router at cfg.pageOrigin; the SDK talks to the real control plane, edge and media network.
const JOIN_PAGE_HTML = `<!doctype html><meta charset="utf-8"><title>cloudproxy web SDK join</title>
<style>body{font:14px system-ui,sans-serif;margin:16px;background:#f4f6f8}video{width:320px;height:240px;background:#222;border-radius:6px;margin:4px}
figure{display:inline-block;margin:4px}figcaption{font-weight:600}</style>
<h1>cloudproxy web SDK: join</h1><pre id="status"></pre>
<figure><video id="local" autoplay muted playsinline></video><figcaption>local</figcaption></figure>
<span id="remote"></span>`;

async function pageJoin(a) {
  const sdk = await import('/cloudproxy-sdk.js');
  const log = (window.__log = []);
  const client = sdk.createClient({
    controlUrl: a.controlUrl,
    ...(a.rtnSignalUrl ? { rtnSignalUrl: a.rtnSignalUrl } : {}),
    ...(a.area ? { area: a.area } : {}),
    signalTimeoutMs: a.signalTimeoutMs,
    subscribeTimeoutMs: a.stepMs,
  });
  window.__sdk = sdk;
  window.__client = client;
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  for (const ev of ['connection-state-change', 'is-using-cloud-proxy', 'user-joined', 'user-left', 'user-published', 'user-unpublished', 'media-state-change']) {
    client.on(ev, (e) => {
      const flat = {};
      for (const [k, v] of Object.entries(e)) if (v === null || typeof v !== 'object') flat[k] = v;
      log.push({ t: ms(), ev, ...flat });
      document.querySelector('#status').textContent = log.map((l) => JSON.stringify(l)).join('\n');
    });
  }
  const out = {};
  if (a.mode !== null) out.mode = client.startProxyServer(a.mode);
  try {
    const info = await client.join(a.appId, a.channel, a.token, a.uid);
    out.joinMs = ms();
    const r = info.route;
    out.route = { kind: r.kind };
    if (r.kind === 'cloud-proxy') {
      Object.assign(out.route, { edgeId: r.edge.id, mode: r.mode, session: r.session, tried: r.tried.map((x) => `${x.id}: ${x.reason}`) });
    }
    out.signalUrl = info.signalUrl;
    out.members = info.members;
  } catch (e) {
    out.joinError = { code: e.code ?? null, message: String(e.message ?? e), ms: ms() };
    return out;
  }
  if (a.publish) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
      document.querySelector('#local').srcObject = stream;
      window.__localStream = stream;
      const t1 = performance.now();
      await client.publish(stream.getTracks());
      out.publishMs = Math.round(performance.now() - t1);
      out.published = stream.getTracks().map((t) => t.kind);
    } catch (e) {
      out.publishError = { code: e.code ?? null, message: String(e.message ?? e) };
    }
  }
  return out;
}

async function pageSubscribe(uid) {
  const t0 = performance.now();
  try {
    const track = await window.__client.subscribe(uid, 'video');
    const fig = document.createElement('figure');
    const v = document.createElement('video');
    v.autoplay = true;
    v.muted = true;
    v.playsInline = true;
    v.srcObject = new MediaStream([track]);
    const cap = document.createElement('figcaption');
    cap.textContent = `remote ${uid}`;
    fig.append(v, cap);
    document.querySelector('#remote').append(fig);
    v.play().catch(() => {});
    return { ok: true, ms: Math.round(performance.now() - t0), trackId: track.id };
  } catch (e) {
    return { ok: false, code: e.code ?? null, message: String(e.message ?? e), ms: Math.round(performance.now() - t0) };
  }
}

async function pageStats() {
  return window.__client.mediaStats();
}

function pageTryOnJoined(mode) {
  try {
    window.__client.startProxyServer(mode ?? 3);
    return 'ok';
  } catch (e) {
    return e.code ?? String(e);
  }
}

async function pageLeave() {
  const t0 = performance.now();
  await window.__client.leave();
  window.__localStream?.getTracks().forEach((t) => t.stop());
  return { ms: Math.round(performance.now() - t0), state: window.__client.connectionState };
}

// The §5 rules on fresh clients (nothing is sent: every call is refused or only changes settings).
function pageRules(a) {
  const sdk = window.__sdk;
  const fresh = () => sdk.createClient({ controlUrl: a.controlUrl });
  const code = (f) => {
    try {
      f();
      return 'ok';
    } catch (e) {
      return e.code ?? String(e);
    }
  };
  const checks = [];
  let c = fresh();
  c.startProxyServer(3);
  checks.push({
    check: 'setTurnServer after startProxyServer',
    want: 'INVALID_OPERATION',
    got: code(() => c.setTurnServer({ host: 'turn.test', port: 3478, username: 'u', password: 'p', transport: 'udp' })),
  });
  c = fresh();
  c.setProxyServer({ address: 'proxy.test', tlsPort: 443 });
  checks.push({ check: 'startProxyServer after setProxyServer', want: 'INVALID_OPERATION', got: code(() => c.startProxyServer(3)) });
  c = fresh();
  checks.push({ check: 'startProxyServer(1)', want: 'NOT_SUPPORTED', got: code(() => c.startProxyServer(1)) });
  checks.push({ check: 'startProxyServer(7)', want: 'INVALID_PARAMETER', got: code(() => c.startProxyServer(7)) });
  return checks;
}

async function pageBlockedDirect(a) {
  const sdk = window.__sdk ?? (await import('/cloudproxy-sdk.js'));
  const c = a.sameClient
    ? window.__client
    : sdk.createClient({ controlUrl: a.controlUrl, rtnSignalUrl: a.rtnSignalUrl, signalTimeoutMs: a.signalTimeoutMs });
  c.stopProxyServer();
  const t0 = performance.now();
  const out = { rtnSignalUrl: a.rtnSignalUrl, signalTimeoutMs: a.signalTimeoutMs, sameClient: a.sameClient };
  try {
    await c.join(a.appId, a.channel, a.token, a.uid);
    out.joined = true;
    await c.leave();
  } catch (e) {
    out.code = e.code ?? null;
    out.message = String(e.message ?? e);
  }
  out.elapsedMs = Math.round(performance.now() - t0);
  out.state = c.connectionState;
  return out;
}

async function runJoin(cfg, context, summary) {
  const origin = cfg.pageOrigin.replace(/\/+$/, '');
  const bundle = readFileSync(cfg.bundleFile, 'utf8');
  await serveSdkPage(context, origin, bundle);
  const page = await context.newPage();
  watchConsole(page, cfg, summary);
  await page.goto(`${origin}/`);
  summary.secureContext = await page.evaluate(() => window.isSecureContext);
  const stepMs = cfg.stepTimeoutMs;
  const problems = [];
  summary.expected =
    `join ${cfg.channel} as ${cfg.uid} (${cfg.mode === null ? 'direct' : `cloud proxy mode ${cfg.mode}`}), ` +
    `receive ${cfg.expectUid}'s video with framesDecoded growing` +
    (cfg.expectRelay ? `, selected local candidate relay${cfg.expectRelayProtocol ? `/${cfg.expectRelayProtocol}` : ''}` : '') +
    (cfg.publish ? ', outbound video bytesSent growing' : '') +
    (cfg.checkRules ? ', §5 rules' : '') +
    (cfg.blockedDirect ? ', blocked direct join → SIGNAL_UNREACHABLE in bounded time' : '');
  const mainRtn = cfg.rtnSignalUrl ?? cfg.blockedDirect?.rtnSignalUrl ?? null;
  const j = await page.evaluate(pageJoin, {
    controlUrl: cfg.controlUrl,
    area: cfg.area ?? null,
    rtnSignalUrl: mainRtn,
    signalTimeoutMs: cfg.signalTimeoutMs,
    stepMs,
    mode: cfg.mode,
    appId: cfg.appId,
    channel: cfg.channel,
    token: cfg.token,
    uid: cfg.uid,
    publish: cfg.publish,
  });
  summary.join = j;
  const publishedAt = Date.now();
  if (j.joinError) {
    problems.push(`join failed: ${j.joinError.message}`);
  } else {
    const wantKind = cfg.mode === null ? 'direct' : 'cloud-proxy';
    if (j.route.kind !== wantKind) problems.push(`route ${j.route.kind}, expected ${wantKind}`);
    if (j.publishError) problems.push(`publish failed: ${j.publishError.message}`);
    const sub = await page.evaluate(pageSubscribe, cfg.expectUid);
    summary.subscribe = sub;
    if (!sub.ok) problems.push(`no video track from ${cfg.expectUid}: ${sub.message}`);
    else {
      // The first decoded frame (bounded), then two samples at least 1 s apart.
      const deadline = Date.now() + stepMs;
      let first = null;
      while (Date.now() < deadline) {
        const st = await page.evaluate(pageStats);
        if ((st.inbound[cfg.expectUid]?.video?.framesDecoded ?? 0) > 0) {
          first = st;
          break;
        }
        await sleep(200);
      }
      summary.firstFrameMs = first ? Date.now() - publishedAt : null;
      if (!first) problems.push(`no frame decoded from ${cfg.expectUid} within ${stepMs} ms`);
      const s1 = await page.evaluate(pageStats);
      const t1 = Date.now();
      await sleep(Math.max(1100, Math.min(3000, cfg.durationMs / 2)));
      const s2 = await page.evaluate(pageStats);
      const dt = (Date.now() - t1) / 1000;
      const f = (st) => st.inbound[cfg.expectUid]?.video?.framesDecoded ?? 0;
      const b = (st) => st.outbound.video?.bytesSent ?? 0;
      summary.samples = [s1, s2];
      summary.measured = {
        candidateType: s2.candidateType,
        relayProtocol: s2.relayProtocol,
        local: s2.local,
        remote: s2.remote,
        framesDecoded: [f(s1), f(s2)],
        fps: Math.round(((f(s2) - f(s1)) / dt) * 10) / 10,
        frameSize: s2.inbound[cfg.expectUid]?.video ? `${s2.inbound[cfg.expectUid].video.frameWidth}x${s2.inbound[cfg.expectUid].video.frameHeight}` : null,
        videoBytesSent: [b(s1), b(s2)],
        kbpsSent: Math.round(((b(s2) - b(s1)) * 8) / dt / 1000),
        framesEncoded: [s1.outbound.video?.framesEncoded ?? 0, s2.outbound.video?.framesEncoded ?? 0],
        intervalS: dt,
      };
      if (cfg.expectRelay) {
        for (const [i, st] of [s1, s2].entries()) {
          if (st.candidateType !== 'relay') problems.push(`sample ${i + 1}: selected local candidateType ${st.candidateType}, expected relay`);
        }
      }
      if (cfg.expectRelayProtocol && s2.relayProtocol !== cfg.expectRelayProtocol) {
        problems.push(`relayProtocol ${s2.relayProtocol}, expected ${cfg.expectRelayProtocol}`);
      }
      if (!(f(s2) > f(s1))) problems.push(`framesDecoded from ${cfg.expectUid} did not grow (${f(s1)} → ${f(s2)})`);
      if (cfg.publish && !(b(s2) > b(s1))) problems.push(`outbound video bytesSent did not grow (${b(s1)} → ${b(s2)})`);
    }
    // Keep media flowing for durationMs from publish (the far side measures too).
    const rest = cfg.durationMs - (Date.now() - publishedAt);
    if (rest > 0) await sleep(rest);
    if (cfg.screenshot) {
      await page.screenshot({ path: cfg.screenshot, fullPage: true });
      summary.screenshot = cfg.screenshot;
    }
    if (cfg.checkRules) {
      summary.rules = [{ check: 'startProxyServer while joined', want: 'INVALID_OPERATION', got: await page.evaluate(pageTryOnJoined, cfg.mode) }];
    }
    summary.leave = await page.evaluate(pageLeave);
    if (summary.leave.state !== 'DISCONNECTED') problems.push(`after leave the state is ${summary.leave.state}`);
  }
  summary.events = await page.evaluate(() => window.__log ?? []);
  if (cfg.mode !== null && !j.joinError && !summary.events.some((e) => e.ev === 'is-using-cloud-proxy' && e.using === true)) {
    problems.push('no is-using-cloud-proxy {using: true} event');
  }
  if (cfg.checkRules) {
    summary.rules = [...(summary.rules ?? []), ...(await page.evaluate(pageRules, { controlUrl: cfg.controlUrl }))];
    for (const r of summary.rules) if (r.got !== r.want) problems.push(`rule "${r.check}": ${r.got}, expected ${r.want}`);
  }
  if (cfg.blockedDirect) {
    const rtn = cfg.blockedDirect.rtnSignalUrl;
    // An https page may not open ws:// to a non-loopback host (mixed content): the browser would
    // refuse the WebSocket at once and the check would prove nothing about the firewall. Such a
    // direct join runs in a second page at an http://localhost origin (a secure context too).
    const blockedOrigin =
      cfg.blockedDirect.pageOrigin ?? (/^ws:/i.test(rtn) && /^https:/i.test(origin) ? 'http://localhost:8123' : origin);
    let bpage = page;
    if (blockedOrigin !== origin) {
      await serveSdkPage(context, blockedOrigin, bundle);
      bpage = await context.newPage();
      watchConsole(bpage, cfg, summary, false);
      await bpage.goto(`${blockedOrigin}/`);
    }
    const r = await bpage.evaluate(pageBlockedDirect, {
      sameClient: !j.joinError && rtn === mainRtn && bpage === page,
      controlUrl: cfg.controlUrl,
      rtnSignalUrl: rtn,
      signalTimeoutMs: cfg.signalTimeoutMs,
      appId: cfg.appId,
      channel: cfg.channel,
      token: cfg.token,
      uid: cfg.uid,
    });
    r.pageOrigin = blockedOrigin;
    summary.blockedDirect = r;
    if (/insecure WebSocket|Mixed Content/i.test(r.message ?? '')) {
      problems.push('the direct join was refused by the browser (mixed content), not by the network: use a wss:// rtnSignalUrl or an http://localhost blockedDirect.pageOrigin');
    }
    if (r.joined) problems.push(`the direct join to ${rtn} succeeded: the firewall does not block it`);
    else if (r.code !== 'SIGNAL_UNREACHABLE') problems.push(`direct join failed with ${r.code}, expected SIGNAL_UNREACHABLE (${r.message})`);
    if (r.elapsedMs > cfg.signalTimeoutMs + 2000) problems.push(`direct join took ${r.elapsedMs} ms to fail (bound ${cfg.signalTimeoutMs + 2000})`);
    if (r.state !== 'DISCONNECTED') problems.push(`after the failed direct join the state is ${r.state}`);
  }
  return problems;
}

// Serves the test page and the bundle at `origin` from Playwright's router (no socket, works in
// any network namespace) and grants the origin what a user would: Local Network Access (the
// edge and the media network are on private addresses), camera and microphone.
async function serveSdkPage(context, origin, bundle) {
  await context.route(`${origin}/**`, (route) => {
    const path = new URL(route.request().url()).pathname;
    if (path === '/cloudproxy-sdk.js') return route.fulfill({ status: 200, contentType: 'text/javascript', body: bundle });
    if (path === '/') return route.fulfill({ status: 200, contentType: 'text/html', body: JOIN_PAGE_HTML });
    return route.fulfill({ status: 404, body: 'not found' });
  });
  await context.grantPermissions(['local-network-access', 'camera', 'microphone'], { origin });
}

async function runDemo(cfg, context, summary) {
  const origin = new URL(cfg.url).origin;
  await context.grantPermissions(['local-network-access', 'camera', 'microphone'], { origin });
  const page = await context.newPage();
  await page.setViewportSize({ width: 1280, height: 900 });
  watchConsole(page, cfg, summary);
  const problems = [];
  const stepMs = cfg.stepTimeoutMs;
  summary.expected = `demo page: mode ${cfg.mode}, join, ${cfg.expectUid}'s video with framesDecoded growing`;
  await page.goto(cfg.url);
  await page.waitForFunction(() => window.demoState && window.demoState.ready === true, null, { timeout: stepMs });
  if (cfg.uid) await page.fill('#uid', cfg.uid);
  await page.selectOption('#mode', cfg.mode === null ? 'direct' : String(cfg.mode));
  const t0 = Date.now();
  await page.click('#join');
  const uid = cfg.expectUid;
  const seen = await page
    .waitForFunction(
      (u) => window.demoState.error || (window.demoState.remote[u]?.framesDecoded ?? 0) > 0,
      uid,
      { timeout: stepMs, polling: 200 },
    )
    .then(() => true, () => false);
  const snap = () => page.evaluate(() => JSON.parse(JSON.stringify(window.demoState)));
  const s1 = await snap();
  summary.firstFrameMs = seen && !s1.error ? Date.now() - t0 : null;
  if (s1.error) problems.push(`demo error: ${s1.error}`);
  else if (!seen) problems.push(`no frame from ${uid} within ${stepMs} ms (state ${s1.state})`);
  // demoState is refreshed every second: 2.2 s covers at least two refreshes.
  await sleep(2200);
  const s2 = await snap();
  summary.demoState = [s1, s2];
  const f = (s) => s.remote?.[uid]?.framesDecoded ?? 0;
  summary.measured = { framesDecoded: [f(s1), f(s2)], using: s2.using, transport: s2.transport, relayProtocol: s2.relayProtocol, edgeId: s2.edgeId, state: s2.state };
  if (!s1.error && !(f(s2) > f(s1))) problems.push(`framesDecoded from ${uid} did not grow (${f(s1)} → ${f(s2)})`);
  if (s2.state !== 'CONNECTED') problems.push(`state ${s2.state}`);
  if (cfg.mode !== null && s2.using !== true) problems.push(`demoState.using is ${s2.using}`);
  if (cfg.expectRelayProtocol && s2.relayProtocol !== cfg.expectRelayProtocol) {
    problems.push(`relayProtocol ${s2.relayProtocol}, expected ${cfg.expectRelayProtocol}`);
  }
  if (cfg.screenshot) {
    await page.screenshot({ path: cfg.screenshot, fullPage: true });
    summary.screenshot = cfg.screenshot;
  }
  await page.click('#leave').catch(() => {});
  await page.waitForFunction(() => window.demoState.state === 'DISCONNECTED', null, { timeout: 5000 }).catch(() => {});
  summary.afterLeave = await page.evaluate(() => window.demoState.state);
  return problems;
}

function watchConsole(page, cfg, summary, reset = true) {
  if (reset || !summary.consoleErrors) summary.consoleErrors = [];
  page.on('console', (m) => {
    if (cfg.verbose) log(`console.${m.type()}: ${m.text()}`);
    if ((m.type() === 'error' || m.type() === 'warning') && summary.consoleErrors.length < 20) {
      summary.consoleErrors.push(redact(`${m.type()}: ${m.text()}`));
    }
  });
  page.on('pageerror', (e) => {
    log(`pageerror: ${e}`);
    if (summary.consoleErrors.length < 20) summary.consoleErrors.push(redact(`pageerror: ${e}`));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Verdicts
// ---------------------------------------------------------------------------------------------

function judgeWss(r, n) {
  const problems = [];
  if (!r.opened) problems.push(`websocket did not open (${JSON.stringify(r.openResult)}, events ${r.events})`);
  else {
    if (r.echoed !== n) problems.push(`echoed ${r.echoed}/${n}${r.echoErr ? ` (${r.echoErr})` : ''}`);
    if (r.mismatches?.length) problems.push(`echo mismatch at ${r.mismatches}`);
  }
  return problems;
}

function expectedRelayProtocol(url) {
  if (url.startsWith('turns:')) return 'tls';
  return /[?&]transport=tcp\b/.test(url) ? 'tcp' : 'udp';
}

function judgeTurns(r, n, cfg) {
  const want = { pc1: 'tls', pc2: expectedRelayProtocol((cfg.peerTurn ?? cfg.turn).urls) };
  const problems = [];
  if (r.error) problems.push(r.error);
  if (r.error === undefined && r.echoedToPc1 !== n) problems.push(`echoed ${r.echoedToPc1}/${n}`);
  if (r.mismatches?.length) problems.push(`data channel mismatch at ${r.mismatches}`);
  for (const side of ['pc1', 'pc2']) {
    const s = r.selected?.[side];
    if (!s) {
      problems.push(`${side}: no selected candidate pair`);
      continue;
    }
    if (s.local?.candidateType !== 'relay') problems.push(`${side}: local candidateType ${s.local?.candidateType}`);
    if (s.local?.relayProtocol !== want[side]) {
      problems.push(`${side}: local relayProtocol ${s.local?.relayProtocol}, expected ${want[side]}`);
    }
  }
  return problems;
}

async function main() {
  const cfg = loadConfig();
  const sdkScenario = cfg.scenario === 'join' || cfg.scenario === 'demo';
  const trustCa = sdkScenario ? Boolean(cfg.caFile) : cfg.scenario !== 'untrusted';
  const { home, wrapper } = prepareHome(cfg, trustCa);
  const summary = { scenario: cfg.scenario, ok: false, caImported: trustCa };
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: wrapper,
      headless: true,
      args: CHROMIUM_ARGS,
      env: {
        ...process.env,
        HOME: home,
        XDG_CONFIG_HOME: join(home, '.config'),
        XDG_CACHE_HOME: join(home, '.cache'),
        XDG_DATA_HOME: join(home, '.local/share'),
      },
      timeout: 30000,
    });
    summary.browserVersion = browser.version();
    if (sdkScenario) {
      const context = await browser.newContext();
      summary.problems = cfg.scenario === 'join' ? await runJoin(cfg, context, summary) : await runDemo(cfg, context, summary);
      summary.ok = summary.problems.length === 0;
    } else {
      await runLegacy(cfg, browser, summary, home);
    }
  } catch (e) {
    summary.ok = false;
    summary.problems = [...(summary.problems ?? []), `harness error: ${e?.stack ?? e}`];
  } finally {
    if (browser) await browser.close().catch(() => {});
    summary.elapsedMs = Date.now() - started;
    if (cfg.keepTmp) summary.home = home;
    else rmSync(home, { recursive: true, force: true });
  }
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exitCode = summary.ok ? 0 : 1;
}

// Scenarios wss, turns and untrusted.
async function runLegacy(cfg, browser, summary, home) {
  // The page is a secure origin that the test itself serves (intercepted, no socket, so it
  // works unchanged when the browser is in a network namespace), standing in for a web app on
  // the public Internet. Chromium's Local Network Access checks block a public page's
  // WebSocket/WebRTC to loopback or private addresses unless the origin holds the
  // 'local-network-access' permission, which Playwright grants here as a user would; a real
  // edge on a public address needs none of this.
  const context = await browser.newContext();
  await context.route(`${PAGE_ORIGIN}/**`, (route) =>
    route.fulfill({ status: 200, contentType: 'text/html', body: PAGE_HTML }),
  );
  await context.grantPermissions(['local-network-access'], { origin: PAGE_ORIGIN });
  const page = await context.newPage();
  // Console errors carry the browser's reason for a failed connection (net::ERR_..., HTTP
  // status of a refused upgrade): keep them in the verdict.
  summary.consoleErrors = [];
  page.on('console', (m) => {
    if (cfg.verbose) log(`console.${m.type()}: ${m.text()}`);
    if (m.type() === 'error' && summary.consoleErrors.length < 20) summary.consoleErrors.push(redact(m.text()));
  });
  page.on('pageerror', (e) => log(`pageerror: ${e}`));
  await page.goto(`${PAGE_ORIGIN}/`);
  summary.secureContext = await page.evaluate(() => window.isSecureContext);
  if (cfg.verbose) log('argv:', readFileSync(join(home, 'chromium-argv.txt'), 'utf8').trim().split('\n').join(' '));
  const n = cfg.messages;
  const stepMs = cfg.stepTimeoutMs;
  if (cfg.scenario === 'wss') {
    summary.expected = `${n} WebSocket echoes through ${redact(cfg.wssUrl)}`;
    const r = await page.evaluate(pageWss, { url: cfg.wssUrl, n, stepMs, expectFailure: false });
    summary.wss = r;
    summary.problems = judgeWss(r, n);
  } else if (cfg.scenario === 'turns') {
    const peerUrl = (cfg.peerTurn ?? cfg.turn).urls;
    summary.expected =
      `data channel between a relay-only client on ${cfg.turn.urls} (selected local candidate relay/tls) ` +
      `and a relay-only peer on ${peerUrl} (relay/${expectedRelayProtocol(peerUrl)})`;
    const r = await page.evaluate(pageTurns, {
      turn: cfg.turn,
      peerTurn: cfg.peerTurn ?? null,
      n,
      stepMs,
      expectFailure: false,
    });
    summary.turns = r;
    summary.problems = judgeTurns(r, n, cfg);
  } else {
    summary.expected = 'without the CA: no relay candidate from the TURN server and the WebSocket errors without opening (each probe that is configured)';
    summary.problems = [];
    // Run the two probes concurrently so the bounded waits overlap.
    const [t, w] = await Promise.all([
      cfg.turn?.urls
        ? page.evaluate(pageTurns, {
            turn: cfg.turn,
            n,
            stepMs,
            expectFailure: true,
            untrustedWaitMs: cfg.untrustedWaitMs,
          })
        : null,
      cfg.wssUrl ? page.evaluate(pageWss, { url: cfg.wssUrl, n, stepMs, expectFailure: true }) : null,
    ]);
    if (t) {
      summary.turns = t;
      if (t.relayCandidates !== 0) summary.problems.push(`untrusted TURN server gave ${t.relayCandidates} relay candidate(s)`);
    }
    if (w) {
      summary.wss = w;
      if (w.opened) summary.problems.push('WebSocket to an untrusted server opened');
    }
  }
  summary.ok = summary.problems.length === 0;
}

function redact(text) {
  return String(text).replace(/ticket=[^&'"\s]*/g, 'ticket=<redacted>');
}

main().catch((e) => {
  process.stdout.write(`${JSON.stringify({ ok: false, problems: [`harness error: ${e?.stack ?? e}`] })}\n`);
  process.exitCode = 2;
});
