#!/usr/bin/env bash
# The burst on the zero-setup defaults, with the release binaries: `vakt serve` (embedded
# broker, SQLite) and `firmware-sim burst`, N devices each publishing M QoS 1 messages as
# fast as the broker takes them, every K-th a panic. Fails unless every message the broker
# acknowledged was taken in, every panic is stored once and every panic was answered
# `received`.
#
#   benches/burst-embedded.sh                 # N=20 M=5000 K=50
#   N=5 M=500 benches/burst-embedded.sh
set -euo pipefail
N=${N:-20}
M=${M:-5000}
K=${K:-50}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release --workspace --bins -q
bin=$root/target/release
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mqtt_port=$(free_port)
http_port=$(free_port)
cleanup() {
  kill "${vakt_pid:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# No per-device rate limit: the burst measures what the backend takes in, not the limit.
export VAKT_DATA_DIR=$work/data VAKT_HTTP_ADDR=127.0.0.1:$http_port \
  VAKT_MQTT_LISTEN=127.0.0.1:$mqtt_port VAKT_LOG=warn VAKT_DEVICE_MESSAGES_PER_S=0
unset VAKT_MQTT_URL VAKT_DATABASE_URL
cd "$work"
echo "coordinator-password-1" | "$bin/vakt" user add --username coordinator --role coordinator >/dev/null
token=$("$bin/vakt" token create --username coordinator)
"$bin/vakt" serve 2>"$work/vakt.log" &
vakt_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$http_port/readyz" >/dev/null && break; sleep 0.2; done

# One case per device: a device's panics are one incident whose count is checked.
python3 "$root/benches/register.py" "$http_port" "$token" burst "$N" "$work/devices.txt" --per-case 1

before=$(curl -sf "http://127.0.0.1:$http_port/metrics" | awk '/^vakt_messages_accepted_total / {print $2}')
start=$(date +%s.%N)
"$bin/firmware-sim" burst --port "$mqtt_port" --devices "$work/devices.txt" --messages "$M" \
  --alarm-every "$K" --wait 120 --connect-rate 0 --report "$work/report.json"
end=$(date +%s.%N)
metrics=$(curl -sf "http://127.0.0.1:$http_port/metrics")
curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$http_port/api/alerts?state=open,acknowledged,resolved" >"$work/alerts.json"
python3 - "$work/report.json" "$work/alerts.json" "$before" "$start" "$end" "$N" "$M" <<PY
import json, sys
report = json.load(open(sys.argv[1])); alerts = json.load(open(sys.argv[2]))
before, start, end, n, m = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
metrics = dict(l.split(" ", 1) for l in """$metrics""".splitlines() if l and not l.startswith("#"))
accepted = int(metrics["vakt_messages_accepted_total"]) - before
panics = sum(a["count"] for a in alerts if a["kind"] == "panic")
sent = sum(len(d["alarms_sent"]) for d in report["per_device"])
acked_hb = sum(d["heartbeats_acked"] for d in report["per_device"])
lat = report["latency_ms"]
print(f"{n} devices x {m} messages in {end - start:.2f} s: heartbeats acked {acked_hb}, panics sent {sent}, "
      f"answered {report['received']}, unanswered {report['unanswered']}, repeats {report['repeats']}; "
      f"taken in {accepted} (of {n * (m + 1)} with the hellos), panics stored {panics}; "
      f"received latency median {lat['median']:.0f} ms p99 {lat['p99']:.0f} ms max {lat['max']:.0f} ms; "
      f"duplicates {metrics['vakt_duplicates_total']}, replays {metrics['vakt_replays_total']}")
assert accepted == n * (m + 1), "a message the broker acknowledged was not taken in"
assert panics == sent, "panics stored differ from panics sent"
assert report["unanswered"] == 0
PY
