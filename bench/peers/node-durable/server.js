// Peer for confer-bench: the honest version of "what a team would write instead": a
// socket.io 4 server that stores every message in SQLite (better-sqlite3, WAL,
// synchronous=FULL: each commit is fsynced) before it acks it and relays it to the room.
// The same shapes as confer's Chat API: `join {group_id}` joins a room;
// `create_message {group_id, message}` is inserted, acked `{result: 0, message}` and
// emitted to the room as `message {message: {group_id, message_id, message}}`;
// `list_message {group_id, last_seen_message_id, psize}` pages what came after an id.
// One insert per message, each its own transaction: better-sqlite3 is synchronous, so
// the event loop waits for each fsync, as it would in such a server.
const { Server } = require('socket.io');
const Database = require('better-sqlite3');

const port = Number(process.env.PORT || 0);
const db = new Database(process.env.DB || 'peer.sqlite');
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.exec(`CREATE TABLE IF NOT EXISTS messages (
  message_id INTEGER PRIMARY KEY AUTOINCREMENT,
  group_id TEXT NOT NULL,
  message TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_group ON messages(group_id, message_id);`);
const insert = db.prepare('INSERT INTO messages (group_id, message, created_at) VALUES (?, ?, ?)');
const after = db.prepare(
  'SELECT message_id, group_id, message FROM messages WHERE group_id = ? AND message_id > ? ORDER BY message_id LIMIT ?',
);

const shown = (row) => ({ group_id: row.group_id, message_id: String(row.message_id), message: row.message });

const io = new Server(port, { transports: ['websocket'] });
const ns = io.of('/data');
ns.on('connection', (socket) => {
  socket.emit('login', { result: 0 });
  socket.on('join', (args, ack) => {
    socket.join(String(args?.group_id));
    if (ack) ack({ result: 0 });
  });
  socket.on('create_message', (args, ack) => {
    const group = String(args?.group_id);
    const text = typeof args?.message === 'string' ? args.message : null;
    let row;
    try {
      const info = insert.run(group, text, Date.now());
      row = { message_id: info.lastInsertRowid, group_id: group, message: text };
    } catch (e) {
      if (ack) ack({ result: 2, error: String(e) });
      return;
    }
    const message = shown(row);
    ns.to(group).emit('message', { message });
    if (ack) ack({ result: 0, message });
  });
  socket.on('list_message', (args, ack) => {
    const psize = Math.min(Math.max(Number(args?.psize) || 20, 1), 200);
    const rows = after.all(String(args?.group_id), Number(args?.last_seen_message_id) || 0, psize);
    if (ack) ack({ result: 0, messages: rows.map(shown) });
  });
});
io.httpServer.on('listening', () => {
  console.log(`listening ${io.httpServer.address().port}`);
});
