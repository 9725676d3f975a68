# Sourced by scripts/suite-turn and scripts/suite-sfu: a real coturn (Debian's, installed
# with apt-get when missing) with `use-auth-secret` on a free loopback port, in its own
# temporary folder. `start_coturn` sets TURN_PORT, TURN_SECRET, TURN_DIR (its log is
# "$TURN_DIR"/turn*.log) and TURN_PID, and returns once it answers a STUN binding request;
# `stop_coturn` stops it and removes the folder (call it from the sourcing script's EXIT
# trap). Expects `quietly` and `apt_install` (scripts/install.sh) from the sourcing script.

install_coturn() {
  if ! command -v turnserver >/dev/null 2>&1 || ! command -v turnutils_uclient >/dev/null 2>&1; then
    apt_install "$1" coturn
  fi
}

start_coturn() {
  TURN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/confer-turn.XXXXXX")
  TURN_PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  TURN_SECRET=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  turnserver -n --listening-ip=127.0.0.1 --listening-port="$TURN_PORT" --relay-ip=127.0.0.1 \
    --min-port=49152 --max-port=65535 --use-auth-secret --static-auth-secret="$TURN_SECRET" \
    --realm=confer.test --no-tls --no-dtls --no-cli --no-tcp-relay --allow-loopback-peers \
    --userdb="$TURN_DIR/turndb" --pidfile="$TURN_DIR/turnserver.pid" --log-file="$TURN_DIR/turn.log" \
    --simple-log --verbose >"$TURN_DIR/stdout" 2>&1 &
  TURN_PID=$!
  for _ in $(seq 1 100); do
    if timeout 1 turnutils_stunclient -p "$TURN_PORT" 127.0.0.1 >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$TURN_PID" 2>/dev/null; then
      echo "turnserver exited:" >&2
      cat "$TURN_DIR/stdout" "$TURN_DIR"/turn*.log >&2 || true
      return 1
    fi
    sleep 0.1
  done
  echo "turnserver did not answer STUN on 127.0.0.1:$TURN_PORT" >&2
  return 1
}

stop_coturn() {
  if [ -n "${TURN_PID:-}" ]; then
    kill "$TURN_PID" 2>/dev/null || true
    wait "$TURN_PID" 2>/dev/null || true
  fi
  [ -z "${TURN_DIR:-}" ] || rm -rf "$TURN_DIR"
}
