#!/usr/bin/env bash
# End to end at scale: N real MQTT devices (firmware-sim, default 10,000) beat against a
# private Mosquitto for DURATION seconds (default 600) while vakt supervises them through the
# external-broker path. Prints the fleet report, vakt's counters and its memory; a false
# silence alert is a failure.
#
#   benches/fleet-e2e.sh            # N=10000 DURATION=600 HB=30
#   N=1000 DURATION=60 benches/fleet-e2e.sh
set -euo pipefail
N=${N:-10000}
DURATION=${DURATION:-600}
HB=${HB:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release --workspace --bins -q
bin=$root/target/release
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mqtt_port=$(free_port)
http_port=$(free_port)
cleanup() {
  kill "${fleet_pid:-}" "${vakt_pid:-}" "${broker_pid:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cat > "$work/mosquitto.conf" <<CONF
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000
CONF
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
broker_pid=$!

export VAKT_DATA_DIR=$work/data VAKT_HTTP_ADDR=127.0.0.1:$http_port \
  VAKT_MQTT_URL=mqtt://127.0.0.1:$mqtt_port VAKT_MQTT_SHARE_GROUP= VAKT_LOG=warn
cd "$work"
echo "coordinator-password-1" | "$bin/vakt" user add --username coordinator --role coordinator >/dev/null
token=$("$bin/vakt" token create --username coordinator)
"$bin/vakt" serve 2>"$work/vakt.log" &
vakt_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$http_port/readyz" >/dev/null && break; sleep 0.2; done

python3 - "$http_port" "$token" "$N" "$work/devices.txt" <<'PY'
import http.client, json, sys
port, token, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", int(port))
def post(path, body):
    conn.request("POST", path, json.dumps(body), {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    r = conn.getresponse(); data = r.read()
    assert r.status < 300, (path, r.status, data)
    return json.loads(data)
person = post("/api/persons", {"name": "Load Test", "region": "Stockholm"})
case = post("/api/cases", {"reference": "LOAD-1", "person_id": person["id"], "risk": "medium", "region": "Stockholm"})
with open(out, "w") as f:
    for i in range(n):
        d = post("/api/devices", {"id": f"load-{i:06d}"})
        post(f"/api/devices/{d['id']}/issue", {"case_id": case["id"], "holder_person_id": person["id"]})
        f.write(f"{d['id']} {d['key']}\n")
PY
echo "registered $N devices; running for $DURATION s" >&2

"$bin/firmware-sim" load --port "$mqtt_port" --devices "$work/devices.txt" --hb "$HB" \
  --alarm-every 0 --duration "$DURATION" --connect-rate 500 >"$work/report.json" &
fleet_pid=$!
peak_kib=0
while kill -0 "$fleet_pid" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$vakt_pid/status")
  [ "$rss" -gt "$peak_kib" ] && peak_kib=$rss
  sleep 5
done
wait "$fleet_pid"
fleet_pid=

metrics=$(curl -sf "http://127.0.0.1:$http_port/metrics")
silent=$(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$http_port/api/alerts?state=open,acknowledged,resolved" \
  | python3 -c 'import json,sys; print(sum(1 for a in json.load(sys.stdin) if a["kind"] == "silent"))')
echo "fleet report: $(cat "$work/report.json")"
echo "$metrics" | grep -E '^vakt_(messages_total|messages_accepted_total|duplicates_total|silence_alerts_total|security_events_total) '
echo "vakt peak RSS: $((peak_kib / 1024)) MiB"
echo "silence alerts: $silent"
[ "$silent" -eq 0 ]
