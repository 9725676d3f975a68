// What the SFU browser tests share: the real `confer` binary (CONFER_BIN) with its media
// endpoint on a free loopback UDP port and a fresh data folder (removed at stop), accounts
// made with its CLI, Debian's Chromium through playwright-core (CHROMIUM, default
// /usr/bin/chromium; nothing is downloaded) with fake camera and microphone, and pages of
// the conference door's test page (/vsp/test) driven through its `window.confer`.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dgram from 'node:dgram';
import net from 'node:net';
import { chromium } from 'playwright-core';

const HERE = new URL('.', import.meta.url).pathname;
const BIN = process.env.CONFER_BIN || path.resolve(HERE, '../../target/debug/confer');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freeTcpPort() {
  return new Promise((ok, fail) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
    srv.on('error', fail);
  });
}

function freeUdpPort() {
  return new Promise((ok, fail) => {
    const sock = dgram.createSocket('udp4');
    sock.on('error', fail);
    sock.bind(0, '127.0.0.1', () => {
      const { port } = sock.address();
      sock.close(() => ok(port));
    });
  });
}

// `env`: more CONFER_* settings (the TURN ones, for the relay test).
export async function startServer(env = {}) {
  const root = mkdtempSync(path.join(tmpdir(), 'confer-sfu-'));
  const dataDir = path.join(root, 'data');
  const port = await freeTcpPort();
  const mediaPort = await freeUdpPort();
  const proc = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir], {
    env: {
      ...process.env,
      // str0m warns once per Chromium party that it keeps the first audio line's RED
      // payload type for the others (harmless): not worth a line each in the test output.
      CONFER_LOG_LEVEL: 'warn,str0m::format=error',
      CONFER_MEDIA_UDP_BIND: `127.0.0.1:${mediaPort}`,
      ...env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise((r) => proc.once('exit', r));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30000;
  for (;;) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {
      /* not up yet */
    }
    if (proc.exitCode !== null) throw new Error(`confer exited with ${proc.exitCode}`);
    if (Date.now() > deadline) throw new Error('confer did not become healthy');
    await sleep(50);
  }
  return {
    base,
    mediaPort,
    addUser(login, password) {
      execFileSync(BIN, ['user', 'add', login, '--password', password, '--data-dir', dataDir], {
        env: { ...process.env, ...env, CONFER_LOG_LEVEL: 'warn' },
      });
    },
    // A counter from /metrics (its value, 0 when absent).
    async metric(name) {
      const text = await (await fetch(`${base}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
      return line ? Number(line.trim().split(/\s+/).pop()) : 0;
    },
    alive: () => proc.exitCode === null,
    async stop() {
      proc.kill('SIGTERM');
      await exited;
      rmSync(root, { recursive: true, force: true });
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
      '--autoplay-policy=no-user-gesture-required',
      // The media endpoint listens on 127.0.0.1: let WebRTC use the loopback interface.
      '--allow-loopback-in-peer-connection',
    ],
  });
}

// Before any script of the page runs: every RTCPeerConnection the page makes is kept in
// `window.__pcs`, so a test can look at all of them, not only the one the page shows.
function recordPeerConnections() {
  const Original = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = function RTCPeerConnection(...args) {
    const pc = new Original(...args);
    window.__pcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Original.prototype;
}

// A page of its own browser context on the test page, its console errors kept.
export async function openPage(browser, base) {
  const context = await browser.newContext({ baseURL: base });
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && !/favicon/.test(m.text())) page.problems.push(m.text());
  });
  page.on('pageerror', (e) => page.problems.push(String(e)));
  await page.addInitScript(recordPeerConnections);
  await page.goto('/vsp/test');
  await page.waitForFunction(() => window.confer);
  return page;
}

// Signs in, joins (creates when `conference` is absent) and starts media; the conference ID.
export function join(page, options) {
  return page.evaluate((o) => window.confer.start(o), options);
}

export const stats = (page) => page.evaluate(() => window.confer.getStats());
export const pageState = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.confer.state)));

// Polls `check(page)` until it returns a truthy value or `ms` pass; the last falsy
// result's explanation (what `check` put in `why`) goes into the error.
export async function eventually(what, check, ms = 60000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    const why = {};
    last = await check(why);
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`${what}: not reached; last: ${JSON.stringify(why)}`);
    await sleep(500);
  }
}

// Whether `page` receives audio and video from every party in `others` (PartyIDs):
// inbound video with framesDecoded past 30 and inbound audio with packetsReceived past 50
// on the slot lines that show them (`why` gets what was seen).
export async function receivesFrom(page, others, why = {}) {
  const s = await stats(page);
  why.inbound = s.inbound.map((i) => `${i.kind}@${i.mid}=${i.party}:${i.kind === 'video' ? i.framesDecoded : i.packetsReceived}`);
  return others.every((party) => {
    const video = s.inbound.find((i) => i.party === party && i.kind === 'video');
    const audio = s.inbound.find((i) => i.party === party && i.kind === 'audio');
    return video && video.framesDecoded > 30 && audio && audio.packetsReceived > 50;
  });
}
