// Refused changes change nothing, and one size limit holds for every door (issue 14.8,
// 14.12, 14.13), through the official Socket.IO client and an External API WebSocket.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, once, never, emit } from './harness.mjs';

// Small enough that three 8 KB messages do not fit in one listing.
const MAX_LIST_BYTES = 20000;

let server, a, b, c;

before(async () => {
  server = await startServer({ CONFER_MAX_LIST_BYTES: String(MAX_LIST_BYTES) });
  a = await server.user('alice');
  b = await server.user('bob');
  c = await server.user('carol');
});
after(async () => server.stop());

const group = async (owner, others, name = 'G') =>
  (await emit(owner.socket, 'create_group', { name, type: 2, occupants_uins: others.map((u) => u.uin) })).group;

test('a refused update_group changes nothing: the added member is not let in', async () => {
  const g = await group(a, [b], 'Refused');
  const carolTold = never(c.socket, 'group', 600, (p) => p.group.group_id === g.group_id);
  const bobTold = never(b.socket, 'update_group', 600, (p) => p.group.group_id === g.group_id);
  const r = await emit(a.socket, 'update_group', { group_id: g.group_id, name: 'Renamed', push_all: [c.uin], pull_all: [a.uin] });
  assert.equal(r.result, 10, 'the owner cannot be removed');
  assert.ok(await carolTold, 'carol hears of no group');
  assert.ok(await bobTold, 'nothing changed, so nobody is told of a change');
  assert.equal((await emit(c.socket, 'list_message', { group_id: g.group_id })).result, 3, 'carol cannot read its history');
  const carols = await emit(c.socket, 'list_group', {});
  assert.ok(!carols.groups.some((x) => x.group_id === g.group_id), 'carol is no member');
  const alices = await emit(a.socket, 'list_group', {});
  const mine = alices.groups.find((x) => x.group_id === g.group_id);
  assert.equal(mine.name, 'Refused', 'the name did not change either');
  assert.deepEqual([...mine.occupants_uins].sort(), [a.uin, b.uin].sort());
});

test('a blocked member cannot edit its messages', async () => {
  const g = await group(a, [b], 'Blocks');
  const sent = (await emit(b.socket, 'create_message', { group_id: g.group_id, message: 'before the block' })).message;
  assert.equal((await emit(a.socket, 'block_user', { group_id: g.group_id, blocked_uin: b.uin })).result, 0);
  const edit = await emit(b.socket, 'update_message', { group_id: g.group_id, message_id: sent.message_id, message: 'edited while blocked' });
  assert.equal(edit.result, 5);
  const list = await emit(a.socket, 'list_message', { group_id: g.group_id });
  assert.equal(list.messages.find((m) => m.message_id === sent.message_id).message, 'before the block');
});

test('update_message leaves out what it does not name: attachments alone keep the text', async () => {
  const g = await group(a, [b], 'Edits');
  const sent = (await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'keep me', attachments: '{"a":1}' })).message;
  const pushed = once(b.socket, 'update_message', (p) => p.message.message_id === sent.message_id);
  const edit = await emit(a.socket, 'update_message', { group_id: g.group_id, message_id: sent.message_id, attachments: '{"a":2}' });
  assert.equal(edit.result, 0);
  assert.equal(edit.message.message, 'keep me');
  assert.equal(edit.message.attachments, '{"a":2}');
  assert.equal((await pushed).message.message, 'keep me');
  const text = await emit(a.socket, 'update_message', { group_id: g.group_id, message_id: sent.message_id, message: 'new text' });
  assert.equal(text.message.message, 'new text');
  assert.equal(text.message.attachments, '{"a":2}', 'the text alone keeps the attachments');
  const nothing = await emit(a.socket, 'update_message', { group_id: g.group_id, message_id: sent.message_id });
  assert.equal(nothing.result, 1, 'an edit naming nothing is refused');
});

test('type and version beyond 32 bits are refused, not truncated', async () => {
  const g = await group(a, [b], 'Ranges');
  const huge = 4294967297; // 2^32 + 1, stored as 1 when truncated
  assert.equal((await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'x', type: huge })).result, 1);
  assert.equal((await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'x', version: huge })).result, 1);
  assert.equal((await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'x', version: 4294967295 })).result, 0);
  const list = await emit(a.socket, 'list_message', { group_id: g.group_id });
  assert.equal(list.messages.length, 1, 'nothing was stored by the refused ones');
});

test('a member removed mid-call leaves the call: no answer, no SDP, told it stopped', async () => {
  const g = await group(a, [b, c], 'Call');
  const ringing = once(b.socket, 'start_call');
  const created = await emit(a.socket, 'create_call', { media_type: 1, group_id: g.group_id, callee_uins: [b.uin, c.uin] });
  assert.equal(created.result, 0);
  const call = created.call;
  await ringing;
  const bobStopped = once(b.socket, 'stop_call', (p) => p.call.call_id === call.call_id);
  assert.equal((await emit(a.socket, 'update_group', { group_id: g.group_id, pull_all: [b.uin] })).result, 0);
  await bobStopped;
  assert.equal((await emit(b.socket, 'answer_call', { call_id: call.call_id, group_id: g.group_id, answer: 1 })).result, 3);
  const noSdp = never(a.socket, 'ice_sdp');
  assert.equal((await emit(b.socket, 'ice_sdp', { call_id: call.call_id, group_id: g.group_id, receiver_uin: a.uin, type: 2, sdp: 'v=0' })).result, 3);
  assert.ok(await noSdp, 'the caller hears no SDP from a non-member');
  // The call goes on for those still in the group.
  assert.equal((await emit(c.socket, 'answer_call', { call_id: call.call_id, group_id: g.group_id, answer: 1 })).result, 0);
  // Leaving ends participation too; with no callee left, the call ends for everyone.
  const aliceStopped = once(a.socket, 'stop_call', (p) => p.call.call_id === call.call_id);
  assert.equal((await emit(c.socket, 'leave_group', { group_id: g.group_id })).result, 0);
  await aliceStopped;
  assert.equal((await emit(c.socket, 'ice_sdp', { call_id: call.call_id, group_id: g.group_id, receiver_uin: a.uin, type: 2, sdp: 'v=0' })).result, 3);
  assert.equal((await emit(a.socket, 'stop_call', { call_id: call.call_id, group_id: g.group_id })).result, 3, 'it has ended');
});

test('one message size limit for both doors: 70 KiB is refused by the Chat API and msglog_send alike', async () => {
  const g = await group(a, [b], 'Sizes');
  const big = 'x'.repeat(70 * 1024);
  assert.equal((await emit(a.socket, 'create_message', { group_id: g.group_id, message: big })).result, 6);
  const ext = await server.extapi('alice', 'pw');
  const r = await ext.call('media', 'conf', 'msglog_send', { conf_id: g.group_id, msg: { text: big } });
  assert.equal(r.result, 'error');
  assert.equal(r.data.code, 100046);
  assert.match(r.data.error, /max_message_bytes/);
  const list = await emit(a.socket, 'list_message', { group_id: g.group_id });
  assert.equal(list.messages.length, 0, 'nothing was stored');
  ext.ws.close();
});

test('list_message stops at max_list_bytes and says there is more; paging by the last id gets the rest', async () => {
  const g = await group(a, [b], 'Pages');
  const ids = [];
  for (let i = 0; i < 5; i++) {
    const r = await emit(a.socket, 'create_message', { group_id: g.group_id, message: `${i}`.repeat(8000) });
    assert.equal(r.result, 0);
    ids.push(r.message.message_id);
  }
  // Newest first, before the last id received.
  const seen = [];
  let page = await emit(b.socket, 'list_message', { group_id: g.group_id, psize: 50 });
  assert.equal(page.result, 0);
  assert.ok(page.messages.length < 5, 'the byte limit cut the page');
  assert.equal(page.more, true);
  for (;;) {
    seen.push(...page.messages.map((m) => m.message_id));
    if (!page.more) break;
    page = await emit(b.socket, 'list_message', { group_id: g.group_id, psize: 50, last_message_id: seen[seen.length - 1] });
  }
  assert.deepEqual(seen, [...ids].reverse());
  const all = await emit(b.socket, 'list_message', { group_id: g.group_id, psize: 1 });
  assert.equal(all.more, true, 'the count limit says more too');
  // The External API's msglog_get over the same group stops the same way.
  const ext = await server.extapi('bob', 'pw');
  const got = await ext.call('media', 'conf', 'msglog_get', { conf_id: g.group_id, limit: 300 });
  assert.equal(got.result, 'ok');
  assert.ok(got.data.length < 5);
  assert.equal(got.more, true);
  ext.ws.close();
});
