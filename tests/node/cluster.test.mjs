// Several confer nodes over one PostgreSQL and one Redis (issue 20), through the Chat API
// with the official socket.io-client: a user's sockets on two nodes count as one presence,
// online and offline reach a watcher on a third node (also when both close at once), typing crosses nodes, and a node
// killed with SIGKILL: its users go offline for their peers once `node_timeout_secs`
// passed, come back online on another node with the same token (no conflict answer, at
// once), and a retried nonce answers 13 with the stored original; a typer's node killed
// mid-typing: its peer on another node hears "stopped typing" (type 9) once, from the node
// that closes the dead node's sessions; a profile changed on one node is what another
// node's next message carries (no stale profile cache).
//
// Needs CONFER_TEST_POSTGRES_URL and CONFER_TEST_REDIS_URL (scripts/suite-scale sets
// them); without them it says it skipped, unless CONFER_REQUIRE_SERVICES is set.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startServer, once, emit } from './harness.mjs';

const PG = process.env.CONFER_TEST_POSTGRES_URL;
const REDIS = process.env.CONFER_TEST_REDIS_URL;
const missing = !PG || !REDIS;
if (missing && process.env.CONFER_REQUIRE_SERVICES) {
  throw new Error('CONFER_REQUIRE_SERVICES is set but CONFER_TEST_POSTGRES_URL or CONFER_TEST_REDIS_URL is not');
}
const skip = missing ? 'CONFER_TEST_POSTGRES_URL and CONFER_TEST_REDIS_URL are not set (scripts/suite-scale sets them)' : false;

const DB = `confer_node_${process.pid}_${Date.now()}`;
const psql = (sql) => execFileSync('psql', [PG, '-q', '-c', sql], { stdio: ['ignore', 'ignore', 'inherit'] });
let nodes = [];

before(async () => {
  if (skip) return;
  psql(`CREATE DATABASE ${DB}`);
  // Every node and the CLI that makes the accounts use this database.
  process.env.CONFER_DATABASE_URL = PG.replace(/\/[^/]*$/, `/${DB}`);
  process.env.CONFER_DATABASE_POOL_SIZE = '4';
  process.env.CONFER_REDIS_URL = REDIS;
  process.env.CONFER_REDIS_PREFIX = DB;
  process.env.CONFER_NODE_TIMEOUT_SECS = '1';
  for (let i = 0; i < 3; i++) nodes.push(await startServer());
});

after(async () => {
  if (skip) return;
  for (const n of nodes) await n.stop();
  psql(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
});

const statusOf = (who) => (s) => s.user_status.uin === who.uin;

test("a user's sockets on two nodes are one presence, seen from a third", { skip }, async () => {
  const [n0, n1, n2] = nodes;
  const watcher = await n2.user('wanda');
  const sam = await n0.user('sam');
  assert.equal((await emit(sam.socket, 'create_group', { type: 1, occupants_uins: [watcher.uin] })).result, 0);
  // A second socket of sam, on node 1, with a token of its own.
  const { body } = await n1.login('sam', 'pw');
  const second = await n1.connect(body.session);
  // Sam on node 0 closes; sam on node 1 chooses "away": the first news of sam the
  // watcher gets is "away", never "offline".
  const next = once(watcher.socket, 'user_status', statusOf(sam));
  sam.socket.disconnect();
  assert.equal((await emit(second, 'user_status', { online_status: 5 })).result, 0);
  assert.equal((await next).user_status.online_status, 5);
  // Its last socket closing makes it offline.
  const offline = once(watcher.socket, 'user_status', statusOf(sam));
  second.disconnect();
  assert.equal((await offline).user_status.online_status, 2);
  const back = once(watcher.socket, 'user_status', statusOf(sam));
  sam.socket = await n2.connect(sam.token);
  assert.equal((await back).user_status.online_status, 5, 'the chosen status, kept');
});

test("a user's sockets on two nodes closing at once: a watcher on a third hears it go offline", { skip }, async () => {
  const [n0, n1, n2] = nodes;
  const watcher = await n2.user('wyn');
  const ola = await n0.user('ola');
  assert.equal((await emit(ola.socket, 'create_group', { type: 1, occupants_uins: [watcher.uin] })).result, 0);
  const { body } = await n1.login('ola', 'pw');
  const second = await n1.connect(body.session);
  // Each node closes its socket while its copy of the directory may still list the
  // other's: the count in Redis, not those copies, says which close was the last.
  const offline = once(watcher.socket, 'user_status', (s) => statusOf(ola)(s) && s.user_status.online_status === 2);
  ola.socket.disconnect();
  second.disconnect();
  assert.equal((await offline).user_status.online_status, 2);
  // Back on one node: online again.
  const online = once(watcher.socket, 'user_status', (s) => statusOf(ola)(s) && s.user_status.online_status === 1);
  ola.socket = await n1.connect(ola.token);
  await online;
});

test('typing reaches a member on another node', { skip }, async () => {
  const [n0, n1] = nodes;
  const tia = await n0.user('tia');
  const tom = await n1.user('tom');
  const g = (await emit(tia.socket, 'create_group', { type: 2, name: 'Typing', occupants_uins: [tom.uin] })).group;
  const atTom = once(tom.socket, 'event', (e) => e.group_id === g.group_id);
  assert.equal((await emit(tia.socket, 'event', { type: 8, group_id: g.group_id, sender_uin: tia.uin, data: '' })).result, 0);
  const ev = await atTom;
  assert.equal(ev.type, 8);
  assert.equal(ev.sender_uin, tia.uin);
});

test('a profile changed on one node is what a message posted on another carries', { skip }, async () => {
  const [n0, n1] = nodes;
  const pia = await n0.user('pia');
  const paul = await n1.user('paul');
  const { body } = await n1.login('pia', 'pw');
  const onN1 = await n1.connect(body.session);
  const g = (await emit(pia.socket, 'create_group', { type: 2, name: 'Profiles', occupants_uins: [paul.uin] })).group;
  const first = await emit(onN1, 'create_message', { group_id: g.group_id, message: 'before' });
  assert.equal(first.result, 0);
  assert.equal(first.message.sender_name, null);
  assert.equal((await emit(pia.socket, 'update_profile', { name: 'Pia P.' })).result, 0);
  const after = await emit(onN1, 'create_message', { group_id: g.group_id, message: 'after' });
  assert.equal(after.message.sender_name, 'Pia P.', 'node 1 does not keep the name it read before');
  onN1.disconnect();
});

test('a node killed with SIGKILL: its users go offline, come back elsewhere with the same token, and a retried nonce answers 13', { skip }, async () => {
  const [n0, n1] = nodes;
  const doomed = await startServer();
  const kim = await doomed.user('kim');
  const lee = await doomed.user('lee');
  const watcher = await n1.user('wes');
  const g = (await emit(kim.socket, 'create_group', { type: 2, name: 'Kill', occupants_uins: [watcher.uin, lee.uin] })).group;
  const sent = await emit(kim.socket, 'create_message', { group_id: g.group_id, message: 'before the kill', nonce: 'kim-1' });
  assert.equal(sent.result, 0);

  const offline = once(watcher.socket, 'user_status', (s) => statusOf(kim)(s) && s.user_status.online_status === 2);
  process.kill(doomed.pid, 'SIGKILL');
  for (const s of doomed.sockets) s.disconnect();

  // Lee is back on another node at once: no conflict with the session left on the dead node.
  lee.socket = await n0.connect(lee.token);
  assert.equal((await emit(lee.socket, 'list_group', {})).result, 0);

  // Kim's peer sees kim go offline once the dead node's sessions expire.
  const off = (await offline).user_status;
  assert.equal(off.online_status, 2);
  const online = once(watcher.socket, 'user_status', (s) => statusOf(kim)(s) && s.user_status.online_status === 1);
  kim.socket = await n0.connect(kim.token);
  assert.equal((await online).user_status.online_status, 1);

  // The retry of a message the dead node stored answers 13 with the original.
  const retry = await emit(kim.socket, 'create_message', { group_id: g.group_id, message: 'before the kill', nonce: 'kim-1' });
  assert.equal(retry.result, 13);
  assert.equal(retry.message.message_id, sent.message.message_id);
  const listed = await emit(kim.socket, 'list_message', { group_id: g.group_id });
  assert.deepEqual(listed.messages.map((m) => m.message_id), [sent.message.message_id], 'stored once');
});

test('a node killed mid-typing: a member on another node hears type 9 exactly once', { skip }, async () => {
  const [n0, n1] = nodes;
  const doomed = await startServer();
  const ada = await doomed.user('ada');
  const bo = await n1.user('bo');
  const g = (await emit(ada.socket, 'create_group', { type: 2, name: 'Typing kill', occupants_uins: [bo.uin] })).group;
  const seen = [];
  bo.socket.on('event', (e) => { if (e.group_id === g.group_id) seen.push(e); });
  const typing = once(bo.socket, 'event', (e) => e.group_id === g.group_id && e.type === 8);
  assert.equal((await emit(ada.socket, 'event', { type: 8, group_id: g.group_id, sender_uin: ada.uin, data: '' })).result, 0);
  await typing;

  // The typer's node dies before its typing timeout: its own timer never fires.
  const stopped = once(bo.socket, 'event', (e) => e.group_id === g.group_id && e.type === 9);
  process.kill(doomed.pid, 'SIGKILL');
  for (const s of doomed.sockets) s.disconnect();
  const ev = await stopped;
  assert.equal(ev.sender_uin, ada.uin);

  // A marker after it: ada, back on another node, types again; every event before the
  // marker has been heard, and one of them was a type 9.
  ada.socket = await n0.connect(ada.token);
  const marker = once(bo.socket, 'event', (e) => e.group_id === g.group_id && e.type === 8 && seen.filter((x) => x.type === 8).length === 2);
  assert.equal((await emit(ada.socket, 'event', { type: 8, group_id: g.group_id, sender_uin: ada.uin, data: '' })).result, 0);
  await marker;
  assert.deepEqual(seen.map((e) => e.type), [8, 9, 8], 'one type 9 for the dead node\'s typing');
});
