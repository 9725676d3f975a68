// Chat API arguments the server does not know: the command runs, and its ack names them
// in `unknown_fields` (sorted); the document's misspellings are not unknown.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, emit } from './harness.mjs';

let server, a, b;

before(async () => {
  server = await startServer();
  a = await server.user('alice');
  b = await server.user('bob');
});
after(async () => server.stop());

test('misnamed fields are named in the ack, and the command still runs', async () => {
  const made = await emit(a.socket, 'create_group', { type: 2, name: 'Team', members: [b.uin] });
  assert.equal(made.result, 0);
  assert.deepEqual(made.unknown_fields, ['members']);
  assert.deepEqual(made.group.occupants_uins, [a.uin], 'a group of one, as asked');

  const g = made.group.group_id;
  const sent = await emit(a.socket, 'create_message', { group_id: g, type: 0, message: 'ok', text: 'hi', zz: 1, body: 'x' });
  assert.equal(sent.result, 0);
  assert.deepEqual(sent.unknown_fields, ['body', 'text', 'zz']);
  assert.equal(sent.message.message, 'ok', 'stored with its text only, not the misnamed one');

  // A message whose only text is misnamed is empty: refused, and the ack still names them.
  const empty = await emit(a.socket, 'create_message', { group_id: g, type: 0, text: 'hi' });
  assert.equal(empty.result, 1);

  // The single-quoted form of the document, too.
  const listed = await emit(a.socket, 'list_message', `{'group_id': ${g}, 'page': 2}`);
  assert.equal(listed.result, 0);
  assert.deepEqual(listed.unknown_fields, ['page']);
});

test('known fields and the documented misspellings are not unknown', async () => {
  const made = await emit(a.socket, 'create_group', { appid: 1, type: 2, name: 'Docs', avatar_url: 'x', owner_uin: a.uin, occupants_uin: [b.uin] });
  assert.equal(made.result, 0);
  assert.equal(made.unknown_fields, undefined);
  const g = made.group.group_id;
  const sent = await emit(a.socket, 'create_message', {
    group_id: g, type: 0, message: 'hi', attactments: '[]', nonce: 'n1', version: 0, send_avatar: 'a.png', sender_name: 'Alice',
  });
  assert.equal(sent.result, 0);
  assert.equal(sent.unknown_fields, undefined);
  const blocked = await emit(a.socket, 'block_user', { group_id: g, blocked_uin: b.uin });
  assert.equal(blocked.result, 0);
  assert.equal(blocked.unknown_fields, undefined);
});
