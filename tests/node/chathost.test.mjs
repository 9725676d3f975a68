// The hub role (the chathost API) driven from outside Rust: the original edge's sequence
// (the Moodle plugin's `push_messages`) replayed with Node's `fetch`, while the teacher
// reads and answers through the official socket.io-client. The box is registered through
// the admin API; every admin endpoint is called with and without a session; a second
// identical run stores nothing new. (tests/python/test_chathost.py replays it with
// `requests` and python-socketio.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startServer, emit, once, ADMIN_PASSWORD, BIN } from './harness.mjs';

const BOX = 'b8-27-eb-00-11-33';
const TOKEN = '7c1d2e3f-8a9b-4c5d-9e0f-1a2b3c4d5e6f';
const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex');

function person(id, username, email) {
  return { id, username, first_name: username, last_name: '', email, last_accessed: 0, language: 'en' };
}

function roster() {
  const site = { sitename: 'River School', siteadmin_name: 'Ada', siteadmin_email: 'ada@river', siteadmin_phone: '',
    siteadmin_country: 'KE', package: 'moodle', packageStatus: '' };
  return [
    { id: 1, course_name: 'River School', summary: '', created_on: 0, updated_on: 0, students: [], teachers: [], ...site },
    { id: 2, course_name: 'Chemistry', summary: '', created_on: 0, updated_on: 0,
      teachers: [person(3, 'tchem', 'tchem@river.org')],
      students: [person(7, 'zawadi', 'zawadi@river'), person(8, 'omar', 'omar@river')], ...site },
    { id: 3, course_name: 'Geography', summary: '', created_on: 0, updated_on: 0,
      teachers: [person(4, 'tgeo', 'tgeo@river.org')],
      students: [person(7, 'zawadi', 'zawadi@river')], ...site },
  ];
}

function message(id, text, attachment) {
  const m = { id, conversation_id: 11, subject: null, message: text,
    sender: { id: 7, username: 'zawadi', email: 'zawadi@river' },
    recipient: { id: 3, username: 'tchem', email: 'tchem@river.org' },
    attachment: null, created_on: 1700000000 };
  if (attachment) {
    m.attachment = { type: 'photo', id: attachment, filepath: '/', filename: 'flask.png' };
    m.message = `<attachment type="photo" id="${attachment}" filepath="/" filename="flask.png">`;
  }
  return m;
}

// A `fetch` with the box's credential (or `headers` of the caller's).
function boxCall(base, path, init = {}) {
  return fetch(`${base}${path}`, {
    ...init,
    headers: { Authorization: `Bearer ${BOX}|${TOKEN}`, 'x-boxid': BOX, ...(init.headers || {}) },
  });
}

function json(body) {
  return { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
}

// Steps 1-6 of the edge's sequence: (since, uploaded, the answer to POST /messages).
async function pushMessages(base) {
  assert.equal((await fetch(`${base}/healthCheck?boxid=${BOX}`)).status, 200);
  assert.equal((await boxCall(base, '/check')).status, 200);
  const status = await boxCall(base, '/messageStatus');
  const since = await status.text();
  assert.equal(status.status, 200);
  assert.match(since, /^[0-9]+$/);
  assert.equal((await boxCall(base, '/courseRosters', json(roster()))).status, 200);
  let uploaded = 0;
  if ((await boxCall(base, '/attachments/flask-1/exists')).status === 404) {
    const form = new FormData();
    for (const [k, v] of Object.entries({ id: 'flask-1', type: 'photo', filepath: '/', filename: 'flask.png' })) form.append(k, v);
    form.append('file', new Blob([PNG], { type: 'application/octet-stream' }), 'flask.png');
    assert.equal((await boxCall(base, '/attachments', { method: 'POST', body: form })).status, 200);
    uploaded += 1;
  }
  const sent = await boxCall(base, '/messages', json([
    message(201, 'Is this an acid?'), message(202, '', 'flask-1'), message(203, '', 'never-sent'),
  ]));
  return { since: Number(since), uploaded, sent: { status: sent.status, body: await sent.json() } };
}

test('an edge written from the spec syncs with the confer hub; the teacher answers over socket.io', async () => {
  const hub = await startServer({ CONFER_HUB_ROLE: 'true' });
  try {
    const base = `${hub.base}/chathost`;
    // The admin API: 401 without a session, every path.
    const adminPaths = [['GET', '/admin/boxes'], ['GET', `/admin/roster/${BOX}`], ['GET', '/admin/system'],
      ['GET', `/admin/logs/${BOX}`], ['GET', `/admin/settings/${BOX}`], ['POST', `/admin/settings/${BOX}`],
      ['DELETE', `/admin/settings/${BOX}/1`], ['GET', `/admin/security/${BOX}`], ['PUT', `/admin/security/${BOX}/${TOKEN}`],
      ['DELETE', `/admin/security/${BOX}`], ['DELETE', `/admin/boxes/${BOX}`], ['GET', '/auth'], ['GET', '/logout']];
    for (const [method, path] of adminPaths) {
      assert.equal((await fetch(`${base}${path}`, { method })).status, 401, `${method} ${path}`);
    }
    assert.equal((await fetch(`${base}/auth`, json({ username: 'admin', password: 'nope' }))).status, 401);
    const login = await fetch(`${base}/auth`, json({ username: 'admin', password: ADMIN_PASSWORD }));
    assert.equal(login.status, 200);
    assert.deepEqual(await login.json(), { username: 'admin' });
    const cookie = login.headers.get('set-cookie').split(';')[0];
    const admin = (path, init = {}) => fetch(`${base}${path}`, { ...init, headers: { Cookie: cookie, ...(init.headers || {}) } });
    assert.deepEqual(await (await admin('/auth')).json(), { username: 'admin' });
    // Register the box.
    assert.equal((await admin(`/admin/security/${BOX}/${TOKEN}`, { method: 'PUT' })).status, 200);
    assert.equal((await (await admin(`/admin/security/${BOX}`)).json()).currentSecurityKey, `${BOX}|${TOKEN}`);
    assert.ok((await (await admin('/admin/system')).json()).version);

    const first = await pushMessages(base);
    assert.equal(first.since, 1);
    assert.equal(first.uploaded, 1);
    assert.deepEqual(first.sent, { status: 404, body: ['203'] }, 'the message whose attachment never came');
    assert.equal((await boxCall(base, '/attachments/flask-1/exists')).headers.get('content-type'), 'image/png');
    const boxes = await (await admin('/admin/boxes')).json();
    assert.deepEqual(boxes.map((b) => [b.boxid, b.courses, b.teachers, b.students, b.sitename]),
      [[BOX, 2, 2, 2, 'River School']]);
    assert.equal((await (await admin(`/admin/roster/${BOX}`)).json())[2].course_name, 'Geography');

    // The teacher (a hub account made from the roster) gets a password and reads over the
    // Chat API with the official client: the box's messages are there, a new one arrives live.
    execFileSync(BIN, ['user', 'passwd', 'tchem', '--password', 'pw', '--data-dir', hub.dataDir]);
    const { body: session } = await hub.login('tchem', 'pw');
    const teacher = await hub.connect(session.session);
    const { groups } = await emit(teacher, 'list_group', {});
    const privates = groups.filter((g) => g.type === 1);
    assert.equal(privates.length, 2, JSON.stringify(groups)); // zawadi and omar
    const listed = [];
    for (const g of privates) listed.push((await emit(teacher, 'list_message', { group_id: g.group_id })).messages);
    const texts = listed.flat().map((m) => m.message);
    assert.ok(texts.includes('Is this an acid?'), JSON.stringify(texts));
    const withPhoto = listed.flat().filter((m) => JSON.stringify(m).includes('flask.png'));
    assert.equal(withPhoto.length, 1, 'the photo message, once');
    const zawadi = privates[listed.findIndex((msgs) => msgs.some((m) => m.message === 'Is this an acid?'))].group_id;
    const before = listed.flat().length;
    const live = once(teacher, 'message', (p) => p.message && p.message.message === 'Are you there?');
    assert.equal((await boxCall(base, '/messages', json([message(204, 'Are you there?')]))).status, 200);
    await live;

    // The teacher answers; the box gets it once.
    const answer = await emit(teacher, 'create_message', { group_id: zawadi, message: 'Yes, an acid!' });
    assert.equal(answer.result, 0, JSON.stringify(answer));
    const since = await (await boxCall(base, '/messageStatus')).text();
    const batch = await (await boxCall(base, `/messages/${since}`)).json();
    assert.deepEqual(batch.map((m) => [m.message, m.sender.username, m.recipient.username]),
      [['Yes, an acid!', 'tchem', 'zawadi']]);
    assert.deepEqual(await (await boxCall(base, `/messages/${since}`)).json(), [], 'handed out once');

    // Logs of each type (bare strings among them, as old edges send).
    for (const kind of ['moodle', 'content', 'system', 'sync']) {
      const body = kind === 'content'
        ? [{ interactionType: 'view', mediaIdentifier: 'm1', mediaLanguage: 'en', mediaProvider: 'p', mediaType: 'video', timestamp: 1700000000 }]
        : [{ timestamp: 1700000000, log: `${kind} log` }, 'an old bare line'];
      assert.equal((await boxCall(base, `/logs/${kind}`, json(body))).status, 200, kind);
    }
    const logs = await (await admin(`/admin/logs/${BOX}`)).json();
    assert.deepEqual([...new Set(logs.map((l) => l.type))].sort(), ['content', 'moodle', 'sync', 'system']);

    // A queued setting: fetched, applied, confirmed.
    assert.deepEqual(await (await admin(`/admin/settings/${BOX}`, json({ key: 'timezone', value: 'EAT' }))).json(), {});
    const settings = await (await boxCall(base, '/settings')).json();
    const wanted = settings.filter((s) => s.key === 'timezone');
    assert.equal(wanted.length, 1);
    assert.equal(wanted[0].value, 'EAT');
    assert.ok((await (await admin(`/admin/settings/${BOX}`)).json()).every((s) => s.pending === 'Yes'));
    for (const s of settings) assert.equal((await boxCall(base, `/settings/${s.deleteId}`, { method: 'DELETE' })).status, 200);
    assert.equal((await boxCall(base, `/settings/${wanted[0].deleteId}`, { method: 'DELETE' })).status, 404);
    assert.deepEqual(await (await admin(`/admin/settings/${BOX}`)).json(), []);

    // A second identical run stores nothing new.
    const second = await pushMessages(base);
    assert.equal(second.uploaded, 0);
    assert.deepEqual(second.sent, { status: 404, body: ['203'] });
    let after = 0;
    for (const g of privates) after += (await emit(teacher, 'list_message', { group_id: g.group_id })).messages.length;
    assert.equal(after, before + 2, 'the live message and the answer, nothing else');

    // The last admin endpoints: remove the keys (401 from then on), the box, log out.
    assert.equal((await admin(`/admin/security/${BOX}`, { method: 'DELETE' })).status, 200);
    assert.equal((await boxCall(base, '/check')).status, 401);
    assert.equal((await admin(`/admin/boxes/${BOX}`, { method: 'DELETE' })).status, 200);
    assert.deepEqual(await (await admin('/admin/boxes')).json(), []);
    assert.equal((await admin('/logout')).status, 200);
    assert.equal((await admin('/admin/boxes')).status, 401);
  } finally {
    await hub.stop();
  }
});
