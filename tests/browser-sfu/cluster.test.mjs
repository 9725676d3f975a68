// Conference media across nodes (issue 20) in real browsers: two confer nodes over one
// PostgreSQL and one Redis (CONFER_TEST_POSTGRES_URL, CONFER_TEST_REDIS_URL: scripts/
// suite-scale starts them and sets CONFER_REQUIRE_SERVICES; without them this skips,
// saying so), each with its own media endpoint. Two pages of one conference, one on each
// node's conference door: both are answered by the node that opened the conference's
// media first, their only remote is that node's media address, and each sees and hears
// the other.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startServer, launch, openPage, join, pageState, receivesFrom, eventually } from './harness.mjs';

const PG = process.env.CONFER_TEST_POSTGRES_URL;
const REDIS = process.env.CONFER_TEST_REDIS_URL;
const skip = !PG || !REDIS;
if (skip && process.env.CONFER_REQUIRE_SERVICES) {
  throw new Error('CONFER_REQUIRE_SERVICES is set but CONFER_TEST_POSTGRES_URL or CONFER_TEST_REDIS_URL is not');
}
if (skip) console.log('skipped: CONFER_TEST_POSTGRES_URL and CONFER_TEST_REDIS_URL are not set (scripts/suite-scale sets them)');

const nodes = [];
let browser;
let database;

before(async () => {
  if (skip) return;
  // A database (and a Redis prefix) of this run's own.
  const name = `confer_sfu_${process.pid}_${Date.now()}`;
  execFileSync('psql', [PG, '-qc', `CREATE DATABASE ${name}`]);
  database = new URL(PG);
  database.pathname = `/${name}`;
  const env = {
    CONFER_DATABASE_URL: database.href,
    CONFER_DATABASE_POOL_SIZE: '4',
    CONFER_REDIS_URL: REDIS,
    CONFER_REDIS_PREFIX: `confer-sfu-test:${name}`,
    CONFER_NODE_TIMEOUT_SECS: '2',
  };
  nodes.push(await startServer(env), await startServer(env));
  browser = await launch();
  for (const u of ['ann', 'ben']) nodes[0].addUser(`${u}@example.com`, 'pw');
});

after(async () => {
  await browser?.close();
  for (const node of nodes) await node.stop();
  if (database) execFileSync('psql', [PG, '-qc', `DROP DATABASE IF EXISTS ${database.pathname.slice(1)} WITH (FORCE)`]);
});

// Every remote candidate and selected pair of the page's connections.
async function remotes(page) {
  return page.evaluate(async () => {
    const out = [];
    for (const pc of window.__pcs) {
      const report = await pc.getStats();
      const byId = new Map();
      report.forEach((s) => byId.set(s.id, s));
      for (const s of byId.values()) {
        if (s.type === 'remote-candidate') out.push(`${s.address}:${s.port}`);
        if (s.type === 'transport' && s.selectedCandidatePairId) {
          const pair = byId.get(s.selectedCandidatePairId);
          const remote = pair && byId.get(pair.remoteCandidateId);
          out.push(remote ? `${remote.address}:${remote.port}` : 'none');
        }
      }
    }
    return out;
  });
}

test('two pages on two nodes see and hear each other through the media host, the first opener\'s node', { skip }, async () => {
  const ann = await openPage(browser, nodes[0].base);
  const ben = await openPage(browser, nodes[1].base);
  const id = await join(ann, { user: 'ann@example.com', password: 'pw' });
  await join(ben, { user: 'ben@example.com', password: 'pw', conference: id });
  const parties = [(await pageState(ann)).party, (await pageState(ben)).party];
  await eventually('ann, on node one, receives ben', (why) => receivesFrom(ann, [parties[1]], why));
  await eventually('ben, on node two, receives ann', (why) => receivesFrom(ben, [parties[0]], why));
  const host = `127.0.0.1:${nodes[0].mediaPort}`;
  for (const page of [ann, ben]) {
    assert.equal((await pageState(page)).server.port, nodes[0].mediaPort);
    const seen = await remotes(page);
    assert.ok(seen.length > 0, 'a selected candidate pair');
    for (const remote of seen) assert.equal(remote, host, JSON.stringify(seen));
  }
  for (const page of [ann, ben]) assert.deepEqual(page.problems, []);
});
