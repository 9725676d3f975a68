"""The hub role (the chathost API) driven by an edge written from the spec: the Moodle
plugin's `push_messages` sequence replayed with `requests`, while the teacher reads and
answers over the Chat API (`python-socketio`). Every admin endpoint with and without a
session; a second identical run stores nothing new."""

import os
import queue
import subprocess

import requests
import socketio

from test_extapi import ADMIN_PASSWORD, BIN, Server, data_dir, http_login  # noqa: F401 (fixture)

WAIT = 10
BOX = "b8-27-eb-00-11-22"
TOKEN = "5f2d1c1e-8f7a-4d2b-9c1e-0a1b2c3d4e5f"
PNG = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89"


class Hub(Server):
    def __init__(self, data_dir):
        os.environ["CONFER_HUB_ROLE"] = "true"
        try:
            super().__init__(data_dir)
        finally:
            del os.environ["CONFER_HUB_ROLE"]


def roster():
    person = lambda i, u, e: {"id": i, "username": u, "first_name": u.title(), "last_name": "",
                              "email": e, "last_accessed": 0, "language": "en"}
    site = {"sitename": "Hill School", "siteadmin_name": "Ada", "siteadmin_email": "ada@hill",
            "siteadmin_phone": "", "siteadmin_country": "KE", "package": "moodle", "packageStatus": ""}
    return [
        {"id": 1, "course_name": "Hill School", "summary": "", "created_on": 0, "updated_on": 0,
         "students": [], "teachers": [], **site},
        {"id": 2, "course_name": "Biology", "summary": "", "created_on": 0, "updated_on": 0,
         "teachers": [person(3, "tbio", "tbio@hill.org")],
         "students": [person(7, "amina", "amina@hill"), person(8, "brian", "brian@hill")], **site},
        {"id": 3, "course_name": "History", "summary": "", "created_on": 0, "updated_on": 0,
         "teachers": [person(4, "thist", "thist@hill.org")],
         "students": [person(7, "amina", "amina@hill")], **site},
    ]


def message(mid, text, attachment=None):
    msg = {"id": mid, "conversation_id": 11, "subject": None, "message": text,
           "sender": {"id": 7, "username": "amina", "email": "amina@hill"},
           "recipient": {"id": 3, "username": "tbio", "email": "tbio@hill.org"},
           "attachment": None, "created_on": 1700000000}
    if attachment:
        msg["attachment"] = {"type": "photo", "id": attachment, "filepath": "/", "filename": "leaf.png"}
        msg["message"] = (f'<attachment type="photo" id="{attachment}" filepath="/" '
                          f'filename="leaf.png">')
    return msg


def push_messages(hub, since_seen=None):
    """The edge's sequence, steps 1-6 (rosters, attachments, messages): the answers."""
    s = requests.Session()
    s.headers.update({"Authorization": f"Bearer {BOX}|{TOKEN}", "x-boxid": BOX})
    base = hub.url("/chathost")
    assert requests.get(f"{base}/healthCheck", params={"boxid": BOX}).status_code == 200
    assert s.get(f"{base}/check").status_code == 200
    status = s.get(f"{base}/messageStatus")
    assert status.status_code == 200 and status.text.isdigit(), status.text
    assert s.post(f"{base}/courseRosters", json=roster()).status_code == 200
    uploaded = 0
    for att in ["leaf-1"]:
        if s.get(f"{base}/attachments/{att}/exists").status_code == 404:
            files = {"file": ("leaf.png", PNG, "application/octet-stream")}
            fields = {"id": att, "type": "photo", "filepath": "/", "filename": "leaf.png"}
            assert s.post(f"{base}/attachments", data=fields, files=files).status_code == 200
            uploaded += 1
    sent = s.post(f"{base}/messages", json=[message(101, "Is this a leaf?"),
                                            message(102, "", attachment="leaf-1"),
                                            message(103, "", attachment="never-sent")])
    return s, base, int(status.text), uploaded, sent


def chat_client(hub, token):
    client = socketio.Client(reconnection=False)
    logins, messages = queue.Queue(), queue.Queue()
    client.on("login", logins.put, namespace="/data")
    client.on("message", messages.put, namespace="/data")
    client.connect(hub.url(""), namespaces=["/data"], transports=["websocket"],
                   auth={"session": token}, wait_timeout=WAIT)
    assert logins.get(timeout=WAIT)["result"] == 0
    return client, messages


def test_an_edge_written_from_the_spec_syncs_with_the_confer_hub(data_dir):
    hub = Hub(data_dir)
    try:
        base = hub.url("/chathost")
        # The admin API: 401 without a session, every path.
        for method, path in [("GET", "/admin/boxes"), ("GET", f"/admin/roster/{BOX}"),
                             ("GET", "/admin/system"), ("GET", f"/admin/logs/{BOX}"),
                             ("GET", f"/admin/settings/{BOX}"), ("POST", f"/admin/settings/{BOX}"),
                             ("DELETE", f"/admin/settings/{BOX}/1"), ("GET", f"/admin/security/{BOX}"),
                             ("PUT", f"/admin/security/{BOX}/{TOKEN}"), ("DELETE", f"/admin/security/{BOX}"),
                             ("DELETE", f"/admin/boxes/{BOX}"), ("GET", "/auth"), ("GET", "/logout")]:
            assert requests.request(method, base + path).status_code == 401, (method, path)
        admin = requests.Session()
        assert admin.post(f"{base}/auth", json={"username": "admin", "password": "nope"}).status_code == 401
        login = admin.post(f"{base}/auth", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert login.status_code == 200 and login.json() == {"username": "admin"}
        assert admin.get(f"{base}/auth").json() == {"username": "admin"}
        # Register the box.
        assert admin.put(f"{base}/admin/security/{BOX}/{TOKEN}").status_code == 200
        assert admin.get(f"{base}/admin/security/{BOX}").json()["currentSecurityKey"] == f"{BOX}|{TOKEN}"
        assert admin.get(f"{base}/admin/system").json()["version"]

        s, base, since, uploaded, sent = push_messages(hub)
        assert since == 1 and uploaded == 1
        assert sent.status_code == 404 and sent.json() == ["103"], sent.text
        assert s.get(f"{base}/attachments/leaf-1/exists").headers["Content-Type"] == "image/png"

        boxes = admin.get(f"{base}/admin/boxes").json()
        assert [(b["boxid"], b["courses"], b["teachers"], b["students"], b["sitename"]) for b in boxes] \
            == [(BOX, 2, 2, 2, "Hill School")]
        assert admin.get(f"{base}/admin/roster/{BOX}").json()[2]["course_name"] == "History"

        # The teacher (a hub account made from the roster) gets a password and reads on
        # the Chat API: the box's messages are there, and a new one arrives live.
        subprocess.run([BIN, "user", "passwd", "tbio", "--password", "pw", "--data-dir", data_dir],
                       check=True, capture_output=True, env=dict(os.environ))
        token = http_login(hub, "tbio", "pw")["session"]
        teacher, pushed = chat_client(hub, token)
        groups = teacher.call("list_group", {}, namespace="/data", timeout=WAIT)["groups"]
        private = [g for g in groups if g["type"] == 1]
        assert len(private) == 2, groups  # amina and brian
        listed = [teacher.call("list_message", {"group_id": g["group_id"]}, namespace="/data",
                               timeout=WAIT)["messages"] for g in private]
        texts = [m["message"] for msgs in listed for m in msgs]
        assert "Is this a leaf?" in texts, texts
        amina_group = next(g["group_id"] for g, msgs in zip(private, listed)
                           if any(m["message"] == "Is this a leaf?" for m in msgs))
        before = sum(len(msgs) for msgs in listed)
        live = s.post(f"{base}/messages", json=[message(104, "Are you there?")])
        assert live.status_code == 200, live.text
        assert pushed.get(timeout=WAIT)["message"]["message"] == "Are you there?"

        # The teacher answers through the Chat API; the box gets it once.
        answer = teacher.call("create_message", {"group_id": amina_group, "message": "Yes, a leaf!"},
                              namespace="/data", timeout=WAIT)
        assert answer["result"] == 0, answer
        since = s.get(f"{base}/messageStatus").text
        batch = s.get(f"{base}/messages/{since}").json()
        assert [(m["message"], m["sender"]["username"], m["recipient"]["username"]) for m in batch] \
            == [("Yes, a leaf!", "tbio", "amina")], batch
        assert s.get(f"{base}/messages/{since}").json() == []

        # Logs of each type.
        for kind in ["moodle", "content", "system", "sync"]:
            body = [{"timestamp": 1700000000, "log": f"{kind} log"}, "an old bare line"]
            if kind == "content":
                body = [{"interactionType": "view", "mediaIdentifier": "m1", "mediaLanguage": "en",
                         "mediaProvider": "p", "mediaType": "video", "timestamp": 1700000000}]
            assert s.post(f"{base}/logs/{kind}", json=body).status_code == 200
        assert s.post(f"{base}/logs/sync", data="{broken", headers={"Content-Type": "application/json"}).status_code == 400
        logs = admin.get(f"{base}/admin/logs/{BOX}").json()
        assert sorted({l["type"] for l in logs}) == ["content", "moodle", "sync", "system"]

        # A queued setting: fetched, applied, confirmed.
        assert admin.post(f"{base}/admin/settings/{BOX}", json={"key": "timezone", "value": "EAT"}).json() == {}
        settings = s.get(f"{base}/settings").json()
        wanted = [x for x in settings if x["key"] == "timezone"]
        assert wanted and wanted[0]["value"] == "EAT" and wanted[0]["boxid"] == BOX
        assert all(x["pending"] == "Yes" for x in admin.get(f"{base}/admin/settings/{BOX}").json())
        for x in settings:
            assert s.delete(f"{base}/settings/{x['deleteId']}").status_code == 200
        assert s.delete(f"{base}/settings/{wanted[0]['deleteId']}").status_code == 404
        assert admin.get(f"{base}/admin/settings/{BOX}").json() == []

        # A second identical run stores nothing new.
        _, _, _, uploaded, sent = push_messages(hub)
        assert uploaded == 0 and sent.status_code == 404 and sent.json() == ["103"]
        after = sum(len(teacher.call("list_message", {"group_id": g["group_id"]}, namespace="/data",
                                     timeout=WAIT)["messages"]) for g in private)
        assert after == before + 2  # the live message and the answer, nothing else

        # The last admin endpoints: remove the keys (401 from then on), the box, log out.
        assert admin.delete(f"{base}/admin/security/{BOX}").status_code == 200
        assert s.get(f"{base}/check").status_code == 401
        assert admin.delete(f"{base}/admin/boxes/{BOX}").status_code == 200
        assert admin.get(f"{base}/admin/boxes").json() == []
        assert admin.get(f"{base}/logout").status_code == 200
        assert admin.get(f"{base}/admin/boxes").status_code == 401
        teacher.disconnect()
    finally:
        hub.stop()
