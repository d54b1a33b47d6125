# Sourced by the benches that run against a whole stage (the live-stream benches, the
# fleet): a private Mosquitto, `vakt serve` (release build) on a fresh PostgreSQL database,
# a coordinator's token, and devices registered and issued through the API. Everything is
# removed on exit.
#
#   PG=postgres://postgres@127.0.0.1:5432   the server the fresh database is made on
#   LISTENERS=1      Mosquitto's listener ports: $mqtt_port, and the others in $more_ports
#                    (comma-separated, for firmware-sim's --more-ports)
#   BIN=DIR          take vakt and firmware-sim from DIR instead of building them
#   stage_probe=no   (set by the sourcing script) no outside probe: build vakt alone
set -euo pipefail
PG=${PG:-postgres://postgres@127.0.0.1:5432}
LISTENERS=${LISTENERS:-1}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ -n "${BIN:-}" ]; then
  bin=$(cd "$BIN" && pwd)
else
  # The bench builds vakt too, with the same features; the device simulator on its own.
  if [ "${stage_probe:-yes}" = yes ]; then
    cargo bench --bench live_stream --no-run -q
  else
    cargo build --release --bin vakt -q
  fi
  cargo build --release -p firmware-sim --bin firmware-sim -q
  bin=$root/target/release
fi
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mqtt_port=$(free_port)
more_ports=
for _ in $(seq 2 "$LISTENERS"); do more_ports=${more_ports:+$more_ports,}$(free_port); done
http_port=$(free_port)
db=vakt_bench_$$
cleanup() {
  kill ${load_pid:-} ${vakt_pid:-} ${broker_pid:-} ${edge_pids:-} 2>/dev/null || true
  wait 2>/dev/null || true
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# A connection is a file on each side: Mosquitto and the devices need one per device.
ulimit -n 262144 2>/dev/null || ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cat > "$work/mosquitto.conf" <<CONF
listener $mqtt_port 127.0.0.1
$(for p in ${more_ports//,/ }; do echo "listener $p 127.0.0.1"; done)
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

# register PREFIX N FILE [OPTIONS]: N alarm devices issued to one case (or K to a case with
# --per-case K), as `id key` lines in FILE; OPTIONS go to benches/register.py.
register() {
  python3 "$root/benches/register.py" "$http_port" "$token" "$1" "$2" "$3" --risk high "${@:4}"
}

# rss [PID]: resident memory of vakt (or PID), KiB.
rss() { awk '/VmRSS/ {print $2}' "/proc/${1:-$vakt_pid}/status"; }

# probe ARGS...: the outside measurement (benches/live_stream.rs) against this vakt.
probe() {
  cargo bench -q --bench live_stream -- --url "$url" --token "$token" \
    --mqtt-port "$mqtt_port" --pid "$vakt_pid" "$@" 2>"$work/probe.log" \
    || { cat "$work/probe.log" >&2; return 1; }
}
