#!/usr/bin/env bash
# schemathesis against the real server: builds and starts `vakt serve` on free ports with a
# fresh SQLite database and the embedded broker in a temporary directory, makes an admin
# and a bearer token with the CLI, seeds persons, cases, orders, devices and an alert
# (.ci/schemathesis_seed.py), then runs schemathesis on /api/openapi.json with the
# `not_a_server_error` check. Exits non-zero on any 5xx, printing the failing requests (as
# curl commands) and the server's error lines.
#
# Environment:
#   SCHEMATHESIS_EXAMPLES  examples per operation and phase (default 100)
#   SCHEMATHESIS_CHECKS    checks to run (default not_a_server_error; e.g. `all` to also
#                          see schema conformance)
#   SCHEMATHESIS_SEED      hypothesis seed (default: random, printed by schemathesis)
#   SCHEMATHESIS_WORKERS   concurrent workers (default 1: with several, hypothesis on
#                          CPython 3.11 can fail with "AST constructor recursion depth
#                          mismatch", an error of the tool, not of vakt)
#   SCHEMATHESIS_VENV      where the pinned schemathesis is installed
#                          (default ~/.cache/vakt/schemathesis-<hash of requirements>)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REQUIREMENTS=$ROOT/.ci/requirements-schemathesis.txt
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-100}
CHECKS=${SCHEMATHESIS_CHECKS:-not_a_server_error}

# The pinned schemathesis, in a venv reused while the requirements stay the same.
req_hash=$(sha256sum "$REQUIREMENTS" | cut -c1-12)
VENV=${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/vakt/schemathesis-$req_hash}
if [ ! -f "$VENV/.installed" ]; then
  echo "installing schemathesis into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
  touch "$VENV/.installed"
fi
"$VENV/bin/schemathesis" --version

cargo build --locked -q -p vakt -p firmware-sim --bins
VAKT=$ROOT/target/debug/vakt
SIM=$ROOT/target/debug/firmware-sim

WORK=$(mktemp -d -t vakt-schemathesis.XXXXXX)
# The server log, the schemathesis config and the JUnit report of the last run stay here.
KEEP=$ROOT/target/schemathesis
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$KEEP"
  mkdir -p "$KEEP"
  cp -r "$WORK/vakt.log" "$WORK/schemathesis.toml" "$WORK/report" "$KEEP/" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
HTTP_PORT=$(free_port)
MQTT_PORT=$(free_port)
while [ "$MQTT_PORT" = "$HTTP_PORT" ]; do MQTT_PORT=$(free_port); done
BASE=http://127.0.0.1:$HTTP_PORT

# Only what is set here: no vakt.toml (the working directory is empty), the embedded
# broker and SQLite in the temporary data directory.
unset VAKT_CONFIG VAKT_DATABASE_URL VAKT_MQTT_URL VAKT_MQTT_USERNAME VAKT_MQTT_PASSWORD \
  VAKT_MASTER_KEY VAKT_MAP_TILE_URL VAKT_SILENCE_GRACE_S VAKT_SECURE_COOKIES
export VAKT_DATA_DIR=$WORK/data
export VAKT_HTTP_ADDR=127.0.0.1:$HTTP_PORT
export VAKT_MQTT_LISTEN=127.0.0.1:$MQTT_PORT
export XDG_STATE_HOME=$WORK/state
export NO_COLOR=1
cd "$WORK"

"$VAKT" migrate
echo 'admin-password-12' | "$VAKT" user add --username admin --role admin >/dev/null
TOKEN=$("$VAKT" token create --username admin | tail -n1)

"$VAKT" serve >"$WORK/vakt.log" 2>&1 &
SERVER_PID=$!
ready=
for _ in $(seq 1 100); do
  if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "$BASE/readyz" 2>/dev/null; then ready=1; break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "vakt serve did not become ready on $BASE" >&2
  cat "$WORK/vakt.log" >&2
  exit 1
fi

python3 "$ROOT/.ci/schemathesis_seed.py" "$BASE" "$TOKEN" "$MQTT_PORT" "$SIM" "$WORK/schemathesis.toml"

seed_args=()
if [ -n "${SCHEMATHESIS_SEED:-}" ]; then seed_args=(--seed "$SCHEMATHESIS_SEED"); fi

# /api/alerts/stream never ends; /api/logout only clears a cookie this run does not use.
# The token stays out of the printed reproductions (`--output-sanitize`).
status=0
timeout 900 "$VENV/bin/schemathesis" --config-file "$WORK/schemathesis.toml" --no-color run \
  "$BASE/api/openapi.json" \
  -H "Authorization: Bearer $TOKEN" \
  --checks "$CHECKS" \
  --exclude-path /api/alerts/stream \
  --exclude-path /api/logout \
  --max-examples "$EXAMPLES" \
  --workers "${SCHEMATHESIS_WORKERS:-1}" \
  --request-timeout 30 \
  --generation-database none \
  --output-sanitize true \
  --report junit --report-dir "$WORK/report" \
  "${seed_args[@]}" || status=$?

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "vakt serve died during the run" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo
  echo "schemathesis failed (exit $status); server log lines at WARN and ERROR:"
  sed 's/\x1b\[[0-9;]*m//g' "$WORK/vakt.log" | grep -E ' (ERROR|WARN) |panicked' | tail -n 100 || true
  echo "(whole log: $KEEP/vakt.log after this script exits)"
fi
exit "$status"
