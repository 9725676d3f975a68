// Calls with WebRTC signalling, presence, reconnect-and-resume, conflicts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, once, never, emit } from './harness.mjs';

let server, a, b, d;

before(async () => {
  server = await startServer({ CONFER_CALL_TIMEOUT_MS: '1500' });
  a = await server.user('alice');
  b = await server.user('bob');
  d = await server.user('dave');
});
after(async () => server.stop());

test('a full call: create, accept, SDP and ICE both ways, stop; history gets a call message', async () => {
  const g = (await emit(a.socket, 'create_group', { type: 1, occupants_uins: [b.uin] })).group;
  const ringing = once(b.socket, 'start_call');
  const created = await emit(a.socket, 'create_call', { media_type: 2, group_id: g.group_id, caller_uin: a.uin, callee_uins: [b.uin], sender_name: 'Alice' });
  assert.equal(created.result, 0);
  const call = created.call;
  assert.equal(call.call_status, 1);
  assert.equal((await ringing).call.call_id, call.call_id);

  const accepted = once(a.socket, 'answer_call');
  assert.equal((await emit(b.socket, 'answer_call', { call_id: call.call_id, group_id: g.group_id, answer: 1, uin: b.uin })).result, 0);
  const ans = await accepted;
  assert.equal(ans.answer, 1);
  assert.equal(ans.uin, b.uin);

  const offer = once(b.socket, 'ice_sdp');
  const notD = never(d.socket, 'ice_sdp');
  assert.equal((await emit(a.socket, 'ice_sdp', { call_id: call.call_id, group_id: g.group_id, sender_uin: a.uin, receiver_uin: b.uin, type: 1, sdp: 'v=0 offer' })).result, 0);
  const o = await offer;
  assert.equal(o.sdp, 'v=0 offer');
  assert.equal(o.type, 1);
  assert.equal(o.sender_uin, a.uin);
  assert.ok(await notD);
  const answer = once(a.socket, 'ice_sdp');
  assert.equal((await emit(b.socket, 'ice_sdp', { call_id: call.call_id, group_id: g.group_id, receiver_uin: a.uin, type: 2, sdp: 'v=0 answer' })).result, 0);
  assert.equal((await answer).sdp, 'v=0 answer');
  for (const [from, to] of [[a, b], [b, a]]) {
    const cand = once(to.socket, 'ice_candidate');
    assert.equal((await emit(from.socket, 'ice_candidate', { call_id: call.call_id, group_id: g.group_id, receiver_uin: to.uin, candidate: `candidate:${from.login}`, sdp_mid: '0', sdp_mline_index: 0 })).result, 0);
    const got = await cand;
    assert.equal(got.candidate, `candidate:${from.login}`);
    assert.equal(got.sdp_mline_index, 0);
  }
  assert.equal((await emit(d.socket, 'ice_sdp', { call_id: call.call_id, group_id: g.group_id, receiver_uin: b.uin, type: 1, sdp: 'x' })).result, 3, 'outsiders cannot signal');

  const stopA = once(a.socket, 'stop_call');
  const stopB = once(b.socket, 'stop_call');
  const historyMsg = once(b.socket, 'message', (m) => m.message.type === 1);
  assert.equal((await emit(a.socket, 'stop_call', { call_id: call.call_id, group_id: g.group_id, uin: a.uin })).result, 0);
  assert.equal((await stopA).call.call_status, 3);
  assert.equal((await stopB).call.call_status, 3);
  const record = JSON.parse((await historyMsg).message.message);
  assert.equal(record.call_id, call.call_id);
  assert.equal(record.call_status, 3);
  assert.ok(record.duration >= 0);
  const status = await emit(b.socket, 'call_status', { call_id: call.call_id, group_id: g.group_id });
  assert.equal(status.call_status, 3);
  const history = await emit(a.socket, 'list_message', { group_id: g.group_id });
  assert.equal(history.messages[0].type, 1);
});

test('an unanswered call times out with status 2', async () => {
  const g = (await emit(a.socket, 'create_group', { type: 2, occupants_uins: [b.uin] })).group;
  const stopped = once(b.socket, 'stop_call');
  const created = await emit(a.socket, 'create_call', { media_type: 1, group_id: g.group_id });
  assert.equal(created.result, 0);
  assert.deepEqual(created.call.callee_uins, [b.uin]);
  const s = await stopped;
  assert.equal(s.call.call_status, 2);
  assert.equal((await emit(a.socket, 'call_status', { call_id: created.call.call_id, group_id: g.group_id })).call_status, 2);
  assert.equal((await emit(b.socket, 'answer_call', { call_id: created.call.call_id, group_id: g.group_id, answer: 1 })).result, 3, 'too late');
});

test('presence: peers hear online and offline, strangers do not', async () => {
  const e = await server.user('erin');
  await emit(a.socket, 'create_group', { type: 1, occupants_uins: [e.uin] });
  const offline = once(a.socket, 'user_status', (s) => s.user_status.uin === e.uin);
  const notD = never(d.socket, 'user_status', 600, (s) => s.user_status.uin === e.uin);
  e.socket.disconnect();
  const off = (await offline).user_status;
  assert.equal(off.online_status, 2);
  assert.ok(off.last_seen_at > 1.6e9, 'last_seen_at in seconds');
  const online = once(a.socket, 'user_status', (s) => s.user_status.uin === e.uin);
  e.socket = await server.connect(e.token);
  assert.equal((await online).user_status.online_status, 1);
  assert.ok(await notD);
});

test('a client that disconnects and resumes with last_seen_message_id gets every message once', async () => {
  const f = await server.user('frank');
  const g = (await emit(a.socket, 'create_group', { type: 2, occupants_uins: [f.uin] })).group;
  const pushed = once(f.socket, 'message', (m) => m.message.group_id === g.group_id);
  const first = (await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'before' })).message;
  const seen = (await pushed).message;
  assert.equal(seen.message_id, first.message_id);
  f.socket.disconnect();
  const sent = [];
  for (let i = 0; i < 25; i++) {
    sent.push((await emit(a.socket, 'create_message', { group_id: g.group_id, message: `while away ${i}`, nonce: `away-${i}` })).message.message_id);
  }
  f.socket = await server.connect(f.token);
  const got = [];
  let last = seen.message_id;
  for (;;) {
    const page = await emit(f.socket, 'list_message', { group_id: g.group_id, last_seen_message_id: last, psize: 10 });
    if (page.messages.length === 0) break;
    got.push(...page.messages.map((m) => m.message_id));
    last = page.messages[page.messages.length - 1].message_id;
  }
  assert.deepEqual(got, sent);
});

test('login results: bad tokens get 2; a second socket with the same token wins, the first gets 7', async () => {
  const bad = server.connectRaw({ session: 'nope' });
  assert.equal((await once(bad, 'login')).result, 2);
  const none = server.connectRaw({});
  assert.equal((await once(none, 'login')).result, 2);

  const g = await server.user('gina');
  const conflict = once(g.socket, 'login');
  const closed = once(g.socket, 'disconnect');
  const byAuth = await server.connect(g.token, { noQuery: true, auth: { session: g.token } });
  assert.equal((await conflict).result, 7);
  await closed;
  const r = await emit(byAuth, 'list_group', {});
  assert.equal(r.result, 0, 'the newer socket works');
});

test('the polling transport works too', async () => {
  const h = await server.user('hank');
  const polling = await server.connect(h.token, { transports: ['polling'] });
  const g = (await emit(polling, 'create_group', { type: 1, occupants_uins: [a.uin] })).group;
  const atA = once(a.socket, 'message', (m) => m.message.group_id === g.group_id);
  assert.equal((await emit(polling, 'create_message', { group_id: g.group_id, message: 'over polling' })).result, 0);
  assert.equal((await atA).message.message, 'over polling');
});
