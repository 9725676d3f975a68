// Groups and messages with three users, through the official Socket.IO client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, once, never, emit } from './harness.mjs';

let server, a, b, c, d;

before(async () => {
  server = await startServer();
  a = await server.user('alice');
  b = await server.user('bob');
  c = await server.user('carol');
  d = await server.user('dave');
});
after(async () => server.stop());

test('the three group types, with pushes to members only', async () => {
  const bGroup = once(b.socket, 'group');
  const dGroup = never(d.socket, 'group');
  const r = await emit(a.socket, 'create_group', { name: 'Team', type: 2, avatar_url: 'x', owner_uin: a.uin, occupants_uins: [b.uin, c.uin] });
  assert.equal(r.result, 0);
  assert.equal(r.group.type, 2);
  assert.equal(r.group.owner_uin, a.uin);
  assert.deepEqual([...r.group.occupants_uins].sort(), [a.uin, b.uin, c.uin].sort());
  assert.equal((await bGroup).group.group_id, r.group.group_id);
  assert.ok(await dGroup, 'dave is not told of a group he is not in');

  // The document's string forms: JSON in a string, and the single-quoted form.
  const pub = await emit(a.socket, 'create_group', JSON.stringify({ name: 'Public', type: 3, occupants_uins: [b.uin] }));
  assert.equal(pub.result, 0);
  assert.equal(pub.group.type, 3);
  const priv = await emit(a.socket, 'create_group', `{'name': "DM", 'type': 1, 'occupants_uin': ['${b.uin}']}`);
  assert.equal(priv.result, 0);
  assert.equal(priv.group.type, 1);
  const again = await emit(b.socket, 'create_group', { type: 1, occupants_uins: [a.uin] });
  assert.equal(again.group.group_id, priv.group.group_id, 'a private group exists once per pair');
  const check = await emit(b.socket, 'check_group', { type: 1, occupants_uin: [a.uin] });
  assert.equal(check.result, 0);
  assert.equal(check.group.group_id, priv.group.group_id);
  assert.equal((await emit(c.socket, 'check_group', { type: 1, occupants_uins: [d.uin] })).result, 3);
});

test('messages: send, edit, delete, nonce retries, paging', async () => {
  const g = (await emit(a.socket, 'create_group', { name: 'Msgs', type: 2, occupants_uins: [b.uin, c.uin] })).group;
  const atB = once(b.socket, 'message', (m) => m.message.group_id === g.group_id);
  const atC = once(c.socket, 'message', (m) => m.message.group_id === g.group_id);
  const sent = await emit(a.socket, 'create_message', { group_id: g.group_id, type: 0, message: 'hello', nonce: 'n-1', version: 0, sender_name: 'Alice', send_avatar: 'av' });
  assert.equal(sent.result, 0);
  const m = sent.message;
  assert.equal(m.message, 'hello');
  assert.equal(m.sender_uin, a.uin);
  assert.equal(m.sender_avatar, null, 'send_avatar is read, but the server says whose avatar it is (none set)');
  assert.equal(m.sender_name, null, 'and whose name: a claimed one does not count');
  assert.equal(typeof m.message_id, 'string');
  assert.ok(m.created_at > 1.6e15, 'message times are in microseconds');
  assert.equal((await atB).message.message_id, m.message_id);
  assert.equal((await atC).message.message, 'hello');

  const retry = await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'hello', nonce: 'n-1' });
  assert.equal(retry.result, 13);
  assert.equal(retry.message.message_id, m.message_id);

  const edited = once(b.socket, 'update_message');
  assert.equal((await emit(b.socket, 'update_message', { group_id: g.group_id, message_id: m.message_id, message: 'hacked' })).result, 4);
  const up = await emit(a.socket, 'update_message', { group_id: g.group_id, message_id: m.message_id, message: 'hello!' });
  assert.equal(up.result, 0);
  assert.equal(up.message.version, 1);
  assert.equal((await edited).message.message, 'hello!');

  const ids = [m.message_id];
  for (let i = 0; i < 6; i++) {
    ids.push((await emit(b.socket, 'create_message', { group_id: g.group_id, message: `m${i}`, nonce: `b-${i}` })).message.message_id);
  }
  const deleted = once(c.socket, 'delete_message');
  assert.equal((await emit(c.socket, 'delete_message', { group_id: g.group_id, message_id: ids[1] })).result, 4, 'not the sender, not the owner');
  assert.equal((await emit(a.socket, 'delete_message', { group_id: g.group_id, message_id: ids[1] })).result, 0, 'the owner may');
  const tomb = (await deleted).message;
  assert.equal(tomb.status, 4);
  assert.equal(tomb.message, null);

  // Newest first, before an exclusive bound; pages.
  const page0 = await emit(c.socket, 'list_message', { group_id: g.group_id, psize: 3, pindex: 0 });
  assert.deepEqual(page0.messages.map((x) => x.message_id), ids.slice(-3).reverse());
  const page1 = await emit(c.socket, 'list_message', { group_id: g.group_id, psize: 3, pindex: 1 });
  assert.deepEqual(page1.messages.map((x) => x.message_id), ids.slice(1, 4).reverse());
  const before = await emit(c.socket, 'list_message', { group_id: g.group_id, last_message_id: ids[2] });
  assert.deepEqual(before.messages.map((x) => x.message_id), [ids[1], ids[0]]);
  const between = await emit(c.socket, 'list_message', { group_id: g.group_id, last_seen_message_id: ids[2], last_message_id: ids[5] });
  assert.deepEqual(between.messages.map((x) => x.message_id), [ids[4], ids[3]]);
  const catchUp = await emit(c.socket, 'list_message', { group_id: g.group_id, last_seen_message_id: ids[4] });
  assert.deepEqual(catchUp.messages.map((x) => x.message_id), ids.slice(5));
  assert.equal((await emit(d.socket, 'list_message', { group_id: g.group_id })).result, 3, 'non-members learn nothing');
});

test('list_group: pinned first, last message, unread count, mute; delete_conversation', async () => {
  const g1 = (await emit(a.socket, 'create_group', { name: 'L1', type: 2, occupants_uins: [b.uin] })).group;
  const g2 = (await emit(a.socket, 'create_group', { name: 'L2', type: 2, occupants_uins: [b.uin] })).group;
  await emit(a.socket, 'create_message', { group_id: g1.group_id, message: 'one' });
  const last = (await emit(a.socket, 'create_message', { group_id: g1.group_id, message: 'two' })).message;
  const pinSync = once(b.socket, 'pin_group');
  assert.equal((await emit(b.socket, 'pin_group', { group_id: g2.group_id })).result, 0);
  assert.equal((await pinSync).group.group_id, g2.group_id);
  assert.equal((await emit(b.socket, 'mute_group', { group_id: g1.group_id })).result, 0);

  const list = await emit(b.socket, 'list_group', { uin: b.uin, pindex: 0, psize: 50, sort_by: 1 });
  assert.equal(list.result, 0);
  assert.equal(list.groups[0].group_id, g2.group_id, 'pinned first');
  assert.equal(list.groups[0].pinned, true);
  assert.equal(list.groups[1].group_id, g1.group_id, 'then the newest last message');
  assert.equal(list.groups[1].muted, true);
  assert.equal(list.groups[1].unread_cnt, 2);
  assert.equal(list.groups[1].last_message.message_id, last.message_id);
  assert.equal((await emit(b.socket, 'list_group', { uin: a.uin })).result, 4, 'only your own list');
  const small = await emit(b.socket, 'list_group', { psize: 1, pindex: 1 });
  assert.equal(small.groups.length, 1);
  assert.equal(small.groups[0].group_id, g1.group_id);

  assert.equal((await emit(b.socket, 'seen_message', { group_id: g1.group_id, message_id: last.message_id })).result, 0);
  const seen = (await emit(b.socket, 'list_group', {})).groups.find((x) => x.group_id === g1.group_id);
  assert.equal(seen.unread_cnt, 0);

  assert.equal((await emit(b.socket, 'unpin_group', { group_id: g2.group_id })).result, 0);
  assert.equal((await emit(b.socket, 'delete_conversation', { group_id: g1.group_id })).result, 0);
  assert.equal((await emit(b.socket, 'list_message', { group_id: g1.group_id })).messages.length, 0, 'cleared for bob');
  assert.equal((await emit(a.socket, 'list_message', { group_id: g1.group_id })).messages.length, 2, 'not for alice');
});

test('block, unblock, update_group with push_all/pull_all and owner transfer, leave', async () => {
  const g = (await emit(a.socket, 'create_group', { name: 'Rules', type: 2, occupants_uins: [b.uin, c.uin] })).group;
  assert.equal((await emit(b.socket, 'block_user', { group_id: g.group_id, blocked_uin: c.uin })).result, 4, 'only the owner blocks');
  assert.equal((await emit(a.socket, 'block_user', { group_id: g.group_id, blocked_uin: c.uin })).result, 0);
  assert.equal((await emit(c.socket, 'create_message', { group_id: g.group_id, message: 'let me in' })).result, 5);
  const listed = (await emit(a.socket, 'list_group', {})).groups.find((x) => x.group_id === g.group_id);
  assert.deepEqual(listed.blocked_uins, [c.uin]);
  assert.equal((await emit(a.socket, 'unblock_user', { group_id: g.group_id, blocked_uin: c.uin })).result, 0);
  assert.equal((await emit(c.socket, 'create_message', { group_id: g.group_id, message: 'thanks' })).result, 0);

  assert.equal((await emit(b.socket, 'update_group', { group_id: g.group_id, name: 'Mine' })).result, 4);
  const dAdded = once(d.socket, 'group');
  const cRemoved = once(c.socket, 'delete_group');
  const bUpdated = once(b.socket, 'update_group');
  const up = await emit(a.socket, 'update_group', { group_id: g.group_id, name: 'Renamed', push_all: [d.uin], pull_all: [c.uin], owner_uin: b.uin });
  assert.equal(up.result, 0);
  assert.equal(up.group.name, 'Renamed');
  assert.equal(up.group.owner_uin, b.uin);
  assert.equal((await dAdded).group.group_id, g.group_id);
  assert.equal((await cRemoved).group.group_id, g.group_id);
  assert.equal((await bUpdated).group.name, 'Renamed');
  assert.equal((await emit(c.socket, 'create_message', { group_id: g.group_id, message: 'x' })).result, 3);

  const left = once(d.socket, 'delete_group');
  assert.equal((await emit(d.socket, 'leave_group', { group_id: g.group_id })).result, 0);
  await left;
  assert.equal((await emit(d.socket, 'list_message', { group_id: g.group_id })).result, 3);
  const groups = (await emit(a.socket, 'list_group', {})).groups.find((x) => x.group_id === g.group_id);
  assert.deepEqual([...groups.occupants_uins].sort(), [a.uin, b.uin].sort());
});

test('typing events reach the other members and nobody else', async () => {
  const g = (await emit(a.socket, 'create_group', { name: 'Typing', type: 2, occupants_uins: [b.uin] })).group;
  const atB = once(b.socket, 'event');
  const notD = never(d.socket, 'event');
  const notA = never(a.socket, 'event');
  assert.equal((await emit(a.socket, 'event', { type: 8, group_id: g.group_id, sender_uin: a.uin, data: '' })).result, 0);
  const ev = await atB;
  assert.equal(ev.type, 8);
  assert.equal(ev.sender_uin, a.uin);
  assert.equal(ev.group_id, g.group_id);
  assert.ok(await notD);
  assert.ok(await notA, 'the sender does not hear its own typing');
  assert.equal((await emit(a.socket, 'event', { type: 8, group_id: g.group_id, sender_uin: b.uin })).result, 4, 'no speaking for others');
});

test('push tokens: register, unregister, and only your own uin', async () => {
  const r = await emit(a.socket, 'register_profile_token', `{'uin': ${a.uin}, 'type': 1, 'token': 'fcm-abc'}`);
  assert.deepEqual(r, { result: 0, uin: a.uin, type: 1, token: 'fcm-abc' });
  assert.equal((await emit(a.socket, 'register_profile_token', { uin: b.uin, type: 1, token: 'x' })).result, 4);
  assert.equal((await emit(a.socket, 'register_profile_token', { type: 9, token: 'x' })).result, 1);
  assert.equal((await emit(a.socket, 'unregister_profile_token', { uin: a.uin, type: 1, token: 'fcm-abc' })).result, 0);
  assert.equal((await emit(a.socket, 'unregister_profile_token', { token: 'fcm-abc' })).result, 1, 'already gone');
});

test('messages flow in private and public groups too', async () => {
  for (const type of [1, 3]) {
    const g = (await emit(c.socket, 'create_group', { type, name: `t${type}`, occupants_uins: [d.uin] })).group;
    const atD = once(d.socket, 'message', (m) => m.message.group_id === g.group_id);
    assert.equal((await emit(c.socket, 'create_message', { group_id: g.group_id, message: `hi ${type}` })).result, 0);
    assert.equal((await atD).message.message, `hi ${type}`);
    const reply = once(c.socket, 'message', (m) => m.message.group_id === g.group_id && m.message.sender_uin === d.uin);
    assert.equal((await emit(d.socket, 'create_message', { group_id: g.group_id, message: 'back' })).result, 0);
    assert.equal((await reply).message.message, 'back');
  }
});
