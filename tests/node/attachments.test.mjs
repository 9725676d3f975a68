// Attachments through the Chat API: upload over HTTP, send in a message, members download.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startServer, once, emit } from './harness.mjs';

let server, a, b, e;

before(async () => {
  server = await startServer();
  a = await server.user('alice');
  b = await server.user('bob');
  e = await server.user('eve');
});
after(async () => server.stop());

async function upload(user, name, bytes) {
  const form = new FormData();
  form.append('file', new Blob([bytes]), name);
  const r = await fetch(`${server.base}/api/v1/files`, { method: 'POST', headers: { Authorization: `Bearer ${user.token}` }, body: form });
  return { status: r.status, body: await r.json() };
}

test('an image sent in a chat message is readable by members only', async () => {
  const bytes = Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n\0\0\0\rIHDR', 'binary'), Buffer.alloc(20000, 3)]);
  const up = await upload(a, 'photo.png', bytes);
  assert.equal(up.status, 200);
  assert.equal(up.body.mimetype, 'image/png');
  const addFile = await fetch(`${server.base}/api/v1/attachments`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ token: a.token, method: 'add_file', item_id: up.body.item_id }),
  });
  assert.deepEqual(await addFile.json(), { success: true });

  const g = (await emit(a.socket, 'create_group', { type: 1, occupants_uins: [b.uin] })).group;
  const pushed = once(b.socket, 'message', (m) => m.message.group_id === g.group_id);
  const attachments = JSON.stringify([{ item_id: up.body.item_id, url: up.body.url, mimetype: up.body.mimetype }]);
  const sent = await emit(a.socket, 'create_message', { group_id: g.group_id, type: 2, attactments: attachments });
  assert.equal(sent.result, 0);
  const msg = (await pushed).message;
  assert.equal(msg.type, 2);
  const url = JSON.parse(msg.attachments)[0].url;

  const asBob = await fetch(`${server.base}${url}`, { headers: { Authorization: `Bearer ${b.token}` } });
  assert.equal(asBob.status, 200);
  const got = Buffer.from(await asBob.arrayBuffer());
  assert.equal(createHash('sha256').update(got).digest('hex'), createHash('sha256').update(bytes).digest('hex'));
  const cookie = await fetch(`${server.base}${url}`, { headers: { Cookie: `confer_session=${b.token}` } });
  assert.equal(cookie.status, 200, 'the session cookie works too');
  const asEve = await fetch(`${server.base}${url}`, { headers: { Authorization: `Bearer ${e.token}` } });
  assert.equal(asEve.status, 404);

  const other = await upload(b, 'b.txt', Buffer.from('bob'));
  const forged = await emit(a.socket, 'create_message', { group_id: g.group_id, type: 12, attachments: JSON.stringify([{ item_id: other.body.item_id }]) });
  assert.equal(forged.result, 3, "someone else's upload cannot be sent");
});

test('a message carries each upload\'s url, name, type and size: in its ack, its push and list_message', async () => {
  const bytes = Buffer.from('hello from a text file');
  const up = await upload(a, 'notes v2 #1?.txt', bytes);
  assert.equal(up.status, 200);
  const g = (await emit(a.socket, 'create_group', { type: 2, name: 'files', occupants_uins: [b.uin] })).group;
  const pushed = once(b.socket, 'message', (m) => m.message.group_id === g.group_id);
  const sent = await emit(a.socket, 'create_message', { group_id: g.group_id, type: 12, attachments: JSON.stringify([{ item_id: up.body.item_id }]) });
  assert.equal(sent.result, 0);
  const expected = [{
    item_id: up.body.item_id,
    url: `/files/${up.body.item_id}/notes%20v2%20%231%3F.txt`,
    filename: 'notes v2 #1?.txt',
    mimetype: 'text/plain',
    size: bytes.length,
  }];
  assert.deepEqual(sent.message.files, expected, 'the ack');
  const push = (await pushed).message;
  assert.deepEqual(push.files, expected, 'the push');
  const list = await emit(b.socket, 'list_message', { group_id: g.group_id });
  assert.deepEqual(list.messages[0].files, expected, 'list_message');

  // The url is all the recipient needs.
  const got = await fetch(`${server.base}${push.files[0].url}`, { headers: { Authorization: `Bearer ${b.token}` } });
  assert.equal(got.status, 200);
  assert.deepEqual(Buffer.from(await got.arrayBuffer()), bytes);
});
