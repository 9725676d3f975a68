// A 1:1 audio or video call over the Chat API's signalling, in the document's forms:
// `create_call` rings the other member (`start_call`), `answer_call` accepts or
// declines, then the caller's offer and the callee's answer go as `ice_sdp {type: 1
// offer | 2 answer, sdp}` and candidates as `ice_candidate {candidate, sdp_mid,
// sdp_mline_index}`, each to the other participant only; `stop_call` ends it for both.
// Media flows peer to peer (host candidates; no TURN server is configured here).

import type { Socket } from 'socket.io-client';
import { Id, request } from './api';

export interface ChatCall {
  call_id: Id;
  group_id: Id;
  media_type: number;
  call_status: number;
  caller_uin: Id;
  callee_uins: Id[];
}

export type CallState = 'calling' | 'incoming' | 'connecting' | 'live' | 'ended';

/** Media types of `create_call`: 1 audio, 2 video. */
export const AUDIO = 1;
export const VIDEO = 2;

export class Call {
  state: CallState;
  local: MediaStream | null = null;
  remote = new MediaStream();
  pc: RTCPeerConnection | null = null;
  ended = '';
  private pending: RTCIceCandidateInit[] = [];

  constructor(
    private socket: Socket,
    public call: ChatCall,
    public me: Id,
    public peer: Id,
    private changed: () => void,
  ) {
    this.state = call.caller_uin === me ? 'calling' : 'incoming';
  }

  get video() {
    return this.call.media_type === VIDEO;
  }

  get ids() {
    return { group_id: this.call.group_id, call_id: this.call.call_id };
  }

  static async start(socket: Socket, groupId: Id, peer: Id, me: Id, video: boolean, changed: () => void) {
    const local = await navigator.mediaDevices.getUserMedia({ audio: true, video });
    try {
      const a = await request<{ call: ChatCall }>(socket, 'create_call', {
        group_id: groupId,
        media_type: video ? VIDEO : AUDIO,
        callee_uins: [peer],
      });
      const call = new Call(socket, a.call, me, peer, changed);
      call.local = local;
      return call;
    } catch (e) {
      local.getTracks().forEach((t) => t.stop());
      throw e;
    }
  }

  private connection(): RTCPeerConnection {
    if (this.pc) return this.pc;
    const pc = new RTCPeerConnection();
    this.pc = pc;
    for (const t of this.local?.getTracks() ?? []) pc.addTrack(t, this.local as MediaStream);
    pc.ontrack = (e) => {
      this.remote.addTrack(e.track);
      this.changed();
    };
    pc.onicecandidate = (e) => {
      if (!e.candidate) return;
      request(this.socket, 'ice_candidate', {
        ...this.ids,
        receiver_uin: this.peer,
        candidate: e.candidate.candidate,
        sdp_mid: e.candidate.sdpMid,
        sdp_mline_index: e.candidate.sdpMLineIndex,
      }).catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected') this.state = 'live';
      if (pc.connectionState === 'failed') void this.hangUp('The connection failed.');
      this.changed();
    };
    return pc;
  }

  /** The callee takes the call: its media, then `answer_call` accept; the offer follows. */
  async accept() {
    this.local = await navigator.mediaDevices.getUserMedia({ audio: true, video: this.video });
    this.state = 'connecting';
    this.connection();
    this.changed();
    await request(this.socket, 'answer_call', { ...this.ids, answer: 1 });
  }

  async decline() {
    this.finish('Declined.');
    await request(this.socket, 'answer_call', { ...this.ids, answer: 2 }).catch(() => {});
  }

  /** The caller hears the answer: accepted, so it makes the offer; otherwise it ends. */
  async answered(uin: Id, answer: number) {
    if (this.state !== 'calling' || uin !== this.peer) return;
    if (answer !== 1) return this.finish(answer === 2 ? 'Declined.' : 'No answer.');
    this.state = 'connecting';
    const pc = this.connection();
    this.changed();
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await request(this.socket, 'ice_sdp', { ...this.ids, receiver_uin: this.peer, type: 1, sdp: offer.sdp });
  }

  async sdp(type: number, sdp: string) {
    const pc = this.connection();
    await pc.setRemoteDescription({ type: type === 1 ? 'offer' : 'answer', sdp });
    for (const c of this.pending.splice(0)) await pc.addIceCandidate(c).catch(() => {});
    if (type === 1) {
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      await request(this.socket, 'ice_sdp', { ...this.ids, receiver_uin: this.peer, type: 2, sdp: answer.sdp });
    }
  }

  async candidate(c: { candidate: string; sdp_mid?: string | null; sdp_mline_index?: number | null }) {
    const init = { candidate: c.candidate, sdpMid: c.sdp_mid ?? null, sdpMLineIndex: c.sdp_mline_index ?? null };
    if (!this.pc?.remoteDescription) this.pending.push(init);
    else await this.pc.addIceCandidate(init).catch(() => {});
  }

  async hangUp(reason = 'Call ended.') {
    this.finish(reason);
    await request(this.socket, 'stop_call', this.ids).catch(() => {});
  }

  finish(reason: string) {
    if (this.state === 'ended') return;
    this.state = 'ended';
    this.ended = reason;
    this.pc?.close();
    this.local?.getTracks().forEach((t) => t.stop());
    this.remote.getTracks().forEach((t) => t.stop());
    this.changed();
  }
}
