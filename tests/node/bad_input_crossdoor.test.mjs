// Bad input of each class gets a documented result code and the socket stays usable;
// one core behind two doors: Chat API and External API see the same messages.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, once, emit } from './harness.mjs';

let server, a, b;

before(async () => {
  server = await startServer({ CONFER_MAX_MESSAGE_BYTES: '1000', CONFER_CHAT_RATE_BURST: '1000' });
  a = await server.user('alice');
  b = await server.user('bob');
});
after(async () => server.stop());

test('each class of bad input has its result code', async () => {
  const g = (await emit(a.socket, 'create_group', { type: 2, occupants_uins: [b.uin] })).group;
  assert.equal((await emit(a.socket, 'create_message', '{this is not json')).result, 1);
  assert.equal((await emit(a.socket, 'create_message', [1, 2])).result, 1);
  assert.equal((await emit(a.socket, 'create_message', { group_id: 'abc', message: 'x' })).result, 1);
  assert.equal((await emit(a.socket, 'create_message', { message: 'no group' })).result, 1);
  assert.equal((await emit(a.socket, 'create_message', { group_id: g.group_id, type: 99, message: 'x' })).result, 1);
  assert.equal((await emit(a.socket, 'create_message', { group_id: '999999', message: 'x' })).result, 3);
  assert.equal((await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'x'.repeat(2000) })).result, 6);
  assert.equal((await emit(a.socket, 'create_group', { type: 7 })).result, 1);
  assert.equal((await emit(a.socket, 'create_group', { type: 2, occupants_uins: ['424242'] })).result, 3);
  const unknown = await emit(a.socket, 'fly_to_the_moon', {});
  assert.equal(unknown.result, 11);
  assert.match(unknown.message, /unknown event/);
  // Still connected and working, nothing lost.
  assert.equal((await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'still here' })).result, 0);
  const list = await emit(b.socket, 'list_message', { group_id: g.group_id });
  assert.deepEqual(list.messages.map((m) => m.message), ['still here']);
});

test('too many requests are refused with 8, and the socket stays', async () => {
  const limited = await startServer({ CONFER_CHAT_RATE_BURST: '5', CONFER_CHAT_RATE_PER_SEC: '1' });
  try {
    const u = await limited.user('quick');
    const results = await Promise.all(Array.from({ length: 12 }, () => emit(u.socket, 'list_group', {})));
    const codes = results.map((r) => r.result);
    assert.ok(codes.includes(0));
    assert.ok(codes.includes(8), JSON.stringify(codes));
    assert.ok(u.socket.connected);
  } finally {
    await limited.stop();
  }
});

test('create_message shows in msglog_get, msglog_send arrives as message', async () => {
  const g = (await emit(a.socket, 'create_group', { name: 'Both doors', type: 2, occupants_uins: [b.uin] })).group;
  const chatMsg = (await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'from socket.io' })).message;

  const ext = await server.extapi('bob', 'pw');
  const log = await ext.call('media', 'conf', 'msglog_get', { conf_id: g.group_id });
  assert.equal(log.result, 'ok', JSON.stringify(log));
  assert.equal(log.data.length, 1);
  assert.equal(log.data[0].message, 'from socket.io');
  assert.equal(log.data[0].user_id, 'alice');
  assert.equal(log.data[0].message_id, chatMsg.message_id);
  assert.equal(log.data[0].msg_id, 1);

  const atA = once(a.socket, 'message', (m) => m.message.group_id === g.group_id);
  const sent = await ext.call('media', 'conf', 'msglog_send', { conf_id: g.group_id, msg: { text: 'from the external api' } });
  assert.equal(sent.result, 'ok');
  assert.equal(sent.data.msg_id, 2);
  const pushed = (await atA).message;
  assert.equal(pushed.sender_uin, b.uin);
  assert.deepEqual(pushed.body, { text: 'from the external api' });
  const listed = await emit(a.socket, 'list_message', { group_id: g.group_id });
  assert.equal(listed.messages.length, 2);
  ext.ws.close();
});
