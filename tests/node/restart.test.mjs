// A client that never got its ack retries after the server restarted: the retry, with the
// same nonce, is answered with the original message (13), not stored twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, emit } from './harness.mjs';

test('a retried create_message is recognized across a server restart', async () => {
  const first = await startServer();
  const alice = await first.user('alice');
  const bob = await first.user('bob');
  const g = (await emit(alice.socket, 'create_group', { name: 'Retry', type: 2, occupants_uins: [bob.uin] })).group;
  const sent = await emit(alice.socket, 'create_message', { group_id: g.group_id, message: 'once', nonce: 'r-1' });
  assert.equal(sent.result, 0);
  assert.equal(await first.terminate(), 0);

  const second = await startServer({}, first.dataDir);
  try {
    const socket = await second.connect(alice.token);
    const retry = await emit(socket, 'create_message', { group_id: g.group_id, message: 'once', nonce: 'r-1' });
    assert.equal(retry.result, 13);
    assert.equal(retry.message.message_id, sent.message.message_id);
    const other = await emit(socket, 'create_message', { group_id: g.group_id, message: 'twice', nonce: 'r-2' });
    assert.equal(other.result, 0);
    const listed = await emit(socket, 'list_message', { group_id: g.group_id });
    assert.deepEqual(listed.messages.map((m) => m.message).sort(), ['once', 'twice']);
  } finally {
    await second.terminate();
  }
});
