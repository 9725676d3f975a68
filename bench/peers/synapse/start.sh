#!/bin/sh
# Start Synapse from the venv scripts/bench installs it in (target/synapse-venv) on a
# folder of its own: start.sh DIR, where DIR holds homeserver.yaml and log.config. The
# signing key is generated there first; the database, media and log stay there too.
set -eu
dir=$1
venv=${SYNAPSE_VENV:-$(cd "$(dirname "$0")/../../.." && pwd)/target/synapse-venv}
cd "$dir"
"$venv/bin/python" -m synapse.app.homeserver -c "$dir/homeserver.yaml" --generate-keys >/dev/null 2>&1
exec "$venv/bin/python" -m synapse.app.homeserver -c "$dir/homeserver.yaml"
