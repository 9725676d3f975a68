// A conference (group call) through the conference door, `/vsp/ws` (docs/vsp.md), with
// the server's own media endpoint: `nd login` with the session token, `conf join` on the
// group's id, `CALLME_S1` for the ICE servers (`conf.webrtc.servdesc`: TURN credentials),
// `CALLME_S2` with the browser's offer, whose answer comes back in
// `conf.webrtc.servufrag`'s `sdp`. The parties come and go as `conf.changed`
// (`addParties`, `delParties`, `updParties`); `conf state` says the microphone and camera.
//
// The endpoint gives each receiving audio and video line pair of the offer ("slot") one
// other party, fixed, without renegotiation: the first slots to the earliest parties with
// media, a slot freed by a leaver to the next one waiting (crates/media/src/slots.rs).
// The door says which party each slot shows (`conf.webrtc.slots`, by the lines' mids);
// from a server that does not, the client keeps the same book from the door's events, so
// each tile shows the right party's stream under its name either way.

import type { Id } from './api';

/** A party as the door renders it (docs/vsp.md, "Objects"). */
export interface Party {
  PartyID: number;
  username: string;
  login: string;
  uin: number;
  Index: number;
  State: number;
  role: string;
  bMicOn: boolean;
  bCamOn: boolean;
  bHandUp: boolean;
}

export type ConferenceState = 'joining' | 'connecting' | 'live' | 'ended';

/** Receive slots offered: this many other parties are seen and heard at once. */
export const SLOTS = 6;
/** How long the door may take to answer a command. */
const ANSWER_TIMEOUT_MS = 15_000;

interface Waiter {
  ok: (result: Record<string, unknown>) => void;
  fail: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class ConferenceError extends Error {
  constructor(
    public code: number,
    message: string,
  ) {
    super(message);
  }
}

export class Conference {
  state: ConferenceState = 'joining';
  /** Why it ended, shown to the user. */
  ended = '';
  partyId = 0;
  /** Everyone in the conference, this party included, by PartyID. */
  parties = new Map<number, Party>();
  local: MediaStream | null = null;
  mic = true;
  cam = true;
  /** Which party each receive slot shows (`null`: free). */
  slots: (number | null)[] = [];
  /** Each slot's received audio and video, as streams for the page's players. */
  audio: MediaStream[] = [];
  video: MediaStream[] = [];
  pc: RTCPeerConnection | null = null;
  private ws: WebSocket;
  private opened: Promise<void>;
  private seq = 0;
  private waiting = new Map<number, Waiter>();
  private webrtc = new Map<string, (r: Record<string, unknown>) => void>();
  /** The parties with media (State 2), in the order they got it: the endpoint's order. */
  private withMedia: number[] = [];
  /** Whether the door says the slots itself (`conf.webrtc.slots`): then they are its. */
  private told = false;
  private audioTx: RTCRtpTransceiver[] = [];
  private videoTx: RTCRtpTransceiver[] = [];

  constructor(
    public groupId: Id,
    private changed: () => void,
  ) {
    const url = new URL('/vsp/ws', location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    this.ws = new WebSocket(url);
    this.opened = new Promise((ok, fail) => {
      this.ws.onopen = () => ok();
      this.ws.onerror = () => fail(new Error('The conference server cannot be reached.'));
    });
    this.ws.onmessage = (e) => this.onFrame(e.data);
    this.ws.onclose = () => {
      for (const w of this.waiting.values()) {
        clearTimeout(w.timer);
        w.fail(new Error('The conference connection closed.'));
      }
      this.waiting.clear();
      this.finish('The conference connection closed.');
    };
  }

  /** Join the conference, and send and receive media in it; a failure ends it, saying why. */
  async join(token: string) {
    try {
      await this.start(token);
    } catch (e) {
      this.finish(`Could not join: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private async start(token: string) {
    await this.opened;
    await this.command('nd', 'login', { token });
    // The camera and microphone first: a refusal leaves the conference untouched.
    this.local = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    const joined = await this.command('conf', 'join', { ID: this.groupId });
    this.partyId = Number(joined.PartyID);
    this.state = 'connecting';
    this.changed();

    const servdesc = this.nextWebrtc('servdesc');
    await this.command('conf', 'CALLME_S1', { ID: this.groupId });
    const desc = await servdesc;
    const pc = new RTCPeerConnection({ iceServers: iceServers(desc.EvtData), bundlePolicy: 'max-bundle' });
    this.pc = pc;
    const [mic] = this.local.getAudioTracks();
    const [cam] = this.local.getVideoTracks();
    for (let slot = 0; slot < SLOTS; slot++) {
      // The first pair sends this party's own media; every pair receives one other.
      const a = slot === 0 && mic ? pc.addTransceiver(mic, { direction: 'sendrecv', streams: [this.local] }) : pc.addTransceiver('audio', { direction: 'recvonly' });
      const v = slot === 0 && cam ? pc.addTransceiver(cam, { direction: 'sendrecv', streams: [this.local] }) : pc.addTransceiver('video', { direction: 'recvonly' });
      this.audioTx.push(a);
      this.videoTx.push(v);
      this.audio.push(new MediaStream([a.receiver.track]));
      this.video.push(new MediaStream([v.receiver.track]));
    }
    this.slots = new Array(SLOTS).fill(null);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected' && this.state === 'connecting') this.state = 'live';
      if (pc.connectionState === 'failed') this.finish('The media connection failed.');
      this.changed();
    };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const servufrag = this.nextWebrtc('servufrag');
    // The endpoint is ICE-lite: it learns this side's address from its connectivity
    // checks, so the offer goes without waiting for candidates.
    await this.command('conf', 'CALLME_S2', { ID: this.groupId, sdp: offer.sdp ?? '' });
    const answer = await servufrag;
    const data = (answer.EvtData ?? {}) as { sdp?: unknown };
    if (typeof data.sdp !== 'string') throw new Error('The media endpoint sent no answer.');
    await pc.setRemoteDescription({ type: 'answer', sdp: data.sdp });
    this.mediaUp(this.partyId);
    await this.command('conf', 'state', { ID: this.groupId, bMicOn: '1', bCamOn: '1' });
  }

  /** The other parties, in the order they joined. */
  others(): Party[] {
    return [...this.parties.values()].filter((p) => p.PartyID !== this.partyId).sort((a, b) => a.Index - b.Index || a.PartyID - b.PartyID);
  }

  /** The receive slot showing a party, if any. */
  slotOf(partyId: number): number {
    return this.slots.indexOf(partyId);
  }

  async setMic(on: boolean) {
    await this.setSending(this.audioTx[0], this.local?.getAudioTracks()[0], on, 'bMicOn');
    this.mic = on;
    this.changed();
  }

  async setCam(on: boolean) {
    await this.setSending(this.videoTx[0], this.local?.getVideoTracks()[0], on, 'bCamOn');
    this.cam = on;
    this.changed();
  }

  /** Stops (or resumes) sending a track: the endpoint sees it, and `state` says it. */
  private async setSending(tx: RTCRtpTransceiver | undefined, track: MediaStreamTrack | undefined, on: boolean, flag: string) {
    if (!tx || !track) return;
    await tx.sender.replaceTrack(on ? track : null);
    await this.command('conf', 'state', { ID: this.groupId, [flag]: on ? '1' : '0' });
  }

  async leave() {
    if (this.state === 'ended') return;
    try {
      await this.command('conf', 'leave', { ID: this.groupId });
    } catch {
      // Closing the connection leaves as well.
    }
    this.finish('You left.');
  }

  /** Ends this side: the media stops and the connection closes (which also leaves). */
  finish(reason: string) {
    if (this.state === 'ended') return;
    this.state = 'ended';
    this.ended = reason;
    this.close();
    this.changed();
  }

  private close() {
    this.pc?.close();
    this.local?.getTracks().forEach((t) => t.stop());
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000);
  }

  private command(obj: string, cmd: string, params: Record<string, string>): Promise<Record<string, unknown>> {
    if (this.ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error('The conference connection closed.'));
    const seq = ++this.seq;
    return new Promise((ok, fail) => {
      const timer = setTimeout(() => {
        this.waiting.delete(seq);
        fail(new Error(`${cmd}: no answer`));
      }, ANSWER_TIMEOUT_MS);
      this.waiting.set(seq, { ok, fail, timer });
      this.ws.send(JSON.stringify({ dst: 'std', lng: 'en', cmd, seq, obj, params }));
    });
  }

  /** The next `conf.webrtc` event of a type (asked for before the command that causes it). */
  private nextWebrtc(type: string): Promise<Record<string, unknown>> {
    return new Promise((ok, fail) => {
      const timer = setTimeout(() => {
        this.webrtc.delete(type);
        fail(new Error(`${type}: not received`));
      }, ANSWER_TIMEOUT_MS);
      this.webrtc.set(type, (r) => {
        clearTimeout(timer);
        ok(r);
      });
    });
  }

  private onFrame(data: unknown) {
    let frame: { ANSW?: Answer; EVT?: VspEvent };
    try {
      frame = JSON.parse(String(data));
    } catch {
      return;
    }
    if (frame.ANSW) this.onAnswer(frame.ANSW);
    else if (frame.EVT) this.onEvent(frame.EVT);
  }

  private onAnswer(a: Answer) {
    const w = this.waiting.get(Number(a.seq));
    if (!w) return;
    this.waiting.delete(Number(a.seq));
    clearTimeout(w.timer);
    const r = a.result ?? {};
    if (r.code === 0) w.ok(r);
    else w.fail(new ConferenceError(Number(r.code), typeof r.text === 'string' ? r.text : `${a.cmd} failed (${r.code})`));
  }

  private onEvent(e: VspEvent) {
    const r = e.result ?? {};
    if (e.obj !== 'conf' || String(r.ID) !== this.groupId) return;
    if (e.evt === 'webrtc') {
      const type = String(e.evttype);
      const waiter = this.webrtc.get(type);
      if (waiter) {
        this.webrtc.delete(type);
        waiter(r);
      }
      if (type === 'slots') this.onSlots(r.EvtData);
      if (type === 'Disconnected') {
        const id = Number(r.PartyID);
        if (id === this.partyId) this.finish('The media connection ended.');
        else this.mediaDown(id);
      }
      return;
    }
    if (e.evt !== 'changed') return;
    const c = r as Changed;
    // The first to come are the earliest with media (the door lists them in join order).
    for (const p of sorted(c.addParties)) {
      this.parties.set(p.PartyID, p);
      if (p.State === 2 && p.PartyID !== this.partyId) this.mediaUp(p.PartyID);
    }
    for (const p of c.updParties ?? []) {
      const had = this.parties.get(p.PartyID);
      this.parties.set(p.PartyID, had ? { ...had, ...p } : p);
      if (p.PartyID === this.partyId) continue;
      if (p.State === 2) this.mediaUp(p.PartyID);
      else if (p.State === 1) this.mediaDown(p.PartyID);
    }
    for (const p of c.delParties ?? []) {
      this.parties.delete(p.PartyID);
      if (p.PartyID === this.partyId) this.finish('You were removed from the conference.');
      else this.mediaDown(p.PartyID);
    }
    if (c.confdata?.state === 2) this.finish('The conference was ended.');
    this.refill();
    this.changed();
  }

  private mediaUp(id: number) {
    if (!this.withMedia.includes(id)) this.withMedia.push(id);
    this.refill();
  }

  private mediaDown(id: number) {
    this.withMedia = this.withMedia.filter((p) => p !== id);
    // Its slot shows nobody now (until the door's next `slots` gives it to another).
    if (this.told) this.slots = this.slots.map((s) => (s === id ? null : s));
    this.refill();
    this.changed();
  }

  /** `conf.webrtc.slots`: `{slots: [{audio, video, PartyID}]}`, each slot by its lines'
   * mids, `PartyID` null when free. */
  private onSlots(data: unknown) {
    const list = (data as { slots?: unknown } | undefined)?.slots;
    if (!Array.isArray(list)) return;
    this.told = true;
    const slots: (number | null)[] = new Array(this.videoTx.length).fill(null);
    for (const s of list as { audio?: unknown; video?: unknown; PartyID?: unknown }[]) {
      let i = this.videoTx.findIndex((t) => t.mid !== null && t.mid === String(s.video));
      if (i < 0) i = this.audioTx.findIndex((t) => t.mid !== null && t.mid === String(s.audio));
      if (i >= 0 && typeof s.PartyID === 'number') slots[i] = s.PartyID;
    }
    this.slots = slots;
    this.changed();
  }

  /** The endpoint's rule (crates/media/src/slots.rs): a slot keeps its party while it has
   * media; a free slot takes the first party with media not shown yet. Slots exist once
   * this party's own media is up. Not when the door says the slots itself. */
  private refill() {
    if (this.told || !this.withMedia.includes(this.partyId)) return;
    this.slots = this.slots.map((s) => (s !== null && this.withMedia.includes(s) ? s : null));
    const waiting = this.withMedia.filter((p) => p !== this.partyId && !this.slots.includes(p));
    this.slots = this.slots.map((s) => (s === null ? (waiting.shift() ?? null) : s));
  }
}

interface Answer {
  cmd?: string;
  seq?: number;
  result?: { code?: number; text?: unknown; [k: string]: unknown };
}

interface VspEvent {
  evt?: string;
  obj?: string;
  evttype?: string;
  result?: Record<string, unknown>;
}

interface Changed {
  confdata?: { state?: number };
  addParties?: Party[];
  delParties?: Party[];
  updParties?: Party[];
}

function sorted(parties: Party[] | undefined): Party[] {
  return [...(parties ?? [])].sort((a, b) => a.Index - b.Index || a.PartyID - b.PartyID);
}

/** `servdesc`'s `EvtData` as the RTCPeerConnection's ICE servers: the TURN URLs with their
 * time-limited username and credential, and the STUN address. Anything else is left out
 * (a URL the browser does not take would make the connection throw). */
export function iceServers(data: unknown): RTCIceServer[] {
  const d = (data ?? {}) as { serveraddr?: unknown; username?: unknown; credential?: unknown; urls?: unknown; stun?: unknown };
  const str = (v: unknown) => (typeof v === 'string' ? v : '');
  const turn = (u: string) => /^turns?:/.test(u);
  const out: RTCIceServer[] = [];
  const urls = (Array.isArray(d.urls) ? d.urls.map(str) : [str(d.serveraddr)]).filter(turn);
  if (urls.length && str(d.username) && str(d.credential)) {
    out.push({ urls, username: str(d.username), credential: str(d.credential) });
  }
  const stun = [str(d.stun), str(d.serveraddr)].find((u) => u.startsWith('stun:'));
  if (stun) out.push({ urls: stun });
  return out;
}
