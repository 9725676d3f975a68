"""The Chat API driven by another ecosystem's Socket.IO client (`python-socketio`), a second
independent implementation of the protocol next to the official JavaScript client in
tests/node: long-polling upgraded to WebSocket, WebSocket only, acks and pushes."""

import queue

import socketio

from test_extapi import Server, add_user, data_dir, http_login  # noqa: F401 (fixture)

WAIT = 10


def connect(server, token, transports):
    """A logged-in client; returns it with the queue its `message` pushes land in."""
    client = socketio.Client(reconnection=False)
    logins, messages = queue.Queue(), queue.Queue()
    client.on("login", logins.put, namespace="/data")
    client.on("message", messages.put, namespace="/data")
    client.connect(f"http://127.0.0.1:{server.port}", namespaces=["/data"], transports=transports,
                   auth={"session": token}, wait_timeout=WAIT)
    login = logins.get(timeout=WAIT)
    assert login["result"] == 0, login
    return client, login, messages


def test_python_socketio_clients_on_both_transports_talk_through_confer(data_dir):
    add_user(data_dir, "ann", "pw")
    add_user(data_dir, "ben", "pw")
    server = Server(data_dir)
    try:
        ann_token = http_login(server, "ann", "pw")["session"]
        ben_token = http_login(server, "ben", "pw")["session"]
        # The client's default: long-polling first, then the upgrade to WebSocket.
        ann, ann_login, ann_messages = connect(server, ann_token, ["polling", "websocket"])
        ben, _, _ = connect(server, ben_token, ["websocket"])

        listed = ann.call("list_group", {}, namespace="/data", timeout=WAIT)
        assert listed["result"] == 0 and listed["groups"] == []

        created = ben.call("create_group", {"type": 2, "occupants_uins": [ann_login["uin"]]},
                           namespace="/data", timeout=WAIT)
        assert created["result"] == 0, created
        group_id = created["group"]["group_id"]
        sent = ben.call("create_message", {"group_id": group_id, "message": "from python"},
                        namespace="/data", timeout=WAIT)
        assert sent["result"] == 0, sent

        pushed = ann_messages.get(timeout=WAIT)
        assert pushed["message"]["message"] == "from python"
        assert pushed["message"]["group_id"] == group_id
        assert ann.transport() == "websocket"

        bad = ann.call("create_message", "{not json", namespace="/data", timeout=WAIT)
        assert bad["result"] == 1
        unknown = ann.call("fly", {}, namespace="/data", timeout=WAIT)
        assert unknown["result"] == 11

        ann.disconnect()
        ben.disconnect()
    finally:
        server.stop()
