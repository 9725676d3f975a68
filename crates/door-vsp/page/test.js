// The conference door's test page (served at /vsp/test, no build step): signs in with
// POST /api/v1/login, opens /vsp/ws, joins a conference, runs the WebRTC handshake
// (CALLME_S1 → servdesc, CALLME_S2 with this browser's offer → servufrag with the
// server's answer), and shows each remote party's video with its name. The offer has one
// sendrecv audio + video pair and `slots - 1` recvonly pairs: the server's fixed receive
// slots (docs/vsp.md); `conf.webrtc.slots` says which party each slot shows.
//
// `window.confer` is the surface the browser tests use: `start(options)`, `state`,
// `getStats()`, `hangup()`, `leave()`.
'use strict';

(() => {
  const WAIT_MS = 20000;
  const state = {
    phase: 'idle',
    error: null,
    uin: null,
    conference: null,
    party: null,
    // PartyID → username, from conf.changed.
    parties: {},
    // From conf.webrtc.slots: [{audio, video, PartyID}], in slot order.
    slots: [],
    // PartyIDs announced by conf.webrtc.Disconnected, in order.
    disconnected: [],
    // The server's media address and ICE ufrag, from servufrag (and this page's ufrag).
    server: null,
    // mid → the ids of the streams its remote track came in (a slot's audio and video
    // share one, so the browser lip-syncs them).
    streams: {},
    // RTCPeerConnections made and offers sent by this page.
    connections: 0,
    offers: 0,
    events: [],
  };
  let ws = null;
  let pc = null;
  let local = null;
  let seq = 0;
  const answers = new Map();
  const inbox = [];
  const waiters = [];
  const el = (id) => document.getElementById(id);

  function note(text) {
    state.events.push(text);
    const li = document.createElement('li');
    li.textContent = text;
    el('log').append(li);
  }

  function setPhase(phase) {
    state.phase = phase;
    el('phase').textContent = phase;
  }

  function command(obj, cmd, params = {}) {
    seq += 1;
    const strings = {};
    for (const [k, v] of Object.entries(params)) strings[k] = String(v);
    ws.send(JSON.stringify({ dst: 'std', lng: 'en', cmd, seq, obj, params: strings }));
    return new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`${obj} ${cmd}: no answer`)), WAIT_MS);
      answers.set(seq, (result) => {
        clearTimeout(timer);
        if (result.code === 0) ok(result);
        else fail(new Error(`${obj} ${cmd}: code ${result.code}: ${result.text || ''}`));
      });
    });
  }

  // The next event (kept since it arrived, if it came already) that matches.
  function nextEvent(obj, evt, evttype) {
    const matches = (e) => e.obj === obj && e.evt === evt && (e.evttype || null) === (evttype || null);
    const i = inbox.findIndex(matches);
    if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0].result);
    return new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`no ${obj}.${evt}.${evttype || ''}`)), WAIT_MS);
      waiters.push({ matches, ok: (e) => { clearTimeout(timer); ok(e.result); } });
    });
  }

  function onFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      note('unreadable frame');
      return;
    }
    if (frame.ANSW) {
      const answer = answers.get(frame.ANSW.seq);
      answers.delete(frame.ANSW.seq);
      if (answer) answer(frame.ANSW.result || {});
      return;
    }
    const e = frame.EVT;
    if (!e) return;
    onEvent(e);
    const w = waiters.findIndex((x) => x.matches(e));
    if (w >= 0) waiters.splice(w, 1)[0].ok(e);
    else if (e.obj !== 'timer') inbox.push(e);
    if (inbox.length > 200) inbox.shift();
  }

  function onEvent(e) {
    const r = e.result || {};
    if (e.obj === 'conf' && e.evt === 'changed') {
      for (const p of [...(r.addParties || []), ...(r.updParties || [])]) state.parties[p.PartyID] = p.username;
      for (const p of r.delParties || []) note(`left: ${p.username} (${p.PartyID})`);
      render();
    } else if (e.obj === 'conf' && e.evt === 'webrtc' && e.evttype === 'Disconnected') {
      state.disconnected.push(r.PartyID);
      note(`conf.webrtc.Disconnected: ${state.parties[r.PartyID] || ''} (${r.PartyID})`);
      if (r.PartyID === state.party) setPhase('disconnected');
      // Its slots show nobody until the server's next conf.webrtc.slots says otherwise.
      for (const slot of state.slots) if (slot.PartyID === r.PartyID) slot.PartyID = null;
      render();
    } else if (e.obj === 'conf' && e.evt === 'webrtc' && e.evttype === 'slots') {
      state.slots = (r.EvtData && r.EvtData.slots) || [];
      note(`slots: ${state.slots.map((s) => s.PartyID ?? '-').join(' ')}`);
      render();
    }
  }

  // The party a receive line (mid) shows, from the last conf.webrtc.slots.
  function partyOfMid(mid) {
    const slot = state.slots.find((s) => s.audio === mid || s.video === mid);
    return slot ? slot.PartyID ?? null : null;
  }

  function transceiverOf(mid) {
    return pc ? pc.getTransceivers().find((t) => t.mid === mid) : undefined;
  }

  // One figure per slot that shows a party still connected: its video (with its audio)
  // and its name; a slot freed or whose party disconnected loses its figure.
  function render() {
    const box = el('remotes');
    const wanted = new Set();
    state.slots.forEach((slot, index) => {
      const party = slot.PartyID;
      if (party == null) return;
      const video = transceiverOf(slot.video);
      const audio = transceiverOf(slot.audio);
      if (!video) return;
      const id = `slot-${index}`;
      wanted.add(id);
      let figure = document.getElementById(id);
      if (!figure) {
        figure = document.createElement('figure');
        figure.id = id;
        const v = document.createElement('video');
        v.autoplay = true;
        v.playsInline = true;
        const caption = document.createElement('figcaption');
        figure.append(v, caption);
        box.append(figure);
      }
      figure.dataset.party = String(party);
      figure.querySelector('figcaption').textContent = state.parties[party] || `party ${party}`;
      const v = figure.querySelector('video');
      const tracks = [video.receiver.track, audio && audio.receiver.track].filter(Boolean);
      if (!v.srcObject || v.srcObject.getTracks().length !== tracks.length) {
        v.srcObject = new MediaStream(tracks);
        v.play().catch(() => {});
      }
    });
    for (const figure of [...box.children]) if (!wanted.has(figure.id)) figure.remove();
  }

  async function login(user, password) {
    const r = await fetch('/api/v1/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user, password }),
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok || !body.session) throw new Error(`login: ${r.status} ${body.error || ''}`);
    return body.session;
  }

  function open() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    return new Promise((ok, fail) => {
      ws = new WebSocket(`${scheme}://${location.host}/vsp/ws`);
      ws.onopen = () => ok();
      ws.onerror = () => fail(new Error('WebSocket failed'));
      ws.onmessage = (m) => onFrame(m.data);
      ws.onclose = (c) => note(`socket closed ${c.code} ${c.reason}`);
    });
  }

  function iceServers(desc) {
    if (desc.username && desc.credential) {
      const urls = desc.urls && desc.urls.length ? desc.urls : [desc.serveraddr];
      return [{ urls, username: desc.username, credential: desc.credential }];
    }
    return desc.serveraddr ? [{ urls: [desc.serveraddr] }] : [];
  }

  // Options: user, password, conference (absent: create one), name, slots (receive slots,
  // default 4), relay (iceTransportPolicy 'relay'). Resolves with the conference ID.
  async function start(options) {
    try {
      const slots = Math.max(1, Math.min(16, Number(options.slots) || 4));
      setPhase('signing in');
      const token = await login(options.user, options.password);
      await open();
      const me = await command('nd', 'login', { token });
      state.uin = me.uin;
      let id = options.conference;
      if (!id) id = (await command('cd', 'create', { name: options.name || 'Test call' })).ID;
      state.conference = Number(id);
      const joined = await command('conf', 'join', { ID: id });
      state.party = joined.PartyID;
      setPhase('joined');
      local = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
      el('local').srcObject = local;
      await command('conf', 'CALLME_S1', { ID: id });
      const desc = (await nextEvent('conf', 'webrtc', 'servdesc')).EvtData || {};
      pc = new RTCPeerConnection({
        iceServers: iceServers(desc),
        iceTransportPolicy: options.relay ? 'relay' : 'all',
        bundlePolicy: 'max-bundle',
        rtcpMuxPolicy: 'require',
      });
      state.connections += 1;
      pc.onconnectionstatechange = () => {
        note(`connection: ${pc.connectionState}`);
        if (pc.connectionState === 'connected') setPhase('connected');
        if (pc.connectionState === 'failed') setPhase('failed');
      };
      pc.ontrack = (e) => {
        state.streams[e.transceiver.mid] = e.streams.map((m) => m.id);
        render();
      };
      for (const track of local.getTracks()) pc.addTransceiver(track, { direction: 'sendrecv', streams: [local] });
      for (let i = 1; i < slots; i += 1) {
        pc.addTransceiver('audio', { direction: 'recvonly' });
        pc.addTransceiver('video', { direction: 'recvonly' });
      }
      await pc.setLocalDescription(await pc.createOffer());
      state.offers += 1;
      await command('conf', 'CALLME_S2', { ID: id, sdp: pc.localDescription.sdp });
      const answer = (await nextEvent('conf', 'webrtc', 'servufrag')).EvtData || {};
      const own = /a=ice-ufrag:(\S+)/.exec(pc.localDescription.sdp);
      state.server = { ip: answer.ip, port: answer.port, ufrag: answer.ufrag, client_ufrag: own ? own[1] : null };
      await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
      setPhase('connecting');
      el('hangup').disabled = false;
      el('leave').disabled = false;
      render();
      return state.conference;
    } catch (e) {
      state.error = String(e && e.message ? e.message : e);
      setPhase('error');
      note(`error: ${state.error}`);
      throw e;
    }
  }

  function stopMedia() {
    if (pc) pc.close();
    if (local) for (const t of local.getTracks()) t.stop();
    el('hangup').disabled = true;
  }

  async function hangup() {
    await command('conf', 'hangup', { ID: state.conference });
    stopMedia();
    setPhase('hung up');
  }

  async function leave() {
    await command('conf', 'leave', { ID: state.conference });
    stopMedia();
    el('leave').disabled = true;
    setPhase('left');
  }

  // What the tests check, from the RTCPeerConnection's own statistics: every inbound
  // stream (with the party its line shows), every candidate pair (which is selected, its
  // local and remote candidate) and every remote candidate.
  async function getStats() {
    if (!pc) return { inbound: [], pairs: [], remotes: [], server: state.server };
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    const selected = new Set();
    for (const s of byId.values()) if (s.type === 'transport' && s.selectedCandidatePairId) selected.add(s.selectedCandidatePairId);
    const inbound = [];
    const pairs = [];
    const remotes = [];
    for (const s of byId.values()) {
      if (s.type === 'inbound-rtp') {
        let mid = s.mid;
        if (mid == null) {
          const t = pc.getTransceivers().find((x) => x.receiver.track && x.receiver.track.id === s.trackIdentifier);
          mid = t ? t.mid : null;
        }
        const t = transceiverOf(mid);
        inbound.push({
          kind: s.kind,
          mid,
          party: partyOfMid(mid),
          ssrc: s.ssrc,
          packetsReceived: s.packetsReceived || 0,
          packetsLost: s.packetsLost || 0,
          framesDecoded: s.framesDecoded || 0,
          trackState: t && t.receiver.track ? t.receiver.track.readyState : null,
          trackMuted: t && t.receiver.track ? t.receiver.track.muted : null,
        });
      } else if (s.type === 'candidate-pair') {
        const l = byId.get(s.localCandidateId) || {};
        const r = byId.get(s.remoteCandidateId) || {};
        pairs.push({
          state: s.state,
          nominated: !!s.nominated,
          selected: selected.has(s.id),
          bytesReceived: s.bytesReceived || 0,
          local: { type: l.candidateType, address: l.address, port: l.port, relayProtocol: l.relayProtocol },
          remote: { type: r.candidateType, address: r.address, port: r.port },
        });
      } else if (s.type === 'remote-candidate') {
        remotes.push({ type: s.candidateType, address: s.address, port: s.port });
      }
    }
    return { inbound, pairs, remotes, server: state.server };
  }

  window.confer = { state, start, getStats, hangup, leave, peerConnection: () => pc };

  document.addEventListener('DOMContentLoaded', () => {
    el('join').addEventListener('submit', (e) => {
      e.preventDefault();
      const f = new FormData(e.target);
      start({
        user: f.get('user'),
        password: f.get('password'),
        conference: f.get('conference') || undefined,
        slots: f.get('slots'),
        relay: f.get('relay') === 'on',
      }).catch(() => {});
    });
    el('hangup').addEventListener('click', () => hangup().catch((e) => note(String(e))));
    el('leave').addEventListener('click', () => leave().catch((e) => note(String(e))));
  });
})();
