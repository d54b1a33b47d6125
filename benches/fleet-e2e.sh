#!/usr/bin/env bash
# End to end at scale: N real MQTT devices (firmware-sim, default 50,000) beat for DURATION
# seconds (default 600) while vakt, on a fresh PostgreSQL database and a private Mosquitto
# (benches/stage.sh), supervises them through the external-broker path. Prints a JSON
# summary: devices connected, messages sent and taken in, silence alerts, memory and CPU of
# vakt, the brokers and the fleet, and the machine's load. A false silence alert, a message
# the broker acknowledged that vakt did not take in, or a device that never connected is a
# failure.
#
#   benches/fleet-e2e.sh            # N=50000 DURATION=600 HB=30 RATE=500
#   N=1000 DURATION=60 benches/fleet-e2e.sh
#   KEEP=DIR                        # keep the summary, the samples and the fleet reports
#
# Every connection is an open file in the broker and in the device simulator, and a process
# may hold no more than `ulimit -n` of them (20,000 on the project's machine, where the hard
# limit cannot be raised). A fleet that fits goes to vakt's Mosquitto directly, spread over
# one listener port per 20,000 devices (from one address to one port the loopback has about
# 28,000 ephemeral ports). A larger one is spread over EDGES edge brokers, Mosquittos that
# bridge the devices' uplink into vakt's and its answers back, each with its own firmware-sim.
N=${N:-50000}
DURATION=${DURATION:-600}
HB=${HB:-30}
RATE=${RATE:-500}
ulimit -n 262144 2>/dev/null || ulimit -n "$(ulimit -Hn)"
per_process=$(($(ulimit -n) - 1000))
EDGES=${EDGES:-$((N > per_process ? (N + per_process - 1) / per_process : 0))}
LISTENERS=${LISTENERS:-$((EDGES > 0 ? 1 : (N + 19999) / 20000))}
# A device issued but never heard is supervised at the default interval from the moment it
# is issued (2 × 60 s + 30 s). Registering 50,000 devices through the API takes longer than
# that, and a device that has not connected yet is rightly silent: so the default is raised
# beyond the registration and the ramp. Every device announces HB in its hello, and from then
# on that interval is the one supervised (a silence window of 2 × HB + 30 s).
export VAKT_DEFAULT_HB_S=${DEFAULT_HB_S:-900}
stage_probe=no
source "$(dirname "$0")/stage.sh"

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # clock ticks of user + system time
load1() { cut -d' ' -f1 /proc/loadavg; }
metric() { curl -sf "$url/metrics" | awk -v k="$1" '$1 == k {print $2}'; }
sum_rss() { local t=0 p; for p in "$@"; do t=$((t + $(rss "$p" 2>/dev/null || echo 0))); done; echo $t; }
sum_cpu() { local t=0 p; for p in "$@"; do t=$((t + $(cpu "$p" 2>/dev/null || echo 0))); done; echo $t; }

# The edge brokers: devices' uplink out to vakt's Mosquitto, `ack` and `cfg` back in.
edge_ports=()
edge_pids=
for e in $(seq 1 "$EDGES"); do
  port=$(free_port)
  edge_ports+=("$port")
  cat >"$work/edge-$e.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000
max_inflight_messages 1000
connection edge-$e
address 127.0.0.1:$mqtt_port
cleansession false
notifications false
$(for t in hello hb alarm pos state; do echo "topic vakt/v1/dev/+/$t out 1"; done)
$(for t in ack cfg; do echo "topic vakt/v1/dev/+/$t in 1"; done)
CONF
  mosquitto -c "$work/edge-$e.conf" >"$work/edge-$e.log" 2>&1 &
  edge_pids="$edge_pids $!"
done

rss_empty=$(rss)
start=$(date +%s)
# Ten devices to a case, as in the storm: issuing a device copies its case's list of devices
# in the directory, so one case of 50,000 would make registration quadratic (it slowed to 25
# devices a second towards the end), a cost no real case of a few devices has.
register load "$N" "$work/devices.txt" --threads 8 --per-case 10
echo "registered $N devices in $(($(date +%s) - start)) s; running for $DURATION s" >&2
# Registering re-reads each device (the directory's announcements): let vakt go idle, so
# that the fleet's memory and CPU are measured alone.
last=$(cpu "$vakt_pid")
for _ in $(seq 1 60); do
  sleep 1; now=$(cpu "$vakt_pid")
  [ $((now - last)) -le 2 ] && break
  last=$now
done
rss_registered=$(rss)
accepted_before=$(metric vakt_messages_accepted_total)
cpu_before="$(cpu "$vakt_pid") $(cpu "$broker_pid") $(sum_cpu $edge_pids)"

# One firmware-sim per edge broker (each its share of the devices and of the connect
# rate), or one for the whole fleet on vakt's Mosquitto.
if [ "$EDGES" -gt 0 ]; then
  split -n "l/$EDGES" -d "$work/devices.txt" "$work/devices-part-"
  parts=("$work"/devices-part-*)
  for e in $(seq 0 $((EDGES - 1))); do
    "$bin/firmware-sim" load --port "${edge_ports[$e]}" --devices "${parts[$e]}" --hb "$HB" \
      --alarm-every 0 --duration "$DURATION" --connect-rate $(((RATE + EDGES - 1) / EDGES)) \
      >"$work/report-$e.json" 2>"$work/fleet-$e.log" &
    load_pid="${load_pid:-} $!"
  done
else
  "$bin/firmware-sim" load --port "$mqtt_port" ${more_ports:+--more-ports "$more_ports"} \
    --devices "$work/devices.txt" --hb "$HB" --alarm-every 0 --duration "$DURATION" \
    --connect-rate "$RATE" >"$work/report-0.json" 2>"$work/fleet-0.log" &
  load_pid=$!
fi
# Every 5 s: the memory of vakt, its Mosquitto, the edges and the fleet, and the load.
echo "t vakt_kib broker_kib edges_kib fleet_kib load1" >"$work/samples.txt"
t0=$(date +%s)
running() { local p; for p in $load_pid; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
while running; do
  fleet_cpu=$(sum_cpu $load_pid)
  echo "$(($(date +%s) - t0)) $(rss) $(rss "$broker_pid") $(sum_rss $edge_pids) $(sum_rss $load_pid) $(load1)" >>"$work/samples.txt"
  sleep 5
done
for p in $load_pid; do wait "$p"; done
load_pid=
# The last messages the brokers acknowledged are still on their way to vakt.
sleep 5
cpu_after="$(cpu "$vakt_pid") $(cpu "$broker_pid") $(sum_cpu $edge_pids)"

curl -sf "$url/metrics" >"$work/metrics.txt"
curl -sf -H "Authorization: Bearer $token" "$url/api/alerts?state=open,acknowledged,resolved" >"$work/alerts.json"
python3 - "$work" "$N" "$DURATION" "$HB" "$RATE" "$LISTENERS" "$EDGES" "$rss_empty" "$rss_registered" \
  "$accepted_before" "$cpu_before" "$cpu_after" "$(getconf CLK_TCK)" "${fleet_cpu:-0}" \
  >"$work/summary.json" <<'PY'
import glob, json, sys
d, (n, duration, hb, rate, listeners, edges, rss_empty, rss_registered) = sys.argv[1], map(int, sys.argv[2:10])
accepted_before = float(sys.argv[10])
(vakt0, broker0, edges0), (vakt1, broker1, edges1) = (map(int, a.split()) for a in sys.argv[11:13])
tck = int(sys.argv[13])
fleet_cpu = int(sys.argv[14]) / tck
reports = [json.load(open(f)) for f in sorted(glob.glob(f"{d}/report-*.json"))]
total = lambda k: sum(r[k] for r in reports)
metrics = {}
for line in open(f"{d}/metrics.txt"):
    if line.strip() and not line.startswith("#"):
        k, v = line.rsplit(" ", 1)
        metrics[k] = float(v)
silent = sum(1 for a in json.load(open(f"{d}/alerts.json")) if a["kind"] == "silent")
silent_opened = sum(v for k, v in metrics.items() if k.startswith("vakt_alerts_opened_total{") and 'kind="silent"' in k)
rows = [list(map(float, l.split())) for l in open(f"{d}/samples.txt").readlines()[1:]]
# Connected: the samples after the ramp (N / RATE seconds) and a heartbeat interval.
steady = [r for r in rows if r[0] >= n / rate + hb] or rows[-1:]
median = lambda xs: sorted(xs)[len(xs) // 2]
mib = lambda kib: round(kib / 1024)
vakt_steady = median([r[1] for r in steady])
taken = metrics.get("vakt_messages_accepted_total", 0) - accepted_before
hellos = total("connected")  # one each, after the connect
cpu = lambda a, b: (b - a) / tck
span = rows[-1][0] if rows else duration
share = lambda s: round(s / span, 3)
out = {
    "devices": n, "listeners": listeners, "edge_brokers": edges, "hb_s": hb, "connect_rate": rate,
    "connected": total("connected"), "connect_failures": total("connect_failures"),
    "heartbeats_sent": total("heartbeats"), "heartbeats_acked_by_broker": total("heartbeats_acked"),
    "publish_failures": total("publish_failures"),
    "hellos": hellos, "taken_in": taken,
    "acked_not_taken_in": max(0, total("heartbeats_acked") + hellos - taken),
    "device_messages_total": {k[len("vakt_device_messages_total"):]: v for k, v in metrics.items()
                              if k.startswith("vakt_device_messages_total{") and v},
    "duplicates": metrics.get("vakt_duplicates_total"), "replays": metrics.get("vakt_replays_total"),
    "security_events": metrics.get("vakt_security_events_total"),
    "silence_alerts": silent, "silence_alerts_opened_metric": silent_opened,
    "vakt_rss_mib": {"empty": mib(rss_empty), "registered": mib(rss_registered),
                     "connected_median": mib(vakt_steady), "peak": mib(max(r[1] for r in rows))},
    "vakt_kib_per_device": {"directory": round((rss_registered - rss_empty) / n, 1),
                            "connected": round((vakt_steady - rss_registered) / n, 1),
                            "all": round((vakt_steady - rss_empty) / n, 1)},
    "broker_rss_mib_peak": mib(max(r[2] for r in rows)),
    "edges_rss_mib_peak": mib(max(r[3] for r in rows)),
    "fleet_rss_mib_peak": mib(max(r[4] for r in rows)),
    "cpu_s": {"vakt": cpu(vakt0, vakt1), "broker": cpu(broker0, broker1), "edges": cpu(edges0, edges1), "fleet": fleet_cpu},
    "cpu_share_of_a_core": {"vakt": share(cpu(vakt0, vakt1)), "broker": share(cpu(broker0, broker1)),
                            "edges": share(cpu(edges0, edges1)), "fleet": share(fleet_cpu)},
    "load1": {"min": min(r[5] for r in rows), "median": median([r[5] for r in rows]), "max": max(r[5] for r in rows)},
}
print(json.dumps(out, indent=1))
PY
cat "$work/summary.json"
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$work"/{summary.json,samples.txt,report-*.json} "$KEEP"/; fi
head -q -n 3 "$work"/fleet-*.log >&2
python3 - "$work/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["silence_alerts"] == 0 and s["silence_alerts_opened_metric"] == 0, "false silence alerts"
assert s["acked_not_taken_in"] == 0, "messages the broker acknowledged that vakt did not take in"
assert s["connected"] == s["devices"], "devices that never connected"
PY
