/**
 * One joined channel's media: the `RTCPeerConnection` with the media network's SFU and the
 * offer/answer exchange over the signalling connection, by the negotiation rules of
 * `crates/rtn/PROTOCOL.md`:
 *
 * 1. the client makes the first offer right after `joined` (a data channel when nothing is
 *    published yet, so the offer has an m-line);
 * 2. a server `offer` is applied and answered;
 * 3. crossing offers: while an offer of the client's own is outstanding, a server `offer` is
 *    ignored (the server drops it when it gets the client's, and offers again later);
 * 4. `publish` / `unpublish` change the local transceivers and make a new offer (one at a time;
 *    changes made while one is outstanding go into the next).
 *
 * Every step that touches the peer connection runs in one queue, in arrival order.
 */

import { CloudProxyError } from './errors.js';
import type { ServerMessage, SignalConnection } from './signal.js';

export type MediaType = 'audio' | 'video';

/** A remote user's track (`user-published` / `user-unpublished`). */
export interface RemoteTrackEvent {
  /** The publisher's uid (the track's `a=msid:` stream id, set by the SFU). */
  uid: string;
  mediaType: MediaType;
  track: MediaStreamTrack | null;
}

/** A channel member (`user-joined` / `user-left`). */
export interface UserEvent {
  uid: string;
}

/** The media peer connection's state (`media-state-change`). */
export interface MediaStateEvent {
  state: RTCPeerConnectionState;
}

/** A remote user and the tracks received from it. */
export interface RemoteUser {
  uid: string;
  audioTrack: MediaStreamTrack | null;
  videoTrack: MediaStreamTrack | null;
}

/** What {@link MediaSession.stats} computes from `RTCPeerConnection.getStats()`. */
export interface MediaStats {
  /** The media peer connection's `connectionState`. */
  connectionState: RTCPeerConnectionState | 'closed';
  /** The selected candidate pair's local candidate type (`relay` through a TURN server), or null before one is selected. */
  candidateType: string | null;
  /** Transport between the browser and the TURN server (`udp` | `tcp` | `tls`) for a relay candidate, else null. */
  relayProtocol: string | null;
  /** The selected local candidate (address and port as the browser shows them). */
  local: { address: string | null; port: number | null; protocol: string | null } | null;
  /** The selected remote candidate (the media network's address, or a peer-reflexive one). */
  remote: { candidateType: string | null; address: string | null; port: number | null } | null;
  /** Bytes over the selected pair. */
  pairBytesSent: number;
  pairBytesReceived: number;
  /** Received media per remote uid. */
  inbound: Record<
    string,
    {
      video?: { framesDecoded: number; bytesReceived: number; frameWidth?: number; frameHeight?: number };
      audio?: { bytesReceived: number };
    }
  >;
  /** Sent media (summed over the published tracks of a kind). */
  outbound: { video?: { framesEncoded: number; bytesSent: number }; audio?: { bytesSent: number } };
}

export interface MediaSessionEvents {
  'user-joined': UserEvent;
  'user-left': UserEvent;
  'user-published': RemoteTrackEvent;
  'user-unpublished': RemoteTrackEvent;
  'media-state-change': MediaStateEvent;
}

export interface MediaSessionOptions {
  pc: RTCPeerConnection;
  conn: SignalConnection;
  /** Own uid. */
  uid: string;
  /** Other members from `joined`. */
  members: readonly string[];
  emit: <K extends keyof MediaSessionEvents>(event: K, payload: MediaSessionEvents[K]) => void;
  /** The signalling socket closed on its own (not by {@link MediaSession.close}). */
  onSignalLost: (why: string) => void;
}

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
}

interface Remote {
  uid: string;
  mediaType: MediaType;
  track: MediaStreamTrack;
  transceiver: RTCRtpTransceiver | null;
  mid: string | null;
}

interface TrackWaiter {
  uid: string;
  mediaType: MediaType;
  resolve: (t: MediaStreamTrack) => void;
  reject: (e: unknown) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** The characters the SFU keeps in an msid stream id (RFC 4566 token characters). */
export function msidToken(uid: string): string {
  return uid.replace(/[^A-Za-z0-9!#$%&'*+\-.^_`{|}~]/g, '');
}

/** The mids of the m-sections an SDP rejects or stops (port 0). */
export function stoppedMids(sdp: string): Set<string> {
  const out = new Set<string>();
  const sections = sdp.split(/\r?\n(?=m=)/).slice(1);
  for (const sec of sections) {
    const port = /^m=\S+ (\d+)/.exec(sec)?.[1];
    const mid = /\r?\na=mid:(\S+)/.exec(sec)?.[1];
    if (port === '0' && mid !== undefined) out.add(mid);
  }
  return out;
}

export class MediaSession {
  readonly pc: RTCPeerConnection;
  readonly uid: string;
  readonly #conn: SignalConnection;
  readonly #emit: MediaSessionOptions['emit'];
  readonly #members = new Set<string>();
  #remotes: Remote[] = [];
  readonly #local = new Map<MediaStreamTrack, RTCRtpTransceiver>();
  #localStream: MediaStream | null | undefined;
  #chain: Promise<void> = Promise.resolve();
  /** Callers waiting for an offer that includes their change. */
  #wanted: Waiter[] = [];
  /** The callers of the outstanding offer, or null when none is outstanding. */
  #inflight: Waiter[] | null = null;
  #trackWaiters: TrackWaiter[] = [];
  #closed = false;
  #lastState: RTCPeerConnectionState | null = null;

  constructor(o: MediaSessionOptions) {
    this.pc = o.pc;
    this.uid = o.uid;
    this.#conn = o.conn;
    this.#emit = o.emit;
    for (const m of o.members) this.#members.add(m);
    this.pc.addEventListener('track', (ev: RTCTrackEvent) => this.#onTrack(ev));
    this.pc.addEventListener('connectionstatechange', () => {
      const state = this.pc.connectionState;
      if (this.#closed || state === this.#lastState) return;
      this.#lastState = state;
      this.#emit('media-state-change', { state });
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
  listen(): void {
    this.#conn.onMessage((m) => this.#handle(m));
  }

  /** The other members of the channel. */
  members(): string[] {
    return [...this.#members].sort();
  }

  /** Remote users and their tracks (members without tracks included). */
  remoteUsers(): RemoteUser[] {
    const uids = new Set<string>([...this.#members, ...this.#remotes.map((r) => r.uid)]);
    return [...uids].sort().map((uid) => ({
      uid,
      audioTrack: this.#latest(uid, 'audio')?.track ?? null,
      videoTrack: this.#latest(uid, 'video')?.track ?? null,
    }));
  }

  /**
   * The newest track of `uid` and `mediaType`. A publisher that stops a track and publishes a
   * new one may leave the old one in place (the stand-in SFU stops forwarded tracks only when
   * their publisher leaves), so the newest is the live one.
   */
  #latest(uid: string, mediaType: MediaType): Remote | undefined {
    for (let i = this.#remotes.length - 1; i >= 0; i--) {
      const r = this.#remotes[i] as Remote;
      if (r.uid === uid && r.mediaType === mediaType) return r;
    }
    return undefined;
  }

  /** The first offer (rule 1): a data channel, so there is an m-line before anything is published. */
  start(): Promise<void> {
    this.pc.createDataChannel('cloudproxy');
    return this.#negotiate();
  }

  /** Adds a sendonly transceiver per new track and renegotiates; resolves when the answer is applied. */
  async publish(tracks: MediaStreamTrack[]): Promise<void> {
    this.#assertOpen();
    const stream = this.#stream();
    let added = 0;
    for (const track of tracks) {
      if (this.#local.has(track)) continue;
      const init: RTCRtpTransceiverInit = { direction: 'sendonly' };
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
  async unpublish(tracks?: MediaStreamTrack[]): Promise<void> {
    this.#assertOpen();
    const which = tracks ?? [...this.#local.keys()];
    let removed = 0;
    for (const track of which) {
      const tr = this.#local.get(track);
      if (!tr) continue;
      this.#local.delete(track);
      this.#localStream?.removeTrack(track);
      try {
        if (typeof tr.stop === 'function') tr.stop();
        else this.pc.removeTrack(tr.sender);
      } catch {
        // already stopped
      }
      removed += 1;
    }
    if (removed) await this.#negotiate();
  }

  /** Published local tracks. */
  localTracks(): MediaStreamTrack[] {
    return [...this.#local.keys()];
  }

  /** `uid`'s track of `mediaType`: at once if it arrived, else the first that does within `timeoutMs`. */
  subscribe(uid: string, mediaType: MediaType, timeoutMs: number): Promise<MediaStreamTrack> {
    this.#assertOpen();
    const have = this.#latest(uid, mediaType);
    if (have) return Promise.resolve(have.track);
    return new Promise((resolve, reject) => {
      const w: TrackWaiter = {
        uid,
        mediaType,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#trackWaiters = this.#trackWaiters.filter((x) => x !== w);
          reject(
            new CloudProxyError(
              'SUBSCRIBE_TIMEOUT',
              `no ${mediaType} track from ${uid} within ${timeoutMs} ms${this.#members.has(uid) ? '' : ` (${uid} is not in the channel)`}`,
            ),
          );
        }, timeoutMs),
      };
      this.#trackWaiters.push(w);
    });
  }

  /** Numbers for the app, the demo and the tests, from `pc.getStats()`. */
  async stats(): Promise<MediaStats> {
    const out: MediaStats = {
      connectionState: this.pc.connectionState,
      candidateType: null,
      relayProtocol: null,
      local: null,
      remote: null,
      pairBytesSent: 0,
      pairBytesReceived: 0,
      inbound: {},
      outbound: {},
    };
    if (this.#closed) return { ...out, connectionState: 'closed' };
    const report = await this.pc.getStats();
    const byId = new Map<string, Record<string, unknown>>();
    report.forEach((r: Record<string, unknown>) => byId.set(r['id'] as string, r));
    let pair: Record<string, unknown> | undefined;
    byId.forEach((r) => {
      if (!pair && r['type'] === 'transport' && typeof r['selectedCandidatePairId'] === 'string') {
        pair = byId.get(r['selectedCandidatePairId']);
      }
    });
    if (!pair) {
      byId.forEach((r) => {
        if (!pair && r['type'] === 'candidate-pair' && r['nominated'] === true && r['state'] === 'succeeded') pair = r;
      });
    }
    const num = (v: unknown) => (typeof v === 'number' ? v : 0);
    const strOrNull = (v: unknown) => (typeof v === 'string' ? v : null);
    if (pair) {
      const l = byId.get(pair['localCandidateId'] as string);
      const r = byId.get(pair['remoteCandidateId'] as string);
      out.pairBytesSent = num(pair['bytesSent']);
      out.pairBytesReceived = num(pair['bytesReceived']);
      if (l) {
        out.candidateType = strOrNull(l['candidateType']);
        out.relayProtocol = out.candidateType === 'relay' ? strOrNull(l['relayProtocol']) : null;
        out.local = {
          address: strOrNull(l['address']),
          port: typeof l['port'] === 'number' ? l['port'] : null,
          protocol: strOrNull(l['protocol']),
        };
      }
      if (r) {
        out.remote = {
          candidateType: strOrNull(r['candidateType']),
          address: strOrNull(r['address']),
          port: typeof r['port'] === 'number' ? r['port'] : null,
        };
      }
    }
    byId.forEach((s) => {
      if (s['type'] === 'inbound-rtp') {
        const kind = s['kind'] as MediaType;
        const remote =
          this.#remotes.find((x) => x.track.id === s['trackIdentifier']) ??
          this.#remotes.find((x) => x.mid !== null && x.mid === s['mid']);
        if (!remote || (kind !== 'audio' && kind !== 'video')) return;
        const entry = (out.inbound[remote.uid] ??= {});
        if (kind === 'video') {
          const v = (entry.video ??= { framesDecoded: 0, bytesReceived: 0 });
          v.framesDecoded += num(s['framesDecoded']);
          v.bytesReceived += num(s['bytesReceived']);
          if (typeof s['frameWidth'] === 'number') v.frameWidth = s['frameWidth'];
          if (typeof s['frameHeight'] === 'number') v.frameHeight = s['frameHeight'];
        } else {
          const a = (entry.audio ??= { bytesReceived: 0 });
          a.bytesReceived += num(s['bytesReceived']);
        }
      } else if (s['type'] === 'outbound-rtp') {
        if (s['kind'] === 'video') {
          const v = (out.outbound.video ??= { framesEncoded: 0, bytesSent: 0 });
          v.framesEncoded += num(s['framesEncoded']);
          v.bytesSent += num(s['bytesSent']);
        } else if (s['kind'] === 'audio') {
          const a = (out.outbound.audio ??= { bytesSent: 0 });
          a.bytesSent += num(s['bytesSent']);
        }
      }
    });
    return out;
  }

  /** Sends `leave` (when `leave`), closes the socket and the peer connection; rejects waiters. */
  close(leave = true): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#conn.close(leave);
    try {
      this.pc.close();
    } catch {
      // already closed
    }
    const gone = new CloudProxyError('INVALID_OPERATION', 'left the channel');
    for (const w of [...this.#wanted, ...(this.#inflight ?? [])]) w.reject(gone);
    this.#wanted = [];
    this.#inflight = null;
    for (const w of this.#trackWaiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(gone);
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new CloudProxyError('INVALID_OPERATION', 'left the channel');
  }

  #stream(): MediaStream | null {
    if (this.#localStream === undefined) {
      const MS = (globalThis as { MediaStream?: new () => MediaStream }).MediaStream;
      this.#localStream = typeof MS === 'function' ? new MS() : null;
    }
    return this.#localStream;
  }

  /** Runs `step` after every earlier step; a failing step does not stop later ones. */
  #enqueue(step: () => Promise<void> | void): Promise<void> {
    const run = this.#chain.then(() => (this.#closed ? undefined : step()));
    this.#chain = run.catch((e: unknown) => {
      if (!this.#closed) console.warn('cloudproxy: media negotiation step failed', e);
    });
    return run;
  }

  /** Asks for an offer that includes the current local state; resolves when its answer is applied. */
  #negotiate(): Promise<void> {
    const p = new Promise<void>((resolve, reject) => this.#wanted.push({ resolve, reject }));
    void this.#enqueue(() => this.#offer());
    return p;
  }

  async #offer(): Promise<void> {
    if (this.#inflight || this.#wanted.length === 0) return;
    const group = this.#wanted.splice(0);
    this.#inflight = group;
    try {
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      this.#conn.send({ type: 'offer', sdp: this.pc.localDescription?.sdp ?? offer.sdp ?? '' });
    } catch (e) {
      this.#inflight = null;
      for (const w of group) w.reject(e);
    }
  }

  #handle(m: ServerMessage): void {
    switch (m.type) {
      case 'answer':
        void this.#enqueue(() => this.#onAnswer(m.sdp));
        return;
      case 'offer':
        void this.#enqueue(() => this.#onOffer(m.sdp));
        return;
      case 'error':
        void this.#enqueue(() => this.#onError(m.code, m.message));
        return;
      case 'member-joined':
        if (m.uid === this.uid || this.#members.has(m.uid)) return;
        this.#members.add(m.uid);
        this.#emit('user-joined', { uid: m.uid });
        return;
      case 'member-left':
        if (!this.#members.delete(m.uid)) return;
        for (const r of this.#remotes.filter((x) => x.uid === m.uid)) this.#removeRemote(r);
        this.#emit('user-left', { uid: m.uid });
        return;
      case 'joined':
      case 'left':
        return;
    }
  }

  async #onAnswer(sdp: string): Promise<void> {
    const group = this.#inflight;
    // An answer without an outstanding offer: nothing to apply it to.
    if (!group) return;
    try {
      await this.pc.setRemoteDescription({ type: 'answer', sdp });
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

  async #onOffer(sdp: string): Promise<void> {
    // Crossing offers: ours is outstanding, the server drops its own and offers again later.
    if (this.#inflight) return;
    try {
      await this.pc.setRemoteDescription({ type: 'offer', sdp });
      const answer = await this.pc.createAnswer();
      await this.pc.setLocalDescription(answer);
      this.#conn.send({ type: 'answer', sdp: this.pc.localDescription?.sdp ?? answer.sdp ?? '' });
    } catch (e) {
      // The server waits for an answer that will not come; an offer of ours resets it (it
      // drops its pending offer and offers the changes again).
      console.warn('cloudproxy: could not apply the server offer; offering anew', e);
      if (this.pc.signalingState === 'have-remote-offer') {
        await this.pc.setRemoteDescription({ type: 'rollback' }).catch(() => undefined);
      }
      this.#wanted.push({ resolve: () => undefined, reject: () => undefined });
    }
    this.#checkRemoved(sdp);
    // Changes asked for while the server's offer was being answered.
    await this.#offer();
  }

  async #onError(code: string, message: string): Promise<void> {
    const group = this.#inflight;
    if (!group) {
      console.warn(`cloudproxy: signalling gateway error ${code}: ${message}`);
      return;
    }
    // Our offer was refused (BAD_SDP, MEDIA_UNAVAILABLE, ...): back to stable, fail its callers.
    this.#inflight = null;
    await this.#rollback();
    const err = new CloudProxyError('SIGNAL_REFUSED', `the signalling gateway refused the offer: ${code}: ${message}`, {
      signalCode: code,
    });
    for (const w of group) w.reject(err);
    await this.#offer();
  }

  async #rollback(): Promise<void> {
    if (this.pc.signalingState !== 'have-local-offer') return;
    try {
      await this.pc.setLocalDescription({ type: 'rollback' });
    } catch {
      // nothing to roll back
    }
  }

  #uidOfStream(streamId: string | undefined): string {
    if (streamId === undefined) return '';
    if (this.#members.has(streamId)) return streamId;
    for (const m of this.#members) if (msidToken(m) === streamId) return m;
    return streamId;
  }

  #onTrack(ev: RTCTrackEvent): void {
    if (this.#closed) return;
    const kind = ev.track.kind;
    if (kind !== 'audio' && kind !== 'video') return;
    const uid = this.#uidOfStream(ev.streams[0]?.id);
    const transceiver = ev.transceiver ?? null;
    // A recycled transceiver carries a new track: the old entry is gone.
    this.#remotes = this.#remotes.filter((r) => !(transceiver && r.transceiver === transceiver));
    const remote: Remote = { uid, mediaType: kind, track: ev.track, transceiver, mid: transceiver?.mid ?? null };
    this.#remotes.push(remote);
    this.#emit('user-published', { uid, mediaType: kind, track: ev.track });
    for (const w of this.#trackWaiters.filter((x) => x.uid === uid && x.mediaType === kind)) {
      clearTimeout(w.timer);
      w.resolve(ev.track);
    }
    this.#trackWaiters = this.#trackWaiters.filter((x) => !(x.uid === uid && x.mediaType === kind));
  }

  /** After a description is applied: remote tracks whose m-line is stopped are unpublished. */
  #checkRemoved(sdp: string): void {
    const stopped = stoppedMids(sdp);
    const live = typeof this.pc.getTransceivers === 'function' ? this.pc.getTransceivers() : null;
    for (const r of [...this.#remotes]) {
      const t = r.transceiver;
      if (r.mid === null && t?.mid) r.mid = t.mid;
      const gone =
        (r.mid !== null && stopped.has(r.mid)) ||
        (t !== null &&
          ((t as { stopped?: boolean }).stopped === true ||
            t.currentDirection === 'stopped' ||
            t.currentDirection === 'inactive' ||
            (live !== null && !live.includes(t))));
      if (gone) this.#removeRemote(r);
    }
  }

  #removeRemote(r: Remote): void {
    this.#remotes = this.#remotes.filter((x) => x !== r);
    this.#emit('user-unpublished', { uid: r.uid, mediaType: r.mediaType, track: r.track });
  }
}
