// Browser test harness: the real `confer` binary (CONFER_BIN) on a free port with a fresh
// data folder, accounts made with its CLI, and Debian's Chromium driven by playwright-core
// (no browser download: CHROMIUM, default /usr/bin/chromium), with fake media devices.
// Screenshots go to SHOTS (default target/browser-web), never into the repository.
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import net from 'node:net';
import { chromium } from 'playwright-core';
import axe from 'axe-core';

const HERE = new URL('.', import.meta.url).pathname;
export const BIN = process.env.CONFER_BIN || resolve(HERE, '../../target/debug/confer');
export const SHOTS = process.env.SHOTS || resolve(HERE, '../../target/browser-web');
export const ADMIN_PASSWORD = 'web-admin';
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

function freePort() {
  return new Promise((ok, fail) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
    srv.on('error', fail);
  });
}

export async function startServer(env = {}) {
  const dataDir = join(mkdtempSync(join(tmpdir(), 'confer-web-')), 'data');
  const port = await freePort();
  const proc = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir], {
    env: { ...process.env, CONFER_ADMIN_PASSWORD: ADMIN_PASSWORD, CONFER_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30000;
  for (;;) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) throw new Error('server did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    base,
    addUser(login, password) {
      const out = execFileSync(BIN, ['user', 'add', login, '--password', password, '--data-dir', dataDir], {
        env: { ...process.env, CONFER_LOG_LEVEL: 'warn' },
      }).toString();
      return out.match(/uin (\d+)/)[1];
    },
    // A message posted through the admin API, in a member's name.
    async post(groupId, text, as) {
      const r = await fetch(`${base}/api/v1/admin/groups/${groupId}/messages`, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          Authorization: 'Basic ' + Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64'),
        },
        body: JSON.stringify({ text, as }),
      });
      if (!r.ok) throw new Error(`admin post: ${r.status} ${await r.text()}`);
    },
    // Stops the server and removes its data folder.
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await exited;
      }
      rmSync(dirname(dataDir), { recursive: true, force: true });
    },
  };
}

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
    ],
  });
}

// A page of its own browser context (its own storage: one signed-in user each), which
// records console errors and CSP violations so a test can say there were none.
export async function newPage(browser, base, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport, acceptDownloads: true, baseURL: base });
  const page = await context.newPage();
  // Each wait's bound (Playwright's default is 30 s): beside the other suites on two cores
  // a step that takes a second alone has taken longer than 30 s.
  page.setDefaultTimeout(60000);
  page.problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && !/favicon/.test(m.text())) page.problems.push(m.text());
  });
  page.on('pageerror', (e) => page.problems.push(String(e)));
  return page;
}

// Keeps each page's peer connections where a test can ask them for stats: injected by
// the browser before the page's scripts (`context.addInitScript`), so the app itself has
// no test hook.
export function recordPeerConnections() {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      window.__pcs.push(this);
    }
  };
}

export async function signIn(page, user, password) {
  await page.goto('/');
  await page.getByLabel('User').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Signed in as').waitFor();
  await page.locator('[data-testid=connection]', { hasText: 'Online' }).waitFor();
}

export async function shot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
}

// axe-core run in the page (injected through the debugger, which the page's CSP does
// not apply to): the violations that are serious or critical.
export async function seriousViolations(page) {
  await page.evaluate(axe.source);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

// What a failed step leaves on each page, for its log: the connection badge, every alert
// shown, the console errors recorded, and a screenshot (SHOTS/failed-<step>-<page>.png).
// A timeout alone says what was awaited, not what the page showed instead.
export async function describeFailure(step, pages) {
  const lines = [`what the pages show after "${step}" failed:`];
  const file = step.replace(/[^a-z0-9]+/gi, '-').slice(0, 60);
  for (const [name, page] of Object.entries(pages)) {
    if (!page || page.isClosed()) {
      lines.push(`  ${name}: closed`);
      continue;
    }
    const read = (f) => f.catch((e) => `(unreadable: ${String(e).split('\n')[0]})`);
    const connection = await read(page.locator('[data-testid=connection]').allTextContents());
    const alerts = await read(page.getByRole('alert').allTextContents());
    lines.push(`  ${name}: url ${page.url()}, connection ${JSON.stringify(connection)}, alerts ${JSON.stringify(alerts)}`);
    lines.push(`  ${name}: console errors ${JSON.stringify(page.problems ?? [])}`);
    await shot(page, `failed-${file}-${name}`).catch(() => {});
  }
  return lines.join('\n');
}
