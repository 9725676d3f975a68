// The web client in Chromium, as two people use it: Alice and Bob, each in a browser
// context of their own, against the real server. The steps build on each other (one
// server, one chat), so they run in order.
import { test as nodeTest, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  startServer, launch, newPage, signIn, shot, seriousViolations, describeFailure, DESKTOP, PHONE,
} from './harness.mjs';

let server, browser, alice, bob, aliceUin, bobUin, groupId;

before(async () => {
  // Frequent Chat API heartbeats with Socket.IO's default timeout (20 s): a socket whose
  // network vanished is noticed within 22 s, and a page on a loaded machine (CI runs other
  // suites beside this one) that answers a ping late keeps its socket.
  server = await startServer({ CONFER_CHAT_PING_INTERVAL_MS: '2000', CONFER_CHAT_PING_TIMEOUT_MS: '20000' });
  aliceUin = server.addUser('alice@example.com', 'alice-pw');
  bobUin = server.addUser('bob@example.com', 'bob-pw');
  browser = await launch();
  alice = await newPage(browser, server.base);
  bob = await newPage(browser, server.base);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

// A step that fails with a dialog open (a chat being made, an image viewed) would leave it
// over the page and fail every later step with it: close what is left open.
afterEach(async () => {
  for (const page of [alice, bob]) {
    if (page && !page.isClosed()) {
      await page.evaluate(() => document.querySelectorAll('dialog[open]').forEach((d) => d.close())).catch(() => {});
    }
  }
});

// Each step, with what the pages showed written to the log when it fails.
const test = (name, body) => nodeTest(name, async (t) => {
  try {
    await body(t);
  } catch (e) {
    console.log(await describeFailure(name, { alice, bob }));
    throw e;
  }
});

const messages = (page) => page.locator('.messages li.msg');
const message = (page, text) => messages(page).filter({ hasText: text });
const chatItem = (page, name) => page.getByRole('navigation', { name: 'Chats' }).locator('button.group', { hasText: name });
// The read state of one's own message, as its tick says (its text for screen readers).
const receipt = (page, text, state) => message(page, text).locator('[data-testid=receipt]', { hasText: state });
// The chat listed first, once it is the one named (a wait that retries, not a read).
const firstChat = (page, name) => page.getByRole('navigation', { name: 'Chats' }).locator('button.group').first().filter({ hasText: name });

test('the sign-in screen: a wrong password is told, then both sign in', async () => {
  await alice.goto('/');
  await shot(alice, 'sign-in-desktop');
  assert.deepEqual(await seriousViolations(alice), []);
  await alice.getByLabel('User').fill('alice@example.com');
  await alice.getByLabel('Password').fill('wrong');
  await alice.getByRole('button', { name: 'Sign in' }).click();
  await alice.getByRole('alert').filter({ hasText: 'Wrong user or password' }).waitFor();
  // The refused login's 401 is the one error this page is expected to log.
  alice.problems = [];
  await signIn(alice, 'alice@example.com', 'alice-pw');
  await alice.getByText('No chats yet').waitFor();
});

test('alice starts a private chat with bob by picking him; bob signs in and sees it, and alice sees him online', async () => {
  await alice.getByRole('button', { name: 'New chat' }).click();
  const dialog = alice.getByRole('dialog', { name: 'New chat' });
  await dialog.getByLabel('User number').fill(bobUin);
  await dialog.getByRole('button', { name: 'Add', exact: true }).click();
  await dialog.getByRole('checkbox', { checked: true }).waitFor();
  await shot(alice, 'new-chat-desktop');
  assert.deepEqual(await seriousViolations(alice), []);
  await dialog.getByRole('button', { name: 'Create' }).click();
  await alice.getByRole('heading', { level: 2, name: `User ${bobUin}` }).waitFor();

  await signIn(bob, 'bob@example.com', 'bob-pw');
  await chatItem(bob, `User ${aliceUin}`).click();
  await alice.locator('[data-testid=presence]', { hasText: 'online' }).waitFor();
  groupId = await chatItem(alice, `User ${bobUin}`).getAttribute('data-group');
  assert.ok(groupId);
});

test('they chat both ways, with typing shown while the other writes', async () => {
  await alice.getByLabel('Message', { exact: true }).pressSequentially('Hi Bob');
  await bob.locator('[data-testid=typing]', { hasText: 'is typing' }).waitFor();
  await alice.getByRole('button', { name: 'Send' }).click();
  await message(bob, 'Hi Bob').waitFor();
  await bob.locator('[data-testid=typing]', { hasText: /^$/ }).waitFor();
  // Now alice is a name bob knows.
  await bob.getByRole('heading', { level: 2, name: 'alice@example.com' }).waitFor();

  await bob.getByLabel('Message', { exact: true }).fill('Hello Alice');
  await bob.getByLabel('Message', { exact: true }).press('Enter');
  await message(alice, 'Hello Alice').waitFor();
  await alice.getByRole('heading', { level: 2, name: 'bob@example.com' }).waitFor();
  assert.equal(await message(alice, 'Hi Bob').count(), 1);
  assert.equal(await message(bob, 'Hello Alice').count(), 1);
});

test('read state: each sees the tick of their own message turn to seen once the other has it open', async () => {
  // Bob had the chat open when "Hi Bob" came (and answered since): seen.
  await receipt(alice, 'Hi Bob', 'Seen').waitFor();
  await receipt(bob, 'Hello Alice', 'Seen').waitFor();
  await alice.getByLabel('Message', { exact: true }).fill('Seen this?');
  await alice.getByLabel('Message', { exact: true }).press('Enter');
  await message(bob, 'Seen this?').waitFor();
  await receipt(alice, 'Seen this?', 'Seen').waitFor();
  // Nobody's tick on the other's messages.
  assert.equal(await message(bob, 'Seen this?').locator('[data-testid=receipt]').count(), 0);
});

test('an edit and a delete reach the other side', async () => {
  await alice.getByLabel('Message', { exact: true }).fill('A typo here');
  await alice.getByLabel('Message', { exact: true }).press('Enter');
  await message(bob, 'A typo here').waitFor();
  const mine = message(alice, 'A typo here');
  await mine.getByRole('button', { name: 'Edit' }).click();
  await alice.getByLabel('Edit message').fill('No typo here');
  await alice.getByRole('button', { name: 'Save' }).click();
  await message(bob, 'No typo here').filter({ hasText: '(edited)' }).waitFor();
  assert.equal(await message(bob, 'A typo here').count(), 0);

  alice.once('dialog', (d) => d.accept());
  await message(alice, 'No typo here').getByRole('button', { name: 'Delete' }).click();
  const gone = messages(bob).filter({ hasText: 'Message deleted' });
  await gone.waitFor();
  assert.equal(await message(bob, 'No typo here').count(), 0);
});

// A small real PNG (2x2, red), so the browser can decode the preview.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP4z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==',
  'base64',
);
const BLOB = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) % 256));
const sha = (b) => createHash('sha256').update(b).digest('hex');

test('an image and a file: bob sees the preview and the viewer, and downloads the same bytes', async () => {
  await alice.locator('#attach').setInputFiles([
    { name: 'red.png', mimeType: 'image/png', buffer: PNG },
    { name: 'data.bin', mimeType: 'application/octet-stream', buffer: BLOB },
  ]);
  const img = bob.locator('.messages img[alt="red.png"]');
  await img.waitFor();
  await bob.waitForFunction(() => {
    const i = document.querySelector('.messages img[alt="red.png"]');
    return i && i.complete && i.naturalWidth === 2;
  });
  await bob.getByRole('button', { name: 'View image red.png' }).click();
  const viewer = bob.getByRole('dialog', { name: 'Image red.png' });
  await viewer.waitFor();
  await shot(bob, 'image-viewer-desktop');
  await viewer.getByRole('button', { name: 'Close' }).click();

  const link = bob.getByRole('link', { name: /data\.bin/ });
  await link.waitFor();
  const [download] = await Promise.all([bob.waitForEvent('download'), link.click()]);
  assert.equal(download.suggestedFilename(), 'data.bin');
  assert.equal(sha(readFileSync(await download.path())), sha(BLOB));
  const [picture] = await Promise.all([
    bob.waitForEvent('download'),
    bob.evaluate(() => {
      // The viewer's Download link, for the picture's own bytes.
      const a = document.createElement('a');
      a.href = document.querySelector('.messages img[alt="red.png"]').src;
      a.download = 'red.png';
      document.body.append(a);
      a.click();
      a.remove();
    }),
  ]);
  assert.equal(sha(readFileSync(await picture.path())), sha(PNG));
});

// A short silent WAV (8 kHz mono, 16-bit): sniffed as audio by the server.
function wav(samples = 800) {
  const b = Buffer.alloc(44 + samples * 2);
  b.write('RIFF', 0); b.writeUInt32LE(36 + samples * 2, 4); b.write('WAVE', 8);
  b.write('fmt ', 12); b.writeUInt32LE(16, 16); b.writeUInt16LE(1, 20); b.writeUInt16LE(1, 22);
  b.writeUInt32LE(8000, 24); b.writeUInt32LE(16000, 28); b.writeUInt16LE(2, 32); b.writeUInt16LE(16, 34);
  b.write('data', 36); b.writeUInt32LE(samples * 2, 40);
  return b;
}

test('a file pasted into the composer and a sound dropped on the chat are sent; bob gets a player', async () => {
  await alice.getByLabel('Message', { exact: true }).evaluate((el) => {
    const dt = new DataTransfer();
    dt.items.add(new File(['pasted words'], 'pasted.txt', { type: 'text/plain' }));
    el.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  });
  await bob.getByRole('link', { name: /pasted\.txt/ }).waitFor();
  const bytes = [...wav()];
  const dataTransfer = await alice.evaluateHandle((b) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(b)], 'beep.wav', { type: 'audio/wav' }));
    return dt;
  }, bytes);
  await alice.getByRole('main').dispatchEvent('drop', { dataTransfer });
  const player = bob.locator('audio[aria-label="beep.wav"]');
  await player.waitFor({ state: 'attached' });
  await bob.waitForFunction(() => {
    const a = document.querySelector('audio[aria-label="beep.wav"]');
    return a && a.readyState >= 1 && a.duration > 0;
  });
});

test('200 messages of history load as bob scrolls back, each once', async () => {
  for (let i = 1; i <= 200; i++) await server.post(groupId, `history ${i}`, 'alice@example.com');
  await message(bob, 'history 200').waitFor();
  // A fresh page: the history is read from the server page by page as it scrolls up.
  await bob.reload();
  await bob.locator('[data-testid=connection]', { hasText: 'Online' }).waitFor();
  await chatItem(bob, 'alice@example.com').click();
  await message(bob, 'history 200').waitFor();
  // Scrolled to the top again and again (each scroll loads one older page) until the
  // start shows: waits that retry, for as long as a slow machine needs.
  await bob.waitForFunction(() => {
    const el = document.querySelector('.messages');
    if (!el) return false;
    el.scrollTo(0, 0);
    return !!document.querySelector('.messages .start');
  }, null, { polling: 200, timeout: 60000 });
  const start = bob.getByText('This is the start of the conversation.');
  await start.waitFor();
  const texts = await messages(bob).locator('.text').allTextContents();
  for (let i = 1; i <= 200; i++) {
    assert.equal(texts.filter((t) => t === `history ${i}`).length, 1, `history ${i} once`);
  }
  assert.equal(texts.indexOf('Hi Bob') < texts.indexOf('history 1'), true, 'in order');
  await shot(bob, 'conversation-desktop');
  assert.deepEqual(await seriousViolations(bob), []);
});

test('unread counts, pin and mute: a pinned chat lists first, and both stay after a reload', async () => {
  // A second, newer chat: a group alice makes with bob.
  await alice.getByRole('button', { name: 'New chat' }).click();
  const dialog = alice.getByRole('dialog', { name: 'New chat' });
  await dialog.getByRole('checkbox').first().check();
  await dialog.getByLabel(/Group name/).fill('Team');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await alice.getByRole('heading', { level: 2, name: 'Team' }).waitFor();
  await alice.getByLabel('Message', { exact: true }).fill('Team news');
  await alice.getByLabel('Message', { exact: true }).press('Enter');
  // Bob is in the private chat: Team counts one unread, and is listed first (newest).
  const team = chatItem(bob, 'Team');
  await team.locator('[data-testid=unread]', { hasText: '1' }).waitFor();
  await team.filter({ hasText: 'Team news' }).waitFor();
  await firstChat(bob, 'Team').waitFor();
  // It reached bob's device, unread: alice's tick says delivered, not seen.
  await receipt(alice, 'Team news', 'Delivered').waitFor();

  // Pinning the private chat puts it first.
  await bob.getByRole('button', { name: 'Pin', exact: true }).click();
  await bob.getByRole('button', { name: 'Unpin' }).waitFor();
  await chatItem(bob, 'alice@example.com').locator('.tag', { hasText: 'pinned' }).waitFor();
  await firstChat(bob, 'alice@example.com').waitFor();
  // Muting Team: its count stays, shown muted.
  await team.click();
  await receipt(alice, 'Team news', 'Seen').waitFor();
  await bob.getByRole('button', { name: 'Mute', exact: true }).click();
  await bob.getByRole('button', { name: 'Unmute' }).waitFor();
  await chatItem(bob, 'alice@example.com').click();
  await alice.getByLabel('Message', { exact: true }).fill('More team news');
  await alice.getByLabel('Message', { exact: true }).press('Enter');
  await team.locator('.unread.muted', { hasText: '1' }).waitFor();

  await bob.reload();
  await bob.locator('[data-testid=connection]', { hasText: 'Online' }).waitFor();
  await chatItem(bob, 'Team').filter({ hasText: /Team, muted.*1 unread/ }).waitFor();
  await firstChat(bob, 'alice@example.com').filter({ hasText: /, pinned/ }).waitFor();
  await shot(bob, 'chat-list-desktop');
  await chatItem(bob, 'alice@example.com').click();
});

test('bob goes offline while alice sends, comes back, and has every message once', async () => {
  await chatItem(alice, 'bob@example.com').click();
  await message(alice, 'history 200').waitFor();
  await message(bob, 'history 200').waitFor();
  await bob.context().setOffline(true);
  try {
    await bob.locator('[data-testid=connection]', { hasText: 'Offline' }).waitFor();
    for (let i = 1; i <= 5; i++) {
      await alice.getByLabel('Message', { exact: true }).fill(`while away ${i}`);
      await alice.getByLabel('Message', { exact: true }).press('Enter');
      await message(alice, `while away ${i}`).waitFor();
    }
    assert.equal(await message(bob, 'while away').count(), 0);
  } finally {
    // Back online even when a step above failed: the later steps need bob connected.
    await bob.context().setOffline(false);
  }
  await bob.locator('[data-testid=connection]', { hasText: 'Online' }).waitFor();
  await message(bob, 'while away 5').waitFor();
  for (let i = 1; i <= 5; i++) assert.equal(await message(bob, `while away ${i}`).count(), 1, `while away ${i}`);
  assert.equal(await message(bob, 'history 200').count(), 1);
  // And the chat goes on both ways.
  await bob.getByLabel('Message', { exact: true }).fill('Back again');
  await bob.getByLabel('Message', { exact: true }).press('Enter');
  await message(alice, 'Back again').waitFor();
});

test('a message written while the network blinks is sent once the socket is back, once', async () => {
  await bob.context().setOffline(true);
  try {
    await bob.locator('[data-testid=connection]', { hasText: /Offline|Connecting/ }).waitFor();
    await bob.getByLabel('Message', { exact: true }).fill('Sent through a blink');
    await bob.getByLabel('Message', { exact: true }).press('Enter');
  } finally {
    await bob.context().setOffline(false);
  }
  await message(alice, 'Sent through a blink').waitFor();
  await message(bob, 'Sent through a blink').waitFor();
  assert.equal(await message(alice, 'Sent through a blink').count(), 1);
  assert.equal(await bob.getByLabel('Message', { exact: true }).inputValue(), '');
  assert.equal(await bob.getByRole('alert').filter({ hasText: 'Not connected' }).count(), 0);
});

test('block and leave: a blocked alice cannot write until bob unblocks her; leaving a group takes it off her list', async () => {
  await bob.getByRole('button', { name: 'Block', exact: true }).click();
  try {
    await bob.getByRole('button', { name: 'Unblock' }).waitFor();
    await alice.getByText('You were blocked in this chat.').waitFor();
    assert.equal(await alice.getByLabel('Message', { exact: true }).count(), 0);
  } finally {
    await bob.getByRole('button', { name: 'Unblock' }).click();
  }
  await bob.getByRole('button', { name: 'Block', exact: true }).waitFor();
  await alice.getByLabel('Message', { exact: true }).waitFor();

  await chatItem(alice, 'Team').click();
  alice.once('dialog', (d) => d.accept());
  await alice.getByRole('button', { name: 'Leave' }).click();
  await chatItem(alice, 'Team').waitFor({ state: 'detached' });
  await alice.getByText('Pick a chat, or start a new one.').waitFor();
  // Bob keeps the group, without alice.
  await chatItem(bob, 'Team').waitFor();
  await chatItem(alice, 'bob@example.com').click();
});

test('presence: alice sees bob go offline when he closes the app, and online when he is back', async () => {
  const context = bob.context();
  await bob.close();
  await chatItem(alice, 'bob@example.com').click();
  await alice.getByRole('heading', { level: 2, name: 'bob@example.com' }).waitFor();
  await alice.locator('[data-testid=presence]', { hasText: 'offline' }).waitFor();
  bob = await context.newPage();
  bob.problems = [];
  await bob.goto('/');
  await bob.locator('[data-testid=connection]', { hasText: 'Online' }).waitFor();
  await alice.locator('[data-testid=presence]', { hasText: 'online' }).waitFor();
});

test('presence right after sign-in: alice reloads and sees bob online at once, from the snapshot; her ticks stay', async () => {
  // Bob stays online: no change of his is pushed after alice's new login, so only the
  // login's presence snapshot (user_statuses) can tell her.
  await alice.reload();
  try {
    await alice.locator('[data-testid=connection]', { hasText: 'Online' }).waitFor();
    await chatItem(alice, 'bob@example.com').locator('[data-presence=online]').waitFor();
  } finally {
    // The later steps write in this chat.
    await chatItem(alice, 'bob@example.com').click();
  }
  await alice.locator('[data-testid=presence]', { hasText: 'online' }).waitFor();
  // The read state is the server's, so it is there after a reload too.
  await receipt(alice, 'while away 5', 'Seen').waitFor();
});

test('phone-sized screens: the list, then one chat with a way back', async () => {
  const phone = await newPage(browser, server.base, PHONE);
  try {
    await phone.goto('/');
    await shot(phone, 'sign-in-phone');
    await signIn(phone, 'alice@example.com', 'alice-pw');
    await shot(phone, 'chat-list-phone');
    assert.deepEqual(await seriousViolations(phone), []);
    await chatItem(phone, 'bob@example.com').click();
    await message(phone, 'Back again').waitFor();
    await phone.getByRole('navigation', { name: 'Chats' }).waitFor({ state: 'hidden' });
    await shot(phone, 'conversation-phone');
    assert.deepEqual(await seriousViolations(phone), []);
    await phone.getByRole('button', { name: 'Back to chats' }).click();
    await phone.getByRole('navigation', { name: 'Chats' }).waitFor();
  } finally {
    await phone.context().close();
  }
});

test('keyboard alone: sign in, open a chat and send', async () => {
  const page = await newPage(browser, server.base);
  try {
    await keyboardAlone(page);
  } finally {
    await page.context().close();
  }
});

async function keyboardAlone(page) {
  await page.goto('/');
  await page.getByLabel('User').waitFor();
  await page.keyboard.press('Tab');
  await page.keyboard.type('bob@example.com');
  await page.keyboard.press('Tab');
  await page.keyboard.type('bob-pw');
  await page.keyboard.press('Enter');
  await page.locator('[data-testid=connection]', { hasText: 'Online' }).waitFor();
  await chatItem(page, 'alice@example.com').focus();
  await page.keyboard.press('Enter');
  // Opening a chat moves focus to its heading.
  await page.waitForFunction(() => document.activeElement?.id === 'conversation-title');
  await page.getByLabel('Message', { exact: true }).focus();
  await page.keyboard.type('Typed with keys');
  await page.keyboard.press('Enter');
  await message(alice, 'Typed with keys').waitFor();
  assert.deepEqual(page.problems, []);
}

test('a second tab with the same sign-in takes the connection; the first offers it back', async () => {
  const second = await alice.context().newPage();
  try {
    await second.goto('/');
    await second.locator('[data-testid=connection]', { hasText: 'Online' }).waitFor();
    await alice.getByRole('alert').filter({ hasText: 'open in another tab' }).waitFor();
    await alice.getByRole('button', { name: 'Use here' }).click();
    await alice.locator('[data-testid=connection]', { hasText: 'Online' }).waitFor();
    await second.getByRole('alert').filter({ hasText: 'open in another tab' }).waitFor();
  } finally {
    await second.close();
  }
  // And it still chats.
  await alice.getByLabel('Message', { exact: true }).fill('Still here');
  await alice.getByLabel('Message', { exact: true }).press('Enter');
  await message(alice, 'Still here').waitFor();
  await chatItem(bob, 'alice@example.com').filter({ hasText: 'Still here' }).waitFor();
});

test('no page logged an error or met its Content-Security-Policy', async () => {
  assert.deepEqual(alice.problems, []);
  assert.deepEqual(bob.problems, []);
});
