"""The conference door (`/vsp/ws`, the Pallada protocol) driven by Python `websockets`
against the real `confer` binary: every command, event and result code of docs/vsp.md.

CONFER_BIN names the binary (scripts/test builds it)."""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import tempfile
import time

import pytest
import websockets

from test_extapi import BIN, Server, add_user, http_login

WAIT = 10

# Result codes (docs/vsp.md).
OK, NOT_LOGGED_IN, BAD_PARAMS, UNKNOWN_COMMAND, NOT_FOUND, FORBIDDEN, INVALID_STATE = 0, 1, 2, 3, 4, 5, 6
TOO_LARGE, RATE_LIMITED, INTERNAL, BAD_FRAME, MEDIA_UNAVAILABLE, LOGIN_FAILED = 7, 8, 9, 10, 11, 12


class Vsp:
    """A minimal Pallada client: commands with a `seq`, events kept until asked for."""

    def __init__(self, ws):
        self.ws = ws
        self.seq = 0
        self.events = []

    @classmethod
    async def connect(cls, server):
        ws = await websockets.connect(f"ws://127.0.0.1:{server.port}/vsp/ws", max_size=None)
        return cls(ws)

    async def raw(self, text):
        await self.ws.send(text)

    async def call(self, obj, cmd, **params):
        self.seq += 1
        await self.ws.send(json.dumps({"dst": "std", "lng": "en", "cmd": cmd, "seq": self.seq,
                                       "obj": obj, "params": params}))
        return await self.answer(self.seq)

    async def answer(self, seq):
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT))
            if "ANSW" in msg and msg["ANSW"]["seq"] == seq:
                return msg["ANSW"]
            if "EVT" in msg:
                self.events.append(msg["EVT"])

    async def event(self, obj, evt, evttype=None, where=lambda r: True):
        while True:
            for e in self.events:
                if (e["obj"], e["evt"], e.get("evttype")) == (obj, evt, evttype) and where(e["result"]):
                    self.events.remove(e)
                    return e["result"]
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT))
            if "EVT" in msg:
                self.events.append(msg["EVT"])

    def pending(self, obj, evt, evttype=None):
        return [e for e in self.events if (e["obj"], e["evt"], e.get("evttype")) == (obj, evt, evttype)]

    async def login(self, server, user, password):
        token = http_login(server, user, password)["session"]
        answer = await self.call("nd", "login", token=token)
        assert answer["result"]["code"] == OK, answer
        return answer["result"]

    async def close(self):
        await self.ws.close()


def add_named_user(data_dir, login, password, name):
    subprocess.run([BIN, "user", "add", login, "--password", password, "--name", name,
                    "--data-dir", data_dir], check=True, capture_output=True)


def changed_with(field, name):
    return lambda r: any(p["username"] == name for p in r.get(field, []))


@pytest.fixture
def data_dir():
    with tempfile.TemporaryDirectory() as d:
        yield os.path.join(d, "data")


def run(coro):
    asyncio.run(coro)


def test_two_users_see_each_other_join_change_state_chat_and_leave(data_dir):
    add_user(data_dir, "ann@example.com", "pw")
    add_named_user(data_dir, "ben@example.com", "pw2", "Ben")
    server = Server(data_dir)

    async def scenario():
        ann = await Vsp.connect(server)
        me = await ann.login(server, "ann@example.com", "pw")
        assert me["username"] == "ann@example.com" and isinstance(me["uin"], int)
        ben = await Vsp.connect(server)
        # A password login works too.
        b = await ben.call("nd", "login", user="ben@example.com", password="pw2")
        assert b["result"] == {"code": 0, "uin": b["result"]["uin"], "username": "Ben"}, b

        created = await ann.call("cd", "create", name="Weekly")
        assert created["result"]["code"] == OK
        cid = created["result"]["ID"]
        listed = await ann.call("cd", "list")
        assert {"ID": cid, "name": "Weekly", "owner": me["uin"], "parties": 0} in listed["result"]["confs"]

        joined = await ann.call("conf", "join", ID=str(cid))
        assert joined == {"cmd": "join", "seq": joined["seq"], "obj": "conf",
                          "result": {"code": 0, "PartyID": joined["result"]["PartyID"]}}
        ann_party = joined["result"]["PartyID"]
        first = await ann.event("conf", "changed", where=lambda r: "confdata" in r)
        assert first["ClusterID"] == 1 and first["ID"] == cid
        assert first["confdata"]["name"] == "Weekly" and first["confdata"]["owner"] == me["uin"]
        assert first["confdata"]["state"] == 1 and first["confdata"]["parties"] == 1
        assert [p["PartyID"] for p in first["addParties"]] == [ann_party]
        assert first["addParties"][0]["State"] == 1 and first["addParties"][0]["bMicOn"] is False

        bj = await ben.call("conf", "join", ID=str(cid))
        ben_party = bj["result"]["PartyID"]
        full = await ben.event("conf", "changed", where=lambda r: "confdata" in r)
        assert sorted(p["username"] for p in full["addParties"]) == ["Ben", "ann@example.com"]
        seen = await ann.event("conf", "changed", where=changed_with("addParties", "Ben"))
        assert seen["addParties"][0]["PartyID"] == ben_party

        st = await ben.call("conf", "state", ID=str(cid), bMicOn="1", bHandUp="1")
        assert st["result"] == {"code": 0}
        for who in (ann, ben):
            upd = await who.event("conf", "changed", where=changed_with("updParties", "Ben"))
            party = upd["updParties"][0]
            assert (party["bMicOn"], party["bCamOn"], party["bHandUp"]) == (True, False, True)

        said = await ann.call("conf", "instantmsg", ID=str(cid), msg="hello all")
        assert said["result"] == {"code": 0}
        for who in (ann, ben):
            line = await who.event("conf", "instantmsg")
            assert line["ClusterID"] == 1 and line["ID"] == cid
            assert line["username"] == "ann@example.com" and line["msg"] == "hello all"
            assert isinstance(line["color"], int) and abs(line["time"] - time.time()) < 3600
        # Colours are stable per user.
        await ben.call("conf", "instantmsg", ID=str(cid), msg="hi")
        again = await ann.call("conf", "instantmsg", ID=str(cid), msg="again")
        assert again["result"]["code"] == OK
        ben_line = await ann.event("conf", "instantmsg", where=lambda r: r["msg"] == "hi")
        ann_line = await ann.event("conf", "instantmsg", where=lambda r: r["msg"] == "again")
        assert ben_line["username"] == "Ben"
        assert ann_line["color"] == line["color"]

        info = await ben.call("cd", "info", ID=str(cid))
        assert info["result"]["confdata"]["parties"] == 2
        assert {p["PartyID"] for p in info["result"]["parties"]} == {ann_party, ben_party}

        left = await ben.call("conf", "leave", ID=str(cid))
        assert left["result"] == {"code": 0}
        gone = await ann.event("conf", "changed", where=changed_with("delParties", "Ben"))
        assert gone["delParties"][0]["PartyID"] == ben_party

        # A disconnect is a leave too.
        await ben.call("conf", "join", ID=str(cid))
        await ann.event("conf", "changed", where=changed_with("addParties", "Ben"))
        await ben.close()
        await ann.event("conf", "changed", where=changed_with("delParties", "Ben"))

        # The timer ticks, in seconds.
        tick = await ann.event("timer", "time")
        assert isinstance(tick["t"], int) and abs(tick["t"] - time.time()) < 3600

        bye = await ann.call("nd", "logout")
        assert bye["result"] == {"code": 0}
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ann.ws.recv(), WAIT)
            while True:
                await asyncio.wait_for(ann.ws.recv(), WAIT)
        assert closed.value.rcvd.code == 1000

    try:
        run(scenario())
    finally:
        server.stop()


def test_bad_input_is_answered_with_its_code_and_changes_nothing(data_dir):
    add_user(data_dir, "ann@example.com", "pw")
    add_user(data_dir, "ben@example.com", "pw")
    server = Server(data_dir)

    async def scenario():
        ann = await Vsp.connect(server)

        # Undecodable frames are answered with seq 0.
        await ann.raw("not json")
        assert (await ann.answer(0))["result"]["code"] == BAD_FRAME
        await ann.raw("[1, 2]")
        bad = await ann.answer(0)
        assert bad["result"]["code"] == BAD_FRAME and bad["result"]["text"]
        await ann.raw(json.dumps({"seq": 7, "obj": "cd", "params": {}}))
        assert (await ann.answer(7))["result"]["code"] == BAD_FRAME
        await ann.raw(json.dumps({"seq": 8, "cmd": 5, "obj": "cd"}))
        assert (await ann.answer(8))["result"]["code"] == BAD_FRAME
        await ann.raw(json.dumps({"seq": 9, "cmd": "list"}))
        assert (await ann.answer(9))["result"]["code"] == BAD_FRAME
        await ann.raw(json.dumps({"seq": 10, "cmd": "join", "obj": "conf", "params": {"ID": 1}}))
        non_string = await ann.answer(10)
        assert non_string["result"]["code"] == BAD_PARAMS and "string" in non_string["result"]["text"]

        unknown = await ann.call("conf", "fly")
        assert unknown["result"]["code"] == UNKNOWN_COMMAND and unknown["result"]["text"]
        before = await ann.call("cd", "list")
        assert before["result"]["code"] == NOT_LOGGED_IN
        wrong = await ann.call("nd", "login", user="ann@example.com", password="nope")
        assert wrong["result"]["code"] == LOGIN_FAILED
        forged = await ann.call("nd", "login", token="x" * 43)
        assert forged["result"]["code"] == LOGIN_FAILED
        no_creds = await ann.call("nd", "login", user="ann@example.com")
        assert no_creds["result"]["code"] == BAD_PARAMS

        me = await ann.login(server, "ann@example.com", "pw")
        again = await ann.call("nd", "login", user="ann@example.com", password="pw")
        assert again["result"]["code"] == INVALID_STATE
        assert (await ann.call("cd", "create"))["result"]["code"] == BAD_PARAMS
        assert (await ann.call("cd", "info", ID="abc"))["result"]["code"] == BAD_PARAMS
        assert (await ann.call("cd", "info", ID="999999"))["result"]["code"] == NOT_FOUND
        assert (await ann.call("conf", "join", ID="999999"))["result"]["code"] == NOT_FOUND
        assert (await ann.call("conf", "state", ID="1", bMicOn="yes"))["result"]["code"] == BAD_PARAMS
        assert (await ann.call("conf", "state", ID="1"))["result"]["code"] == BAD_PARAMS

        # Another user's conference that ann never joined is not visible to her.
        ben = await Vsp.connect(server)
        await ben.login(server, "ben@example.com", "pw")
        theirs = (await ben.call("cd", "create", name="Ben's"))["result"]["ID"]
        await ben.call("conf", "join", ID=str(theirs))
        for cmd, params in [("info", {}), ]:
            assert (await ann.call("cd", cmd, ID=str(theirs), **params))["result"]["code"] == NOT_FOUND
        for cmd, params in [("leave", {}), ("instantmsg", {"msg": "x"}), ("state", {"bMicOn": "1"}),
                            ("CALLME_S1", {}), ("kick", {"PartyID": "1"}), ("mute", {"PartyID": "1"}),
                            ("end", {})]:
            answer = await ann.call("conf", cmd, ID=str(theirs), **params)
            assert answer["result"]["code"] == NOT_FOUND, (cmd, answer)
        mine = (await ann.call("cd", "create", name="Ann's"))["result"]["ID"]
        # Not joined yet: invalid state.
        assert (await ann.call("conf", "CALLME_S1", ID=str(mine)))["result"]["code"] == INVALID_STATE
        assert (await ann.call("conf", "leave", ID=str(mine)))["result"]["code"] == INVALID_STATE
        await ann.call("conf", "join", ID=str(mine))
        assert (await ann.call("conf", "join", ID=str(mine)))["result"]["code"] == INVALID_STATE
        # A party id that is not in the conference.
        assert (await ann.call("conf", "kick", ID=str(mine), PartyID="424242"))["result"]["code"] == BAD_PARAMS
        # Media is not available yet on this server.
        s2 = await ann.call("conf", "CALLME_S2", ID=str(mine), sdp="v=0")
        assert s2["result"]["code"] == MEDIA_UNAVAILABLE and s2["result"]["text"]
        assert (await ann.call("conf", "hangup", ID=str(mine)))["result"]["code"] == MEDIA_UNAVAILABLE
        assert (await ann.call("conf", "CALLME_S2", ID=str(mine)))["result"]["code"] == BAD_PARAMS
        # Blank and oversize lines are refused, nothing stored.
        assert (await ann.call("conf", "instantmsg", ID=str(mine), msg="  "))["result"]["code"] == BAD_PARAMS
        assert (await ann.call("conf", "instantmsg", ID=str(mine), msg="x" * 70_000))["result"]["code"] == TOO_LARGE
        assert ann.pending("conf", "instantmsg") == []

        # seq 0: no answer to a success; the connection is still open and working.
        await ann.raw(json.dumps({"cmd": "list", "seq": 0, "obj": "cd", "params": {}}))
        listed = await ann.call("cd", "list")
        assert sorted(c["ID"] for c in listed["result"]["confs"]) == [mine]
        assert me["uin"]

        # A frame over max_frame_bytes closes with 1009.
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ann.ws.send("x" * (1 << 20 + 1))
            while True:
                await asyncio.wait_for(ann.ws.recv(), WAIT)
        assert closed.value.rcvd.code == 1009
        await ben.close()

    try:
        run(scenario())
    finally:
        server.stop()


def test_only_the_owner_kicks_mutes_and_ends(data_dir):
    add_user(data_dir, "ann@example.com", "pw")
    add_named_user(data_dir, "ben@example.com", "pw", "Ben")
    server = Server(data_dir)

    async def scenario():
        ann, ben = await Vsp.connect(server), await Vsp.connect(server)
        await ann.login(server, "ann@example.com", "pw")
        await ben.login(server, "ben@example.com", "pw")
        cid = str((await ann.call("cd", "create", name="Owned"))["result"]["ID"])
        ann_party = (await ann.call("conf", "join", ID=cid))["result"]["PartyID"]
        ben_party = (await ben.call("conf", "join", ID=cid))["result"]["PartyID"]
        await ben.call("conf", "state", ID=cid, bMicOn="1")
        await ann.event("conf", "changed", where=lambda r: any(p["bMicOn"] for p in r.get("updParties", [])))

        for cmd in ("kick", "mute"):
            refused = await ben.call("conf", cmd, ID=cid, PartyID=str(ann_party))
            assert refused["result"]["code"] == FORBIDDEN, refused
        assert (await ben.call("conf", "end", ID=cid))["result"]["code"] == FORBIDDEN

        assert (await ann.call("conf", "mute", ID=cid, PartyID=str(ben_party)))["result"]["code"] == OK
        for who in (ann, ben):
            muted = await who.event("conf", "changed", where=lambda r: any(
                p["PartyID"] == ben_party and not p["bMicOn"] for p in r.get("updParties", [])))
            assert muted["ID"] == int(cid)

        assert (await ann.call("conf", "kick", ID=cid, PartyID=str(ben_party)))["result"]["code"] == OK
        for who in (ann, ben):
            await who.event("conf", "changed", where=changed_with("delParties", "Ben"))
        # Out of the room: ben's state changes are refused, he may join again.
        assert (await ben.call("conf", "state", ID=cid, bCamOn="1"))["result"]["code"] == INVALID_STATE
        ben_party = (await ben.call("conf", "join", ID=cid))["result"]["PartyID"]
        await ann.event("conf", "changed", where=changed_with("addParties", "Ben"))

        assert (await ann.call("conf", "end", ID=cid))["result"]["code"] == OK
        for who in (ann, ben):
            ended = await who.event("conf", "changed", where=lambda r: r.get("confdata", {}).get("state") == 2)
            assert {p["PartyID"] for p in ended["delParties"]} == {ann_party, ben_party}
        assert (await ben.call("conf", "join", ID=cid))["result"]["code"] == INVALID_STATE
        assert (await ann.call("cd", "list"))["result"]["confs"] == []

    try:
        run(scenario())
    finally:
        server.stop()


def turn_config(tmp, secret=None, ttl=86_400):
    path = os.path.join(tmp, "confer.toml")
    with open(path, "w") as f:
        f.write('stun_url = "stun:127.0.0.1:3478"\n')
        f.write('turn_urls = "turn:127.0.0.1:3478?transport=udp,turn:127.0.0.1:3478?transport=tcp"\n')
        f.write(f"turn_ttl_secs = {ttl}\ncluster_id = 7\nvsp_timer_interval_ms = 100\n")
        if secret:
            f.write(f'turn_secret = "{secret}"\n')
    return path


def configured_server(data_dir, config):
    from test_extapi import free_port
    port = free_port()
    return Server(data_dir, port=port, args=["--listen", f"127.0.0.1:{port}", "--data-dir", data_dir,
                                             "--config", config])


@pytest.mark.parametrize("secret", [None, "py-turn-secret"])
def test_callme_s1_hands_out_turn_rest_api_credentials(data_dir, secret):
    add_user(data_dir, "ann@example.com", "pw")
    with tempfile.TemporaryDirectory() as tmp:
        server = configured_server(data_dir, turn_config(tmp, secret, ttl=600))

        async def scenario():
            ann = await Vsp.connect(server)
            me = await ann.login(server, "ann@example.com", "pw")
            cid = (await ann.call("cd", "create", name="Call"))["result"]["ID"]
            party = (await ann.call("conf", "join", ID=str(cid)))["result"]["PartyID"]
            s1 = await ann.call("conf", "CALLME_S1", ID=str(cid))
            assert s1["result"] == {"code": 0}
            desc = await ann.event("conf", "webrtc", "servdesc")
            assert (desc["ClusterID"], desc["ID"], desc["PartyID"]) == (7, cid, party)
            data = desc["EvtData"]
            if secret is None:
                assert data == {"serveraddr": "stun:127.0.0.1:3478"}
                return
            assert data["serveraddr"] == "turn:127.0.0.1:3478?transport=udp"
            expiry, uin = data["username"].split(":")
            assert int(uin) == me["uin"]
            assert 0 < int(expiry) - time.time() <= 600 + 5
            expected = base64.b64encode(hmac.new(secret.encode(), data["username"].encode(),
                                                 hashlib.sha1).digest()).decode()
            assert data["credential"] == expected
            # The configured interval drives the timer.
            await ann.event("timer", "time")
            await ann.event("timer", "time")

        try:
            run(scenario())
        finally:
            server.stop()


def test_lines_joins_and_leaves_cross_the_external_api_each_exactly_once(data_dir):
    from test_extapi import Client
    add_user(data_dir, "ann@example.com", "pw")
    add_user(data_dir, "ext@example.com", "pw")
    server = Server(data_dir)

    async def scenario():
        ann = await Vsp.connect(server)
        await ann.login(server, "ann@example.com", "pw")
        cid = (await ann.call("cd", "create", name="Bridge"))["result"]["ID"]
        ann_party = (await ann.call("conf", "join", ID=str(cid)))["result"]["PartyID"]

        async with websockets.connect(f"ws://127.0.0.1:{server.port}/api/ws") as ws:
            ext = Client(ws)
            login = await ext.call("core", "user", "login", {"user": "ext@example.com", "password": "pw"})
            assert login["result"] == "ok", login
            # An External API join shows here; the conference is the same conversation.
            joined = await ext.call("media", "conf", "join", {"conf_id": str(cid)})
            assert joined["result"] == "ok", joined
            seen = await ann.event("conf", "changed", where=changed_with("addParties", "ext@example.com"))
            assert seen["ID"] == cid

            # A line sent here arrives there as msglog_new_msg, once.
            await ann.call("conf", "instantmsg", ID=str(cid), msg="from pallada")
            new = await ext.event("msglog_new_msg")
            assert new["obj_id"] and new["body"]["message"] == "from pallada"
            assert new["body"]["user_id"] == "ann@example.com"

            # A line sent there arrives here as conf.instantmsg, once.
            sent = await ext.call("media", "conf", "msglog_send", {"conf_id": str(cid), "msg": {"text": "from ext"}})
            assert sent["result"] == "ok", sent
            line = await ann.event("conf", "instantmsg", where=lambda r: r["msg"] == "from ext")
            assert line["username"] == "ext@example.com" and line["ID"] == cid

            # Both lines are in the stored log, in order.
            log = await ext.call("media", "conf", "msglog_get", {"conf_id": str(cid)})
            assert [m.get("message", m.get("text")) for m in log["data"]] == ["from pallada", "from ext"]

            # State changes show there too (as updated_member), and leaves here.
            await ann.call("conf", "state", ID=str(cid), bCamOn="1")
            upd = await ext.event("updated_member")
            assert upd["body"]["user_id"] == "ann@example.com"

            left = await ext.call("media", "conf", "leave", {"conf_id": str(cid)})
            assert left["result"] == "ok", left
            gone = await ann.event("conf", "changed", where=changed_with("delParties", "ext@example.com"))
            assert gone["ID"] == cid
            # Each line arrived once.
            assert [e["result"]["msg"] for e in ann.events if e["evt"] == "instantmsg"] == ["from pallada"]
            assert [e for e in ext.events if e.get("type") == "msglog_new_msg"
                    and e["body"].get("message") == "from pallada"] == []
            assert ann_party

    try:
        run(scenario())
    finally:
        server.stop()


def test_a_join_here_is_a_started_member_there(data_dir):
    from test_extapi import Client
    add_user(data_dir, "ann@example.com", "pw")
    add_user(data_dir, "ext@example.com", "pw")
    server = Server(data_dir)

    async def scenario():
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/api/ws") as ws:
            ext = Client(ws)
            await ext.call("core", "user", "login", {"user": "ext@example.com", "password": "pw"})
            created = await ext.call("media", "conf", "create", {"class": "sfu"})
            conf_id = created["data"]["conf_id"]
            await ext.call("media", "conf", "join", {"conf_id": conf_id})
            info = await ext.call("media", "conf", "get_info", {"conf_id": conf_id})
            assert info["result"] == "ok"

            # Ann occupies it through the External API; her conference list here then
            # shows it, with its ID (its group_id).
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/api/ws") as ws2:
                ann_ext = Client(ws2)
                await ann_ext.call("core", "user", "login", {"user": "ann@example.com", "password": "pw"})
                assert (await ann_ext.call("media", "conf", "join", {"conf_id": conf_id}))["result"] == "ok"
                await ext.event("started_member")
                ann = await Vsp.connect(server)
                await ann.login(server, "ann@example.com", "pw")
                confs = (await ann.call("cd", "list"))["result"]["confs"]
                assert len(confs) == 1 and confs[0]["parties"] == 2
                gid = confs[0]["ID"]
                joined = await ann.call("conf", "join", ID=str(gid))
                assert joined["result"]["code"] == OK, joined
                full = await ann.event("conf", "changed", where=lambda r: "confdata" in r)
                assert sorted(p["login"] for p in full["addParties"]) == [
                    "ann@example.com", "ann@example.com", "ext@example.com"]
            started = await ext.event("started_member")
            assert started["obj_id"] == conf_id and started["body"]["user_id"] == "ann@example.com"
            await ann.close()
            stopped = await ext.event("stopped_member")
            assert stopped["body"]["user_id"] == "ann@example.com"

    try:
        run(scenario())
    finally:
        server.stop()


def test_chat_api_lines_arrive_here_and_lines_here_arrive_there_once_and_calls_get_ice_servers(data_dir):
    import queue

    import socketio
    add_user(data_dir, "ann", "pw")
    add_named_user(data_dir, "ben", "pw", "Ben")
    with tempfile.TemporaryDirectory() as tmp:
        server = configured_server(data_dir, turn_config(tmp, "chat-secret", ttl=300))

        async def scenario():
            chat = socketio.Client(reconnection=False)
            logins, messages = queue.Queue(), queue.Queue()
            chat.on("login", logins.put, namespace="/data")
            chat.on("message", messages.put, namespace="/data")
            chat.connect(f"http://127.0.0.1:{server.port}", namespaces=["/data"], transports=["websocket"],
                         auth={"session": http_login(server, "ann", "pw")["session"]}, wait_timeout=WAIT)
            ann_uin = logins.get(timeout=WAIT)["uin"]
            ben = await Vsp.connect(server)
            me = await ben.login(server, "ben", "pw")
            try:
                created = chat.call("create_group", {"type": 2, "name": "Team", "occupants_uins": [str(me["uin"])]},
                                    namespace="/data", timeout=WAIT)
                assert created["result"] == 0, created
                gid = int(created["group"]["group_id"])
                # A chat group of his shows in ben's list and is entered as a conference.
                confs = (await ben.call("cd", "list"))["result"]["confs"]
                assert [(c["ID"], c["name"]) for c in confs] == [(gid, "Team")]
                assert (await ben.call("conf", "join", ID=str(gid)))["result"]["code"] == OK

                sent = chat.call("create_message", {"group_id": str(gid), "message": "from chat"},
                                 namespace="/data", timeout=WAIT)
                assert sent["result"] == 0, sent
                line = await ben.event("conf", "instantmsg")
                assert (line["ID"], line["msg"], line["username"]) == (gid, "from chat", "ann")

                await ben.call("conf", "instantmsg", ID=str(gid), msg="from pallada")
                # The sender's own socket hears its own line too, as on the Chat API.
                pushed = [messages.get(timeout=WAIT)["message"] for _ in range(2)]
                assert [m["message"] for m in pushed] == ["from chat", "from pallada"]
                assert pushed[1]["sender_uin"] == str(me["uin"])
                # Each once: nothing more arrived either way (ben hears his own line once).
                await ben.call("cd", "list")
                assert [e["result"]["msg"] for e in ben.pending("conf", "instantmsg")] == ["from pallada"]
                assert messages.empty()
                listed = chat.call("list_message", {"group_id": str(gid)}, namespace="/data", timeout=WAIT)
                assert [m["message"] for m in listed["messages"]][-2:] in (
                    ["from chat", "from pallada"], ["from pallada", "from chat"])

                # Leaving the live room is not leaving the group.
                assert (await ben.call("conf", "leave", ID=str(gid)))["result"]["code"] == OK
                assert [c["ID"] for c in (await ben.call("cd", "list"))["result"]["confs"]] == [gid]

                # The Chat API's calls get the same TURN credentials.
                call = chat.call("create_call", {"group_id": str(gid), "media_type": 1,
                                                 "callee_uins": [str(me["uin"])]}, namespace="/data", timeout=WAIT)
                assert call["result"] == 0, call
                stun, turn = call["ice_servers"]
                assert stun == {"urls": ["stun:127.0.0.1:3478"]}
                assert turn["urls"][0] == "turn:127.0.0.1:3478?transport=udp"
                expiry, uin = turn["username"].split(":")
                assert uin == str(ann_uin) and 0 < int(expiry) - time.time() <= 305
                expected = base64.b64encode(hmac.new(b"chat-secret", turn["username"].encode(),
                                                     hashlib.sha1).digest()).decode()
                assert turn["credential"] == expected
            finally:
                chat.disconnect()
                await ben.close()

        try:
            run(scenario())
        finally:
            server.stop()


class RawClient:
    """A WebSocket client on a plain socket with a tiny receive buffer, so that when it
    stops reading the server's writes to it really stop."""

    def __init__(self, port):
        import socket
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /vsp/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, obj):
        payload = json.dumps(obj).encode()
        mask = os.urandom(4)
        assert len(payload) < 126
        frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(frame)

    def close(self):
        self.sock.close()


def test_a_client_that_stops_reading_is_cut_and_nobody_waits_for_it(data_dir):
    add_user(data_dir, "ann@example.com", "pw")
    add_user(data_dir, "slow@example.com", "pw")
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "confer.toml")
        with open(config, "w") as f:
            f.write("outbound_queue = 8\nwrite_timeout_ms = 2000\nvsp_rate_burst = 100000\nvsp_rate_per_sec = 100000\n"
                    "vsp_timer_interval_ms = 600000\n")
        server = configured_server(data_dir, config)

        async def scenario():
            ann = await Vsp.connect(server)
            await ann.login(server, "ann@example.com", "pw")
            cid = str((await ann.call("cd", "create", name="Flood"))["result"]["ID"])
            await ann.call("conf", "join", ID=cid)
            # The slow client logs in, joins, then never reads again.
            slow = RawClient(server.port)
            slow.send({"cmd": "login", "seq": 0, "obj": "nd", "params": {"user": "slow@example.com", "password": "pw"}})
            joined = None
            while joined is None:
                slow.send({"cmd": "join", "seq": 0, "obj": "conf", "params": {"ID": cid}})
                try:
                    joined = await ann.event("conf", "changed", where=changed_with("addParties", "slow@example.com"))
                except asyncio.TimeoutError:
                    pass
            line = "x" * 60_000
            cut = False
            # The cut comes after write_timeout_ms of a full queue, however long the
            # flood takes to get there on a busy machine; the deadline only bounds failure.
            deadline = time.monotonic() + 120
            i = 0
            while time.monotonic() < deadline:
                i += 1
                # Every command is still answered while the other connection is stuck.
                assert (await ann.call("conf", "instantmsg", ID=cid, msg=line))["result"]["code"] == OK
                ann.events.clear()
                if i % 10 == 0:
                    info = await ann.call("cd", "info", ID=cid)
                    if info["result"]["confdata"]["parties"] == 1:
                        cut = True
                        break
            assert cut, "the slow connection was never cut"
            slow.close()

        try:
            run(scenario())
        finally:
            server.stop()
