// Chat API depth, part D (issue 16 points 3, 4, 13): a client offline during edits,
// deletes, a rename and a removal catches up in one pass by change number; a private
// group left by one member stays the pair's one group; profiles, and display fields the
// server fills itself.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, once, emit } from './harness.mjs';

let server, a, b, c;

before(async () => {
  server = await startServer();
  a = await server.user('alice');
  b = await server.user('bob');
  c = await server.user('carol');
});
after(async () => server.stop());

const big = (x) => BigInt(x);
const maxSeq = (items) => items.reduce((m, i) => (big(i.change_seq) > m ? big(i.change_seq) : m), 0n);

// Every page of `list_message {since_seq}`, following `more` with the last change_seq.
async function messageChanges(socket, groupId, since, psize) {
  const all = [];
  for (let cursor = since; ;) {
    const r = await emit(socket, 'list_message', { group_id: groupId, since_seq: cursor.toString(), psize });
    assert.equal(r.result, 0, JSON.stringify(r));
    all.push(...r.messages);
    if (!r.more) return all;
    cursor = r.messages.at(-1).change_seq;
  }
}

test('an offline client catches up on new, edited and deleted messages, a rename and a removal', async () => {
  const g = (await emit(a.socket, 'create_group', { name: 'Team', type: 2, occupants_uins: [b.uin] })).group;
  const g2 = (await emit(a.socket, 'create_group', { name: 'Side', type: 2, occupants_uins: [b.uin] })).group;
  const m1 = (await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'one' })).message;
  const m2 = (await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'two' })).message;
  assert.ok(m1.change_seq && m2.change_seq, 'messages carry change_seq');
  assert.ok(g.change_seq, 'groups carry change_seq');

  // Bob's state, then he goes offline.
  const listed = await emit(b.socket, 'list_group', {});
  let cursor = maxSeq(listed.groups);
  const mine = await emit(b.socket, 'list_message', { group_id: g.group_id });
  const state = new Map(mine.messages.map((m) => [m.message_id, m]));
  const msgCursor = maxSeq(mine.messages);
  b.socket.disconnect();

  await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'three' });
  assert.equal((await emit(a.socket, 'update_message', { group_id: g.group_id, message_id: m1.message_id, message: 'one, edited' })).result, 0);
  assert.equal((await emit(a.socket, 'delete_message', { group_id: g.group_id, message_id: m2.message_id })).result, 0);
  assert.equal((await emit(a.socket, 'update_group', { group_id: g.group_id, name: 'Team 2' })).result, 0);
  assert.equal((await emit(a.socket, 'update_group', { group_id: g2.group_id, pull_all: [b.uin] })).result, 0);

  b.socket = await server.connect(b.token);
  const changes = await emit(b.socket, 'list_group', { since_seq: cursor.toString() });
  assert.equal(changes.result, 0, JSON.stringify(changes));
  assert.deepEqual(changes.groups.map((x) => [x.group_id, x.name]), [[g.group_id, 'Team 2']]);
  assert.deepEqual(changes.left_groups.map((x) => x.group_id), [g2.group_id]);
  assert.equal(changes.more, false);

  // One pass over the message changes, one per page, leaves Bob with the server's state.
  const got = await messageChanges(b.socket, g.group_id, msgCursor, 1);
  assert.deepEqual(got.map((m) => [m.message, m.status]), [['three', 1], ['one, edited', 1], [null, 4]]);
  for (const m of got) state.set(m.message_id, m);
  const server_ = await emit(b.socket, 'list_message', { group_id: g.group_id });
  const strip = (m) => ({ id: m.message_id, message: m.message, status: m.status, version: m.version });
  assert.deepEqual(
    [...state.values()].map(strip).sort((x, y) => Number(big(x.id) - big(y.id))),
    server_.messages.map(strip).sort((x, y) => Number(big(x.id) - big(y.id))),
  );

  // Caught up: nothing more after the largest number received.
  cursor = maxSeq([...changes.groups, ...changes.left_groups]);
  const again = await emit(b.socket, 'list_group', { since_seq: cursor.toString() });
  assert.deepEqual([again.groups, again.left_groups], [[], []]);
  assert.deepEqual(await messageChanges(b.socket, g.group_id, maxSeq(got), 50), []);
  assert.equal((await emit(b.socket, 'list_message', { group_id: g.group_id, since_seq: 0, last_message_id: 1 })).result, 1);
});

test('leaving a private group hides it; it comes back with its history, still the pair\'s only group', async () => {
  const p = (await emit(a.socket, 'create_group', { type: 1, occupants_uins: [b.uin] })).group;
  await emit(a.socket, 'create_message', { group_id: p.group_id, message: 'before' });
  const cursor = maxSeq((await emit(a.socket, 'list_group', {})).groups);
  const gone = once(a.socket, 'delete_group', (x) => x.group.group_id === p.group_id);
  assert.equal((await emit(a.socket, 'leave_group', { group_id: p.group_id })).result, 0);
  await gone;
  assert.ok(!(await emit(a.socket, 'list_group', {})).groups.some((x) => x.group_id === p.group_id));
  const since = await emit(a.socket, 'list_group', { since_seq: cursor.toString() });
  assert.ok(since.left_groups.some((x) => x.group_id === p.group_id), JSON.stringify(since));

  // Bob still finds the pair's group, and his message reaches Alice, who sees it again.
  const found = await emit(b.socket, 'check_group', { type: 1, occupants_uins: [a.uin, b.uin] });
  assert.equal(found.result, 0, JSON.stringify(found));
  assert.equal(found.group.group_id, p.group_id);
  const back = once(a.socket, 'group', (x) => x.group.group_id === p.group_id);
  const heard = once(a.socket, 'message', (x) => x.message.group_id === p.group_id);
  assert.equal((await emit(b.socket, 'create_message', { group_id: p.group_id, message: 'still there?' })).result, 0);
  await back;
  assert.equal((await heard).message.message, 'still there?');
  assert.ok((await emit(a.socket, 'list_group', {})).groups.some((x) => x.group_id === p.group_id));

  // Creating it again gives the same group, with the whole history.
  const again = await emit(a.socket, 'create_group', { type: 1, occupants_uins: [b.uin] });
  assert.equal(again.group.group_id, p.group_id);
  const history = await emit(a.socket, 'list_message', { group_id: p.group_id });
  assert.deepEqual(history.messages.map((m) => m.message), ['still there?', 'before']);

  // Left again, check_group or create_group by the leaver brings it back too.
  await emit(a.socket, 'leave_group', { group_id: p.group_id });
  const checked = await emit(a.socket, 'check_group', { type: 1, occupants_uins: [b.uin] });
  assert.equal(checked.group.group_id, p.group_id);
  assert.ok((await emit(a.socket, 'list_group', {})).groups.some((x) => x.group_id === p.group_id));
});

test('profiles are the user\'s own to set; messages carry the server\'s display fields', async () => {
  const set = await emit(a.socket, 'update_profile', { name: 'Alice A.', avatar_url: 'https://example.com/a.png' });
  assert.equal(set.result, 0, JSON.stringify(set));
  assert.deepEqual(set.profile, { uin: a.uin, name: 'Alice A.', avatar_url: 'https://example.com/a.png' });
  assert.deepEqual((await emit(a.socket, 'get_profile', {})).profile, set.profile);
  assert.equal((await emit(a.socket, 'update_profile', { uin: b.uin, name: 'Not Bob' })).result, 4);
  assert.equal((await emit(a.socket, 'update_profile', {})).result, 1);

  const g = (await emit(a.socket, 'create_group', { name: 'Club', avatar_url: 'https://example.com/club.png', type: 2, occupants_uins: [b.uin] })).group;
  assert.deepEqual((await emit(b.socket, 'get_profile', { uin: a.uin })).profile, set.profile);
  assert.equal((await emit(c.socket, 'get_profile', { uin: a.uin })).result, 3, 'no group shared');

  const pushed = once(b.socket, 'message', (x) => x.message.group_id === g.group_id);
  const sent = await emit(a.socket, 'create_message', {
    group_id: g.group_id, message: 'hello', sender_name: 'Bob', send_avatar: 'https://evil/x.png', group_name: 'Fake',
  });
  assert.equal(sent.result, 0);
  const expected = { sender_name: 'Alice A.', sender_avatar: 'https://example.com/a.png', group_name: 'Club', group_avatar: 'https://example.com/club.png' };
  for (const m of [sent.message, (await pushed).message, (await emit(b.socket, 'list_message', { group_id: g.group_id })).messages[0]]) {
    for (const [k, v] of Object.entries(expected)) assert.equal(m[k], v, `${k} in ${JSON.stringify(m)}`);
    assert.ok(!('send_avatar' in m) && !('attactments' in m), 'only the corrected names');
  }
  // Bob has no name: his messages say so rather than take a claimed one.
  const bobs = await emit(b.socket, 'create_message', { group_id: g.group_id, message: 'hi', sender_name: 'Alice A.' });
  assert.equal(bobs.message.sender_name, null);
});
