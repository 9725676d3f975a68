// Access that outlives its right, through the official Socket.IO client (and `ws` for
// the External API): a member removed from a group stops hearing it, and a socket ends
// with its token (logout, a password change in another process, expiry).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startServer, once, emit, BIN } from './harness.mjs';

const servers = [];
after(async () => { for (const s of servers) await s.stop(); });

async function start(env = {}) {
  const s = await startServer(env);
  servers.push(s);
  return s;
}

// Resolves once `pred()` holds (checked as events arrive), or fails after 10 s.
async function until(pred, what) {
  const deadline = Date.now() + 10000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`never: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// The socket is told `login {result: 2}` and then disconnected.
async function endsWithExpiredLogin(socket) {
  const login = once(socket, 'login');
  const gone = once(socket, 'disconnect');
  assert.equal((await login).result, 2);
  await gone;
}

test('a member removed with pull_all no longer hears the group through a subscription', async () => {
  const server = await start();
  const a = await server.user('alice');
  const b = await server.user('bob');
  const g = (await emit(a.socket, 'create_group', { name: 'G', type: 2, occupants_uins: [b.uin] })).group;
  const bob = await server.extapi('bob', 'pw');
  const sub = await bob.call('core', 'event', 'subscribe', { class: 'media', subclass: 'conf', type: 'msglog_new_msg', obj_id: g.group_id });
  assert.equal(sub.result, 'ok', JSON.stringify(sub));
  assert.equal((await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'for bob too' })).result, 0);
  await until(() => bob.events.some((e) => e.type === 'msglog_new_msg'), 'bob hears the group while a member');

  assert.equal((await emit(a.socket, 'update_group', { group_id: g.group_id, pull_all: [b.uin] })).result, 0);
  bob.events.length = 0;
  assert.equal((await emit(a.socket, 'create_message', { group_id: g.group_id, message: 'not for bob' })).result, 0);
  const alice = await server.extapi('alice', 'pw');
  assert.equal((await alice.call('core', 'user', 'send_event', { user: 'bob', type: 'marker' })).result, 'ok');
  await until(() => bob.events.some((e) => e.type === 'marker'), 'the marker reaches bob');
  const before = bob.events.slice(0, bob.events.findIndex((e) => e.type === 'marker'));
  assert.deepEqual(before.filter((e) => e.type === 'msglog_new_msg'), [], 'bob still hears the group');
});

test('logout ends the sockets of the token, not the user\'s others', async () => {
  const server = await start({ CONFER_TOKEN_CHECK_INTERVAL_MS: '0' });
  const a = await server.user('alice');
  const other = (await server.login('alice', 'pw')).body.session;
  const otherSocket = await server.connect(other);
  const ended = endsWithExpiredLogin(a.socket);
  const r = await fetch(`${server.base}/api/v1/logout`, { method: 'POST', headers: { Authorization: `Bearer ${a.token}` } });
  assert.equal(r.status, 200);
  await ended;
  assert.equal((await emit(otherSocket, 'list_group', {})).result, 0, 'another token of alice still works');
});

test('a password changed by `confer user passwd` ends the sockets of the old tokens', async () => {
  const server = await start({ CONFER_TOKEN_CHECK_INTERVAL_MS: '50' });
  const a = await server.user('alice');
  const ended = endsWithExpiredLogin(a.socket);
  execFileSync(BIN, ['user', 'passwd', 'alice', '--password', 'new-pw', '--data-dir', server.dataDir], {
    env: { ...process.env, CONFER_LOG_LEVEL: 'warn' },
  });
  await ended;
  const again = server.connectRaw({ session: a.token });
  assert.equal((await once(again, 'login')).result, 2, 'the old token no longer connects');
});

test('a token that expires while its socket is open ends the socket', async () => {
  const server = await start({ CONFER_TOKEN_LIFETIME_SECS: '2', CONFER_TOKEN_CHECK_INTERVAL_MS: '50' });
  const a = await server.user('alice');
  assert.equal((await emit(a.socket, 'list_group', {})).result, 0);
  await endsWithExpiredLogin(a.socket);
});
