"""The External API driven by another ecosystem's WebSocket client (Python `websockets`),
against the real `confer` binary started as the README says (`confer serve`).

CONFER_BIN names the binary (scripts/test builds it)."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest
import websockets

BIN = os.environ.get("CONFER_BIN", "target/debug/confer")
ADMIN_PASSWORD = "py-admin"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir, port=None, cwd=None, args=None):
        self.port = port or free_port()
        env = dict(os.environ, CONFER_ADMIN_PASSWORD=ADMIN_PASSWORD)
        cmd = [os.path.abspath(BIN), "serve"]
        cmd += args if args is not None else ["--listen", f"127.0.0.1:{self.port}", "--data-dir", data_dir]
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stderr=subprocess.PIPE)
        self.wait_healthy()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_healthy(self):
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url("/healthz"), timeout=1) as r:
                    if r.read() == b"ok":
                        return
            except OSError:
                assert self.proc.poll() is None, self.proc.stderr.read().decode()
                time.sleep(0.05)
        raise AssertionError("server did not become healthy")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        assert code == 0, f"exit code {code}: {self.proc.stderr.read().decode()}"


class Client:
    """A minimal External API client: answers server events and pings, as a real one must."""

    def __init__(self, ws):
        self.ws = ws
        self.tid = 0
        self.events = []

    async def call(self, cls, sub, cmd, data=None):
        self.tid += 1
        frame = {"class": cls, "subclass": sub, "cmd": cmd, "tid": self.tid}
        if data is not None:
            frame["data"] = data
        await self.ws.send(json.dumps(frame))
        return await self.answer_for(self.tid)

    async def answer_for(self, tid):
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if "result" in msg and msg["tid"] == tid:
                return msg
            if msg.get("cmd") in ("event", "ping"):
                await self.ws.send(json.dumps({"result": "ok", "tid": msg["tid"]}))
                if msg["cmd"] == "event":
                    self.events.append(msg["data"])

    async def event(self, kind):
        while True:
            for e in self.events:
                if e.get("type") == kind:
                    self.events.remove(e)
                    return e
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if msg.get("cmd") in ("event", "ping"):
                await self.ws.send(json.dumps({"result": "ok", "tid": msg["tid"]}))
                if msg["cmd"] == "event":
                    self.events.append(msg["data"])


def add_user(data_dir, login, password):
    subprocess.run([BIN, "user", "add", login, "--password", password, "--data-dir", data_dir], check=True,
                   capture_output=True)


def http_login(server, user, password):
    req = urllib.request.Request(server.url("/api/v1/login"), method="POST",
                                 data=json.dumps({"user": user, "password": password}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture
def data_dir():
    with tempfile.TemporaryDirectory() as d:
        yield os.path.join(d, "data")


def test_conference_messages_through_python_websockets_survive_restart(data_dir):
    add_user(data_dir, "py@example.com", "pw")
    server = Server(data_dir)

    async def first_run():
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/api/ws") as ws:
            c = Client(ws)
            await ws.send("{not json")
            bad = json.loads(await ws.recv())
            assert bad["result"] == "error" and bad["data"]["code"] == 100044
            r = await c.call("core", "user", "login", {"user": "py@example.com", "password": "pw"})
            assert r["result"] == "ok", r
            r = await c.call("media", "conf", "create", {"conf_id": "py-room", "class": "sfu"})
            assert r == {"result": "ok", "tid": c.tid, "data": {"conf_id": "py-room"}}
            assert (await c.call("media", "conf", "join", {"conf_id": "py-room"}))["result"] == "ok"
            for i in (1, 2):
                r = await c.call("media", "conf", "msglog_send", {"conf_id": "py-room", "msg": {"text": f"hello {i}"}})
                assert r["data"] == {"msg_id": i}
                e = await c.event("msglog_new_msg")
                assert e["obj_id"] == "py-room" and e["body"]["text"] == f"hello {i}"

    asyncio.run(first_run())
    server.stop()

    server = Server(data_dir)

    async def second_run():
        token = http_login(server, "py@example.com", "pw")["session"]
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/api/ws") as ws:
            c = Client(ws)
            r = await c.call("core", "user", "login", {"user": "py@example.com", "token": token})
            assert r["result"] == "ok", r
            log = (await c.call("media", "conf", "msglog_get", {"conf_id": "py-room"}))["data"]
            assert [m["text"] for m in log] == ["hello 1", "hello 2"]
            assert [m["msg_id"] for m in log] == [1, 2]
            assert all(m["user_id"] == "py@example.com" for m in log)
            r = await c.call("media", "conf", "msglog_send", {"conf_id": "py-room", "msg": {"text": "again"}})
            assert r["data"] == {"msg_id": 3}

    asyncio.run(second_run())
    server.stop()


def test_wrong_password_is_401_over_http(data_dir):
    add_user(data_dir, "u", "right")
    server = Server(data_dir)
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            http_login(server, "u", "wrong")
        assert err.value.code == 401
        assert "error" in json.loads(err.value.read())
    finally:
        server.stop()


def test_readme_serve_defaults_listen_on_8080_with_data_in_cwd():
    """The README's run command: `serve` with no flags uses 127.0.0.1:8080 and ./data."""
    with socket.socket() as s:
        # As the server does: connections of an earlier run in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", 8080))
        except OSError:
            pytest.skip("port 8080 is taken on this machine")
    with tempfile.TemporaryDirectory() as cwd:
        server = Server(None, port=8080, cwd=cwd, args=[])
        try:
            assert os.path.exists(os.path.join(cwd, "data", "confer.db"))
        finally:
            server.stop()
