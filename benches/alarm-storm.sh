#!/usr/bin/env bash
# An alarm storm on PostgreSQL: N distinct devices (default 10,000), each issued to a case,
# connect to a private Mosquitto (the durability and window settings of
# deploy/mosquitto/mosquitto.conf) and, once the last one is connected, all raise one panic
# at the same moment (`firmware-sim burst --together`). Fails unless every panic was
# answered `received`, every one is stored exactly once (one alert each, count 1) and vakt
# committed them before it acknowledged them (its own counters say how many transactions
# that took). Prints the rate from the start of the storm to the last `received`, both as
# firmware-sim saw it and from vakt's counters.
#
#   benches/alarm-storm.sh                  # N=10000 RUNS=3
#   N=1000 RUNS=1 benches/alarm-storm.sh
#   PG=postgres://postgres@127.0.0.1:5432 (the server to create a fresh database on)
#   PERF_OUT=/tmp/storm.perf (a CPU profile of vakt over the storm; `perf report -i` it)
#   LOG_SLOW_MS=0 (PostgreSQL logs every statement of the run's database with its time)
set -euo pipefail
N=${N:-10000}
RUNS=${RUNS:-3}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release --workspace --bins -q
bin=$root/target/release
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
db=vakt_storm_$$
cleanup() {
  kill "${vakt_pid:-}" "${broker_pid:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

shipped() { awk -v k="$1" '$1 == k {print $2}' deploy/mosquitto/mosquitto.conf; }

run_once() {
  local run=$1
  mqtt_port=$(free_port)
  http_port=$(free_port)
  rm -rf "$work/run" && mkdir -p "$work/run"
  cat > "$work/run/mosquitto.conf" <<CONF
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages $(shipped max_queued_messages)
max_inflight_messages $(shipped max_inflight_messages)
CONF
  mosquitto -c "$work/run/mosquitto.conf" >"$work/run/mosquitto.log" 2>&1 &
  broker_pid=$!
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null
  psql "$PG/postgres" -qc "CREATE DATABASE $db" >/dev/null
  [ -n "${LOG_SLOW_MS:-}" ] && psql "$PG/postgres" -qc "ALTER DATABASE $db SET log_min_duration_statement = $LOG_SLOW_MS" >/dev/null

  export VAKT_DATA_DIR=$work/run/data VAKT_HTTP_ADDR=127.0.0.1:$http_port \
    VAKT_MQTT_URL=mqtt://127.0.0.1:$mqtt_port VAKT_MQTT_SHARE_GROUP= VAKT_LOG=warn \
    VAKT_DATABASE_URL=$PG/$db
  (cd "$work/run" && echo "coordinator-password-1" | "$bin/vakt" user add --username coordinator --role coordinator >/dev/null)
  token=$(cd "$work/run" && "$bin/vakt" token create --username coordinator)
  (cd "$work/run" && exec "$bin/vakt" serve 2>"$work/run/vakt.log") &
  vakt_pid=$!
  for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$http_port/readyz" >/dev/null && break; sleep 0.2; done

  # Ten devices to a case: a storm is many people, not one.
  python3 "$root/benches/register.py" "$http_port" "$token" storm "$N" "$work/run/devices.txt" --per-case 10
  cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
  # Registering re-reads each device on every instance (the directory's announcements):
  # let vakt go idle first, so that the storm is measured alone.
  last=$(cpu "$vakt_pid")
  for _ in $(seq 1 60); do
    sleep 1; now=$(cpu "$vakt_pid")
    [ $((now - last)) -le 2 ] && break
    last=$now
  done
  curl -sf "http://127.0.0.1:$http_port/metrics" >"$work/run/before.txt"
  echo "$(cpu "$vakt_pid") $(cpu "$broker_pid")" >"$work/run/cpu_before.txt"
  # PERF_OUT=FILE: a CPU profile of vakt over the storm (perf's software clock).
  if [ -n "${PERF_OUT:-}" ]; then
    perf record -e cpu-clock -F 999 -p "$vakt_pid" -o "$PERF_OUT" 2>/dev/null &
    perf_pid=$!
  fi
  /usr/bin/time -f "%U %S" -o "$work/run/sim_cpu.txt" "$bin/firmware-sim" burst --port "$mqtt_port" --devices "$work/run/devices.txt" --messages 1 \
    --alarm-every 1 --together --wait 120 --connect-rate 1000 --report "$work/run/report.json"
  echo "$(cpu "$vakt_pid") $(cpu "$broker_pid")" >"$work/run/cpu_after.txt"
  if [ -n "${perf_pid:-}" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; perf_pid=; fi
  curl -sf "http://127.0.0.1:$http_port/metrics" >"$work/run/after.txt"
  curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$http_port/api/alerts?state=open,acknowledged,resolved" >"$work/run/alerts.json"
  psql "$PG/$db" -Atc "SELECT count(*), count(DISTINCT (device_id, boot, seq)), count(alert_id) FROM device_messages WHERE kind = 'panic'" >"$work/run/stored.txt"
  python3 - "$work/run" "$N" "$run" <<'PY'
import json, sys
d, n, run = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def metrics(name):
    m = {}
    for l in open(f"{d}/{name}"):
        if l and not l.startswith("#"):
            k, v = l.rsplit(" ", 1)
            m[k] = float(v)
    return m
before, after = metrics("before.txt"), metrics("after.txt")
delta = lambda k: after.get(k, 0) - before.get(k, 0)
report = json.load(open(f"{d}/report.json"))
alerts = [a for a in json.load(open(f"{d}/alerts.json")) if a["kind"] == "panic"]
rows, distinct, linked = map(int, open(f"{d}/stored.txt").read().strip().split("|"))
span = report["together_s"]
tx, writes = delta("vakt_ingest_transactions_total"), delta("vakt_ingest_writes_total")
tx_s = delta("vakt_ingest_transaction_seconds_sum")
# CPU seconds over the whole burst run (connecting included), from the kernel's counts.
hz = 100
(vakt0, broker0), (vakt1, broker1) = [map(int, open(f"{d}/{f}").read().split()) for f in ("cpu_before.txt", "cpu_after.txt")]
sim_cpu = sum(map(float, open(f"{d}/sim_cpu.txt").read().split()[-2:]))
lat = report["latency_ms"]
print(json.dumps({
    "run": int(run), "devices": n, "panics_sent": report["alarms"], "answered": report["received"],
    "unanswered": report["unanswered"], "repeats": report["repeats"],
    "stored": rows, "alerts": len(alerts), "alert_counts": sum(a["count"] for a in alerts),
    "storm_s": round(span, 3), "alarms_per_s": round(report["received"] / span),
    "received_ms": {"median": round(lat["median"]), "p99": round(lat["p99"]), "max": round(lat["max"])},
    "vakt_transactions": int(tx), "vakt_writes": int(writes),
    "mean_batch": round(writes / tx, 1) if tx else None,
    "vakt_transaction_s": round(tx_s, 3),
    "cpu_s": {"vakt": (vakt1 - vakt0) / hz, "mosquitto": (broker1 - broker0) / hz, "firmware_sim": sim_cpu},
}))
assert report["received"] == n and report["unanswered"] == 0, "a panic was not answered"
assert rows == distinct == linked == n, "panics stored differ from panics sent"
assert len(alerts) == n and all(a["count"] == 1 for a in alerts), "a panic is not exactly one alert"
PY
  kill "$vakt_pid" "$broker_pid"; wait "$vakt_pid" "$broker_pid" 2>/dev/null || true
  vakt_pid= broker_pid=
}

for run in $(seq 1 "$RUNS"); do run_once "$run"; done
