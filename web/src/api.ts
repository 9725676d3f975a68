// The server's public doors, and nothing else: `POST /api/v1/login` and
// `/api/v1/register` for a token, the Chat API (Socket.IO namespace `/data`, the official
// client) for everything live, `POST /api/v1/files` for uploads. The wire shapes are
// those of docs/asyncapi.yaml and docs/openapi.yaml.

import { io, Socket } from 'socket.io-client';

export type Id = string;

export interface FileRef {
  item_id: Id;
  url: string;
  filename: string;
  mimetype: string;
  size: number;
}

export interface Message {
  message_id: Id;
  group_id: Id;
  type: number;
  message: string | null;
  attachments: string | null;
  sender_uin: Id;
  /** 1 sent, 2 received by every recipient, 3 seen by every recipient, 4 deleted. */
  status: number;
  received_uins?: Id[];
  seen_uins?: Id[];
  nonce: string | null;
  version: number;
  created_at: number;
  updated_at: number;
  sender_name?: string;
  files?: FileRef[];
}

export interface Group {
  group_id: Id;
  type: number;
  name: string | null;
  avatar_url: string | null;
  owner_uin: Id;
  creator_uin: Id;
  occupants_uins: Id[];
  blocked_uins: Id[];
  created_at: number;
  updated_at: number;
  muted?: boolean;
  pinned?: boolean;
  last_message_id?: Id;
  last_message?: Message | null;
  unread_cnt?: number;
}

/** A peer's presence (`user_status`, `user_statuses`): online_status 1 online, 2
 * offline, 3 idle, 4 invisible (as one's own only), 5 away, 6 busy. */
export interface UserStatus {
  uin: Id;
  online_status: number;
  message_status?: string;
  last_seen_at?: number | null;
}

export interface Session {
  session: string;
  uin: Id;
  user: string;
  expires_at: number;
}

/** An answer that is not 2xx, with the server's `{error}` text. */
export class HttpError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

async function postJson(path: string, body: unknown): Promise<Session> {
  const r = await fetch(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new HttpError(r.status, data.error || `HTTP ${r.status}`);
  return data as Session;
}

export function login(user: string, password: string): Promise<Session> {
  return postJson('/api/v1/login', { user, password });
}

export function register(user: string, password: string, name?: string): Promise<Session> {
  return postJson('/api/v1/register', { user, password, name: name || null });
}

export async function logout(token: string): Promise<void> {
  await fetch('/api/v1/logout', { method: 'POST', headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
}

export async function upload(token: string, file: File): Promise<FileRef> {
  const form = new FormData();
  form.append('file', file, file.name || 'pasted');
  const r = await fetch('/api/v1/files', {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}` },
    body: form,
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new HttpError(r.status, data.error || `upload failed (${r.status})`);
  return data as FileRef;
}

/** The file server reads the token from this cookie, so `<img src>` and downloads work. */
export function setFileCookie(token: string | null) {
  document.cookie = token
    ? `confer_session=${encodeURIComponent(token)}; path=/; SameSite=Strict`
    : 'confer_session=; path=/; max-age=0; SameSite=Strict';
}

/** A Chat API ack: `result` 0 is success, anything else an error with `message`. */
export interface Ack {
  result: number;
  message?: string | Message;
  [k: string]: unknown;
}

export class ChatError extends Error {
  constructor(
    public result: number,
    message: string,
  ) {
    super(message);
  }
}

/** How long an ack may take before the request is treated as lost. */
const ACK_TIMEOUT_MS = 15_000;

export function connect(token: string): Socket {
  return io('/data', {
    auth: { session: token },
    transports: ['websocket', 'polling'],
    reconnection: true,
    reconnectionDelay: 500,
    reconnectionDelayMax: 5_000,
  });
}

/** How long a request waits for a socket that is reconnecting before it is told to fail:
 * a heartbeat missed on a busy device, or a network that blinked, costs the user nothing. */
const RECONNECT_WAIT_MS = 10_000;

/** Emit an event and wait for its ack; a non-zero result (but 13, a duplicate) throws.
 * While the socket reconnects, the event waits (up to RECONNECT_WAIT_MS) and is sent once
 * connected; a socket that gave up (or was taken by another tab) fails at once. It is never
 * left to Socket.IO's own buffer, which would send it on a later reconnect, after the
 * caller was told it failed (the text stays in the composer, to be sent again). */
export async function request<T = Ack>(socket: Socket, event: string, args: object): Promise<T & Ack> {
  if (!socket.connected) await connected(socket);
  return new Promise((resolve, reject) => {
    socket.timeout(ACK_TIMEOUT_MS).emit(event, args, (err: Error | null, ack: Ack) => {
      if (err) return reject(new ChatError(-1, `${event}: no answer`));
      if (ack.result !== 0 && ack.result !== 13) {
        return reject(new ChatError(ack.result, typeof ack.message === 'string' ? ack.message : `${event} failed`));
      }
      resolve(ack as T & Ack);
    });
  });
}

/** Resolves when a reconnecting socket is connected again; rejects when it is not
 * reconnecting, or not back within RECONNECT_WAIT_MS. */
function connected(socket: Socket): Promise<void> {
  const offline = () => new ChatError(-1, 'Not connected: try again when back online.');
  if (!socket.active) return Promise.reject(offline());
  return new Promise((resolve, reject) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.off('connect', onConnect);
      if (ok) resolve();
      else reject(offline());
    };
    const onConnect = () => done(true);
    const timer = setTimeout(() => done(socket.connected), RECONNECT_WAIT_MS);
    socket.on('connect', onConnect);
  });
}

/** Message types of the Chat API. */
export const MSG = { text: 0, images: 2, audio: 3, video: 4, file: 12 } as const;
/** Event types: typing starts (8) and stops (9). */
export const EVENT_TYPING = 8;
export const EVENT_STOP_TYPING = 9;

export function compareIds(a: Id, b: Id): number {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}
