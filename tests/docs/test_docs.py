"""The reference documents in docs/, checked three ways:

1. each is valid: docs/openapi.yaml by `openapi-spec-validator`, docs/asyncapi.yaml against
   the official AsyncAPI 3.0.0 JSON schema (npm `@asyncapi/specs`, installed in
   tests/docs/node_modules by `npm ci`), its local `$ref`s resolve and every message
   example matches its payload schema;
2. complete, both ways: every External API command, Chat API event and Chat API push in
   the doors' own dispatch tables (printed by the hidden `confer doc commands`) has an
   operation in docs/asyncapi.yaml, and every operation names one that exists;
3. true: `schemathesis` runs docs/openapi.yaml against the real server (a scratch data
   folder, three users, the admin password): no 5xx, every status, header, content type and
   body as documented; and every request example of docs/asyncapi.yaml is sent to the
   same server through both real-time doors, its answer (and every event and push that
   arrives meanwhile) must match the document, with an error code the operation lists.

CONFER_BIN names the binary (scripts/test builds it)."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import asyncio
import queue

import jsonschema
import pytest
import socketio
import websockets
import yaml
from openapi_spec_validator import validate as validate_openapi

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BIN = os.path.abspath(os.environ.get("CONFER_BIN", ROOT / "target/debug/confer"))
OPENAPI = ROOT / "docs/openapi.yaml"
ASYNCAPI = ROOT / "docs/asyncapi.yaml"
ASYNCAPI_SCHEMA = HERE / "node_modules/@asyncapi/specs/schemas/3.0.0-without-$id.json"


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def asyncapi():
    return load(ASYNCAPI)


@pytest.fixture(scope="module")
def tables():
    out = subprocess.run([BIN, "doc", "commands"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_openapi_document_is_valid_openapi_3_1():
    doc = load(OPENAPI)
    assert doc["openapi"].startswith("3.1")
    validate_openapi(doc)


def test_asyncapi_document_is_valid_asyncapi_3(asyncapi):
    with open(ASYNCAPI_SCHEMA, encoding="utf-8") as f:
        schema = json.load(f)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(asyncapi), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors[:10])


def refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def resolve(doc, ref):
    """The node a local `$ref` names, following references to references."""
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if isinstance(node, dict) and set(node) == {"$ref"}:
        return resolve(doc, node["$ref"])
    return node


@pytest.mark.parametrize("path", [OPENAPI, ASYNCAPI], ids=["openapi", "asyncapi"])
def test_every_local_ref_resolves(path):
    doc = load(path)
    broken = []
    for ref in set(refs(doc)):
        assert ref.startswith("#/"), f"only local references: {ref}"
        try:
            resolve(doc, ref)
        except (KeyError, TypeError):
            broken.append(ref)
    assert not broken, broken


def test_every_asyncapi_example_matches_its_payload(asyncapi):
    wrong = []
    for name, message in asyncapi["components"]["messages"].items():
        assert message.get("examples"), f"{name} has no example"
        # The payload, with the document's components beside it so its $refs resolve.
        schema = {"allOf": [message["payload"]], "components": asyncapi["components"]}
        validator = jsonschema.Draft7Validator(schema)
        for example in message["examples"]:
            for e in validator.iter_errors(example["payload"]):
                wrong.append(f"{name}/{example.get('name')}: {list(e.absolute_path)} {e.message[:160]}")
    assert not wrong, "\n".join(wrong)


def documented(asyncapi, key):
    names = []
    for op in asyncapi["operations"].values():
        value = op.get(key)
        if value is not None:
            names.extend(value if isinstance(value, list) else [value])
    return names


def test_every_extapi_command_is_documented_and_nothing_else(asyncapi, tables):
    implemented = {f"{c['class']}/{c['subclass']}/{c['cmd']}" for c in tables["extapi_commands"]}
    names = documented(asyncapi, "x-extapi-commands")
    assert len(names) == len(set(names)), "a command is documented twice"
    assert sorted(implemented - set(names)) == [], "implemented, not documented"
    assert sorted(set(names) - implemented) == [], "documented, not implemented"


def test_every_chat_event_is_documented_and_nothing_else(asyncapi, tables):
    names = documented(asyncapi, "x-chat-event")
    assert len(names) == len(set(names)), "an event is documented twice"
    assert sorted(set(tables["chat_events"]) - set(names)) == [], "implemented, not documented"
    assert sorted(set(names) - set(tables["chat_events"])) == [], "documented, not implemented"


def test_every_chat_push_is_documented_and_nothing_else(asyncapi, tables):
    names = documented(asyncapi, "x-chat-push")
    assert len(names) == len(set(names)), "a push is documented twice"
    assert sorted(set(tables["chat_pushes"]) - set(names)) == [], "pushed, not documented"
    assert sorted(set(names) - set(tables["chat_pushes"])) == [], "documented, never pushed"


def test_every_chat_message_name_is_its_socketio_event(asyncapi):
    messages = asyncapi["components"]["messages"]
    for op in asyncapi["operations"].values():
        event = op.get("x-chat-event") or op.get("x-chat-push")
        if event is None:
            continue
        for ref in op["messages"]:
            message = resolve(asyncapi, ref["$ref"])
            assert message["name"] == event, (event, message["name"])
    assert messages


def test_every_chathost_endpoint_is_documented_and_nothing_else(tables):
    """The hub's `/chathost` endpoints in docs/openapi.yaml are the door's table (which
    crates/server/tests/it/chathost.rs holds to its router), both ways."""
    implemented = {f"{e['method']} {e['path']}" for e in tables["chathost_endpoints"]}
    doc = load(OPENAPI)
    documented = {f"{method.upper()} {path}" for path, ops in doc["paths"].items()
                  if path.startswith("/chathost") for method in ops}
    assert sorted(implemented - documented) == [], "implemented, not documented"
    assert sorted(documented - implemented) == [], "documented, not implemented"


# ---------------------------------------------------------------- schemathesis

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def server():
    """`confer serve` on a free port with a scratch data folder, an admin password and one
    user (the documents' example user, so their login example logs in); stopped
    (SIGTERM, exit 0) at the end."""
    admin_password = "docs-admin"
    with tempfile.TemporaryDirectory() as data:
        for user in ["alice@example.com", "bob@example.com", "carol@example.com"]:  # uins 1-3, as in the examples
            subprocess.run([BIN, "user", "add", user, "--password", "secret", "--data-dir", data],
                           check=True, capture_output=True)
        port = free_port()
        env = dict(os.environ, CONFER_ADMIN_PASSWORD=admin_password, NO_COLOR="1")
        proc = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while True:
            try:
                if request(url + "/healthz") == (200, b"ok"):
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "server did not become healthy"
            time.sleep(0.05)
        try:
            yield {"url": url, "user": "alice@example.com", "password": "secret",
                   "admin_password": admin_password}
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
            assert code == 0, f"exit code {code}: {proc.stderr.read().decode()[-4000:]}"


def test_schemathesis_finds_the_server_as_documented(server):
    status, body = request(server["url"] + "/api/v1/login",
                           json.dumps({"user": server["user"], "password": server["password"]}).encode(),
                           {"Content-Type": "application/json"})
    assert status == 200, body
    token = json.loads(body)["session"]
    env = dict(os.environ, CONFER_DOCS_URL=server["url"], CONFER_DOCS_TOKEN=token,
               CONFER_DOCS_USER=server["user"], CONFER_DOCS_PASSWORD=server["password"],
               CONFER_DOCS_ADMIN_PASSWORD=server["admin_password"],
               SCHEMATHESIS_HOOKS="hooks", PYTHONPATH=str(HERE), NO_COLOR="1")
    cmd = [str(Path(sys.executable).parent / "st"), "--no-color", "--config-file", str(HERE / "schemathesis.toml"),
           "run", str(OPENAPI), "--url", server["url"], "--seed", "1"]
    # The admin API may not be in this build yet: then its operations are left out, loudly.
    # The hub's /chathost endpoints are served only with `hub_role` (not this server's):
    # their table is held to the document above and their answers are tested in
    # crates/server/tests/it/chathost.rs and tests/python/test_chathost.py.
    excluded = ["^/chathost/"]
    status, _ = request(server["url"] + "/api/v1/admin/groups")
    if status == 404:
        print("NOTE: this server has no /api/v1/admin API; its operations are not run")
        excluded.append("^/api/v1/admin/")
    cmd += ["--exclude-path-regex", "|".join(excluded)]
    # Run elsewhere: schemathesis leaves its cache (.schemathesis/) in its working folder.
    with tempfile.TemporaryDirectory() as scratch:
        run = subprocess.run(cmd, env=env, cwd=scratch, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-4000:]


# ---------------------------------------------------------------- the real-time doors, live

WAIT = 10


def matches(doc, payload_schema, value):
    schema = {"allOf": [payload_schema], "components": doc["components"]}
    return jsonschema.Draft7Validator(schema).is_valid(value)


def example_of(doc, op):
    message = resolve(doc, op["messages"][0]["$ref"])
    return json.loads(json.dumps(message["examples"][0]["payload"]))


def check_reply(doc, op, answer):
    replies = [resolve(doc, r["$ref"]) for r in op["reply"]["messages"]]
    assert any(matches(doc, m["payload"], answer) for m in replies), (op["title"], answer)


def login_token(server):
    status, body = request(server["url"] + "/api/v1/login",
                           json.dumps({"user": server["user"], "password": server["password"]}).encode(),
                           {"Content-Type": "application/json"})
    assert status == 200, body
    return json.loads(body)["session"]


def test_extapi_answers_every_example_as_documented(server, asyncapi):
    doc = asyncapi
    messages = doc["components"]["messages"]
    server_requests = [messages[k]["payload"] for k in ("extEvent", "extPing", "extForwarded")]
    ops = [op for op in doc["operations"].values() if "x-extapi-commands" in op]
    # Log in first, destroy the conference last (the examples share one conference).
    ops.sort(key=lambda op: {"core/user/login": 0, "media/conf/destroy": 2}.get(op["x-extapi-commands"][0], 1))

    async def run():
        outcomes, events = {}, []
        async with websockets.connect(server["url"].replace("http", "ws", 1) + "/api/ws") as ws:
            for tid, op in enumerate(ops, start=1):
                frame = example_of(doc, op)
                frame["tid"] = tid
                await ws.send(json.dumps(frame))
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                    if "result" in msg and msg.get("tid") == tid:
                        break
                    if msg == {"ack": tid}:  # a request answered later (session cmd)
                        continue
                    assert "cmd" in msg, msg
                    assert any(matches(doc, p, msg) for p in server_requests), msg
                    events.append(msg)
                    await ws.send(json.dumps({"result": "ok", "tid": msg["tid"]}))
                check_reply(doc, op, msg)
                if msg["result"] == "error":
                    assert msg["data"]["code"] in op["x-error-codes"], (op["title"], msg)
                outcomes[op["title"]] = msg["result"]
        return outcomes, events

    outcomes, events = asyncio.run(run())
    for title in ["core/user/login", "core/user/list", "core/user/get", "core/user/send_event",
                  "core/event/get_subscriptions", "media/conf/create", "media/conf/msglog_send",
                  "media/conf/msglog_get", "media/conf/get_info", "media/conf/destroy"]:
        assert outcomes[title] == "ok", (title, outcomes)


def test_chat_api_answers_every_example_as_documented(server, asyncapi):
    doc = asyncapi
    ops = [op for op in doc["operations"].values() if "x-chat-event" in op]
    # Leaving and clearing come last: the other examples need the group.
    ops.sort(key=lambda op: op["x-chat-event"] in ("leave_group", "delete_conversation"))
    pushes_by_name = {op["x-chat-push"]: resolve(doc, op["messages"][0]["$ref"])
                      for op in doc["operations"].values() if "x-chat-push" in op}
    client = socketio.Client(reconnection=False)
    logins, pushes = queue.Queue(), queue.Queue()
    client.on("login", logins.put, namespace="/data")
    client.on("*", lambda event, data: pushes.put((event, data)), namespace="/data")
    client.connect(server["url"], namespaces=["/data"], transports=["websocket"],
                   auth={"session": login_token(server)}, wait_timeout=WAIT)
    try:
        login = logins.get(timeout=WAIT)
        assert matches(doc, pushes_by_name["login"]["payload"], login), login
        assert login["result"] == 0
        # The examples' ids, replaced by the real ones as the server makes them.
        real = {}

        def substitute(value):
            if isinstance(value, dict):
                return {k: substitute(v) for k, v in value.items()}
            if isinstance(value, list):
                return [substitute(v) for v in value]
            return real.get(value, value) if isinstance(value, str) else value

        outcomes = {}
        for op in ops:
            name = op["x-chat-event"]
            ack = client.call(name, substitute(example_of(doc, op)), namespace="/data", timeout=WAIT)
            check_reply(doc, op, ack)
            assert ack["result"] in op["x-result-codes"], (name, ack)
            outcomes[name] = ack["result"]
            if ack["result"] == 0 and name == "create_group":
                real["12"] = ack["group"]["group_id"]
            if ack["result"] == 0 and name == "create_message":
                real["100"] = ack["message"]["message_id"]
            if ack["result"] == 0 and name == "create_call":
                real["7"] = ack["call"]["call_id"]
        for name in ["register_profile_token", "unregister_profile_token", "create_group",
                     "update_group", "list_group", "block_user", "unblock_user", "mute_group",
                     "pin_group", "create_message", "update_message", "list_message",
                     "seen_message", "create_call", "call_status", "event", "delete_message",
                     "leave_group"]:
            assert outcomes[name] == 0, (name, outcomes)
        seen = set()
        while True:
            try:
                event, data = pushes.get(timeout=1)
            except queue.Empty:
                break
            assert event in pushes_by_name, f"undocumented push {event}"
            assert matches(doc, pushes_by_name[event]["payload"], data), (event, data)
            seen.add(event)
        assert {"group", "update_group", "message", "update_message", "delete_message",
                "pin_group", "unpin_group", "stop_call", "delete_group"} <= seen, sorted(seen)
    finally:
        client.disconnect()
