// Three browsers in one conference through the server's media endpoint, a fourth joining
// late, one leaving: everyone sees and hears everyone, only through the server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launch, openPage, join, pageState, receivesFrom, eventually, sleep } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launch();
  for (const u of ['ann', 'ben', 'cat', 'dan']) server.addUser(`${u}@example.com`, 'pw');
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

// Every RTCPeerConnection the page made (the init script keeps them all) has only the
// server as its remote: every remote candidate and every selected pair's remote is the
// media endpoint's address and port from servufrag.
async function onlyTheServer(page) {
  return page.evaluate(async () => {
    const server = window.confer.state.server;
    const out = { connections: window.__pcs.length, remotes: [], selected: [] };
    for (const pc of window.__pcs) {
      const report = await pc.getStats();
      const byId = new Map();
      report.forEach((s) => byId.set(s.id, s));
      for (const s of byId.values()) {
        if (s.type === 'remote-candidate') out.remotes.push(`${s.address}:${s.port}`);
        if (s.type === 'transport' && s.selectedCandidatePairId) {
          const pair = byId.get(s.selectedCandidatePairId);
          const remote = pair && byId.get(pair.remoteCandidateId);
          out.selected.push(remote ? `${remote.address}:${remote.port}` : 'none');
        }
      }
    }
    out.server = `${server.ip}:${server.port}`;
    return out;
  });
}

async function assertOnlyTheServer(page) {
  const seen = await onlyTheServer(page);
  assert.equal(seen.connections, 1, 'one RTCPeerConnection per page');
  assert.ok(seen.selected.length > 0, `a selected candidate pair: ${JSON.stringify(seen)}`);
  for (const remote of [...seen.remotes, ...seen.selected]) assert.equal(remote, seen.server, JSON.stringify(seen));
}

// Each page receives every other page's party, and names it under its video.
async function assertEveryoneSeesEveryone(pages) {
  const parties = [];
  for (const page of pages) parties.push((await pageState(page)).party);
  for (const [i, page] of pages.entries()) {
    const others = parties.filter((_, j) => j !== i);
    await eventually(`page ${i} receives ${others}`, (why) => receivesFrom(page, others, why));
    await assertOnlyTheServer(page);
    const state = await pageState(page);
    // Each slot's audio and video arrive in one stream (lip-synced), a stream per slot.
    const slotStreams = state.slots.map((s) => [state.streams[s.audio]?.[0], state.streams[s.video]?.[0]]);
    for (const [audio, video] of slotStreams) assert.ok(audio && audio === video, JSON.stringify(state.streams));
    assert.equal(new Set(slotStreams.map(([a]) => a)).size, slotStreams.length, JSON.stringify(state.streams));
    const captions = await page.locator('#remotes figcaption').allTextContents();
    assert.deepEqual(captions.sort(), others.map((p) => state.parties[p]).sort());
  }
  return parties;
}

test('three pages see and hear each other through the server; a late fourth joins without anyone reconnecting; a leaver is announced and removed', async () => {
  const pages = [];
  for (const user of ['ann', 'ben', 'cat']) pages.push(await openPage(browser, server.base));
  const id = await join(pages[0], { user: 'ann@example.com', password: 'pw' });
  await join(pages[1], { user: 'ben@example.com', password: 'pw', conference: id });
  await join(pages[2], { user: 'cat@example.com', password: 'pw', conference: id });
  await assertEveryoneSeesEveryone(pages);

  // The first three's connections, marked, to show they are the same objects later.
  for (const page of pages) await page.evaluate(() => { window.__pcs[0].__first = true; });
  const late = await openPage(browser, server.base);
  await join(late, { user: 'dan@example.com', password: 'pw', conference: id });
  pages.push(late);
  const parties = await assertEveryoneSeesEveryone(pages);
  for (const page of pages.slice(0, 3)) {
    const same = await page.evaluate(() => window.confer.peerConnection() === window.__pcs[0] && window.__pcs[0].__first === true
      && window.__pcs[0].connectionState === 'connected');
    assert.ok(same, 'still the first RTCPeerConnection, connected');
    const state = await pageState(page);
    assert.equal(state.offers, 1, 'no new offer');
    assert.equal(state.connections, 1);
  }

  // Ben leaves: the others get conf.webrtc.Disconnected for his party, his video goes,
  // and what his slot received stops.
  const gone = parties[1];
  const stayers = [pages[0], pages[2], pages[3]];
  const midOf = async (page) => (await pageState(page)).slots.find((s) => s.PartyID === gone).audio;
  const mids = [];
  for (const page of stayers) mids.push(await midOf(page));
  await pages[1].evaluate(() => window.confer.leave());
  for (const [i, page] of stayers.entries()) {
    await eventually(`page ${i} told of ${gone}`, async () => (await pageState(page)).disconnected.includes(gone));
    await page.locator(`#remotes figure[data-party="${gone}"]`).waitFor({ state: 'detached' });
    const received = async () => page.evaluate(async (mid) => {
      const s = await window.confer.getStats();
      return s.inbound.find((x) => x.mid === mid).packetsReceived;
    }, mids[i]);
    // Audio packets come every 20 ms while a slot is fed: two readings a second apart
    // that agree mean nothing comes any more.
    await eventually(`page ${i}: ${gone}'s slot stops receiving`, async () => {
      const first = await received();
      await sleep(1000);
      return (await received()) === first;
    });
    const state = await pageState(page);
    assert.ok(state.slots.every((s) => s.PartyID !== gone), JSON.stringify(state.slots));
  }
  // The others still see and hear each other.
  const left = [];
  for (const page of stayers) left.push((await pageState(page)).party);
  for (const [i, page] of stayers.entries()) {
    await eventually(`page ${i} still receives`, (why) => receivesFrom(page, left.filter((_, j) => j !== i), why));
  }
  // No console errors, CSP violations included.
  for (const page of pages) assert.deepEqual(page.problems, []);
});
