// A 1:1 video call in the web client, signalled through the Chat API: alice calls, bob
// accepts, and each side's RTCPeerConnection.getStats() shows decoded video frames
// (Chromium's fake camera); then alice hangs up and both see the call end.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launch, newPage, signIn, shot, seriousViolations, recordPeerConnections,
} from './harness.mjs';

let server, browser, alice, bob, bobUin;

async function framesDecoded(page) {
  return page.evaluate(async () => {
    let frames = 0;
    for (const pc of window.__pcs) {
      const stats = await pc.getStats();
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0;
      });
    }
    return frames;
  });
}

before(async () => {
  server = await startServer();
  server.addUser('alice@example.com', 'alice-pw');
  bobUin = server.addUser('bob@example.com', 'bob-pw');
  browser = await launch();
  alice = await newPage(browser, server.base);
  bob = await newPage(browser, server.base);
  for (const page of [alice, bob]) {
    await page.context().grantPermissions(['camera', 'microphone']);
    await page.context().addInitScript(recordPeerConnections);
  }
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('alice video-calls bob, both decode each other\'s video, and a hang-up ends it for both', async () => {
  await signIn(alice, 'alice@example.com', 'alice-pw');
  await signIn(bob, 'bob@example.com', 'bob-pw');
  await alice.getByRole('button', { name: 'New chat' }).click();
  const dialog = alice.getByRole('dialog', { name: 'New chat' });
  await dialog.getByLabel('User number').fill(bobUin);
  await dialog.getByRole('button', { name: 'Add', exact: true }).click();
  await dialog.getByRole('button', { name: 'Create' }).click();
  await alice.getByRole('button', { name: 'Video call' }).click();

  const incoming = bob.getByRole('alertdialog', { name: /Call with/ });
  await incoming.getByText('Incoming call').waitFor();
  assert.match(await incoming.innerText(), /\(video\)/);
  await incoming.getByRole('button', { name: 'Accept' }).click();
  await alice.locator('[data-testid=call-status]', { hasText: 'In call' }).waitFor();
  await bob.locator('[data-testid=call-status]', { hasText: 'In call' }).waitFor();

  for (const [who, page] of [['alice', alice], ['bob', bob]]) {
    let frames = 0;
    for (let i = 0; i < 100 && frames === 0; i++) {
      frames = await framesDecoded(page);
      if (frames === 0) await page.waitForTimeout(100);
    }
    assert.ok(frames > 0, `${who} decoded no video frames`);
  }
  await shot(alice, 'video-call-desktop');
  assert.deepEqual(await seriousViolations(alice), []);

  await alice.getByRole('button', { name: 'Hang up' }).click();
  await bob.locator('[data-testid=call-status]', { hasText: 'Call ended' }).waitFor();
  await alice.locator('[data-testid=call-status]', { hasText: 'Call ended' }).waitFor();
  assert.deepEqual(alice.problems, []);
  assert.deepEqual(bob.problems, []);
});
