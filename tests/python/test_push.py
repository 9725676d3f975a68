"""Push notifications to offline devices, end to end: the real server, Chat API clients
(python-socketio), and local stand-ins for the providers (`push_standins.py`) that check
each request as the provider would. Waits are for conditions (a request arriving, a
session gone), never for a time."""

import base64
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

from push_standins import Apns, Fcm, WebPushService, free_port, webhook
from test_chat_socketio import connect
from test_extapi import ADMIN_PASSWORD, Server, add_user, data_dir, http_login  # noqa: F401 (fixture)

WAIT = 15
SECRET = "hook-secret"


def until(check, what):
    """Wait for `check()` to hold (a condition, not a time)."""
    deadline = time.time() + WAIT
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def admin_get(server, path):
    req = urllib.request.Request(server.url(path))
    auth = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    req.add_header("Authorization", f"Basic {auth}")
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def offline(server, login):
    until(lambda: not any(s["user"] == login for s in admin_get(server, "/api/v1/admin/sessions")),
          f"{login} to be offline")


def metrics(server):
    with urllib.request.urlopen(server.url("/metrics"), timeout=5) as r:
        return r.read().decode()


def db_rows(data_dir, sql):
    conn = sqlite3.connect(f"file:{os.path.join(data_dir, 'confer.db')}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def call(client, event, data):
    answer = client.call(event, data, namespace="/data", timeout=WAIT)
    return answer


class Users:
    """Logged-in logins → (client, login answer); `uin(login)`."""

    def __init__(self, server):
        self.server = server
        self.clients = {}

    def connect(self, login):
        token = http_login(self.server, login, "pw")["session"]
        client, answer, _ = connect(self.server, token, ["websocket"])
        self.clients[login] = (client, answer)
        return client

    def uin(self, login):
        return self.clients[login][1]["uin"]

    def leave(self, login):
        self.clients[login][0].disconnect()
        offline(self.server, login)


def start(data_dir, monkeypatch, env, logins):
    for login in logins:
        add_user(data_dir, login, "pw")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return Server(data_dir)


def test_webhook_pushes_offline_members_once_never_online_muted_or_blocked_and_rings_calls(data_dir, monkeypatch):
    hook = webhook(SECRET)
    server = start(data_dir, monkeypatch, {"CONFER_PUSH_WEBHOOK_URL": hook.url("/hook"),
                                           "CONFER_PUSH_WEBHOOK_SECRET": SECRET}, ["ann", "ben", "cid"])
    try:
        users = Users(server)
        ann, ben, cid = users.connect("ann"), users.connect("ben"), users.connect("cid")
        ben_uin, cid_uin = users.uin("ben"), users.uin("cid")
        team = call(ann, "create_group", {"type": 2, "name": "Team", "occupants_uins": [ben_uin, cid_uin]})
        quiet = call(ann, "create_group", {"type": 2, "name": "Quiet", "occupants_uins": [ben_uin]})
        team, quiet = team["group"]["group_id"], quiet["group"]["group_id"]
        assert call(ben, "register_profile_token", {"type": 4, "token": "ben-voip"})["result"] == 0
        assert call(cid, "register_profile_token", {"type": 1, "token": "cid-fcm"})["result"] == 0
        assert call(ben, "mute_group", {"group_id": quiet})["result"] == 0
        assert call(ben, "register_profile_token", {"type": 1, "token": "ben-fcm"})["result"] == 0
        users.leave("ben")

        # Muted: no push for a message; the next push is the unmuted group's message.
        assert call(ann, "create_message", {"group_id": quiet, "message": "psst"})["result"] == 0
        sent = call(ann, "create_message", {"group_id": team, "message": "hello ben"})
        assert sent["result"] == 0
        status, push = hook.next()
        assert push == {"kind": "message", "uin": ben_uin, "token_type": 1, "token": "ben-fcm",
                        "group_id": team, "message_id": sent["message"]["message_id"],
                        "title": "Team", "body": "hello ben", "badge": 2}, push

        # A sender blocked in the group is refused, so nothing is pushed; cid, online,
        # never gets a push either: the next one is ann's second message.
        assert call(ann, "block_user", {"group_id": team, "blocked_uin": cid_uin})["result"] == 0
        assert call(cid, "create_message", {"group_id": team, "message": "blocked"})["result"] != 0
        second = call(ann, "create_message", {"group_id": team, "message": "again"})
        _, push = hook.next()
        assert push["message_id"] == second["message"]["message_id"] and push["uin"] == ben_uin
        assert push["badge"] == 3

        # A call in the muted group still rings ben, by push to his PushKit token (a
        # message never goes to it), and is cancelled when ann hangs up.
        started = call(ann, "create_call", {"group_id": quiet, "media_type": 1})
        assert started["result"] == 0, started
        call_id = started["call"]["call_id"] if "call" in started else started["call_id"]
        rung = [hook.next()[1] for _ in range(2)]
        assert sorted(p["token"] for p in rung) == ["ben-fcm", "ben-voip"]
        assert all(p["kind"] == "call" and p["call_id"] == call_id and p["group_id"] == quiet
                   and "body" not in p for p in rung), rung
        assert call(ann, "stop_call", {"group_id": quiet, "call_id": call_id})["result"] == 0
        cancelled = [hook.next()[1] for _ in range(2)]
        assert sorted(p["token"] for p in cancelled) == ["ben-fcm", "ben-voip"]
        assert all(p["kind"] == "call_cancelled" and p["call_id"] == call_id for p in cancelled)
        assert hook.requests.empty() and not hook.errors, hook.errors
        until(lambda: 'confer_push_total{provider="webhook",outcome="delivered"} 6' in metrics(server),
              "six deliveries counted")
        ann.disconnect()
        cid.disconnect()
    finally:
        server.stop()
        hook.stop()


def test_a_503_is_retried_after_retry_after_and_a_410_removes_the_token(data_dir, monkeypatch):
    hook = webhook(SECRET)
    server = start(data_dir, monkeypatch, {"CONFER_PUSH_WEBHOOK_URL": hook.url("/hook"),
                                           "CONFER_PUSH_WEBHOOK_SECRET": SECRET,
                                           "CONFER_PUSH_PREVIEW": "false"}, ["ann", "ben"])
    try:
        users = Users(server)
        ann, ben = users.connect("ann"), users.connect("ben")
        group = call(ann, "create_group", {"type": 1, "occupants_uins": [users.uin("ben")]})["group"]["group_id"]
        call(ben, "register_profile_token", {"type": 3, "token": "ben-web"})
        users.leave("ben")

        hook.answers.put((503, {"Retry-After": "1"}, b""))
        sent = call(ann, "create_message", {"group_id": group, "message": "secret text"})
        first, second = hook.next(), hook.next()
        assert first[0] == 503 and second[0] == 200
        assert first[1] == second[1]
        # push_preview off: no text leaves the server; a private chat is titled by its sender.
        assert second[1]["message_id"] == sent["message"]["message_id"]
        assert "body" not in second[1] and second[1]["title"] == "ann"
        until(lambda: 'confer_push_total{provider="webhook",outcome="delivered"} 1' in metrics(server),
              "the delivery counted")
        assert 'confer_push_total{provider="webhook",outcome="retried"} 1' in metrics(server)

        assert db_rows(data_dir, "SELECT token FROM device_tokens") == [("ben-web",)]
        hook.answers.put((410, {}, b""))
        call(ann, "create_message", {"group_id": group, "message": "gone?"})
        assert hook.next()[0] == 410
        until(lambda: db_rows(data_dir, "SELECT token FROM device_tokens") == [], "the token to be removed")
        until(lambda: 'confer_push_total{provider="webhook",outcome="dead_token"} 1' in metrics(server),
              "the dead token counted")
        # With the token gone, a new message queues nothing.
        call(ann, "create_message", {"group_id": group, "message": "nobody"})
        until(lambda: db_rows(data_dir, "SELECT COUNT(*) FROM push_outbox")[0][0] == 0, "the outbox to drain")
        assert db_rows(data_dir, "SELECT COUNT(*) FROM push_queue")[0][0] == 0
        assert hook.requests.empty() and not hook.errors, hook.errors
        ann.disconnect()
    finally:
        server.stop()
        hook.stop()


def test_a_push_survives_kill_9_and_is_sent_after_restart(data_dir, monkeypatch):
    hook = webhook(SECRET)
    hook.hold = threading.Event()
    port = free_port()
    server = start(data_dir, monkeypatch, {"CONFER_PUSH_WEBHOOK_URL": hook.url("/hook"),
                                           "CONFER_PUSH_WEBHOOK_SECRET": SECRET}, ["ann", "ben"])
    try:
        users = Users(server)
        ann, ben = users.connect("ann"), users.connect("ben")
        group = call(ann, "create_group", {"type": 1, "occupants_uins": [users.uin("ben")]})["group"]["group_id"]
        call(ben, "register_profile_token", {"type": 1, "token": "ben-fcm"})
        users.leave("ben")
        sent = call(ann, "create_message", {"group_id": group, "message": "before the crash"})
        # The provider has the request but has not answered when the server dies.
        state, held = hook.next()
        assert state == "held" and held["message_id"] == sent["message"]["message_id"]
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=WAIT)
    finally:
        hook.hold.set()
    hook.hold = None
    server = Server(data_dir, port=port)
    try:
        status, again = hook.next()
        assert status == 200 and again == held
        until(lambda: db_rows(data_dir, "SELECT COUNT(*) FROM push_queue")[0][0] == 0, "the queue to drain")
        assert hook.requests.empty() and not hook.errors, hook.errors
    finally:
        server.stop()
        hook.stop()


def test_fcm_gets_an_oauth_token_from_the_service_account_and_unregistered_removes_the_token(data_dir, monkeypatch):
    with tempfile.TemporaryDirectory() as keys:
        fcm = Fcm(keys)
        server = start(data_dir, monkeypatch, {"CONFER_PUSH_FCM_SERVICE_ACCOUNT": fcm.account_path,
                                               "CONFER_PUSH_FCM_ENDPOINT": fcm.http.url("")}, ["ann", "ben"])
        try:
            users = Users(server)
            ann, ben = users.connect("ann"), users.connect("ben")
            group = call(ann, "create_group", {"type": 2, "name": "Crew",
                                               "occupants_uins": [users.uin("ben")]})["group"]["group_id"]
            call(ben, "register_profile_token", {"type": 1, "token": "fcm-device"})
            users.leave("ben")
            sent = call(ann, "create_message", {"group_id": group, "message": "via fcm"})
            _, message = fcm.http.next()
            assert message["token"] == "fcm-device"
            assert message["notification"] == {"title": "Crew", "body": "via fcm"}
            assert message["data"]["message_id"] == sent["message"]["message_id"]
            assert message["data"]["kind"] == "message" and message["data"]["badge"] == "1"
            assert message["android"]["collapse_key"] == f"group-{group}"
            assert fcm.grants == 1

            fcm.http.answers.put((404, {"Content-Type": "application/json"}, json.dumps(
                {"error": {"code": 404, "status": "NOT_FOUND",
                           "details": [{"errorCode": "UNREGISTERED"}]}}).encode()))
            call(ann, "create_message", {"group_id": group, "message": "still there?"})
            assert fcm.http.next()[0] == 404
            until(lambda: db_rows(data_dir, "SELECT token FROM device_tokens") == [], "the token to be removed")
            assert fcm.grants == 1, "the access token is reused"
            assert not fcm.http.errors, fcm.http.errors
            ann.disconnect()
        finally:
            server.stop()
            fcm.http.stop()


def test_web_push_payload_decrypts_with_the_subscription_key_and_carries_vapid(data_dir, monkeypatch):
    with tempfile.TemporaryDirectory() as keys:
        service = WebPushService(keys)
        server = start(data_dir, monkeypatch, {"CONFER_PUSH_VAPID_KEY": service.vapid_path,
                                               "CONFER_PUSH_VAPID_SUBJECT": "mailto:ops@confer.test",
                                               "CONFER_PUSH_WEBPUSH_ALLOW_HTTP": "true"}, ["ann", "ben"])
        try:
            users = Users(server)
            ann, ben = users.connect("ann"), users.connect("ben")
            group = call(ann, "create_group", {"type": 1, "occupants_uins": [users.uin("ben")]})["group"]["group_id"]
            call(ben, "register_profile_token", {"type": 3, "token": service.subscription("/push/ben")})
            users.leave("ben")
            sent = call(ann, "create_message", {"group_id": group, "message": "encrypted hello"})
            _, got = service.http.next()
            assert got["path"] == "/push/ben" and got["urgency"] == "normal"
            assert got["topic"] == f"group-{group}"
            assert got["payload"] == {"kind": "message", "group_id": group, "title": "ann", "badge": 1,
                                      "message_id": sent["message"]["message_id"], "body": "encrypted hello"}
            assert not service.http.errors, service.http.errors
            ann.disconnect()
        finally:
            server.stop()
            service.http.stop()


def test_apns_alerts_and_a_pushkit_call_with_its_cancellation_over_http2(data_dir, monkeypatch):
    with tempfile.TemporaryDirectory() as keys:
        apns = Apns(keys)
        server = start(data_dir, monkeypatch, {
            "CONFER_PUSH_APNS_KEY": apns.p8_path, "CONFER_PUSH_APNS_KEY_ID": Apns.KEY_ID,
            "CONFER_PUSH_APNS_TEAM_ID": Apns.TEAM_ID, "CONFER_PUSH_APNS_BUNDLE_ID": Apns.BUNDLE,
            "CONFER_PUSH_APNS_ENDPOINT": apns.url(), "CONFER_PUSH_APNS_CA": apns.ca_path}, ["ann", "ben"])
        try:
            users = Users(server)
            ann, ben = users.connect("ann"), users.connect("ben")
            group = call(ann, "create_group", {"type": 2, "name": "Ops",
                                               "occupants_uins": [users.uin("ben")]})["group"]["group_id"]
            call(ben, "register_profile_token", {"type": 2, "token": "a1b2c3"})
            call(ben, "register_profile_token", {"type": 4, "token": "d4e5f6"})
            users.leave("ben")

            sent = call(ann, "create_message", {"group_id": group, "message": "to the iPhone"})
            _, alert = apns.next()
            assert alert["token"] == "a1b2c3" and alert["push_type"] == "alert"
            assert alert["collapse_id"] == f"group-{group}"
            assert alert["payload"]["aps"]["alert"] == {"title": "Ops", "body": "to the iPhone"}
            assert alert["payload"]["aps"]["badge"] == 1
            assert alert["payload"]["message_id"] == sent["message"]["message_id"]

            started = call(ann, "create_call", {"group_id": group, "media_type": 2})
            assert started["result"] == 0, started
            call_id = started["call"]["call_id"] if "call" in started else started["call_id"]
            rung = {r["token"]: r for r in (apns.next()[1] for _ in range(2))}
            voip = rung["d4e5f6"]
            assert voip["push_type"] == "voip" and voip["topic"] == Apns.BUNDLE + ".voip"
            assert voip["payload"]["kind"] == "call" and voip["payload"]["call_id"] == call_id
            assert call(ann, "stop_call", {"group_id": group, "call_id": call_id})["result"] == 0
            ended = {r["token"]: r for r in (apns.next()[1] for _ in range(2))}
            assert ended["d4e5f6"]["push_type"] == "voip"
            assert ended["d4e5f6"]["payload"]["kind"] == "call_cancelled"
            assert ended["a1b2c3"]["collapse_id"] == f"call-{call_id}"

            apns.answers.put((400, b'{"reason":"BadDeviceToken"}'))
            call(ann, "create_message", {"group_id": group, "message": "bad token"})
            assert apns.next()[0] == 400
            until(lambda: db_rows(data_dir, "SELECT token FROM device_tokens") == [("d4e5f6",)],
                  "the bad token to be removed")
            assert not apns.errors, apns.errors
            ann.disconnect()
        finally:
            server.stop()
            apns.stop()


def postgres_database():
    """A fresh database on CONFER_TEST_POSTGRES_URL's server (scripts/suite-scale starts
    one), as (its URL, a function that drops it); `None` when no server is configured,
    which fails under CONFER_REQUIRE_SERVICES (the test command sets it) and skips
    otherwise."""
    admin = os.environ.get("CONFER_TEST_POSTGRES_URL")
    if not admin:
        assert not os.environ.get("CONFER_REQUIRE_SERVICES"), \
            "CONFER_REQUIRE_SERVICES is set but CONFER_TEST_POSTGRES_URL is not"
        pytest.skip("CONFER_TEST_POSTGRES_URL is not set (scripts/suite-scale sets it)")
    name = f"confer_py_push_{os.getpid()}_{int(time.time() * 1e6)}"
    subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    url = admin.rsplit("/", 1)[0] + "/" + name

    def drop():
        subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                       check=True, capture_output=True)

    return url, drop


def pg_count(url, table):
    out = subprocess.run(["psql", url, "-tAc", f"SELECT COUNT(*) FROM {table}"], check=True,
                         capture_output=True, text=True).stdout
    return int(out.strip())


def test_two_nodes_over_postgresql_push_each_message_to_the_webhook_exactly_once(monkeypatch):
    url, drop = postgres_database()
    hook = webhook(SECRET)
    folders = [tempfile.TemporaryDirectory() for _ in range(2)]
    servers = []
    try:
        env = {"CONFER_DATABASE_URL": url, "CONFER_DATABASE_POOL_SIZE": "4",
               "CONFER_PUSH_WEBHOOK_URL": hook.url("/hook"), "CONFER_PUSH_WEBHOOK_SECRET": SECRET}
        dirs = [os.path.join(f.name, "data") for f in folders]
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        for login in ["ann", "ben"]:
            add_user(dirs[0], login, "pw")
        servers.extend(Server(d) for d in dirs)
        a, b = servers
        on_a, on_b = Users(a), Users(b)
        ben = on_a.connect("ben")
        ann = on_b.connect("ann")
        group = call(ann, "create_group", {"type": 2, "name": "Both",
                                           "occupants_uins": [on_a.uin("ben")]})["group"]["group_id"]
        assert call(ben, "register_profile_token", {"type": 1, "token": "ben-fcm"})["result"] == 0
        on_a.leave("ben")

        # Both nodes' workers drain the one outbox (b's is woken by the posts, a's looks
        # every few seconds): each message reaches the webhook once.
        sent = [call(ann, "create_message", {"group_id": group, "message": f"m{i}"})["message"]["message_id"]
                for i in range(8)]
        got = [hook.next()[1] for _ in sent]
        assert sorted(p["message_id"] for p in got) == sorted(sent)
        assert all(p["uin"] == on_a.uin("ben") and p["token"] == "ben-fcm" for p in got)
        until(lambda: pg_count(url, "push_queue") == 0 and pg_count(url, "push_outbox") == 0,
              "the outbox to drain")
        ann.disconnect()
        for server in servers:
            server.stop()
        servers.clear()
        # Both nodes are gone: nothing more can arrive.
        assert hook.requests.empty(), "a push was sent twice"
        assert not hook.errors, hook.errors
    finally:
        for server in servers:
            server.stop()
        hook.stop()
        for f in folders:
            f.cleanup()
        drop()
