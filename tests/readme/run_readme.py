#!/usr/bin/env python3
"""Run every shell command of the README as written, against a scratch server.

The README's fenced code blocks say what they are by their info string:

- ```` ```sh ````: commands, run in order in ONE bash session (so `export`, `TOKEN=$(…)`
  and the like carry over to later blocks), from the repository's root. Each must exit 0.
- ```` ```sh serve ````: the run command. It is started in the background, must answer
  `GET /healthz`, and keeps running while the blocks after it run; the next serve block,
  or the end, stops it with SIGTERM, and it must then exit 0.
- ```` ```sh norun ````: shown, never run (`scripts/test`, which runs this; a command
  whose argument is a placeholder). They are listed in the output.
- Any other fence (or none): not shell, not run.

A comment line (`# -> …`, the answers) is not run; a line ending in `\\` continues.

The whole session gets CONFER_DATA_DIR (a scratch folder) and CONFER_LISTEN
(127.0.0.1 and a free port). The only rewriting of the commands, each listed here and
tested in test_run_readme.py:

- `localhost:8080` and `127.0.0.1:8080` (the default address the examples use) become the
  scratch server's address;
- only when CONFER_README_BIN names an already built `confer` binary (scripts/test sets
  it, to spare CI a release build): `cargo run --release --` becomes that binary,
  the line `cargo build --release` becomes a no-op, and `$PWD/target/release` becomes
  the binary's folder. Without it the README runs exactly as written, release build
  included.

An HTTP error answer fails its command: `curl` is a shell function adding
`--fail-with-body` (the answer is still printed). Files a command creates at the top of
the repository (the example's `cat.png`) are removed afterwards.

Usage: run_readme.py [--readme README.md] [--keep]
"""

import argparse
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ADDRESSES = ("localhost:8080", "127.0.0.1:8080")


@dataclass
class Block:
    kind: str  # "run", "serve" or "norun"
    line: int  # the README line of its first command
    commands: list  # (README line, command text)


def blocks(text):
    """The README's shell blocks, in order."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*(.*)$", lines[i])
        if not m:
            i += 1
            continue
        lang, flags = m.group(1), m.group(2).split()
        body_start = i + 1
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            i += 1
        body = lines[body_start:i]
        i += 1
        if lang != "sh":
            continue
        kind = "serve" if "serve" in flags else "norun" if "norun" in flags else "run"
        out.append(Block(kind, body_start + 1, commands_of(body, body_start + 1)))
    return out


def commands_of(body, first_line):
    """(line, command) pairs: comments and blank lines left out, `\\` continued."""
    commands, pending, start = [], None, None
    for n, line in enumerate(body, first_line):
        if pending is None and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending is None:
            pending, start = "", n
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        commands.append((start, pending + line))
        pending = None
    if pending is not None:
        commands.append((start, pending))
    return commands


def substitute(command, address, binary=None):
    """The command as run: the only rewriting this script does (see the module doc)."""
    for default in DEFAULT_ADDRESSES:
        command = command.replace(default, address)
    if binary:
        binary = str(binary)
        if command.strip() == "cargo build --release":
            return f": cargo build --release skipped: CONFER_README_BIN={shlex.quote(binary)}"
        command = command.replace("cargo run --release --", shlex.quote(binary))
        command = command.replace("$PWD/target/release", os.path.dirname(binary))
    return command


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PRELUDE = r"""
set -o pipefail
# An answer without a final newline would run into the next command's trace.
curl() { command curl --fail-with-body "$@"; local rc=$?; echo >&2; return $rc; }
__server=""
__fail() { echo "README line $1 failed (exit $2): $3" >&2; exit 1; }
__stop_server() {
  [ -n "$__server" ] || return 0
  kill -TERM "$__server" 2>/dev/null
  wait "$__server"; local rc=$?
  __server=""
  if [ "$rc" -ne 0 ]; then echo "the server of README line $1 exited $rc on SIGTERM; its log:" >&2; cat "$2" >&2; exit 1; fi
}
__wait_healthz() {
  local deadline=$((SECONDS + $1))
  until command curl -sf "http://$CONFER_LISTEN/healthz" >/dev/null 2>&1; do
    if ! kill -0 "$__server" 2>/dev/null; then
      echo "README line $2: the server exited before answering /healthz; its log:" >&2; cat "$3" >&2; exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "README line $2: no /healthz answer within $1 s; the server's log:" >&2; cat "$3" >&2; exit 1
    fi
    sleep 0.2
  done
}
trap '[ -n "$__server" ] && kill -KILL "$__server" 2>/dev/null' EXIT
"""


def script(readme_blocks, address, scratch, binary, healthz_timeout):
    """The bash session running the blocks, and the norun commands it leaves out."""
    out, skipped, last_serve = [PRELUDE], [], None
    for block in readme_blocks:
        for line, command in block.commands:
            if block.kind == "norun":
                skipped.append((line, command))
                continue
            run = substitute(command, address, binary)
            shown = shlex.quote(f"+ {run}")
            out.append(f"printf '%s\\n' {shown} >&2")
            if block.kind == "serve":
                log = shlex.quote(str(Path(scratch) / f"server-line-{line}.log"))
                if last_serve:
                    out.append(f"__stop_server {last_serve[0]} {last_serve[1]}")
                out.append(f"{run} > {log} 2>&1 &")
                out.append("__server=$!")
                out.append(f"__wait_healthz {healthz_timeout} {line} {log}")
                last_serve = (line, log)
            else:
                out.append(run)
                out.append(f"__rc=$?; [ $__rc -eq 0 ] || __fail {line} $__rc {shlex.quote(command)}")
    if last_serve:
        out.append(f"__stop_server {last_serve[0]} {last_serve[1]}")
    return "\n".join(out) + "\n", skipped


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()

    binary = os.environ.get("CONFER_README_BIN") or None
    if binary:
        binary = str(Path(binary).resolve())
        if not os.access(binary, os.X_OK):
            sys.exit(f"CONFER_README_BIN={binary} is not an executable")
    readme_blocks = blocks(Path(args.readme).read_text())
    if not any(b.kind == "serve" for b in readme_blocks):
        sys.exit(f"{args.readme}: no ```sh serve block (the run command)")

    scratch = tempfile.mkdtemp(prefix="confer-readme-")
    address = f"127.0.0.1:{free_port()}"
    # A release build on a cold target takes minutes before the first /healthz.
    healthz_timeout = 60 if binary else 1800
    text, skipped = script(readme_blocks, address, scratch, binary, healthz_timeout)
    (Path(scratch) / "readme.sh").write_text(text)

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFER_")}
    env.update(CONFER_DATA_DIR=str(Path(scratch) / "data"), CONFER_LISTEN=address)
    before = set(os.listdir(ROOT))
    print(f"README commands against {address}, data in {scratch}/data"
          + (f", confer = {binary}" if binary else ", as written (release build)"))
    try:
        rc = subprocess.run(["bash", "--noprofile", "--norc", str(Path(scratch) / "readme.sh")],
                            cwd=ROOT, env=env).returncode
    finally:
        for name in set(os.listdir(ROOT)) - before:
            path = ROOT / name
            if path.is_file():
                path.unlink()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    for line, command in skipped:
        print(f"not run (```sh norun, line {line}): {command}")
    if rc != 0:
        sys.exit(f"README commands failed ({args.readme})")
    print("every README command succeeded")


if __name__ == "__main__":
    main()
