// The same call with iceTransportPolicy 'relay': both pages reach the media endpoint only
// through a real coturn, with the credentials servdesc hands out. scripts/suite-sfu starts
// coturn and sets CONFER_TURN_PORT, CONFER_TURN_SECRET, CONFER_TURN_DIR (its log) and
// CONFER_TURN_REQUIRED=1; run alone without them, the test is skipped (with the reason).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { startServer, launch, openPage, join, pageState, stats, receivesFrom, eventually } from './harness.mjs';

const { CONFER_TURN_PORT: PORT, CONFER_TURN_SECRET: SECRET, CONFER_TURN_DIR: DIR } = process.env;
const missing = !(PORT && SECRET && DIR);
if (missing && process.env.CONFER_TURN_REQUIRED === '1') {
  throw new Error('CONFER_TURN_REQUIRED=1 but CONFER_TURN_PORT/CONFER_TURN_SECRET/CONFER_TURN_DIR are not set');
}
const skip = missing && 'no coturn: run scripts/suite-sfu (it starts one and sets CONFER_TURN_PORT, CONFER_TURN_SECRET, CONFER_TURN_DIR)';

let server;
let browser;

before(async () => {
  if (skip) return;
  server = await startServer({
    CONFER_TURN_SECRET: SECRET,
    CONFER_TURN_URLS: `turn:127.0.0.1:${PORT}?transport=udp`,
  });
  browser = await launch();
  for (const u of ['ann', 'ben']) server.addUser(`${u}@example.com`, 'pw');
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

function coturnLog() {
  return readdirSync(DIR)
    .filter((f) => /^turn.*\.log$/.test(f))
    .map((f) => readFileSync(path.join(DIR, f), 'utf8'))
    .join('');
}

test('relay only: media flows through coturn to the server and back', { skip }, async () => {
  const before = coturnLog();
  const pages = [await openPage(browser, server.base), await openPage(browser, server.base)];
  const id = await join(pages[0], { user: 'ann@example.com', password: 'pw', relay: true });
  await join(pages[1], { user: 'ben@example.com', password: 'pw', conference: id, relay: true });
  const parties = [];
  for (const page of pages) parties.push((await pageState(page)).party);
  for (const [i, page] of pages.entries()) {
    await eventually(`page ${i} receives through the relay`, (why) => receivesFrom(page, [parties[1 - i]], why));
    const s = await stats(page);
    const selected = s.pairs.filter((p) => p.selected);
    assert.equal(selected.length, 1, JSON.stringify(s.pairs));
    // Our side is a coturn relay; the far side is the media endpoint itself.
    assert.equal(selected[0].local.type, 'relay', JSON.stringify(selected[0]));
    assert.equal(`${selected[0].remote.address}:${selected[0].remote.port}`, `${s.server.ip}:${s.server.port}`);
  }
  // coturn itself says so: relays allocated with servdesc's credentials, and permission
  // to send to the media endpoint's address (coturn's log names a peer by address only).
  const log = coturnLog().slice(before.length);
  const { ip } = (await stats(pages[0])).server;
  assert.match(log, /user <\d+:\d+>: incoming packet ALLOCATE processed, success/, log.slice(-2000));
  assert.match(log, /incoming packet CREATE_PERMISSION processed, success/, log.slice(-2000));
  assert.ok(log.includes(`peer ${ip} lifetime updated`), `coturn's log names the media endpoint ${ip}: ${log.slice(-2000)}`);
});
