// Test harness: starts the real `confer` binary (CONFER_BIN) on a free port with a fresh
// data folder, creates accounts with its CLI, and connects official Socket.IO clients.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { io } from 'socket.io-client';
import WebSocket from 'ws';

export const BIN = process.env.CONFER_BIN || '../../target/debug/confer';
export const ADMIN_PASSWORD = 'node-admin';
const WAIT_MS = 10000;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

// `dataDir` reuses the data folder of a server that was stopped (a restart).
// `opts.ignoreSigxfsz`: start it through `sh` with SIGXFSZ ignored (kept across exec), so
// a file size limit set later (`prlimit`) fails its writes instead of killing it.
// `opts.captureStderr`: keep what it logs in `server.stderr` (still shown).
export async function startServer(env = {}, dataDir = join(mkdtempSync(join(tmpdir(), 'confer-node-')), 'data'), opts = {}) {
  const port = await freePort();
  const args = ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir];
  const [cmd, argv] = opts.ignoreSigxfsz
    ? ['sh', ['-c', 'trap "" XFSZ; exec "$0" "$@"', BIN, ...args]]
    : [BIN, args];
  const proc = spawn(cmd, argv, {
    env: { ...process.env, CONFER_ADMIN_PASSWORD: ADMIN_PASSWORD, CONFER_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', opts.captureStderr ? 'pipe' : 'inherit'],
  });
  let stderr = '';
  if (opts.captureStderr) {
    proc.stderr.on('data', (d) => { stderr += d; process.stderr.write(d); });
  }
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30000;
  for (;;) {
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.ok) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error('server did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  const server = {
    pid: proc.pid,
    get stderr() { return stderr; },
    port,
    base,
    dataDir,
    sockets: [],
    addUser(login, password) {
      const out = execFileSync(BIN, ['user', 'add', login, '--password', password, '--data-dir', dataDir], {
        env: { ...process.env, CONFER_LOG_LEVEL: 'warn' },
      }).toString();
      return out.match(/uin (\d+)/)[1];
    },
    async login(user, password) {
      const r = await fetch(`${base}/api/v1/login`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user, password }),
      });
      return { status: r.status, body: await r.json() };
    },
    // A user with an account, a token and a connected, logged-in socket.
    async user(login, opts = {}) {
      const uin = this.addUser(login, 'pw');
      const { body } = await this.login(login, 'pw');
      const u = { login, uin, token: body.session };
      u.socket = await this.connect(u.token, opts);
      return u;
    },
    // Connect with a token; resolves once `login` says 0.
    async connect(token, opts = {}) {
      const s = io(`${base}/data`, {
        transports: opts.transports || ['websocket'],
        query: opts.noQuery ? {} : { session: token },
        auth: opts.auth,
        reconnection: false,
        forceNew: true,
      });
      this.sockets.push(s);
      const login = await once(s, 'login');
      if (login.result !== 0) throw new Error(`login ${JSON.stringify(login)}`);
      return s;
    },
    connectRaw(query, opts = {}) {
      const s = io(`${base}/data`, { transports: ['websocket'], query, reconnection: false, forceNew: true, ...opts });
      this.sockets.push(s);
      return s;
    },
    // An External API connection logged in as `user`, answering events and pings.
    async extapi(user, password) {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/api/ws`);
      await new Promise((res, rej) => { ws.on('open', res); ws.on('error', rej); });
      const client = { ws, tid: 0, waiting: new Map(), events: [] };
      ws.on('message', (raw) => {
        const m = JSON.parse(raw.toString());
        if (m.result !== undefined) {
          const w = client.waiting.get(m.tid);
          if (w) { client.waiting.delete(m.tid); w(m); }
        } else if (m.cmd === 'event' || m.cmd === 'ping') {
          ws.send(JSON.stringify({ result: 'ok', tid: m.tid }));
          if (m.cmd === 'event') client.events.push(m.data);
        }
      });
      client.call = (cls, subclass, cmd, data) => new Promise((res, rej) => {
        const tid = ++client.tid;
        client.waiting.set(tid, res);
        ws.send(JSON.stringify({ class: cls, subclass, cmd, data, tid }));
        setTimeout(() => rej(new Error(`no answer to ${cmd}`)), WAIT_MS).unref();
      });
      const r = await client.call('core', 'user', 'login', { user, password });
      if (r.result !== 'ok') throw new Error(JSON.stringify(r));
      return client;
    },
    // SIGTERM with the clients still connected; resolves with the exit code.
    async terminate() {
      const exited = new Promise((r) => proc.on('exit', (code) => r(code)));
      proc.kill('SIGTERM');
      return exited;
    },
    async stop() {
      for (const s of this.sockets) s.disconnect();
      proc.kill('SIGTERM');
      await new Promise((r) => proc.on('exit', r));
    },
  };
  return server;
}

export function once(socket, event, pred = () => true, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, handler);
      reject(new Error(`no ${event} within ${ms} ms`));
    }, ms);
    function handler(payload) {
      if (!pred(payload)) return;
      clearTimeout(timer);
      socket.off(event, handler);
      resolve(payload);
    }
    socket.on(event, handler);
  });
}

// Resolves true if `event` does NOT arrive within `ms`.
export function never(socket, event, ms = 400, pred = () => true) {
  return once(socket, event, pred, ms).then(() => false, () => true);
}

export function emit(socket, name, args) {
  return socket.timeout(WAIT_MS).emitWithAck(name, args);
}
