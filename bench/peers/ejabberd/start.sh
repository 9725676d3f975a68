#!/bin/sh
# Start Debian's ejabberd as a plain process (no service, no Erlang distribution, no
# epmd) on a folder of its own: start.sh DIR, where DIR holds ejabberd.yml and the
# SQLite database. Logs, the Mnesia spool and any crash dump stay in DIR.
set -eu
dir=$1
libs=$(dirname "$(ls -d /usr/lib/*/ejabberd-*/ebin | head -n 1)")
export ERL_LIBS=$(dirname "$libs")
export EJABBERD_CONFIG_PATH="$dir/ejabberd.yml"
export EJABBERD_LOG_PATH="$dir/ejabberd.log"
export ERL_CRASH_DUMP="$dir/erl_crash.dump"
export ERL_CRASH_DUMP_BYTES=0
mkdir -p "$dir/mnesia"
cd "$dir"
# +K true: kernel polling, as ejabberdctl starts it; one scheduler per core (BEAM's default).
exec erl -noinput +K true +P 1000000 -env ERL_MAX_PORTS 250000 \
  -mnesia dir "\"$dir/mnesia\"" -s ejabberd
