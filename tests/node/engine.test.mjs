// Engine.IO v4 / Socket.IO v5 as the server speaks it: the official client's polling →
// WebSocket upgrade, the raw packets and what bad ones get, Engine.IO's HTTP errors,
// long-polling by hand, and a bad token.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { startServer, once, emit } from './harness.mjs';

const MAX_FRAME = 4096;
let server;

before(async () => {
  server = await startServer({ CONFER_MAX_FRAME_BYTES: String(MAX_FRAME) });
});
after(async () => server.stop());

// An account and its token, without a socket.
async function account(login) {
  const uin = server.addUser(login, 'pw');
  const { body } = await server.login(login, 'pw');
  return { login, uin, token: body.session };
}

// A raw Engine.IO WebSocket: `next()` gives the server's text frames in order (pings are
// answered here and not shown); `closed` resolves with the close code and reason.
function rawSocket() {
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/socket.io/?EIO=4&transport=websocket`);
  const inbox = [];
  const waiting = [];
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    const text = data.toString();
    if (!isBinary && text === '2') {
      ws.send('3');
      return;
    }
    inbox.push(isBinary ? { binary: data } : text);
    while (waiting.length && inbox.length) waiting.shift()(inbox.shift());
  });
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  return {
    ws,
    closed,
    opened: new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); }),
    send(frame) { ws.send(frame); },
    next(ms = 10000) {
      if (inbox.length) return Promise.resolve(inbox.shift());
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no frame within ${ms} ms`)), ms);
        waiting.push((frame) => { clearTimeout(timer); resolve(frame); });
      });
    },
  };
}

// The JSON of an ack `43/data,<id>[...]`, checking the id.
function ackOf(frame, id) {
  const m = /^43\/data,(\d+)(\[.*\])$/s.exec(frame);
  assert.ok(m, `not an ack: ${frame}`);
  assert.equal(Number(m[1]), id, `ack for the wrong id: ${frame}`);
  const args = JSON.parse(m[2]);
  assert.equal(args.length, 1);
  return args[0];
}

// The name and payload of an event `42/data,[name, payload]`.
function eventOf(frame) {
  assert.ok(frame.startsWith('42/data,'), `not an event on /data: ${frame}`);
  const [name, payload] = JSON.parse(frame.slice('42/data,'.length));
  return { name, payload };
}

test('default transports: polling first, then the upgrade to websocket; events and pushes work after it', async () => {
  const alice = await account('alice');
  const bob = await server.user('bob');
  const s = io(`${server.base}/data`, { auth: { session: alice.token }, reconnection: false, forceNew: true });
  server.sockets.push(s);
  assert.equal(s.io.engine.transport.name, 'polling', 'the client starts with long-polling');
  const upgraded = once(s.io.engine, 'upgrade');
  upgraded.catch(() => {}); // awaited below, after the login
  const login = await once(s, 'login');
  assert.equal(login.result, 0);
  assert.equal(login.uin, alice.uin);
  await upgraded;
  assert.equal(s.io.engine.transport.name, 'websocket');
  assert.ok(s.connected);

  const groups = await emit(s, 'list_group', {});
  assert.equal(groups.result, 0);
  assert.deepEqual(groups.groups, []);

  const g = (await emit(bob.socket, 'create_group', { type: 2, occupants_uins: [alice.uin] })).group;
  const pushed = once(s, 'message', (m) => m.message.group_id === g.group_id);
  const sent = await emit(bob.socket, 'create_message', { group_id: g.group_id, message: 'after the upgrade' });
  assert.equal(sent.result, 0);
  const got = (await pushed).message;
  assert.equal(got.message, 'after the upgrade');
  assert.equal(got.message_id, sent.message.message_id);
  assert.equal(got.sender_uin, bob.uin);
  assert.equal((await emit(s, 'list_group', {})).groups.length, 1);
  assert.equal(s.io.engine.transport.name, 'websocket');
});

// Engine.IO's client sends its upgrade packet only after the poll in flight has come back
// (it pauses polling first), so the server must answer that poll (a noop, as the reference
// server does) once the probe is answered. Here the poll is always idle at that moment:
// the CONNECT waits for the probe, as with an `auth` callback that fetches its token.
test('a client whose CONNECT comes after the upgrade probe (async auth) still logs in and upgrades', async () => {
  const fay = await account('fay');
  const s = io(`${server.base}/data`, {
    reconnection: false,
    forceNew: true,
    auth: (cb) => {
      const go = () => cb({ session: fay.token });
      if (s.io.engine.upgrading) go();
      else s.io.engine.once('upgrading', go);
    },
  });
  server.sockets.push(s);
  // The client holds its CONNECT until the upgrade is done, so the login comes after it.
  const login = await once(s, 'login');
  assert.equal(login.result, 0);
  assert.equal(s.io.engine.transport.name, 'websocket');
  assert.equal((await emit(s, 'list_group', {})).result, 0);
});

test('raw websocket: open packet, connect, login; bad packets are answered or ignored and the socket keeps working', async () => {
  const carol = await account('carol');
  const raw = rawSocket();
  await raw.opened;

  const openFrame = await raw.next();
  assert.equal(openFrame[0], '0');
  const open = JSON.parse(openFrame.slice(1));
  assert.equal(typeof open.sid, 'string');
  assert.ok(open.sid.length > 0);
  assert.equal(typeof open.pingInterval, 'number');
  assert.equal(typeof open.pingTimeout, 'number');
  assert.equal(open.maxPayload, MAX_FRAME);
  assert.deepEqual(open.upgrades, [], 'already on the best transport');

  raw.send(`40/data,${JSON.stringify({ session: carol.token })}`);
  const connected = await raw.next();
  assert.ok(connected.startsWith('40/data,'), connected);
  assert.equal(typeof JSON.parse(connected.slice('40/data,'.length)).sid, 'string');
  const login = eventOf(await raw.next());
  assert.equal(login.name, 'login');
  assert.equal(login.payload.result, 0);
  assert.equal(login.payload.uin, carol.uin);

  raw.send('40/nope,');
  assert.equal(await raw.next(), '44/nope,{"message":"Invalid namespace"}');

  raw.send('42/data,5[not json');
  assert.equal(ackOf(await raw.next(), 5).result, 1);

  raw.send('42/data,6[1,2]');
  assert.equal(ackOf(await raw.next(), 6).result, 1);

  raw.send('451-/data,7["create_message",{"_placeholder":true,"num":0}]');
  raw.send(Buffer.from([1, 2, 3, 4]));
  assert.equal(ackOf(await raw.next(), 7).result, 1);

  // Garbage Engine.IO packets get no answer: the next frame is list_group's ack.
  raw.send('9zzz');
  raw.send('4x');
  raw.send('42/data,8["list_group",{}]');
  const listed = ackOf(await raw.next(), 8);
  assert.equal(listed.result, 0);
  assert.deepEqual(listed.groups, []);

  // An Engine.IO ping from the client gets its pong.
  raw.send('2probe');
  assert.equal(await raw.next(), '3probe');

  raw.send('41/data,');
  const { code } = await raw.closed;
  assert.equal(code, 1000);
});

test('a text frame larger than maxPayload closes the websocket with 1009', async () => {
  const dave = await account('dave');
  const raw = rawSocket();
  await raw.opened;
  assert.equal(JSON.parse((await raw.next()).slice(1)).maxPayload, MAX_FRAME);
  raw.send(`40/data,${JSON.stringify({ session: dave.token })}`);
  assert.ok((await raw.next()).startsWith('40/data,'));
  assert.equal(eventOf(await raw.next()).payload.result, 0);

  const big = `42/data,9["list_group",${JSON.stringify({ pad: 'x'.repeat(MAX_FRAME * 2) })}]`;
  raw.send(big);
  const { code } = await raw.closed;
  assert.equal(code, 1009);
});

test('Engine.IO HTTP errors: protocol version, unknown sid, unknown transport', async () => {
  const cases = [
    ['EIO=3&transport=polling', 5],
    ['EIO=4&transport=polling&sid=unknown', 1],
    ['EIO=4&transport=carrier-pigeon', 0],
  ];
  for (const [query, code] of cases) {
    const r = await fetch(`${server.base}/socket.io/?${query}`);
    assert.equal(r.status, 400, query);
    const body = await r.json();
    assert.equal(body.code, code, query);
    assert.equal(typeof body.message, 'string');
  }
  const post = await fetch(`${server.base}/socket.io/?EIO=4&transport=polling&sid=unknown`, { method: 'POST', body: '40/data,' });
  assert.equal(post.status, 400);
  assert.equal((await post.json()).code, 1);
});

test('long-polling by hand: handshake, connect with a POST, answers joined by \\x1e in the next GET', async () => {
  const erin = await account('erin');
  const url = `${server.base}/socket.io/?EIO=4&transport=polling`;
  const hs = await fetch(url);
  assert.equal(hs.status, 200);
  const openFrame = await hs.text();
  assert.equal(openFrame[0], '0');
  const open = JSON.parse(openFrame.slice(1));
  assert.equal(typeof open.sid, 'string');
  assert.deepEqual(open.upgrades, ['websocket']);
  assert.equal(open.maxPayload, MAX_FRAME);
  const at = `${url}&sid=${encodeURIComponent(open.sid)}`;
  const post = (body) => fetch(at, { method: 'POST', headers: { 'Content-Type': 'text/plain;charset=UTF-8' }, body });

  const posted = await post(`40/data,${JSON.stringify({ session: erin.token })}`);
  assert.equal(posted.status, 200);
  assert.equal(await posted.text(), 'ok');
  const packets = (await (await fetch(at)).text()).split('\x1e');
  assert.equal(packets.length, 2, JSON.stringify(packets));
  assert.ok(packets[0].startsWith('40/data,'), packets[0]);
  assert.equal(typeof JSON.parse(packets[0].slice('40/data,'.length)).sid, 'string');
  const login = eventOf(packets[1]);
  assert.equal(login.name, 'login');
  assert.equal(login.payload.result, 0);
  assert.equal(login.payload.uin, erin.uin);

  // Two packets in one POST, each answered.
  assert.equal(await (await post('42/data,1["list_group",{}]\x1e42/data,2[1]')).text(), 'ok');
  const answers = [];
  while (answers.length < 2) {
    answers.push(...(await (await fetch(at)).text()).split('\x1e').filter((f) => f.startsWith('43')));
  }
  const byId = Object.fromEntries(answers.map((f) => [Number(/^43\/data,(\d+)/.exec(f)[1]), f]));
  assert.equal(ackOf(byId[1], 1).result, 0);
  assert.equal(ackOf(byId[2], 2).result, 1);

  // The client closes; its next poll is told so.
  assert.equal(await (await post('1')).text(), 'ok');
  assert.equal(await (await fetch(at)).text(), '1');
});

test('a bad token gets login result 2, then the server disconnects the socket', async () => {
  const bad = server.connectRaw({}, { auth: { session: 'nope' } });
  const login = once(bad, 'login');
  const gone = once(bad, 'disconnect');
  assert.equal((await login).result, 2);
  assert.equal(await gone, 'io server disconnect');
  assert.equal(bad.connected, false);
});
