// Peer for confer-bench: a minimal socket.io 4 relay. `join {group_id}` joins a room;
// `create_message {group_id, message}` is acked and emitted to the room as
// `message {message: {group_id, message}}` — the same shapes confer's Chat API uses.
const { Server } = require('socket.io');

const port = Number(process.env.PORT || 0);
const io = new Server(port, { transports: ['websocket'] });
const ns = io.of('/data');
ns.on('connection', (socket) => {
  socket.emit('login', { result: 0 });
  socket.on('join', (args, ack) => {
    socket.join(String(args.group_id));
    if (ack) ack({ result: 0 });
  });
  socket.on('create_message', (args, ack) => {
    ns.to(String(args.group_id)).emit('message', { message: { group_id: args.group_id, message: args.message } });
    if (ack) ack({ result: 0 });
  });
});
io.httpServer.on('listening', () => {
  console.log(`listening ${io.httpServer.address().port}`);
});
