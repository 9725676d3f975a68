// Receipts (received_message, seen_message, message_status), a user's several devices
// kept in step, and online status set by the client (user_status, with the snapshot on
// connect), with the official socket.io-client and two sockets per user where it matters.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, once, never, emit } from './harness.mjs';

let server, a, b, c;

// Another device of a user: its own login token, its own socket.
async function device(u) {
  const { body } = await server.login(u.login, 'pw');
  return server.connect(body.session);
}

before(async () => {
  server = await startServer({ CONFER_CALL_TIMEOUT_MS: '5000' });
  a = await server.user('alice');
  b = await server.user('bob');
  c = await server.user('carol');
});
after(async () => server.stop());

async function unread(u, groupId) {
  const listed = await emit(u.socket, 'list_group', { psize: 100 });
  return listed.groups.find((g) => g.group_id === groupId).unread_cnt;
}

test('status follows delivery: 2 once every recipient received it, 3 once every one saw it', async () => {
  const a2 = await device(a);
  const g = (await emit(a.socket, 'create_group', { type: 2, occupants_uins: [b.uin, c.uin] })).group;
  const posted = await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'hello' });
  assert.equal(posted.result, 0);
  const m = posted.message;
  assert.equal(m.status, 1);
  assert.deepEqual(m.received_uins, []);
  assert.deepEqual(m.seen_uins, []);
  const ids = { group_id: g.group_id, message_id: m.message_id };

  // Bob's device has it: received by one of two recipients, still "sent". The sender
  // hears it; Carol does not (the status did not change).
  let status = once(a.socket, 'message_status');
  let carolQuiet = never(c.socket, 'message_status');
  assert.equal((await emit(b.socket, 'received_message', ids)).result, 0);
  let s = (await status).message;
  assert.equal(s.message_id, m.message_id);
  assert.deepEqual(s.received_uins, [b.uin]);
  assert.equal(s.status, 1);
  assert.ok(await carolQuiet, 'a receipt that changes no status goes to the sender only');

  // Carol's too: every recipient has it, status 2, told to the sender's every socket.
  status = once(a.socket, 'message_status');
  const onOtherDevice = once(a2, 'message_status', (p) => p.message.status === 2);
  const toBob = once(b.socket, 'message_status', (p) => p.message.status === 2);
  assert.equal((await emit(c.socket, 'received_message', ids)).result, 0);
  s = (await status).message;
  assert.equal(s.status, 2);
  assert.deepEqual(s.received_uins.sort(), [b.uin, c.uin].sort());
  assert.deepEqual(s.seen_uins, []);
  await onOtherDevice;
  await toBob;

  // Seen by Bob: his unread count drops, Carol's does not; status stays 2.
  assert.equal(await unread(b, g.group_id), 1);
  status = once(a.socket, 'message_status');
  assert.equal((await emit(b.socket, 'seen_message', ids)).result, 0);
  s = (await status).message;
  assert.deepEqual(s.seen_uins, [b.uin]);
  assert.equal(s.status, 2);
  assert.equal(await unread(b, g.group_id), 0);
  assert.equal(await unread(c, g.group_id), 1);

  // Seen by Carol: 3.
  status = once(a.socket, 'message_status');
  const bobHearsSeen = once(b.socket, 'message_status', (p) => p.message.status === 3);
  assert.equal((await emit(c.socket, 'seen_message', ids)).result, 0);
  s = (await status).message;
  assert.equal(s.status, 3);
  await bobHearsSeen;
  assert.deepEqual(s.seen_uins.sort(), [b.uin, c.uin].sort());
  assert.equal(await unread(c, g.group_id), 0);

  // The stored state is what the listings show, to everyone.
  const listed = await emit(c.socket, 'list_message', { group_id: g.group_id });
  assert.equal(listed.messages[0].status, 3);
  assert.deepEqual(listed.messages[0].seen_uins.sort(), [b.uin, c.uin].sort());
  const groups = await emit(a.socket, 'list_group', { psize: 100 });
  assert.equal(groups.groups.find((x) => x.group_id === g.group_id).last_message.status, 3);

  // A receipt that moves nothing is not pushed again; a stranger's is refused.
  const quiet = never(a.socket, 'message_status');
  assert.equal((await emit(c.socket, 'received_message', ids)).result, 0);
  assert.ok(await quiet, 'an earlier mark moves nothing');
  const d = await server.user('dave');
  assert.equal((await emit(d.socket, 'received_message', ids)).result, 3);
  assert.equal((await emit(b.socket, 'received_message', { group_id: g.group_id, message_id: '999999' })).result, 3);
  assert.equal((await emit(b.socket, 'received_message', { group_id: g.group_id })).result, 1);
  a2.disconnect();
});

test('a receipt covers earlier messages, and a reply counts as having seen them', async () => {
  const g = (await emit(a.socket, 'create_group', { type: 1, occupants_uins: [b.uin] })).group;
  const first = (await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'one' })).message;
  const second = (await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'two' })).message;
  assert.equal((await emit(b.socket, 'received_message', { group_id: g.group_id, message_id: second.message_id })).result, 0);
  let listed = (await emit(a.socket, 'list_message', { group_id: g.group_id })).messages;
  assert.deepEqual(listed.map((m) => m.status), [2, 2]);
  assert.equal((await emit(b.socket, 'create_message', { group_id: g.group_id, message: 'reply' })).result, 0);
  listed = (await emit(a.socket, 'list_message', { group_id: g.group_id })).messages;
  const byId = Object.fromEntries(listed.map((m) => [m.message_id, m]));
  assert.equal(byId[first.message_id].status, 3);
  assert.equal(byId[second.message_id].status, 3);
  assert.equal(await unread(b, g.group_id), 0);
});

test("a user's other devices hear every change it makes", async () => {
  const b2 = await device(b);
  const g = (await emit(a.socket, 'create_group', { type: 2, occupants_uins: [b.uin] })).group;
  const m = (await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'hi' })).message;
  const ids = { group_id: g.group_id };

  const muted = once(b2, 'mute_group');
  assert.equal((await emit(b.socket, 'mute_group', ids)).result, 0);
  assert.equal((await muted).group.group_id, g.group_id);
  const unmuted = once(b2, 'unmute_group');
  assert.equal((await emit(b.socket, 'unmute_group', ids)).result, 0);
  assert.equal((await unmuted).group.group_id, g.group_id);

  const pinned = once(b2, 'pin_group');
  assert.equal((await emit(b.socket, 'pin_group', ids)).result, 0);
  assert.equal((await pinned).group.group_id, g.group_id);

  const seen = once(b2, 'seen_message');
  assert.equal((await emit(b.socket, 'seen_message', { ...ids, message_id: m.message_id })).result, 0);
  const s = (await seen).message;
  assert.equal(s.message_id, m.message_id);
  assert.deepEqual(s.seen_uins, [b.uin]);

  const cleared = once(b2, 'delete_conversation');
  assert.equal((await emit(b.socket, 'delete_conversation', ids)).result, 0);
  assert.equal((await cleared).group.group_id, g.group_id);
  assert.deepEqual((await emit(b2, 'list_message', ids)).messages, []);

  // A block made on one device shows on the other (its group, with blocked_uins).
  const own = (await emit(b.socket, 'create_group', { type: 2, occupants_uins: [a.uin] })).group;
  const blocked = once(b2, 'update_group', (p) => p.group.group_id === own.group_id);
  assert.equal((await emit(b.socket, 'block_user', { group_id: own.group_id, blocked_uin: a.uin })).result, 0);
  assert.deepEqual((await blocked).group.blocked_uins, [a.uin]);

  // Mute and clear are the user's own: the other members hear nothing of them.
  const othersQuiet = never(a.socket, 'mute_group');
  assert.equal((await emit(b.socket, 'mute_group', ids)).result, 0);
  assert.ok(await othersQuiet);
  b2.disconnect();
});

test('a call started on one device shows on the others; answered on one, it stops ringing on the others', async () => {
  const a2 = await device(a);
  const b2 = await device(b);
  const g = (await emit(a.socket, 'create_group', { type: 1, occupants_uins: [b.uin] })).group;
  const onCallersOther = once(a2, 'start_call');
  const ring1 = once(b.socket, 'start_call');
  const ring2 = once(b2, 'start_call');
  const created = await emit(a.socket, 'create_call', { group_id: g.group_id, media_type: 1 });
  assert.equal(created.result, 0);
  const call = created.call;
  assert.equal((await onCallersOther).call.call_id, call.call_id);
  assert.equal((await onCallersOther).call.caller_uin, a.uin);
  await ring1;
  await ring2;

  const answeredElsewhere = once(b2, 'answer_call');
  assert.equal((await emit(b.socket, 'answer_call', { group_id: g.group_id, call_id: call.call_id, answer: 1 })).result, 0);
  const told = await answeredElsewhere;
  assert.equal(told.uin, b.uin);
  assert.equal(told.answer, 1);
  assert.equal(told.call_id, call.call_id);
  assert.equal((await emit(a.socket, 'stop_call', { group_id: g.group_id, call_id: call.call_id })).result, 0);
  a2.disconnect();
  b2.disconnect();
});

test('online status 3-6 and message_status set by the client; invisible looks offline; a snapshot on connect', async () => {
  const e = await server.user('erin');
  const f = await server.user('frank');
  const f2 = await device(f);
  const g = (await emit(e.socket, 'create_group', { type: 1, occupants_uins: [f.uin] })).group;
  assert.equal(g.type, 1);
  const fromFrank = (st) => st.user_status.uin === f.uin;

  // Away, with a text: the peer and the user's other device hear it.
  let peer = once(e.socket, 'user_status', fromFrank);
  let own = once(f2, 'user_status', fromFrank);
  const set = await emit(f.socket, 'user_status', { online_status: 5, message_status: 'in a meeting' });
  assert.equal(set.result, 0);
  assert.equal(set.user_status.online_status, 5);
  let st = (await peer).user_status;
  assert.equal(st.online_status, 5);
  assert.equal(st.message_status, 'in a meeting');
  assert.equal((await own).user_status.online_status, 5);

  assert.equal((await emit(f.socket, 'user_status', { online_status: 2 })).result, 1, 'offline is shown, not chosen');
  assert.equal((await emit(f.socket, 'user_status', { online_status: 9 })).result, 1);
  assert.equal((await emit(f.socket, 'user_status', {})).result, 1);
  assert.equal((await emit(f.socket, 'user_status', { online_status: 1, message_status: 'x'.repeat(300) })).result, 6);
  assert.equal((await emit(f.socket, 'user_status', { online_status: 1, uin: e.uin })).result, 4);

  // Invisible: offline to the peer, still 4 to the user's own devices.
  peer = once(e.socket, 'user_status', fromFrank);
  own = once(f2, 'user_status', fromFrank);
  assert.equal((await emit(f.socket, 'user_status', { online_status: 4 })).result, 0);
  st = (await peer).user_status;
  assert.equal(st.online_status, 2);
  assert.equal(st.message_status, '');
  assert.equal((await own).user_status.online_status, 4);

  // A new socket gets its peers' presence at once, as it sees them.
  const { body } = await server.login('erin', 'pw');
  let fresh = server.connectRaw({ session: body.session });
  let snapshot = (await once(fresh, 'user_statuses')).user_statuses;
  assert.equal(snapshot.find((x) => x.uin === f.uin).online_status, 2, 'invisible is offline in the snapshot');
  fresh.disconnect();

  peer = once(e.socket, 'user_status', fromFrank);
  assert.equal((await emit(f.socket, 'user_status', { online_status: 6 })).result, 0);
  st = (await peer).user_status;
  assert.equal(st.online_status, 6);
  assert.equal(st.message_status, 'in a meeting', 'kept when not given');
  fresh = server.connectRaw({ session: body.session });
  snapshot = (await once(fresh, 'user_statuses')).user_statuses;
  const frank = snapshot.find((x) => x.uin === f.uin);
  assert.equal(frank.online_status, 6);
  assert.equal(frank.message_status, 'in a meeting');
  fresh.disconnect();

  // Stored: after the last socket goes and a new one comes, the peer sees busy again.
  const offline = once(e.socket, 'user_status', (x) => fromFrank(x) && x.user_status.online_status === 2);
  f.socket.disconnect();
  f2.disconnect();
  await offline;
  const back = once(e.socket, 'user_status', fromFrank);
  const { body: fb } = await server.login('frank', 'pw');
  const f3 = await server.connect(fb.session);
  assert.equal((await back).user_status.online_status, 6);

  // An invisible user's comings and goings are not announced.
  const hidden = once(e.socket, 'user_status', (x) => fromFrank(x) && x.user_status.online_status === 2);
  assert.equal((await emit(f3, 'user_status', { online_status: 4 })).result, 0);
  await hidden;
  const quiet = never(e.socket, 'user_status', 600, fromFrank);
  f3.disconnect();
  const f4 = await server.connect((await server.login('frank', 'pw')).body.session);
  assert.ok(await quiet, 'invisible: neither offline nor online is told');
  f4.disconnect();
});
