// Typing that ends by itself, a callee's timeout answer, and busy/unreachable callees
// (issue 16, points 9-11), with the official socket.io-client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, once, never, emit } from './harness.mjs';

let server, a, b, c;

before(async () => {
  // A short typing timeout so the test need not wait 6 s; calls ring long enough that
  // only an answer or the server's busy handling can end them here.
  server = await startServer({ CONFER_TYPING_TIMEOUT_MS: '300', CONFER_CALL_TIMEOUT_MS: '30000' });
  a = await server.user('alice');
  b = await server.user('bob');
  c = await server.user('carol');
});
after(async () => server.stop());

const group = async (owner, members) =>
  (await emit(owner.socket, 'create_group', { type: 2, occupants_uins: members.map((m) => m.uin) })).group;

test('typing stops by itself: type 9 follows type 8 when no renewal comes', async () => {
  const g = await group(a, [b]);
  const started = once(b.socket, 'event', (e) => e.type === 8);
  const stopped = once(b.socket, 'event', (e) => e.type === 9);
  assert.equal((await emit(a.socket, 'event', { group_id: g.group_id, type: 8 })).result, 0);
  assert.equal((await started).sender_uin, a.uin);
  const s = await stopped;
  assert.equal(s.sender_uin, a.uin);
  assert.equal(s.group_id, g.group_id);
});

test("typing stops at once when the typer's last socket goes", async () => {
  // A timeout far beyond the test's waits: only the disconnect can end this typing.
  const slow = await startServer({ CONFER_TYPING_TIMEOUT_MS: '600000' });
  try {
    const dana = await slow.user('dana');
    const fred = await slow.user('fred');
    // A second device: its own login, its own socket.
    const other = await slow.connect((await slow.login('dana', 'pw')).body.session);
    const g = await group(dana, [fred]);
    const started = once(fred.socket, 'event', (e) => e.type === 8);
    assert.equal((await emit(dana.socket, 'event', { group_id: g.group_id, type: 8 })).result, 0);
    await started;
    const stopped = once(fred.socket, 'event', (e) => e.type === 9);
    // One device going is not enough: dana still has a socket.
    const notYet = never(fred.socket, 'event', 400, (e) => e.type === 9);
    dana.socket.disconnect();
    assert.ok(await notYet, 'typing goes on while another socket of the typer is open');
    other.disconnect();
    const s = await stopped;
    assert.equal(s.sender_uin, dana.uin);
    assert.equal(s.group_id, g.group_id);
  } finally {
    await slow.stop();
  }
});

test("a callee's answer 3 (timeout) ends the call as timed out (status 2)", async () => {
  const g = await group(a, [b]);
  const ringing = once(b.socket, 'start_call');
  const call = (await emit(a.socket, 'create_call', { media_type: 1, group_id: g.group_id })).call;
  await ringing;
  const stopped = once(a.socket, 'stop_call', (s) => s.call.call_id === call.call_id);
  const answered = await emit(b.socket, 'answer_call', { call_id: call.call_id, group_id: g.group_id, answer: 3 });
  assert.equal(answered.result, 0);
  assert.equal(answered.call.call_status, 2);
  assert.equal((await stopped).call.call_status, 2);
  const status = await emit(a.socket, 'call_status', { call_id: call.call_id, group_id: g.group_id });
  assert.equal(status.call_status, 2);
});

test('a second create_call in a group with a live call answers 12 (busy)', async () => {
  const g = await group(a, [b]);
  const first = await emit(a.socket, 'create_call', { media_type: 1, group_id: g.group_id });
  assert.equal(first.result, 0);
  const second = await emit(b.socket, 'create_call', { media_type: 2, group_id: g.group_id });
  assert.equal(second.result, 12);
  assert.match(second.message, /call/);
  // Once it ended, the group can call again.
  assert.equal((await emit(a.socket, 'stop_call', { call_id: first.call.call_id, group_id: g.group_id })).result, 0);
  const third = await emit(b.socket, 'create_call', { media_type: 1, group_id: g.group_id });
  assert.equal(third.result, 0);
  assert.equal((await emit(b.socket, 'stop_call', { call_id: third.call.call_id, group_id: g.group_id })).result, 0);
});

test('a callee already in another call is not rung; the caller hears event 7 "busy" at once', async () => {
  const ab = await group(a, [b]);
  const live = (await emit(a.socket, 'create_call', { media_type: 1, group_id: ab.group_id })).call;
  const cb = await group(c, [b]);
  const busy = once(c.socket, 'event', (e) => e.type === 7);
  const notRung = never(b.socket, 'start_call');
  const stopped = once(c.socket, 'stop_call');
  const created = await emit(c.socket, 'create_call', { media_type: 1, group_id: cb.group_id });
  assert.equal(created.result, 0);
  const e = await busy;
  assert.equal(e.data, 'busy');
  assert.equal(e.sender_uin, b.uin);
  assert.equal(e.receiver_uin, c.uin);
  assert.equal(e.call_id, created.call.call_id);
  assert.equal(e.group_id, cb.group_id);
  // Bob was the only callee: the call is over at once, as finished.
  assert.equal(created.call.call_status, 3);
  assert.equal((await stopped).call.call_id, created.call.call_id);
  assert.ok(await notRung, 'a busy callee is not rung');
  assert.equal((await emit(a.socket, 'stop_call', { call_id: live.call_id, group_id: ab.group_id })).result, 0);
});

test('a callee with no socket: the caller hears event 7 "unreachable", the others still ring', async () => {
  const erin = await server.user('erin');
  const g = await group(a, [b, erin]);
  const offline = once(a.socket, 'user_status', (u) => u.user_status.uin === erin.uin && u.user_status.online_status === 2);
  erin.socket.disconnect();
  await offline;
  const unreachable = once(a.socket, 'event', (e) => e.type === 7);
  const ringing = once(b.socket, 'start_call');
  const created = await emit(a.socket, 'create_call', { media_type: 1, group_id: g.group_id });
  assert.equal(created.result, 0);
  assert.equal(created.call.call_status, 1);
  const e = await unreachable;
  assert.equal(e.data, 'unreachable');
  assert.equal(e.sender_uin, erin.uin);
  assert.equal((await ringing).call.call_id, created.call.call_id);
  // Bob rejecting ends it: erin counts as having declined.
  const stopped = once(a.socket, 'stop_call');
  assert.equal((await emit(b.socket, 'answer_call', { call_id: created.call.call_id, group_id: g.group_id, answer: 2 })).result, 0);
  assert.equal((await stopped).call.call_status, 3);
});
