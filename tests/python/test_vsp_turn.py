"""TURN credentials from the conference door's `conf.webrtc.servdesc`, checked by a real
coturn (`use-auth-secret`): `turnutils_uclient` allocates a relay with them, and is refused
once they expired or when the credential is changed by one character.

scripts/suite-turn starts coturn and sets CONFER_TURN_PORT, CONFER_TURN_SECRET and
CONFER_TURN_REQUIRED=1; run alone without them, the test is skipped (with the reason)."""

import asyncio
import os
import subprocess
import tempfile
import time

import pytest

from test_extapi import add_user
from test_vsp import OK, Vsp, configured_server

PORT = os.environ.get("CONFER_TURN_PORT")
SECRET = os.environ.get("CONFER_TURN_SECRET")

if not (PORT and SECRET):
    if os.environ.get("CONFER_TURN_REQUIRED") == "1":
        raise RuntimeError("CONFER_TURN_REQUIRED=1 but CONFER_TURN_PORT/CONFER_TURN_SECRET are not set")
    pytest.skip("no coturn: run scripts/suite-turn (it starts one and sets CONFER_TURN_PORT, CONFER_TURN_SECRET)",
                allow_module_level=True)


@pytest.fixture
def data_dir():
    with tempfile.TemporaryDirectory() as d:
        yield os.path.join(d, "data")


def allocate(username, credential):
    """Whether coturn gives `turnutils_uclient` a relay with these credentials."""
    run = subprocess.run(["turnutils_uclient", "-p", PORT, "-u", username, "-w", credential,
                          "-n", "1", "-m", "1", "-y", "-c", "127.0.0.1"],
                         capture_output=True, text=True, timeout=60)
    return run.returncode == 0, run.stdout + run.stderr


def servdesc(data_dir, ttl):
    add_user(data_dir, "ann@example.com", "pw")
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "confer.toml")
        with open(config, "w") as f:
            f.write(f'turn_secret = "{SECRET}"\nturn_ttl_secs = {ttl}\n'
                    f'turn_urls = "turn:127.0.0.1:{PORT}?transport=udp"\n')
        server = configured_server(data_dir, config)

        async def scenario():
            ann = await Vsp.connect(server)
            await ann.login(server, "ann@example.com", "pw")
            cid = (await ann.call("cd", "create", name="Turn"))["result"]["ID"]
            await ann.call("conf", "join", ID=str(cid))
            assert (await ann.call("conf", "CALLME_S1", ID=str(cid)))["result"]["code"] == OK
            desc = await ann.event("conf", "webrtc", "servdesc")
            await ann.close()
            return desc["EvtData"]

        try:
            return asyncio.run(scenario())
        finally:
            server.stop()


def test_coturn_accepts_the_credentials_and_refuses_a_changed_one(data_dir):
    data = servdesc(data_dir, ttl=600)
    assert data["serveraddr"] == f"turn:127.0.0.1:{PORT}?transport=udp"
    ok, log = allocate(data["username"], data["credential"])
    assert ok, log
    credential = data["credential"]
    changed = ("B" if credential[0] != "B" else "C") + credential[1:]
    refused, log = allocate(data["username"], changed)
    assert not refused, log
    # The username carries the expiry: another one is refused with the same credential.
    expiry, uin = data["username"].split(":")
    refused, log = allocate(f"{int(expiry) + 1}:{uin}", credential)
    assert not refused, log


def test_coturn_refuses_expired_credentials(data_dir):
    data = servdesc(data_dir, ttl=1)
    expiry = int(data["username"].split(":")[0])
    # Wait for the clock to pass the expiry (no timing is asserted).
    while time.time() <= expiry + 1:
        time.sleep(0.2)
    refused, log = allocate(data["username"], data["credential"])
    assert not refused, log
