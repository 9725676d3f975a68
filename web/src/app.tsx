// The signed-in app: the list of chats (a `nav` landmark), the open conversation (the
// `main` landmark: its messages as a live log, the composer), and the dialogs (new chat,
// image viewer). On a phone-sized screen one of list and conversation shows at a time.

import { useEffect, useLayoutEffect, useMemo, useReducer, useRef, useState } from 'preact/hooks';
import type { FileRef, Group, Id, Message, Session } from './api';
import type { Call } from './call';
import { Chat } from './chat';
import type { Conference, Party } from './conference';

export function App({ session, onSignOut }: { session: Session; onSignOut: (revoke: boolean) => void }) {
  const chat = useMemo(() => new Chat(session), [session]);
  const [, bump] = useReducer((n: number) => n + 1, 0);
  const redraw = () => bump(undefined);
  const [viewing, setViewing] = useState<FileRef | null>(null);
  const [creating, setCreating] = useState(false);
  useEffect(() => {
    const off = chat.subscribe(redraw);
    const visible = () => chat.markSeen();
    document.addEventListener('visibilitychange', visible);
    return () => {
      off();
      document.removeEventListener('visibilitychange', visible);
      chat.close();
    };
  }, [chat]);
  useEffect(() => {
    if (chat.connection === 'expired') onSignOut(false);
  }, [chat.connection]);

  const open = chat.openGroup ? chat.groups.get(chat.openGroup) : undefined;
  // The conference screen covers the app: what is under it is out of reach meanwhile.
  const covered = !!chat.conference;
  return (
    <div class={`app ${open ? 'has-open' : ''}`}>
      <Sidebar chat={chat} inert={covered} onNew={() => setCreating(true)} onSignOut={() => onSignOut(true)} />
      {open ? (
        <Conversation key={open.group_id} chat={chat} group={open} inert={covered} onView={setViewing} />
      ) : (
        <main class="empty" aria-label="Conversation" inert={covered}>
          <p>Pick a chat, or start a new one.</p>
        </main>
      )}
      {chat.call && <CallPanel chat={chat} call={chat.call} />}
      {chat.conference && <ConferencePanel chat={chat} conf={chat.conference} />}
      {creating && <NewChat chat={chat} onClose={() => setCreating(false)} />}
      {viewing && <Viewer file={viewing} onClose={() => setViewing(null)} />}
      {chat.error && (
        <div class="toast" role="alert">
          {chat.error}
          <button type="button" aria-label="Dismiss" onClick={() => ((chat.error = null), chat.changed())}>
            ×
          </button>
        </div>
      )}
    </div>
  );
}

const CONNECTION_TEXT = {
  connecting: 'Connecting…',
  online: 'Online',
  offline: 'Offline, reconnecting…',
  expired: 'Signed out',
  elsewhere: 'Open in another tab',
};

function Sidebar({ chat, inert, onNew, onSignOut }: { chat: Chat; inert: boolean; onNew: () => void; onSignOut: () => void }) {
  const groups = chat.sortedGroups();
  return (
    <nav class="sidebar" aria-label="Chats" inert={inert}>
      <header class="bar">
        <h1>confer</h1>
        <span class={`conn conn-${chat.connection}`} role="status" data-testid="connection">
          {CONNECTION_TEXT[chat.connection]}
        </span>
      </header>
      {chat.connection === 'elsewhere' && (
        <div class="elsewhere" role="alert">
          This chat is open in another tab or window.{' '}
          <button type="button" onClick={() => chat.useHere()}>
            Use here
          </button>
        </div>
      )}
      <div class="me">
        <span>
          Signed in as <strong>{chat.session.user}</strong>
        </span>
        <button type="button" class="link" onClick={onSignOut}>
          Sign out
        </button>
      </div>
      <button type="button" class="primary new" onClick={onNew}>
        New chat
      </button>
      {groups.length === 0 ? (
        <p class="hint">No chats yet.</p>
      ) : (
        <ul class="groups">
          {groups.map((g) => (
            <GroupItem key={g.group_id} chat={chat} group={g} />
          ))}
        </ul>
      )}
    </nav>
  );
}

function preview(chat: Chat, m: Message | null | undefined): string {
  if (!m) return 'No messages yet';
  if (m.status === 4) return 'Message deleted';
  const who = m.sender_uin === chat.me ? 'You: ' : '';
  if (m.message) return who + m.message;
  if (m.files?.length) return who + m.files.map((f) => f.filename).join(', ');
  return who + 'Attachment';
}

function GroupItem({ chat, group: g }: { chat: Chat; group: Group }) {
  const title = chat.title(g);
  const peer = chat.peer(g);
  const unread = g.unread_cnt || 0;
  const current = chat.openGroup === g.group_id;
  return (
    <li>
      <button
        type="button"
        class="group"
        aria-current={current ? 'true' : undefined}
        data-group={g.group_id}
        onClick={() => void chat.open(g.group_id)}
      >
        <span class="avatar" aria-hidden="true">
          {title.slice(0, 1).toUpperCase()}
          {peer && <Dot chat={chat} uin={peer} />}
        </span>
        <span class="group-text">
          <span class="group-title">
            {title}
            {g.pinned && (
              <span class="tag">
                <span class="sr-only">,</span> pinned
              </span>
            )}
            {g.muted && (
              <span class="tag">
                <span class="sr-only">,</span> muted
              </span>
            )}
          </span>
          <span class="group-last">{preview(chat, g.last_message)}</span>
        </span>
        {unread > 0 && (
          <span class={`unread ${g.muted ? 'muted' : ''}`} data-testid="unread">
            {unread}
            <span class="sr-only"> unread</span>
          </span>
        )}
      </button>
    </li>
  );
}

/** Presence as told by the `user_statuses` snapshot after login and the `user_status`
 * pushes after it; nothing is shown before the server said. Idle, away and busy are
 * online; invisible (one's own only) is offline. */
function presenceOf(chat: Chat, uin: Id): 'online' | 'offline' | null {
  const s = chat.presence.get(uin);
  return s === undefined ? null : s === 2 || s === 4 ? 'offline' : 'online';
}

function Dot({ chat, uin }: { chat: Chat; uin: Id }) {
  const p = presenceOf(chat, uin);
  return p ? <span class={`dot ${p === 'online' ? 'on' : 'off'}`} data-presence={p} /> : null;
}

function Conversation({ chat, group: g, inert, onView }: { chat: Chat; group: Group; inert: boolean; onView: (f: FileRef) => void }) {
  const list = useRef<HTMLDivElement>(null);
  const heading = useRef<HTMLHeadingElement>(null);
  const atBottom = useRef(true);
  const before = useRef<{ height: number; top: number; count: number } | null>(null);
  const [dragging, setDragging] = useState(false);
  const m = chat.messages.get(g.group_id);
  const messages = m?.list ?? [];
  const peer = chat.peer(g);
  const typers = [...(chat.typing.get(g.group_id)?.keys() ?? [])];
  const blockedPeer = peer ? g.blocked_uins.includes(peer) : false;
  const iAmBlocked = g.blocked_uins.includes(chat.me);

  useEffect(() => heading.current?.focus(), [g.group_id]);
  // Keep the view at the bottom as messages come, unless the user scrolled up; keep it
  // where it was when older messages are put above.
  useLayoutEffect(() => {
    const el = list.current;
    if (!el) return;
    if (before.current) {
      // Only once the older page is in (a render while it loads changes nothing).
      if (before.current.count === messages.length) return;
      el.scrollTop = el.scrollHeight - before.current.height + before.current.top;
      before.current = null;
    } else if (atBottom.current) {
      el.scrollTop = el.scrollHeight;
    }
  });

  const loadOlder = () => {
    const el = list.current;
    if (!el || !m || !m.older || m.loadingOlder) return;
    before.current = { height: el.scrollHeight, top: el.scrollTop, count: messages.length };
    chat.loadOlder(g.group_id).catch((e) => chat.fail(e));
  };
  const onScroll = () => {
    const el = list.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    if (el.scrollTop < 120) loadOlder();
  };
  const drop = (e: DragEvent) => {
    e.preventDefault();
    setDragging(false);
    const files = [...(e.dataTransfer?.files ?? [])];
    if (files.length) chat.sendFiles(g.group_id, files).catch((err) => chat.fail(err));
  };

  const title = chat.title(g);
  return (
    <main
      class={`conversation ${dragging ? 'dragging' : ''}`}
      aria-labelledby="conversation-title"
      inert={inert}
      onDragOver={(e) => (e.preventDefault(), setDragging(true))}
      onDragLeave={() => setDragging(false)}
      onDrop={drop}
    >
      <header class="bar conv-bar">
        <button type="button" class="back" aria-label="Back to chats" onClick={() => ((chat.openGroup = null), chat.changed())}>
          ←
        </button>
        <h2 id="conversation-title" tabIndex={-1} ref={heading}>
          {title}
        </h2>
        {peer && presenceOf(chat, peer) && (
          <span class="presence" data-testid="presence">
            <Dot chat={chat} uin={peer} />
            {presenceOf(chat, peer)}
          </span>
        )}
        <div class="actions" role="group" aria-label="Chat actions">
          <button type="button" aria-pressed={!!g.pinned} onClick={() => chat.setPinned(g.group_id, !g.pinned).catch((e) => chat.fail(e))}>
            {g.pinned ? 'Unpin' : 'Pin'}
          </button>
          <button type="button" aria-pressed={!!g.muted} onClick={() => chat.setMuted(g.group_id, !g.muted).catch((e) => chat.fail(e))}>
            {g.muted ? 'Unmute' : 'Mute'}
          </button>
          {peer && !blockedPeer && !iAmBlocked && (
            <>
              <button type="button" onClick={() => chat.startCall(g.group_id, peer, false).catch((e) => chat.fail(e))}>
                Call
              </button>
              <button type="button" onClick={() => chat.startCall(g.group_id, peer, true).catch((e) => chat.fail(e))}>
                Video call
              </button>
            </>
          )}
          {!iAmBlocked && (
            <button type="button" disabled={!!chat.conference} onClick={() => chat.joinConference(g.group_id)}>
              Join conference
            </button>
          )}
          {peer && (
            <button type="button" onClick={() => chat.setBlocked(g.group_id, peer, !blockedPeer).catch((e) => chat.fail(e))}>
              {blockedPeer ? 'Unblock' : 'Block'}
            </button>
          )}
          <button
            type="button"
            onClick={() => {
              if (confirm(`Leave ${title}?`)) chat.leave(g.group_id).catch((e) => chat.fail(e));
            }}
          >
            Leave
          </button>
        </div>
      </header>
      <div class="messages" ref={list} onScroll={onScroll} role="log" aria-label={`Messages in ${title}`} tabIndex={0}>
        {m?.older && m.loaded && (
          <button type="button" class="link older" onClick={loadOlder} disabled={m.loadingOlder}>
            {m.loadingOlder ? 'Loading…' : 'Load older messages'}
          </button>
        )}
        {m?.loaded && !m.older && <p class="hint start">This is the start of the conversation.</p>}
        <ol>
          {messages.map((msg) => (
            <MessageItem key={msg.message_id} chat={chat} msg={msg} onView={onView} />
          ))}
        </ol>
      </div>
      <p class="typing" aria-live="polite" data-testid="typing">
        {typers.length ? `${typers.map((u) => chat.name(u)).join(', ')} ${typers.length > 1 ? 'are' : 'is'} typing…` : ''}
      </p>
      {iAmBlocked ? (
        <p class="hint blocked">You were blocked in this chat.</p>
      ) : (
        <Composer chat={chat} groupId={g.group_id} />
      )}
    </main>
  );
}

function time(us: number): string {
  return new Date(us / 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function MessageItem({ chat, msg, onView }: { chat: Chat; msg: Message; onView: (f: FileRef) => void }) {
  const [editing, setEditing] = useState(false);
  const [text, setText] = useState(msg.message || '');
  const mine = msg.sender_uin === chat.me;
  const deleted = msg.status === 4;
  const edited = !deleted && msg.updated_at > msg.created_at;
  const save = async (e: Event) => {
    e.preventDefault();
    try {
      await chat.edit(msg, text);
      setEditing(false);
    } catch (err) {
      chat.fail(err);
    }
  };
  return (
    <li class={`msg ${mine ? 'mine' : ''} ${deleted ? 'deleted' : ''}`} data-id={msg.message_id}>
      <div class="meta">
        <span class="sender">{chat.name(msg.sender_uin)}</span>{' '}
        <time dateTime={new Date(msg.created_at / 1000).toISOString()}>{time(msg.created_at)}</time>
        {edited && <span class="edited"> (edited)</span>}
        {mine && !deleted && <Receipt status={msg.status} />}
      </div>
      {deleted ? (
        <p class="text">Message deleted</p>
      ) : editing ? (
        <form class="edit" onSubmit={save}>
          <label class="sr-only" for={`edit-${msg.message_id}`}>
            Edit message
          </label>
          <input
            id={`edit-${msg.message_id}`}
            value={text}
            onInput={(e) => setText(e.currentTarget.value)}
            onKeyDown={(e) => e.key === 'Escape' && setEditing(false)}
            ref={(el) => el?.focus()}
          />
          <button type="submit">Save</button>
          <button type="button" onClick={() => setEditing(false)}>
            Cancel
          </button>
        </form>
      ) : (
        <>
          {msg.message && <p class="text">{msg.message}</p>}
          {msg.files?.map((f) => <Attachment key={f.item_id} file={f} onView={onView} />)}
        </>
      )}
      {mine && !deleted && !editing && (
        <div class="msg-actions">
          {!msg.files?.length && (
            <button type="button" class="link" onClick={() => (setText(msg.message || ''), setEditing(true))}>
              Edit
            </button>
          )}
          <button
            type="button"
            class="link"
            onClick={() => {
              if (confirm('Delete this message?')) chat.remove(msg).catch((e) => chat.fail(e));
            }}
          >
            Delete
          </button>
        </div>
      )}
    </li>
  );
}

const RECEIPT: Record<number, [string, string]> = {
  1: ['✓', 'Sent'],
  2: ['✓✓', 'Delivered'],
  3: ['✓✓', 'Seen'],
};

/** One's own message's read state (its `status`, moved on by `message_status`): sent,
 * delivered to every recipient, seen by every recipient. */
function Receipt({ status }: { status: number }) {
  const r = RECEIPT[status];
  if (!r) return null;
  return (
    <span class={`receipt receipt-${status}`} data-testid="receipt" title={r[1]}>
      <span aria-hidden="true">{r[0]}</span>
      <span class="sr-only">{r[1]}</span>
    </span>
  );
}

function size(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function Attachment({ file: f, onView }: { file: FileRef; onView: (f: FileRef) => void }) {
  if (f.mimetype.startsWith('image/') && f.mimetype !== 'image/svg+xml') {
    return (
      <button type="button" class="thumb" aria-label={`View image ${f.filename}`} onClick={() => onView(f)}>
        <img src={f.url} alt={f.filename} loading="lazy" />
      </button>
    );
  }
  if (f.mimetype.startsWith('audio/')) {
    return <audio class="player" controls preload="metadata" src={f.url} aria-label={f.filename} />;
  }
  if (f.mimetype.startsWith('video/')) {
    return <video class="player" controls preload="metadata" src={f.url} aria-label={f.filename} />;
  }
  return (
    <a class="file" href={f.url} download={f.filename}>
      {f.filename} <span class="size">({size(f.size)})</span>
    </a>
  );
}

function Composer({ chat, groupId }: { chat: Chat; groupId: Id }) {
  const [text, setText] = useState('');
  const [sending, setSending] = useState(false);
  const input = useRef<HTMLTextAreaElement>(null);
  const fileInput = useRef<HTMLInputElement>(null);
  const send = async (e?: Event) => {
    e?.preventDefault();
    const t = text.trim();
    if (!t) return;
    setSending(true);
    try {
      await chat.send(groupId, t);
      setText('');
    } catch (err) {
      chat.fail(err);
    } finally {
      setSending(false);
      input.current?.focus();
    }
  };
  const sendFiles = (files: File[]) => {
    if (files.length) chat.sendFiles(groupId, files).catch((err) => chat.fail(err));
  };
  return (
    <form class="composer" onSubmit={send}>
      <input
        ref={fileInput}
        id="attach"
        type="file"
        multiple
        aria-label="Attach files"
        tabIndex={-1}
        class="sr-only"
        onChange={(e) => {
          sendFiles([...(e.currentTarget.files ?? [])]);
          e.currentTarget.value = '';
        }}
      />
      <button type="button" class="attach" aria-label="Attach files" onClick={() => fileInput.current?.click()}>
        <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" focusable="false">
          <path
            d="M16.5 6.5v10a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6.5"
            fill="none"
            stroke="currentColor"
            stroke-width="1.8"
            stroke-linecap="round"
          />
        </svg>
      </button>
      <label for="compose" class="sr-only">
        Message
      </label>
      <textarea
        id="compose"
        ref={input}
        rows={1}
        placeholder="Write a message"
        value={text}
        onInput={(e) => {
          setText(e.currentTarget.value);
          chat.typed(groupId, e.currentTarget.value.trim() === '');
        }}
        onBlur={() => chat.stoppedTyping()}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && !e.shiftKey) void send(e);
        }}
        onPaste={(e) => {
          const files = [...(e.clipboardData?.files ?? [])];
          if (files.length) {
            e.preventDefault();
            sendFiles(files);
          }
        }}
      />
      <button type="submit" class="primary" disabled={sending || !text.trim()}>
        Send
      </button>
    </form>
  );
}

function NewChat({ chat, onClose }: { chat: Chat; onClose: () => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [picked, setPicked] = useState<Id[]>([]);
  const [uin, setUin] = useState('');
  const [name, setName] = useState('');
  const [error, setError] = useState('');
  const people = chat.people();
  useEffect(() => {
    dialog.current?.showModal();
  }, []);
  const toggle = (u: Id) => setPicked(picked.includes(u) ? picked.filter((p) => p !== u) : [...picked, u]);
  const add = () => {
    const u = uin.trim();
    if (!/^[1-9][0-9]*$/.test(u)) return setError('A user number is digits, such as 1002.');
    if (u === chat.me) return setError('That is you.');
    if (!picked.includes(u)) setPicked([...picked, u]);
    setUin('');
    setError('');
  };
  const create = async (e: Event) => {
    e.preventDefault();
    if (!picked.length) return setError('Pick at least one person.');
    try {
      const id = await chat.createGroup(picked, picked.length > 1 ? name.trim() : name.trim());
      onClose();
      await chat.open(id);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };
  const extra = picked.filter((p) => !people.includes(p));
  return (
    <dialog ref={dialog} class="dialog" aria-labelledby="new-title" onClose={onClose}>
      <form onSubmit={create}>
        <h2 id="new-title">New chat</h2>
        <fieldset>
          <legend>People</legend>
          {[...people, ...extra].map((u) => (
            <label key={u} class="check">
              <input type="checkbox" checked={picked.includes(u)} onChange={() => toggle(u)} />
              {chat.name(u)} <span class="hint">#{u}</span>
            </label>
          ))}
          {!people.length && !extra.length && <p class="hint">Add people by their user number.</p>}
        </fieldset>
        <div class="row">
          <label>
            User number
            <input
              inputMode="numeric"
              value={uin}
              onInput={(e) => setUin(e.currentTarget.value)}
              onKeyDown={(e) => {
                if (e.key === 'Enter') {
                  e.preventDefault();
                  add();
                }
              }}
            />
          </label>
          <button type="button" onClick={add}>
            Add
          </button>
        </div>
        <label>
          Group name (a private chat with one person has none)
          <input value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <div class="row end">
          <button type="button" onClick={() => dialog.current?.close()}>
            Cancel
          </button>
          <button type="submit" class="primary">
            Create
          </button>
        </div>
      </form>
    </dialog>
  );
}

function Viewer({ file, onClose }: { file: FileRef; onClose: () => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    dialog.current?.showModal();
  }, []);
  return (
    <dialog ref={dialog} class="viewer" aria-label={`Image ${file.filename}`} onClose={onClose}>
      <img src={file.url} alt={file.filename} />
      <div class="row end">
        <a href={file.url} download={file.filename}>
          Download
        </a>
        <button type="button" onClick={() => dialog.current?.close()}>
          Close
        </button>
      </div>
    </dialog>
  );
}

function Media({ stream, muted, label, cls }: { stream: MediaStream | null; muted: boolean; label: string; cls: string }) {
  const ref = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    if (ref.current && ref.current.srcObject !== stream) ref.current.srcObject = stream;
  });
  return <video ref={ref} class={cls} autoPlay playsInline muted={muted} aria-label={label} />;
}

const CALL_TEXT = {
  calling: 'Calling…',
  incoming: 'Incoming call',
  connecting: 'Connecting…',
  live: 'In call',
  ended: 'Call ended',
};

function CallPanel({ chat, call }: { chat: Chat; call: Call }) {
  const first = useRef<HTMLButtonElement>(null);
  const who = chat.name(call.peer);
  useEffect(() => first.current?.focus(), [call.state === 'incoming', call.state === 'ended']);
  const act = (f: () => Promise<void>) => () => void f().catch((e) => chat.fail(e));
  return (
    <section class="call" role={call.state === 'incoming' ? 'alertdialog' : 'region'} aria-label={`Call with ${who}`}>
      <p class="call-status" data-testid="call-status">
        {CALL_TEXT[call.state]} {call.state === 'incoming' ? `from ${who}` : `with ${who}`}
        {call.state === 'incoming' && (call.video ? ' (video)' : ' (audio)')}
        {call.state === 'ended' && call.ended ? ` ${call.ended}` : ''}
      </p>
      {call.state !== 'incoming' && call.state !== 'ended' && (
        <div class="call-media">
          <Media stream={call.remote} muted={false} label={`${who}'s video`} cls={`remote ${call.video ? '' : 'audio-only'}`} />
          {call.video && <Media stream={call.local} muted={true} label="Your video" cls="local" />}
        </div>
      )}
      <div class="row end">
        {call.state === 'incoming' ? (
          <>
            <button type="button" onClick={act(() => call.decline())}>
              Decline
            </button>
            <button type="button" class="primary" ref={first} onClick={act(() => call.accept())}>
              Accept
            </button>
          </>
        ) : call.state === 'ended' ? (
          <button type="button" ref={first} onClick={() => chat.dismissCall()}>
            Close
          </button>
        ) : (
          <button type="button" class="danger" ref={first} onClick={act(() => call.hangUp())}>
            Hang up
          </button>
        )}
      </div>
    </section>
  );
}

function Audio({ stream }: { stream: MediaStream }) {
  const ref = useRef<HTMLAudioElement>(null);
  useEffect(() => {
    if (ref.current && ref.current.srcObject !== stream) ref.current.srcObject = stream;
  });
  return <audio ref={ref} autoPlay />;
}

const CONFERENCE_TEXT = {
  joining: 'Joining…',
  connecting: 'Connecting…',
  live: 'In the conference',
  ended: 'Left',
};

/** Microphone and camera as the party said (`bMicOn`, `bCamOn`): shown when off. */
function Flags({ mic, cam }: { mic: boolean; cam: boolean }) {
  return (
    <span class="flags">
      {!mic && <span class="flag">Mic off</span>}
      {!cam && <span class="flag">Camera off</span>}
    </span>
  );
}

function PartyTile({ conf, party: p }: { conf: Conference; party: Party }) {
  const slot = conf.slotOf(p.PartyID);
  return (
    <li class="tile" data-party={p.PartyID} data-testid="party">
      {slot >= 0 && (
        <>
          <Media stream={conf.video[slot]} muted={true} label={`${p.username}'s video`} cls="tile-video" />
          <Audio stream={conf.audio[slot]} />
        </>
      )}
      {(slot < 0 || !p.bCamOn) && (
        // Nothing to show (yet), or the camera is off: the last frame would stand still.
        <span class="tile-wait" aria-hidden="true">
          {p.username.slice(0, 1).toUpperCase()}
        </span>
      )}
      <Flags mic={p.bMicOn} cam={p.bCamOn} />
      <span class="tile-name">
        {p.username}
        {slot < 0 && <span class="hint"> ({p.State !== 2 ? 'no media' : conf.slots.includes(null) ? 'connecting' : 'no free slot'})</span>}
      </span>
    </li>
  );
}

function ConferencePanel({ chat, conf }: { chat: Chat; conf: Conference }) {
  const heading = useRef<HTMLHeadingElement>(null);
  const g = chat.groups.get(conf.groupId);
  const title = g ? chat.title(g) : 'the conference';
  useEffect(() => {
    heading.current?.focus();
    // Closed: focus goes back to the chat it was joined from (or wherever is first).
    return () => document.getElementById('conversation-title')?.focus();
  }, []);
  const act = (f: () => Promise<void>) => () => void f().catch((e) => chat.fail(e));
  const others = conf.others();
  const ended = conf.state === 'ended';
  return (
    <section class="conference" aria-labelledby="conference-title">
      <header class="bar">
        <h2 id="conference-title" tabIndex={-1} ref={heading}>
          Conference in {title}
        </h2>
        <p class="conf-status" role="status" data-testid="conference-status">
          {CONFERENCE_TEXT[conf.state]}
          {ended && conf.ended ? `: ${conf.ended}` : ''}
        </p>
      </header>
      <ul class="tiles" aria-label="People in the conference">
        {!ended && (
          <li class="tile mine" data-testid="me">
            <Media stream={conf.local} muted={true} label="Your video" cls="tile-video" />
            {!conf.cam && (
              <span class="tile-wait" aria-hidden="true">
                Y
              </span>
            )}
            <Flags mic={conf.mic} cam={conf.cam} />
            <span class="tile-name">You</span>
          </li>
        )}
        {!ended && others.map((p) => <PartyTile key={p.PartyID} conf={conf} party={p} />)}
      </ul>
      {!ended && conf.state !== 'joining' && others.length === 0 && <p class="hint">Nobody else is here yet.</p>}
      <div class="row end conf-controls" role="group" aria-label="Conference controls">
        {!ended && (
          <>
            <button type="button" aria-pressed={conf.mic} disabled={!conf.pc} onClick={act(() => conf.setMic(!conf.mic))}>
              Microphone
            </button>
            <button type="button" aria-pressed={conf.cam} disabled={!conf.pc} onClick={act(() => conf.setCam(!conf.cam))}>
              Camera
            </button>
          </>
        )}
        <button type="button" class={ended ? '' : 'danger'} onClick={act(() => chat.leaveConference())}>
          {ended ? 'Close' : 'Leave'}
        </button>
      </div>
    </section>
  );
}
