"""Tests of run_readme.py: how it reads blocks, the only substitutions it makes, and that
a broken command or an HTTP error answer fails the run (against the real binary, given
as CONFER_README_BIN as scripts/test does)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import run_readme  # noqa: E402

SCRIPT = Path(__file__).parent / "run_readme.py"


def test_blocks_are_read_by_their_info_string():
    text = textwrap.dedent("""\
        ```sh serve
        cargo run --release -- serve
        ```
        ```sh
        # a comment
        A=1

        echo $A \\
          two
        ```
        ```sh norun
        scripts/test
        ```
        ```json
        {"not": "shell"}
        ```
            indented code is not run
        """)
    got = [(b.kind, b.commands) for b in run_readme.blocks(text)]
    assert got == [
        ("serve", [(2, "cargo run --release -- serve")]),
        ("run", [(6, "A=1"), (8, "echo $A    two")]),
        ("norun", [(12, "scripts/test")]),
    ]


def test_the_only_substitutions():
    sub = run_readme.substitute
    addr = "127.0.0.1:5555"
    assert sub("curl -s localhost:8080/x", addr) == "curl -s 127.0.0.1:5555/x"
    assert sub("curl 127.0.0.1:8080/x", addr) == "curl 127.0.0.1:5555/x"
    # Without a binary, cargo lines run as written.
    assert sub("cargo run --release -- serve", addr) == "cargo run --release -- serve"
    assert sub("cargo build --release", addr) == "cargo build --release"
    assert sub('export PATH="$PWD/target/release:$PATH"', addr) == (
        'export PATH="$PWD/target/release:$PATH"')
    # With one, they use it.
    b = "/x/target/debug/confer"
    assert sub("cargo run --release -- serve", addr, b) == "/x/target/debug/confer serve"
    assert sub("cargo build --release", addr, b).startswith(": ")
    assert sub('export PATH="$PWD/target/release:$PATH"', addr, b) == (
        'export PATH="/x/target/debug:$PATH"')
    assert sub("confer user list", addr, b) == "confer user list"


def the_binary():
    binary = os.environ.get("CONFER_README_BIN")
    if not binary:
        pytest.skip("CONFER_README_BIN is not set (scripts/test sets it)")
    return binary


def run(tmp_path, readme):
    path = tmp_path / "README.md"
    path.write_text(textwrap.dedent(readme))
    return subprocess.run([sys.executable, str(SCRIPT), "--readme", str(path)],
                          capture_output=True, text=True,
                          env={**os.environ, "CONFER_README_BIN": the_binary()})


SERVE = """\
    ```sh serve
    cargo run --release -- serve
    ```
"""


def test_a_readme_whose_commands_work_passes(tmp_path):
    r = run(tmp_path, SERVE + """\
    ```sh
    cargo run --release -- user add ann --password pw
    TOKEN=$(curl -s localhost:8080/api/v1/login -d '{"user":"ann","password":"pw"}')
    ```
    ```sh
    test -n "$TOKEN"
    ```
    """)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "every README command succeeded" in r.stdout


def test_a_broken_command_fails_the_run_and_names_its_line(tmp_path):
    r = run(tmp_path, SERVE + """\
    ```sh
    cargo run --release -- user add ann --password pw
    cargo run --release -- user lst
    ```
    """)
    assert r.returncode != 0
    assert "README line 6 failed (exit 2): cargo run --release -- user lst" in r.stderr, r.stderr


def test_an_http_error_answer_fails_the_run(tmp_path):
    r = run(tmp_path, SERVE + """\
    ```sh
    curl -s localhost:8080/api/v1/login -d '{"user":"nobody","password":"x"}'
    ```
    """)
    assert r.returncode != 0
    assert "README line 5 failed (exit 22)" in r.stderr, r.stderr


def test_a_server_that_does_not_start_fails_the_run(tmp_path):
    r = run(tmp_path, """\
    ```sh serve
    cargo run --release -- serve --listen not-an-address
    ```
    """)
    assert r.returncode != 0
    assert "exited before answering /healthz" in r.stderr, r.stderr
