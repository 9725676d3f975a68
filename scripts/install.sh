# How the scripts install what they need, sourced, not run (scripts/test, every
# scripts/suite-*, scripts/bench, scripts/bench-nodes, scripts/coturn.sh,
# scripts/instructions):
#
#   quietly CMD...            run CMD with its output in a file shown only if it fails:
#                             installing prints hundreds of lines nobody needs when it works
#   apt_install WHY PKG...    one line saying what and why, then apt-get update and install
#
# The test command runs its suites side by side and on a fresh machine several install at
# once: apt_install takes one lock of ours (flock on $TMPDIR/confer-apt.lock), so they take
# turns instead of failing on dpkg's lock, and waits up to 15 minutes for an apt or dpkg
# not ours (DPkg::Lock::Timeout).

quietly() {
  local out rc=0
  out=$(mktemp "${TMPDIR:-/tmp}/confer-install.XXXXXX")
  "$@" >"$out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "failed (exit $rc): $*; its output:" >&2
    cat "$out" >&2
  fi
  rm -f "$out"
  return "$rc"
}

apt_install() {
  local why=$1
  shift
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "cannot install $* (no apt-get): install it by hand ($why)" >&2
    return 1
  fi
  local sudo="" wait=(-o DPkg::Lock::Timeout=900)
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing $* with apt-get: $why"
  (
    flock 9
    quietly $sudo apt-get "${wait[@]}" update -qq || true
    quietly $sudo env DEBIAN_FRONTEND=noninteractive apt-get "${wait[@]}" install -y -qq "$@"
  ) 9>"${TMPDIR:-/tmp}/confer-apt.lock"
}
