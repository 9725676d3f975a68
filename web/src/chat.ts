// The client's model of one signed-in user: groups, the messages loaded of each, who is
// online and typing, kept in step with the server by the Chat API's pushes. Every
// message is kept once, by id, so a push that arrives during a catch-up (or twice, on
// a reconnect) never shows twice; after every (re)connect each group whose history is
// loaded is caught up from its newest message with `list_message {last_seen_message_id}`,
// which the server answers oldest first, page after page, exactly once.

import type { Socket } from 'socket.io-client';
import {
  compareIds,
  connect,
  EVENT_STOP_TYPING,
  EVENT_TYPING,
  FileRef,
  Group,
  Id,
  Message,
  MSG,
  request,
  Session,
  upload,
  UserStatus,
} from './api';
import { Call, ChatCall } from './call';
import { Conference } from './conference';

/** `elsewhere`: the same token connected again (another tab), which the server answers
 * by disconnecting this socket (Chat API `login` result 7); it stays off until asked. */
export type Connection = 'connecting' | 'online' | 'offline' | 'expired' | 'elsewhere';

/** How long another's typing shows without a renewal (the server also says 9 itself). */
const TYPING_SHOWN_MS = 8_000;
/** How often typing is renewed while the user keeps typing. */
const TYPING_RENEW_MS = 3_000;
const PAGE = 50;

interface GroupMessages {
  list: Message[];
  byId: Map<Id, Message>;
  /** Whether older messages are left on the server. */
  older: boolean;
  /** Whether the newest page has been read (so catch-up starts from `list`'s end). */
  loaded: boolean;
  loadingOlder: boolean;
}

export class Chat {
  socket: Socket;
  connection: Connection = 'connecting';
  groups = new Map<Id, Group>();
  messages = new Map<Id, GroupMessages>();
  /** Online status by uin (1 online, 2 offline), as told by `user_status`. */
  presence = new Map<Id, number>();
  /** Who types where: group id → uin → the timer that ends it. */
  typing = new Map<Id, Map<Id, ReturnType<typeof setTimeout>>>();
  /** Display names learnt from messages. */
  names = new Map<Id, string>();
  openGroup: Id | null = null;
  error: string | null = null;
  /** The call in progress, ringing, or just ended (until dismissed). */
  call: Call | null = null;
  /** The conference joined (or being joined), until left or dismissed. */
  conference: Conference | null = null;
  private listeners = new Set<() => void>();
  private typingSentAt = 0;
  private typingIn: Id | null = null;

  constructor(public session: Session) {
    this.loadNames();
    this.names.set(session.uin, session.user);
    this.socket = connect(session.session);
    const s = this.socket;
    s.on('login', (a: { result: number; uin?: Id }) => {
      if (a.result === 0) {
        this.connection = 'online';
        this.changed();
        void this.nameMyself();
        void this.resync();
      } else if (a.result === 7) {
        this.connection = 'elsewhere';
        s.disconnect();
        this.changed();
      } else {
        this.connection = 'expired';
        s.disconnect();
        this.changed();
      }
    });
    s.on('disconnect', () => {
      if (this.connection !== 'expired' && this.connection !== 'elsewhere') this.connection = 'offline';
      this.typing.clear();
      this.changed();
    });
    s.io.on('reconnect_attempt', () => {
      this.connection = 'connecting';
      this.changed();
    });
    s.on('message', (p: { message: Message }) => this.onMessage(p.message));
    s.on('update_message', (p: { message: Message }) => this.replace(p.message));
    s.on('delete_message', (p: { message: Message }) => this.replace(p.message));
    s.on('group', (p: { group: Group }) => this.upsertGroup(p.group));
    s.on('update_group', (p: { group: Group }) => this.upsertGroup(p.group));
    s.on('delete_group', (p: { group: Group }) => {
      this.groups.delete(p.group.group_id);
      this.messages.delete(p.group.group_id);
      if (this.openGroup === p.group.group_id) this.openGroup = null;
      this.changed();
    });
    s.on('pin_group', (p: { group: Group }) => this.setFlag(p.group.group_id, 'pinned', true));
    s.on('unpin_group', (p: { group: Group }) => this.setFlag(p.group.group_id, 'pinned', false));
    s.on('user_status', (p: { user_status: UserStatus }) => {
      this.presence.set(p.user_status.uin, p.user_status.online_status);
      this.changed();
    });
    // Right after login, once: everyone this user shares a group with, so a presence dot
    // is right from the start and not only after that person's next change.
    s.on('user_statuses', (p: { user_statuses: UserStatus[] }) => {
      for (const u of p.user_statuses ?? []) this.presence.set(u.uin, u.online_status);
      this.changed();
    });
    s.on('message_status', (p: { message: Message }) => this.onStatus(p.message));
    s.on('event', (e: { group_id: Id; type: number; sender_uin: Id }) => this.onEvent(e));
    s.on('start_call', (p: { call: ChatCall }) => {
      const c = p.call;
      if (c.caller_uin === this.me || (this.call && this.call.state !== 'ended')) return;
      this.call = new Call(s, c, this.me, c.caller_uin, () => this.changed());
      this.changed();
    });
    const mine = (callId: Id) => (this.call && this.call.call.call_id === callId ? this.call : null);
    s.on('answer_call', (p: { call_id: Id; uin: Id; answer: number }) => {
      mine(p.call_id)?.answered(p.uin, p.answer).catch((e) => this.fail(e));
    });
    s.on('stop_call', (p: { call: ChatCall }) => mine(p.call.call_id)?.finish('Call ended.'));
    s.on('ice_sdp', (p: { call_id: Id; type: number | string; sdp: string }) => {
      mine(p.call_id)?.sdp(Number(p.type), p.sdp).catch((e) => this.fail(e));
    });
    s.on('ice_candidate', (p: { call_id: Id; candidate: string; sdp_mid?: string; sdp_mline_index?: number }) => {
      mine(p.call_id)?.candidate(p).catch(() => {});
    });
    // A network that comes back: reconnect at once rather than at the next back-off step.
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
  }

  private onOnline = () => {
    if (this.socket.connected || this.connection === 'expired' || this.connection === 'elsewhere') return;
    // A socket waiting for its next back-off step is stopped first, so that this is its
    // one connection (a second with the same token would be answered as a conflict).
    if (this.socket.active) this.socket.disconnect();
    this.socket.connect();
  };

  /** Take the connection back from another tab that uses the same sign-in. */
  useHere() {
    if (!this.socket.connected) {
      this.connection = 'connecting';
      this.socket.connect();
      this.changed();
    }
  }

  private onOffline = () => {
    // The browser knows the network is gone: drop the socket now (it reconnects when the
    // network is back) instead of waiting for missed heartbeats.
    if (this.socket.connected) this.socket.io.engine?.close();
  };

  close() {
    this.call?.finish('Signed out.');
    this.conference?.finish('Signed out.');
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    this.socket.disconnect();
  }

  subscribe(f: () => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  changed() {
    for (const f of this.listeners) f();
  }

  fail(e: unknown) {
    this.error = e instanceof Error ? e.message : String(e);
    this.changed();
  }

  get me(): Id {
    return this.session.uin;
  }

  /** The server fills `sender_name` from the account's profile: an account without a
   * display name gets its sign-in name as one, so others see who wrote. */
  async nameMyself() {
    try {
      const p = await request<{ profile?: { name?: string | null } }>(this.socket, 'get_profile', {});
      if (!p.profile?.name) await request(this.socket, 'update_profile', { name: this.session.user });
    } catch {
      // Not fatal: messages then show no name until the user sets one.
    }
  }

  /** After each login: every group anew, then each loaded history caught up. */
  async resync() {
    try {
      const seen = new Set<Id>();
      for (let page = 0; ; page++) {
        const a = await request<{ groups: Group[] }>(this.socket, 'list_group', { pindex: page, psize: PAGE });
        for (const g of a.groups) {
          seen.add(g.group_id);
          this.upsertGroup(g, true);
          if (g.last_message) this.learnName(g.last_message);
        }
        if (a.groups.length < PAGE) break;
      }
      for (const id of [...this.groups.keys()]) {
        if (!seen.has(id)) {
          this.groups.delete(id);
          this.messages.delete(id);
        }
      }
      this.changed();
      for (const [id, m] of this.messages) if (m.loaded) await this.catchUp(id);
      if (this.openGroup) await this.open(this.openGroup);
    } catch (e) {
      this.fail(e);
    }
  }

  private async catchUp(groupId: Id) {
    const m = this.messages.get(groupId);
    if (!m) return;
    for (;;) {
      const last = m.list.length ? m.list[m.list.length - 1].message_id : '0';
      const a = await request<{ messages: Message[]; more?: boolean }>(this.socket, 'list_message', {
        group_id: groupId,
        last_seen_message_id: last,
        psize: PAGE,
      });
      for (const msg of a.messages) this.upsert(msg, true);
      if (!a.more || a.messages.length === 0) break;
    }
    this.changed();
  }

  private slot(groupId: Id): GroupMessages {
    let m = this.messages.get(groupId);
    if (!m) {
      m = { list: [], byId: new Map(), older: true, loaded: false, loadingOlder: false };
      this.messages.set(groupId, m);
    }
    return m;
  }

  /** Open a group: its newest page if none is loaded, and mark it read. */
  async open(groupId: Id) {
    this.openGroup = groupId;
    this.changed();
    const m = this.slot(groupId);
    try {
      if (!m.loaded) await this.loadOlder(groupId);
      this.markSeen();
    } catch (e) {
      this.fail(e);
    }
  }

  async loadOlder(groupId: Id) {
    const m = this.slot(groupId);
    if (m.loadingOlder || (m.loaded && !m.older)) return;
    m.loadingOlder = true;
    this.changed();
    try {
      const oldest = m.loaded && m.list.length ? m.list[0].message_id : '0';
      const a = await request<{ messages: Message[]; more?: boolean }>(this.socket, 'list_message', {
        group_id: groupId,
        last_message_id: oldest,
        psize: PAGE,
      });
      for (const msg of a.messages) this.upsert(msg, true);
      m.older = !!a.more;
      m.loaded = true;
    } finally {
      m.loadingOlder = false;
      this.changed();
    }
  }

  /** Tell the server everything up to the newest message of the open group is seen. */
  markSeen() {
    const id = this.openGroup;
    if (!id || document.visibilityState === 'hidden') return;
    const m = this.messages.get(id);
    const g = this.groups.get(id);
    const last = m?.list[m.list.length - 1];
    if (!last || !g) return;
    if (g.unread_cnt) {
      g.unread_cnt = 0;
      this.changed();
    }
    request(this.socket, 'seen_message', { group_id: id, message_id: last.message_id }).catch(() => {});
  }

  /** Names are learnt from messages' `sender_name`; kept per user across reloads. */
  private get namesKey() {
    return `confer.names.${this.session.uin}`;
  }

  private loadNames() {
    try {
      const saved = JSON.parse(localStorage.getItem(this.namesKey) || '{}') as Record<Id, string>;
      for (const [uin, name] of Object.entries(saved)) if (typeof name === 'string') this.names.set(uin, name);
    } catch {
      /* a broken entry: start afresh */
    }
  }

  private learnName(msg: Message) {
    if (!msg.sender_name || msg.sender_uin === this.me || this.names.get(msg.sender_uin) === msg.sender_name) return;
    this.names.set(msg.sender_uin, msg.sender_name);
    try {
      localStorage.setItem(this.namesKey, JSON.stringify(Object.fromEntries(this.names)));
    } catch {
      /* storage full or off: names last for this page */
    }
  }

  private onMessage(msg: Message) {
    const fresh = !this.slot(msg.group_id).byId.has(msg.message_id);
    this.upsert(msg);
    const g = this.groups.get(msg.group_id);
    if (fresh && g && msg.sender_uin !== this.me) {
      this.stopTypingOf(msg.group_id, msg.sender_uin);
      if (this.openGroup === msg.group_id && document.visibilityState !== 'hidden') this.markSeen();
      else {
        g.unread_cnt = (g.unread_cnt || 0) + 1;
        // It reached this device: the sender's tick says delivered.
        request(this.socket, 'received_message', { group_id: msg.group_id, message_id: msg.message_id }).catch(() => {});
      }
      this.changed();
    }
  }

  /** Keep a message once, in id order; a newer version replaces the one we have. */
  upsert(msg: Message, quiet = false) {
    this.learnName(msg);
    const m = this.slot(msg.group_id);
    const had = m.byId.get(msg.message_id);
    if (had) {
      Object.assign(had, msg);
    } else {
      m.byId.set(msg.message_id, msg);
      let i = m.list.length;
      while (i > 0 && compareIds(m.list[i - 1].message_id, msg.message_id) > 0) i--;
      m.list.splice(i, 0, msg);
    }
    const g = this.groups.get(msg.group_id);
    if (g && (!g.last_message || compareIds(g.last_message.message_id, msg.message_id) <= 0)) {
      g.last_message = msg;
      g.last_message_id = msg.message_id;
    }
    if (!quiet) this.changed();
  }

  /** An edit or delete: applied to the copy we hold, if any (one outside the loaded
   * history is read with it later), and to the group's last message. */
  private replace(msg: Message) {
    const had = this.messages.get(msg.group_id)?.byId.get(msg.message_id);
    if (had) Object.assign(had, msg);
    const g = this.groups.get(msg.group_id);
    if (g?.last_message?.message_id === msg.message_id) g.last_message = { ...g.last_message, ...msg };
    this.changed();
  }

  /** A member's received or seen mark moved: the message as it now is, which speaks for
   * every earlier message of the group too (their status is at least its status, their
   * seen and received lists hold its own). */
  private onStatus(msg: Message) {
    const m = this.messages.get(msg.group_id);
    for (const had of m?.list ?? []) {
      if (compareIds(had.message_id, msg.message_id) > 0) break;
      if (had.message_id === msg.message_id) {
        Object.assign(had, { status: msg.status, received_uins: msg.received_uins, seen_uins: msg.seen_uins });
      } else if (had.status !== 4) {
        had.status = Math.max(had.status, msg.status);
        had.received_uins = union(had.received_uins, msg.received_uins);
        had.seen_uins = union(had.seen_uins, msg.seen_uins);
      }
    }
    const g = this.groups.get(msg.group_id);
    if (g?.last_message && compareIds(g.last_message.message_id, msg.message_id) <= 0 && g.last_message.status !== 4) {
      g.last_message = { ...g.last_message, status: Math.max(g.last_message.status, msg.status) };
    }
    this.changed();
  }

  private upsertGroup(g: Group, quiet = false) {
    const had = this.groups.get(g.group_id);
    this.groups.set(g.group_id, had ? { ...had, ...g } : { unread_cnt: 0, ...g });
    if (!quiet) this.changed();
  }

  private setFlag(id: Id, flag: 'pinned' | 'muted', value: boolean) {
    const g = this.groups.get(id);
    if (g) {
      g[flag] = value;
      this.changed();
    }
  }

  private onEvent(e: { group_id: Id; type: number; sender_uin: Id }) {
    if (e.sender_uin === this.me) return;
    if (e.type === EVENT_TYPING) {
      let t = this.typing.get(e.group_id);
      if (!t) this.typing.set(e.group_id, (t = new Map()));
      const old = t.get(e.sender_uin);
      if (old) clearTimeout(old);
      t.set(
        e.sender_uin,
        setTimeout(() => this.stopTypingOf(e.group_id, e.sender_uin), TYPING_SHOWN_MS),
      );
      this.changed();
    } else if (e.type === EVENT_STOP_TYPING) {
      this.stopTypingOf(e.group_id, e.sender_uin);
    }
  }

  private stopTypingOf(groupId: Id, uin: Id) {
    const t = this.typing.get(groupId);
    const timer = t?.get(uin);
    if (t && timer) {
      clearTimeout(timer);
      t.delete(uin);
      this.changed();
    }
  }

  /** The user typed in a group's composer: say so, at most every few seconds. */
  typed(groupId: Id, empty: boolean) {
    if (empty) return this.stoppedTyping();
    const now = Date.now();
    if (this.typingIn === groupId && now - this.typingSentAt < TYPING_RENEW_MS) return;
    this.typingIn = groupId;
    this.typingSentAt = now;
    request(this.socket, 'event', { group_id: groupId, type: EVENT_TYPING }).catch(() => {});
  }

  stoppedTyping() {
    const id = this.typingIn;
    if (!id) return;
    this.typingIn = null;
    this.typingSentAt = 0;
    request(this.socket, 'event', { group_id: id, type: EVENT_STOP_TYPING }).catch(() => {});
  }

  async send(groupId: Id, text: string, files: FileRef[] = []) {
    this.stoppedTyping();
    const type = files.length ? typeOf(files[0].mimetype) : MSG.text;
    const a = await request<{ message: Message }>(this.socket, 'create_message', {
      group_id: groupId,
      type,
      message: text,
      attachments: files.length ? JSON.stringify(files.map((f) => ({ item_id: f.item_id }))) : undefined,
      nonce: crypto.randomUUID(),
      sender_name: this.session.user,
    });
    if (a.message && typeof a.message === 'object') this.upsert(a.message);
  }

  async sendFiles(groupId: Id, files: File[], text = '') {
    const refs: FileRef[] = [];
    for (const f of files) refs.push(await upload(this.session.session, f));
    // One message per kind keeps each message's type true to its content.
    for (const r of refs) await this.send(groupId, refs.length === 1 ? text : '', [r]);
    if (refs.length > 1 && text) await this.send(groupId, text);
  }

  async edit(msg: Message, text: string) {
    const a = await request<{ message: Message }>(this.socket, 'update_message', {
      group_id: msg.group_id,
      message_id: msg.message_id,
      message: text,
    });
    if (a.message && typeof a.message === 'object') this.upsert(a.message);
  }

  async remove(msg: Message) {
    await request(this.socket, 'delete_message', { group_id: msg.group_id, message_id: msg.message_id });
  }

  async createGroup(uins: Id[], name: string): Promise<Id> {
    const type = uins.length === 1 && !name ? 1 : 2;
    const a = await request<{ group: Group }>(this.socket, 'create_group', {
      type,
      name: type === 2 ? name || undefined : undefined,
      occupants_uins: uins,
    });
    this.upsertGroup(a.group);
    return a.group.group_id;
  }

  async startCall(groupId: Id, peer: Id, video: boolean) {
    if (this.call && this.call.state !== 'ended') return;
    this.call = await Call.start(this.socket, groupId, peer, this.me, video, () => this.changed());
    this.changed();
  }

  /** Join the conference of a group through the conference door (one at a time). */
  joinConference(groupId: Id) {
    if (this.conference && this.conference.state !== 'ended') return;
    const c = new Conference(groupId, () => this.changed());
    this.conference = c;
    this.changed();
    void c.join(this.session.session);
  }

  /** Leave the conference (if still in it) and close its screen. */
  async leaveConference() {
    const c = this.conference;
    this.conference = null;
    this.changed();
    await c?.leave();
  }

  dismissCall() {
    this.call = null;
    this.changed();
  }

  async setPinned(id: Id, pinned: boolean) {
    await request(this.socket, pinned ? 'pin_group' : 'unpin_group', { group_id: id });
    this.setFlag(id, 'pinned', pinned);
  }

  async setMuted(id: Id, muted: boolean) {
    await request(this.socket, muted ? 'mute_group' : 'unmute_group', { group_id: id });
    this.setFlag(id, 'muted', muted);
  }

  async leave(id: Id) {
    await request(this.socket, 'leave_group', { group_id: id });
    this.groups.delete(id);
    this.messages.delete(id);
    if (this.openGroup === id) this.openGroup = null;
    this.changed();
  }

  async setBlocked(id: Id, uin: Id, blocked: boolean) {
    if (blocked) await request(this.socket, 'block_user', { group_id: id, blocked_uin: uin });
    else await request(this.socket, 'unblock_user', { group_id: id, unblocked_uin: uin });
    const g = this.groups.get(id);
    if (g) {
      g.blocked_uins = blocked ? [...g.blocked_uins, uin] : g.blocked_uins.filter((u) => u !== uin);
      this.changed();
    }
  }

  name(uin: Id): string {
    if (uin === this.me) return 'You';
    return this.names.get(uin) || `User ${uin}`;
  }

  title(g: Group): string {
    if (g.type === 1) {
      const other = g.occupants_uins.find((u) => u !== this.me);
      return other ? this.name(other) : 'Private chat';
    }
    return g.name || g.occupants_uins.filter((u) => u !== this.me).map((u) => this.name(u)).join(', ') || 'Group';
  }

  /** The other member of a private group. */
  peer(g: Group): Id | undefined {
    return g.type === 1 ? g.occupants_uins.find((u) => u !== this.me) : undefined;
  }

  /** Groups pinned first, then by their newest message (or creation). */
  sortedGroups(): Group[] {
    const key = (g: Group) => g.last_message_id && g.last_message_id !== '0' ? g.last_message_id : '0';
    return [...this.groups.values()].sort((a, b) => {
      if (!!a.pinned !== !!b.pinned) return a.pinned ? -1 : 1;
      const c = compareIds(key(b), key(a));
      return c !== 0 ? c : b.created_at - a.created_at;
    });
  }

  /** Everyone this user shares a group with: the people a new chat is picked from. */
  people(): Id[] {
    const all = new Set<Id>();
    for (const g of this.groups.values()) for (const u of g.occupants_uins) if (u !== this.me) all.add(u);
    return [...all].sort(compareIds);
  }
}

function union(a: Id[] | undefined, b: Id[] | undefined): Id[] {
  return [...new Set([...(a ?? []), ...(b ?? [])])];
}

function typeOf(mime: string): number {
  if (mime.startsWith('image/')) return MSG.images;
  if (mime.startsWith('audio/')) return MSG.audio;
  if (mime.startsWith('video/')) return MSG.video;
  return MSG.file;
}
