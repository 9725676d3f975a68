// A conference in the web client through the conference door (/vsp/ws) and the server's
// own media endpoint: alice, bob and carol, each in a browser context of their own, join
// the conference of their group; each page receives the two others' video and audio
// (getStats() on the tracks each tile plays), sees their names and what their microphone
// and camera are; carol leaves and is gone from the others' screens. The TURN credentials
// of `conf.webrtc.servdesc` are in each peer connection's ICE servers.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launch, newPage, signIn, shot, seriousViolations, recordPeerConnections, DESKTOP, PHONE,
} from './harness.mjs';

// A TURN address nobody answers on: the credentials are checked in the browser's
// configuration; media goes to the endpoint's host candidate.
const TURN = 'turn:127.0.0.1:9?transport=udp';
let server, browser, pages, uins;
const NAMES = ['alice@example.com', 'bob@example.com', 'carol@example.com'];

before(async () => {
  server = await startServer({
    CONFER_MEDIA_UDP_BIND: '127.0.0.1:0',
    CONFER_TURN_SECRET: 'web-turn-secret',
    CONFER_TURN_URLS: TURN,
    CONFER_STUN_URL: 'stun:127.0.0.1:9',
  });
  uins = NAMES.map((n) => server.addUser(n, 'pw-' + n));
  browser = await launch();
  pages = [];
  for (let i = 0; i < NAMES.length; i++) {
    const page = await newPage(browser, server.base);
    await page.context().grantPermissions(['camera', 'microphone']);
    await page.context().addInitScript(recordPeerConnections);
    pages.push(page);
  }
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

afterEach(async () => {
  // A step that failed with the phone size set or a dialog open leaves neither behind.
  for (const page of pages ?? []) {
    if (page.isClosed()) continue;
    await page.setViewportSize(DESKTOP).catch(() => {});
    await page.evaluate(() => document.querySelectorAll('dialog[open]').forEach((d) => d.close())).catch(() => {});
  }
});

const tile = (page, name) => page.locator('[data-testid=party]', { has: page.locator('.tile-name', { hasText: name }) });
// The conference screen's own buttons (the chat's, under it, are out of reach meanwhile).
const control = (page, name, pressed) =>
  page.getByRole('group', { name: 'Conference controls' }).getByRole('button', { name, exact: true, pressed });
const status = (page, text) => page.locator('[data-testid=conference-status]', { hasText: text });

// What the page receives from one party: the inbound stats of the very tracks its tile
// plays. Retried until both are past the bar (no time limit but the wait's own).
async function receivesFrom(page, name) {
  await page.waitForFunction(
    async (name) => {
      const t = [...document.querySelectorAll('[data-testid=party]')].find((el) =>
        el.querySelector('.tile-name')?.textContent.startsWith(name));
      const video = t?.querySelector('video')?.srcObject?.getVideoTracks()[0];
      const audio = t?.querySelector('audio')?.srcObject?.getAudioTracks()[0];
      if (!video || !audio) return false;
      let frames = 0;
      let packets = 0;
      for (const pc of window.__pcs) {
        const stats = await pc.getStats();
        stats.forEach((s) => {
          if (s.type !== 'inbound-rtp') return;
          if (s.trackIdentifier === video.id) frames = s.framesDecoded || 0;
          if (s.trackIdentifier === audio.id) packets = s.packetsReceived || 0;
        });
      }
      return frames > 30 && packets > 50;
    },
    name,
    { polling: 250, timeout: 90000 },
  );
}

test('alice starts a conference in a group, bob and carol join it', async () => {
  const [alice, bob, carol] = pages;
  for (let i = 0; i < 3; i++) await signIn(pages[i], NAMES[i], 'pw-' + NAMES[i]);
  await alice.getByRole('button', { name: 'New chat' }).click();
  const dialog = alice.getByRole('dialog', { name: 'New chat' });
  for (const uin of [uins[1], uins[2]]) {
    await dialog.getByLabel('User number').fill(uin);
    await dialog.getByRole('button', { name: 'Add', exact: true }).click();
    await dialog.getByRole('checkbox', { name: new RegExp(`#${uin}`) }).waitFor();
  }
  await dialog.getByLabel(/Group name/).fill('Standup');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await alice.getByRole('heading', { level: 2, name: 'Standup' }).waitFor();
  for (const page of [bob, carol]) {
    await page.getByRole('navigation', { name: 'Chats' }).locator('button.group', { hasText: 'Standup' }).click();
    await page.getByRole('heading', { level: 2, name: 'Standup' }).waitFor();
  }
  for (const page of pages) {
    await page.getByRole('button', { name: 'Join conference' }).click();
    await page.getByRole('heading', { name: 'Conference in Standup' }).waitFor();
    await status(page, 'In the conference').waitFor();
  }
});

test('each page shows the two others by name and receives their video and audio', async () => {
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      if (i === j) continue;
      await tile(pages[i], NAMES[j]).locator('video').waitFor();
      await receivesFrom(pages[i], NAMES[j]);
    }
  }
});

test('the ICE servers are the TURN credentials of servdesc', async () => {
  for (let i = 0; i < 3; i++) {
    const servers = await pages[i].evaluate(() => window.__pcs.at(-1).getConfiguration().iceServers);
    const turn = servers.find((s) => [s.urls].flat().includes(TURN));
    assert.ok(turn, `no TURN server in ${JSON.stringify(servers)}`);
    assert.match(turn.username, new RegExp(`^\\d+:${uins[i]}$`));
    assert.ok(turn.credential);
  }
});

test('bob turns his camera and microphone off and on; the others see it', async () => {
  const [alice, bob, carol] = pages;
  await control(bob, 'Camera').click();
  await control(bob, 'Camera', false).waitFor();
  await control(bob, 'Microphone').click();
  await control(bob, 'Microphone', false).waitFor();
  for (const page of [alice, carol]) {
    await tile(page, NAMES[1]).getByText('Camera off').waitFor();
    await tile(page, NAMES[1]).getByText('Mic off').waitFor();
  }
  await control(bob, 'Camera').click();
  await control(bob, 'Camera', true).waitFor();
  await control(bob, 'Microphone').click();
  await control(bob, 'Microphone', true).waitFor();
  for (const page of [alice, carol]) {
    await tile(page, NAMES[1]).getByText('Camera off').waitFor({ state: 'detached' });
    await tile(page, NAMES[1]).getByText('Mic off').waitFor({ state: 'detached' });
  }
});

test('the conference screen at desktop and phone sizes, without serious accessibility violations', async () => {
  const alice = pages[0];
  await shot(alice, 'conference-desktop');
  assert.deepEqual(await seriousViolations(alice), []);
  await alice.setViewportSize(PHONE);
  await tile(alice, NAMES[1]).waitFor();
  await shot(alice, 'conference-phone');
  assert.deepEqual(await seriousViolations(alice), []);
  await alice.setViewportSize(DESKTOP);
});

test('carol leaves: she is gone from the others\' screens, who still see each other', async () => {
  const [alice, bob, carol] = pages;
  await control(carol, 'Leave').click();
  await carol.getByRole('heading', { name: 'Conference in Standup' }).waitFor({ state: 'detached' });
  await carol.getByRole('heading', { level: 2, name: 'Standup' }).waitFor();
  // The keyboard's focus is back in the chat the conference was joined from.
  await carol.waitForFunction(() => document.activeElement?.id === 'conversation-title');
  for (const page of [alice, bob]) await tile(page, NAMES[2]).waitFor({ state: 'detached' });
  await tile(alice, NAMES[1]).locator('video').waitFor();
  await tile(bob, NAMES[0]).locator('video').waitFor();
  for (const page of [alice, bob]) {
    await control(page, 'Leave').click();
    await page.getByRole('heading', { level: 2, name: 'Standup' }).waitFor();
  }
  for (const page of pages) assert.deepEqual(page.problems, []);
});
