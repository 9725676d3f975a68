// A Chat API client that stops reading is cut, and nobody else waits for it: the other
// members get every message, and they hear the slow one go offline.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startServer, emit } from './harness.mjs';

let server;

before(async () => {
  server = await startServer({
    CONFER_OUTBOUND_QUEUE: '8',
    CONFER_WRITE_TIMEOUT_MS: '1000',
    CONFER_CHAT_RATE_BURST: '100000',
    CONFER_CHAT_RATE_PER_SEC: '100000',
  });
});
after(async () => server.stop());

// A raw Socket.IO socket that logs in and then never reads again.
async function stalledSocket(token) {
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/socket.io/?EIO=4&transport=websocket&session=${token}`);
  ws.on('error', () => {});
  const loggedIn = new Promise((resolve) => {
    ws.on('message', (data) => {
      const text = data.toString();
      if (text.startsWith('0')) ws.send('40/data,');
      if (text.startsWith('42/data,["login"')) resolve();
    });
  });
  await loggedIn;
  ws._socket.pause();
  return ws;
}

test('a socket that stops reading is cut while the others get everything', async () => {
  const fast = await server.user('fast');
  const sender = await server.user('sender');
  const slowUin = server.addUser('slow', 'pw');
  const { body } = await server.login('slow', 'pw');
  const group = (await emit(sender.socket, 'create_group', { type: 2, occupants_uins: [fast.uin, slowUin] })).group;
  const slow = await stalledSocket(body.session);

  // Heard whenever it comes during the sending loop below (which takes minutes on a busy
  // machine: the cut comes once the kernel's buffers are full); waited for after it.
  let wentOffline;
  const offline = new Promise((resolve) => { wentOffline = resolve; });
  fast.socket.on('user_status', (s) => {
    if (s.user_status.uin === slowUin && s.user_status.online_status === 2) wentOffline();
  });
  let received = 0;
  fast.socket.on('message', (m) => { if (m.message.group_id === group.group_id) received += 1; });

  // More than the kernel buffers between the server and a client that does not read hold.
  const n = 1500;
  const text = 'x'.repeat(8000);
  for (let i = 0; i < n; i += 1) {
    const r = await emit(sender.socket, 'create_message', { group_id: group.group_id, message: text });
    assert.equal(r.result, 0);
  }
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('no offline user_status within 60 s of the last message')), 60000);
  });
  await Promise.race([offline, late]);
  clearTimeout(timer);
  const deadline = Date.now() + 60000;
  while (received < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(received, n, 'the reading member got every message');

  const metrics = await (await fetch(`${server.base}/metrics`)).text();
  const cuts = Number(/confer_slow_consumers_cut_total (\d+)/.exec(metrics)?.[1]);
  assert.ok(cuts >= 1, metrics);
  slow.terminate();
});
