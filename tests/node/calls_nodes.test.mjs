// Calls between users on two confer nodes over one PostgreSQL and one Redis (issue 20):
// the live call and its ringing timer are in Redis (crates/bus-redis/src/calls.rs), so a
// call rung on one node rings, relays SDP/ICE, connects and is stopped on the other, and
// a call nobody answers times out once, told once to the caller and once to the callee.
// With the official socket.io-client.
//
// Needs CONFER_TEST_POSTGRES_URL and CONFER_TEST_REDIS_URL (scripts/suite-scale starts
// both and sets CONFER_REQUIRE_SERVICES); without them it says it skipped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startServer, once, never, emit } from './harness.mjs';

const PG = process.env.CONFER_TEST_POSTGRES_URL;
const REDIS = process.env.CONFER_TEST_REDIS_URL;
if (process.env.CONFER_REQUIRE_SERVICES && !(PG && REDIS)) {
  throw new Error('CONFER_REQUIRE_SERVICES is set but CONFER_TEST_POSTGRES_URL or CONFER_TEST_REDIS_URL is not');
}
const skip = PG && REDIS ? false : 'CONFER_TEST_POSTGRES_URL and CONFER_TEST_REDIS_URL are not set (scripts/suite-scale sets them)';

// The ringing timeout: long enough for a call to be answered first, short enough that
// the timeout test need not wait long.
const CALL_TIMEOUT_MS = 3000;
const DB = `confer_calls_${process.pid}_${Date.now()}`;
let nodes = [];
let a, b, bobOnAlicesNode; // eslint-disable-line no-unused-vars

function psql(sql) {
  execFileSync('psql', [PG, '-q', '-c', sql], { stdio: ['ignore', 'ignore', 'inherit'] });
}

before(async () => {
  if (skip) return;
  psql(`CREATE DATABASE ${DB}`);
  const base = PG.slice(0, PG.lastIndexOf('/'));
  // A cluster of its own on the shared Redis: its prefix (live calls included).
  const env = {
    CONFER_DATABASE_URL: `${base}/${DB}`,
    CONFER_DATABASE_POOL_SIZE: '4',
    CONFER_REDIS_URL: REDIS,
    CONFER_REDIS_PREFIX: DB,
    CONFER_CALL_TIMEOUT_MS: String(CALL_TIMEOUT_MS),
  };
  // The CLI (`user add`) of the harness opens the same database.
  Object.assign(process.env, { CONFER_DATABASE_URL: env.CONFER_DATABASE_URL });
  nodes = [await startServer(env), await startServer(env)];
  a = await nodes[0].user('alice');
  b = await nodes[1].user('bob');
  // Whether a callee can be rung (has a chat socket) is still asked of the caller's node
  // only, until the cross-node session directory lands: bob keeps a second device on
  // alice's node, so he counts as reachable. Everything the test checks happens on his
  // socket on node 1, through the call state in Redis.
  bobOnAlicesNode = await nodes[0].connect((await nodes[0].login('bob', 'pw')).body.session);
});

after(async () => {
  for (const n of nodes) await n.stop();
  if (!skip) psql(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
});

const group = async () =>
  (await emit(a.socket, 'create_group', { type: 2, occupants_uins: [b.uin] })).group;

test('a call between two nodes rings, relays SDP and ICE, connects and is stopped', { skip }, async () => {
  const g = await group();
  const ringing = once(b.socket, 'start_call');
  const made = await emit(a.socket, 'create_call', { media_type: 1, group_id: g.group_id });
  assert.equal(made.result, 0, JSON.stringify(made));
  const call = made.call;
  const rung = await ringing;
  assert.equal(rung.call.call_id, call.call_id);
  assert.equal(rung.call.caller_uin, a.uin);

  // SDP from the caller on node 0 to the callee on node 1, and ICE back.
  const sdp = once(b.socket, 'ice_sdp');
  const ids = { group_id: g.group_id, call_id: call.call_id };
  assert.equal((await emit(a.socket, 'ice_sdp', { ...ids, sender_uin: a.uin, receiver_uin: b.uin, sdp: 'v=0 offer' })).result, 0);
  assert.equal((await sdp).sdp, 'v=0 offer');
  const ice = once(a.socket, 'ice_candidate');
  assert.equal((await emit(b.socket, 'ice_candidate', { ...ids, sender_uin: b.uin, receiver_uin: a.uin, candidate: 'candidate:1 1 udp' })).result, 0);
  assert.equal((await ice).candidate, 'candidate:1 1 udp');

  // The callee accepts on its node; the caller hears it on the other.
  const accepted = once(a.socket, 'answer_call');
  const answer = await emit(b.socket, 'answer_call', { ...ids, answer: 1 });
  assert.equal(answer.result, 0, JSON.stringify(answer));
  assert.equal((await accepted).answer, 1);
  const status = await emit(a.socket, 'call_status', ids);
  assert.equal(status.call_status, 1, 'ongoing once accepted');

  // Past the ringing timeout an accepted call goes on.
  assert.ok(await never(b.socket, 'stop_call', CALL_TIMEOUT_MS + 1000), 'an accepted call does not time out');

  // Stopped by the callee: both hear it once, the call is finished (3).
  const stoppedA = once(a.socket, 'stop_call');
  const stoppedB = once(b.socket, 'stop_call');
  assert.equal((await emit(b.socket, 'stop_call', ids)).result, 0);
  assert.equal((await stoppedA).call.call_status, 3);
  assert.equal((await stoppedB).call.call_status, 3);
  const again = await emit(a.socket, 'stop_call', ids);
  assert.notEqual(again.result, 0, 'a stopped call cannot be stopped again');
  // A new call in the group may start: the group's live call is gone on both nodes.
  const next = await emit(a.socket, 'create_call', { media_type: 2, group_id: g.group_id });
  assert.equal(next.result, 0, JSON.stringify(next));
  assert.equal((await emit(b.socket, 'stop_call', { group_id: g.group_id, call_id: next.call.call_id })).result, 0);
});

test('a call nobody answers times out once, told once to the caller and once to the callee', { skip }, async () => {
  const g = await group();
  const seen = { a: [], b: [] };
  const count = (who) => (s) => { if (s.call.group_id === g.group_id) seen[who].push(s.call.call_status); };
  a.socket.on('stop_call', count('a'));
  b.socket.on('stop_call', count('b'));
  const ringing = once(b.socket, 'start_call');
  const made = await emit(a.socket, 'create_call', { media_type: 1, group_id: g.group_id });
  assert.equal(made.result, 0, JSON.stringify(made));
  await ringing;
  const record = once(b.socket, 'message', (m) => m.message.type === 1 && m.message.group_id === g.group_id, CALL_TIMEOUT_MS + 10000);
  const timedOut = once(a.socket, 'stop_call', (s) => s.call.call_id === made.call.call_id, CALL_TIMEOUT_MS + 10000);
  assert.equal((await timedOut).call.call_status, 2, 'timeout');
  // Both nodes poll the timers; a second firing would tell them again.
  await never(b.socket, 'stop_call', 2000);
  assert.deepEqual(seen.a, [2]);
  assert.deepEqual(seen.b, [2]);
  const status = await emit(b.socket, 'call_status', { group_id: g.group_id, call_id: made.call.call_id });
  assert.equal(status.call_status, 2);
  // One call record (type 1) in the group's history, with status 2.
  assert.equal(JSON.parse((await record).message.message).call_status, 2);
  const listed = await emit(b.socket, 'list_message', { group_id: g.group_id });
  const records = listed.messages.filter((m) => m.type === 1);
  assert.equal(records.length, 1, JSON.stringify(listed.messages));
  a.socket.off('stop_call');
  b.socket.off('stop_call');
});
