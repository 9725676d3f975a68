// A graceful shutdown with Chat API clients connected, through the official client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, once, emit } from './harness.mjs';

test('a shutdown disconnects connected chat sockets and the server exits cleanly', async () => {
  const server = await startServer();
  const alice = await server.user('alice');
  const bob = await server.user('bob');
  // Both sockets carry live sessions with deliveries on the way in.
  const r = await emit(alice.socket, 'create_group', { name: 'Bye', type: 2, occupants_uins: [bob.uin] });
  assert.equal(r.result, 0);
  const aliceGone = once(alice.socket, 'disconnect');
  const bobGone = once(bob.socket, 'disconnect');
  const code = await server.terminate();
  assert.equal(code, 0);
  assert.equal(await aliceGone, 'io server disconnect');
  assert.equal(await bobGone, 'io server disconnect');
});
