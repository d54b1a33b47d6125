#!/usr/bin/env bash
# The ingest against the raw broker: how fast vakt takes in a stream of signed QoS 1
# heartbeats through Mosquitto, against how fast Mosquitto hands the same stream to a plain
# subscriber at the same time. One `firmware-sim saturate` run per phase (N devices, one
# connection each, M pre-signed heartbeats each, WINDOW in flight per connection):
#
#   raw       private Mosquitto, only the plain subscriber (`firmware-sim count`)
#   sqlite    private Mosquitto, vakt (SQLite) and the plain subscriber, both subscribed
#   postgres  the same with vakt on a fresh PostgreSQL database
#   embedded  vakt's embedded broker (SQLite), no Mosquitto
#
# Every rate counts from the generator's first publish: N*M divided by the time until the
# last PUBACK (sent), until the subscriber had every message, until vakt's
# vakt_messages_accepted_total had risen by N*M (polled every 50 ms). Ratio: vakt's rate
# over the plain subscriber's in the same phase. Goals: ratio >= 0.9 on SQLite and
# PostgreSQL; vakt on its embedded broker at least the raw Mosquitto subscriber's rate.
#
#   benches/ingest-ratio.sh                        # N=50 M=4000 WINDOW=32 RUNS=1
#   RUNS=3 PHASES="sqlite postgres" benches/ingest-ratio.sh
#
# NO_BUILD=1 skips the release build; KEEP=1 keeps the work directory (every process's log).
# A vakt whose count stops rising for 30 s is reported as stalled, with its rate until then.
set -euo pipefail
N=${N:-50}
M=${M:-4000}
WINDOW=${WINDOW:-32}
RUNS=${RUNS:-1}
PHASES=${PHASES:-raw sqlite postgres embedded}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ -n "${NO_BUILD:-}" ] || cargo build --release -p vakt -p firmware-sim --bins -q
bin=$root/target/release
work=$(mktemp -d)
total=$((N * M))
secret=bench-backend-secret
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
backend_password() { printf 'vakt broker login\n%s' "$1" | openssl dgst -sha256 -hmac "$secret" | awk '{print $NF}'; }
pids=()
databases=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_all
  for db in "${databases[@]}"; do psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# Registers and issues N devices through the API; writes `id key` lines.
register() {  # register HTTP_PORT TOKEN OUT
  python3 "$root/benches/register.py" "$1" "$2" ratio "$N" "$3"
}

# Polls vakt's accepted count every 50 ms until it has risen by TOTAL from the first
# sample (taken before the generator starts), or has not moved for 30 s (stalled); writes `unix_ms taken` of the sample that
# saw it complete (or the last one that saw it move), and `stalled` when it stopped short.
watch_intake() {  # watch_intake HTTP_PORT OUT
  python3 - "$1" "$total" "$2" <<'PY' 2>"$2.err" &
import sys, time, urllib.request
port, total, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def accepted():
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith("vakt_messages_accepted_total "):
            return int(float(line.split()[1]))
    return 0
base = accepted()
open(out + ".base", "w").write(f"{base}\n")  # the generator starts only after this
seen, moved = 0, time.time()
while True:
    now = accepted() - base
    if now != seen:
        seen, moved = now, time.time()
    if seen >= total or time.time() - moved > 30:
        break
    time.sleep(0.05)
with open(out, "w") as f:
    f.write(f"{int(moved * 1000)} {seen}" + ("" if seen >= total else " stalled") + "\n")
PY
  pids+=($!)
  watcher=$!
}

# One phase; appends a JSON line to $work/results.
phase() {  # phase NAME RUN
  local name=$1 run=$2 dir=$work/$1-$2
  mkdir -p "$dir/auth"
  local http_port mqtt_port
  http_port=$(free_port)
  mqtt_port=$(free_port)
  export VAKT_DATA_DIR=$dir/data VAKT_HTTP_ADDR=127.0.0.1:$http_port VAKT_LOG=warn \
    VAKT_DEVICE_MESSAGES_PER_S=0
  unset VAKT_MQTT_URL VAKT_MQTT_LISTEN VAKT_DATABASE_URL VAKT_MQTT_USERNAME VAKT_MQTT_PASSWORD
  if [ "$name" = postgres ]; then
    local db=vakt_bench_ratio_$$_$run
    psql -q "$PG/postgres" -c "CREATE DATABASE $db"
    databases+=("$db")
    export VAKT_DATABASE_URL=$PG/$db
  fi
  if [ "$name" = embedded ]; then
    export VAKT_MQTT_LISTEN=127.0.0.1:$mqtt_port
  else
    export VAKT_MQTT_URL=mqtt://127.0.0.1:$mqtt_port VAKT_MQTT_USERNAME=vakt-backend \
      VAKT_MQTT_PASSWORD=$secret
  fi
  cd "$dir"
  echo "coordinator-password-1" | "$bin/vakt" user add --username coordinator --role coordinator >/dev/null
  local token
  token=$("$bin/vakt" token create --username coordinator)
  if [ "$name" != embedded ]; then
    # The shipped broker settings (deploy/mosquitto/mosquitto.conf) on a plain listener,
    # without persistence: queues deep enough that nothing is dropped for either subscriber.
    "$bin/vakt" broker mosquitto-files --out "$dir/auth" --backend-user vakt-backend \
      --backend-user vakt-counter >/dev/null
    # `user` is whoever runs this: as root, Mosquitto would otherwise switch to its own
    # user, which cannot read the 0600 files in this private directory.
    cat > "$dir/mosquitto.conf" <<CONF
user $(id -un)
listener $mqtt_port 127.0.0.1
allow_anonymous false
password_file $dir/auth/passwd
acl_file $dir/auth/acl
use_username_as_clientid true
max_packet_size 4096
persistence false
max_queued_messages 1000000
max_queued_bytes 268435456
max_inflight_messages $(awk '$1 == "max_inflight_messages" {print $2}' "$root/deploy/mosquitto/mosquitto.conf")
queue_qos0_messages false
CONF
    mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
    local broker=$!
    pids+=("$broker")
  fi
  "$bin/vakt" serve 2>"$dir/vakt.log" &
  local vakt=$!
  pids+=("$vakt")
  for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$http_port/readyz" >/dev/null && break; sleep 0.2; done
  register "$http_port" "$token" "$dir/devices.txt"
  if [ "$name" != embedded ]; then
    "$bin/vakt" broker mosquitto-files --out "$dir/auth" --backend-user vakt-backend \
      --backend-user vakt-counter >/dev/null
    kill -HUP "$broker"
    sleep 1
  fi
  if [ "$name" = raw ]; then
    kill "$vakt"
    wait "$vakt" 2>/dev/null || true
  fi
  local counting=
  if [ "$name" != embedded ]; then
    "$bin/firmware-sim" count --port "$mqtt_port" --username vakt-counter \
      --password "$(backend_password vakt-counter)" --filter '$share/counter/vakt/v1/dev/+/+' \
      --expect "$total" --idle 30 --report "$dir/count.json" >"$dir/count.out" &
    counting=$!
    pids+=("$counting")
    for _ in $(seq 1 100); do grep -q subscribed "$dir/count.out" 2>/dev/null && break; sleep 0.1; done
  fi
  watcher=
  if [ "$name" != raw ]; then
    watch_intake "$http_port" "$dir/intake.txt"
    for _ in $(seq 1 300); do [ -s "$dir/intake.txt.base" ] && break; sleep 0.1; done
  fi
  sleep 0.5
  "$bin/firmware-sim" saturate --port "$mqtt_port" --devices "$dir/devices.txt" \
    --messages "$M" --window "$WINDOW" --report "$dir/saturate.json" >"$dir/saturate.out"
  [ -z "$counting" ] || wait "$counting"
  [ -z "$watcher" ] || wait "$watcher" || echo "intake watcher failed: $(cat "$dir/intake.txt.err")" >&2
  python3 - "$name" "$run" "$total" "$dir" >>"$work/results" <<'PY'
import json, os, sys
name, run, total, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sat = json.load(open(f"{d}/saturate.json"))
start = sat["started_unix_ms"]
row = {"phase": name, "run": run, "sent_per_s": total / sat["elapsed_s"], "acked": sat["acked"]}
if os.path.exists(f"{d}/count.json"):
    c = json.load(open(f"{d}/count.json"))
    row["subscriber_received"] = c["received"]
    row["subscriber_per_s"] = c["received"] / max(c["last_unix_ms"] - start, 1) * 1000
if os.path.exists(f"{d}/intake.txt"):
    at, taken, *stalled = open(f"{d}/intake.txt").read().split()
    at, taken = int(at), int(taken)
    row["vakt_taken"] = taken
    if stalled:
        row["vakt_stalled"] = True
    row["vakt_per_s"] = taken / max(at - start, 1) * 1000
if "subscriber_per_s" in row and "vakt_per_s" in row:
    row["ratio"] = row["vakt_per_s"] / row["subscriber_per_s"]
print(json.dumps(row))
PY
  stop_all
  cd "$root"
}

for run in $(seq 1 "$RUNS"); do
  for name in $PHASES; do
    echo "run $run: $name ($N devices x $M heartbeats, window $WINDOW)" >&2
    phase "$name" "$run"
  done
done

python3 - "$work/results" "$total" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
total = int(sys.argv[2])
fmt = lambda v: "-" if v is None else f"{v:,.0f}"
print(f"\n{total:,} heartbeats a phase; rates from the generator's first publish, messages a second")
print(f"{'phase':<9} {'run':>3} {'sent':>9} {'subscriber':>10} {'vakt':>9} {'ratio':>6}  received by subscriber / vakt")
for r in rows:
    ratio = f"{r['ratio']:.2f}" if "ratio" in r else "-"
    print(f"{r['phase']:<9} {r['run']:>3} {fmt(r['sent_per_s']):>9} {fmt(r.get('subscriber_per_s')):>10} "
          f"{fmt(r.get('vakt_per_s')):>9} {ratio:>6}  {r.get('subscriber_received', '-')} / {r.get('vakt_taken', '-')}")
med = lambda phase, key: (statistics.median(v) if (v := [r[key] for r in rows if r["phase"] == phase and key in r]) else None)
print("\nmedians:")
for phase in dict.fromkeys(r["phase"] for r in rows):
    ratio = med(phase, "ratio")
    print(f"  {phase:<9} sent {fmt(med(phase, 'sent_per_s'))}, subscriber {fmt(med(phase, 'subscriber_per_s'))}, "
          f"vakt {fmt(med(phase, 'vakt_per_s'))}" + (f", ratio {ratio:.2f}" if ratio is not None else ""))
missed = []
for phase in ("sqlite", "postgres"):
    ratio = med(phase, "ratio")
    if ratio is not None:
        verdict = "met" if ratio >= 0.9 else "MISSED"
        print(f"goal ratio >= 0.9 on {phase}: {ratio:.2f}, {verdict}")
        if ratio < 0.9: missed.append(phase)
raw, emb = med("raw", "subscriber_per_s"), med("embedded", "vakt_per_s")
if raw and emb:
    verdict = "met" if emb >= raw else "MISSED"
    print(f"goal embedded vakt >= raw Mosquitto subscriber: {emb:,.0f} vs {raw:,.0f} ({emb / raw:.2f}), {verdict}")
    if emb < raw: missed.append("embedded")
for r in rows:
    if r.get("vakt_stalled"):
        print(f"STALLED: {r['phase']} run {r['run']}: vakt stopped taking messages in at {r['vakt_taken']} of {total} (no progress for 30 s); its rate is up to then")
    for key in ("subscriber_received", "vakt_taken"):
        if key in r and r[key] != total:
            print(f"WARNING: {r['phase']} run {r['run']}: {key} {r[key]} of {total}")
PY
