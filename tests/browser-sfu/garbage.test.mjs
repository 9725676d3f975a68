// Malformed datagrams at the media port while a browser call runs: random bytes,
// truncated STUN, a STUN binding request with the right ufrags and a wrong password, and
// DTLS garbage. Each kind is dropped and counted on /metrics, the server keeps running,
// and the call keeps flowing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import zlib from 'node:zlib';
import { startServer, launch, openPage, join, pageState, stats, receivesFrom, eventually } from './harness.mjs';

const DROPPED = 'confer_media_datagrams_dropped_total';
let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launch();
  for (const u of ['ann', 'ben']) server.addUser(`${u}@example.com`, 'pw');
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

function attribute(type, value) {
  const padded = Buffer.alloc(4 + Math.ceil(value.length / 4) * 4);
  padded.writeUInt16BE(type, 0);
  padded.writeUInt16BE(value.length, 2);
  value.copy(padded, 4);
  return padded;
}

// A binding request as a browser's, USERNAME `server:client`, but its MESSAGE-INTEGRITY
// made with a password nobody has, then a valid FINGERPRINT.
function stunWithWrongPassword(username) {
  const header = Buffer.alloc(20);
  header.writeUInt16BE(0x0001, 0);
  header.writeUInt32BE(0x2112a442, 4);
  randomBytes(12).copy(header, 8);
  const user = attribute(0x0006, Buffer.from(username));
  const integrity = attribute(0x0008, randomBytes(20));
  let body = Buffer.concat([user, integrity]);
  header.writeUInt16BE(body.length + 8, 2);
  const crc = (zlib.crc32(Buffer.concat([header, body])) ^ 0x5354554e) >>> 0;
  const fingerprint = Buffer.alloc(4);
  fingerprint.writeUInt32BE(crc, 0);
  body = Buffer.concat([body, attribute(0x8028, fingerprint)]);
  return Buffer.concat([header, body]);
}

function send(socket, port, datagrams) {
  return Promise.all(datagrams.map((d) => new Promise((ok, fail) => socket.send(d, port, '127.0.0.1', (e) => (e ? fail(e) : ok())))));
}

test('malformed datagrams are dropped and counted while the call keeps flowing', async () => {
  const pages = [await openPage(browser, server.base), await openPage(browser, server.base)];
  const id = await join(pages[0], { user: 'ann@example.com', password: 'pw' });
  await join(pages[1], { user: 'ben@example.com', password: 'pw', conference: id });
  const ben = (await pageState(pages[1])).party;
  const ann = (await pageState(pages[0])).party;
  await eventually('ann receives ben', (why) => receivesFrom(pages[0], [ben], why));
  await eventually('ben receives ann', (why) => receivesFrom(pages[1], [ann], why));

  const { server: media } = await pageState(pages[0]);
  const truncated = stunWithWrongPassword(`${media.ufrag}:${media.client_ufrag}`);
  const kinds = {
    'random bytes': () => Buffer.concat([Buffer.from([0x80 | (randomBytes(1)[0] & 0x3f)]), randomBytes(200)]),
    'truncated STUN': () => truncated.subarray(0, 4 + (randomBytes(1)[0] % 40)),
    'STUN with a wrong password': () => stunWithWrongPassword(`${media.ufrag}:${media.client_ufrag}`),
    'DTLS garbage': () => Buffer.concat([Buffer.from([22, 0xfe, 0xfd]), randomBytes(100)]),
  };
  const socket = dgram.createSocket('udp4');
  try {
    for (const [kind, make] of Object.entries(kinds)) {
      const dropped = await server.metric(DROPPED);
      await send(socket, media.port, Array.from({ length: 50 }, make));
      await eventually(`${kind} counted as dropped`, async (why) => {
        why.dropped = await server.metric(DROPPED);
        return why.dropped >= dropped + 50;
      });
    }
  } finally {
    socket.close();
  }
  assert.ok(server.alive(), 'the server is still running');
  assert.ok((await fetch(`${server.base}/healthz`)).ok);
  // The call flows on: each page decodes 30 more frames and gets 50 more audio packets.
  for (const [page, other] of [[pages[0], ben], [pages[1], ann]]) {
    const before = await stats(page);
    const video = before.inbound.find((i) => i.party === other && i.kind === 'video').framesDecoded;
    const audio = before.inbound.find((i) => i.party === other && i.kind === 'audio').packetsReceived;
    await eventually('media keeps flowing', async (why) => {
      const now = await stats(page);
      why.video = now.inbound.find((i) => i.party === other && i.kind === 'video').framesDecoded;
      why.audio = now.inbound.find((i) => i.party === other && i.kind === 'audio').packetsReceived;
      return why.video > video + 30 && why.audio > audio + 50;
    });
    const s = await pageState(page);
    assert.equal(s.phase, 'connected');
  }
});
