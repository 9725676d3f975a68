// SIGTERM when the disk is full at the final WAL checkpoint (issue 14.15): the failure is
// logged, the server exits cleanly, and every acknowledged message is there after a
// restart. "Full" is a file size limit set on the running server (`prlimit --fsize`)
// below what the checkpoint must write into the database file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, emit } from './harness.mjs';

test('a full disk at the final flush is logged, the exit is clean, and no message is lost', async () => {
  const server = await startServer({ CONFER_CHAT_RATE_BURST: '1000' }, undefined, { ignoreSigxfsz: true, captureStderr: true });
  const alice = await server.user('alice');
  const bob = await server.user('bob');
  const g = (await emit(alice.socket, 'create_group', { name: 'Full', type: 2, occupants_uins: [bob.uin] })).group;
  const sent = [];
  for (let i = 0; i < 300; i++) {
    const r = await emit(alice.socket, 'create_message', { group_id: g.group_id, message: `${i} `.padEnd(4000, 'x') });
    assert.equal(r.result, 0);
    sent.push(r.message.message_id);
  }
  // The messages are in the WAL; the checkpoint must grow the database file past this.
  const db = join(server.dataDir, 'confer.db');
  const size = statSync(db).size;
  execFileSync('prlimit', ['--pid', String(server.pid), `--fsize=${size}:${size}`]);
  const code = await server.terminate();
  assert.match(server.stderr, /final storage flush failed/, 'the failed flush is logged');
  assert.equal(code, 0, 'and the exit is clean');

  const again = await startServer({}, server.dataDir);
  try {
    const { body } = await again.login('alice', 'pw');
    const socket = await again.connect(body.session);
    const seen = [];
    let after = '0';
    for (;;) {
      const page = await emit(socket, 'list_message', { group_id: g.group_id, last_seen_message_id: after, psize: 100 });
      assert.equal(page.result, 0);
      if (page.messages.length === 0) break;
      seen.push(...page.messages.map((m) => m.message_id));
      after = seen[seen.length - 1];
    }
    assert.deepEqual(seen, sent, 'every acknowledged message survived');
  } finally {
    await again.stop();
  }
});
