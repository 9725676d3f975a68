#!/bin/sh
# Start Synapse from the venv scripts/bench installs it in (target/synapse-venv) on a
# folder of its own: start.sh DIR, where DIR holds homeserver.yaml and log.config. The
# signing key is generated there first; the database, media and log stay there too.
set -eu
dir=$1
venv=${SYNAPSE_VENV:-$(cd "$(dirname "$0")/../../.." && pwd)/target/synapse-venv}
cd "$dir"
# On PostgreSQL (synapse-pg), its database first: new, with the C collation Synapse asks
# for, on the server $SYNAPSE_POSTGRES names.
db=$(sed -n 's/^    database: \(synapse_[0-9_]*\)$/\1/p' "$dir/homeserver.yaml")
if [ -n "$db" ]; then
  "$venv/bin/python" -c '
import os, sys, psycopg2
conn = psycopg2.connect(os.environ["SYNAPSE_POSTGRES"], dbname="postgres")
conn.autocommit = True
conn.cursor().execute("CREATE DATABASE %s ENCODING %s LC_COLLATE %s LC_CTYPE %s TEMPLATE template0"
    % (sys.argv[1], "\x27UTF8\x27", "\x27C\x27", "\x27C\x27"))
' "$db"
fi
"$venv/bin/python" -m synapse.app.homeserver -c "$dir/homeserver.yaml" --generate-keys >/dev/null 2>&1
exec "$venv/bin/python" -m synapse.app.homeserver -c "$dir/homeserver.yaml"
