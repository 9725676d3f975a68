// Chat API depth, groups and messages (issue 16 points 5, 6, 12, 14): empty messages,
// psize 0, last_message_id and updated_at on group objects, the door's own error words.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, once, emit } from './harness.mjs';

let server, a, b;

before(async () => {
  server = await startServer();
  a = await server.user('alice');
  b = await server.user('bob');
});
after(async () => server.stop());

test('a message needs text or attachments', async () => {
  const g = (await emit(a.socket, 'create_group', { name: 'E', type: 2, occupants_uins: [b.uin] })).group;
  assert.equal((await emit(a.socket, 'create_message', { group_id: g.group_id })).result, 1);
  assert.equal((await emit(a.socket, 'create_message', { group_id: g.group_id, message: '  ' })).result, 1);
  assert.equal((await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'hi' })).result, 0);
  assert.equal((await emit(a.socket, 'create_message', { group_id: g.group_id, attachments: '[{"url":"x"}]' })).result, 0);
});

test('psize 0 is invalid in list_message and list_group', async () => {
  const g = (await emit(a.socket, 'create_group', { name: 'P', type: 2, occupants_uins: [b.uin] })).group;
  await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'one' });
  assert.equal((await emit(a.socket, 'list_message', { group_id: g.group_id, psize: 0 })).result, 1);
  assert.equal((await emit(a.socket, 'list_group', { psize: 0 })).result, 1);
});

test('group objects carry last_message_id; block changes updated_at', async () => {
  const g = (await emit(a.socket, 'create_group', { name: 'L', type: 2, occupants_uins: [b.uin] })).group;
  assert.equal(g.last_message_id, '0');
  const m = (await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'x' })).message;
  await new Promise((r) => setTimeout(r, 1100)); // updated_at is in seconds
  const pushed = once(b.socket, 'update_group', (p) => p.group.group_id === g.group_id);
  const r = await emit(a.socket, 'update_group', { group_id: g.group_id, name: 'L2' });
  assert.equal(r.group.last_message_id, m.message_id);
  assert.equal((await pushed).group.last_message_id, m.message_id);
  const before = r.group.updated_at;
  await new Promise((res) => setTimeout(res, 1100));
  const blocked = once(b.socket, 'update_group', (p) => p.group.group_id === g.group_id);
  assert.equal((await emit(a.socket, 'block_user', { group_id: g.group_id, blocked_uin: b.uin })).result, 0);
  assert.ok((await blocked).group.updated_at > before, 'blocking moves updated_at');
});

test('Chat API error texts say group, not conference', async () => {
  const r = await emit(a.socket, 'list_message', { group_id: '999999' });
  assert.equal(r.result, 3);
  assert.ok(!JSON.stringify(r).includes('conference'), JSON.stringify(r));
  assert.match(JSON.stringify(r), /group/);
});
