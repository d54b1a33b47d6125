# Sourced by the live-stream benches: a private Mosquitto, `vakt serve` (release build) on a
# fresh PostgreSQL database, a coordinator's token, and devices registered and issued
# through the API. Everything is removed on exit.
#
#   PG=postgres://postgres@127.0.0.1:5432   the server the fresh database is made on
set -euo pipefail
PG=${PG:-postgres://postgres@127.0.0.1:5432}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# The bench builds vakt too, with the same features; the device simulator on its own.
cargo bench --bench live_stream --no-run -q
cargo build --release -p firmware-sim --bin firmware-sim -q
bin=$root/target/release
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mqtt_port=$(free_port)
http_port=$(free_port)
db=vakt_bench_$$
cleanup() {
  kill ${load_pid:-} ${vakt_pid:-} ${broker_pid:-} 2>/dev/null || true
  wait 2>/dev/null || true
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cat > "$work/mosquitto.conf" <<CONF
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000
max_inflight_messages 1000
CONF
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
broker_pid=$!

psql -q "$PG/postgres" -c "CREATE DATABASE $db"
export VAKT_DATA_DIR=$work/data VAKT_HTTP_ADDR=127.0.0.1:$http_port \
  VAKT_DATABASE_URL=$PG/$db VAKT_MQTT_URL=mqtt://127.0.0.1:$mqtt_port \
  VAKT_MQTT_SHARE_GROUP= VAKT_LOG=warn
url=http://127.0.0.1:$http_port
(cd "$work" && echo "coordinator-password-1" | "$bin/vakt" user add --username coordinator --role coordinator >/dev/null)
token=$(cd "$work" && "$bin/vakt" token create --username coordinator)
(cd "$work" && exec "$bin/vakt" serve 2>"$work/vakt.log") &
vakt_pid=$!
for _ in $(seq 1 150); do curl -sf "$url/readyz" >/dev/null && break; sleep 0.2; done
curl -sf "$url/readyz" >/dev/null || { tail "$work/vakt.log"; exit 1; }

# register PREFIX N FILE [OPTIONS]: N alarm devices issued to one case, as `id key` lines in
# FILE; OPTIONS go to benches/register.py (--threads T).
register() {
  python3 "$root/benches/register.py" "$http_port" "$token" "$1" "$2" "$3" --risk high "${@:4}"
}

# rss: vakt's resident memory, KiB.
rss() { awk '/VmRSS/ {print $2}' "/proc/$vakt_pid/status"; }

# probe ARGS...: the outside measurement (benches/live_stream.rs) against this vakt.
probe() {
  cargo bench -q --bench live_stream -- --url "$url" --token "$token" \
    --mqtt-port "$mqtt_port" --pid "$vakt_pid" "$@" 2>"$work/probe.log" \
    || { cat "$work/probe.log" >&2; return 1; }
}
