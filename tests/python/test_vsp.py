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
