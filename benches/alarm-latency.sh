#!/usr/bin/env bash
# Alarm to screen while the fleet talks: on PostgreSQL and a private Mosquitto, LOAD
# devices send heartbeats (RATE a second in all) while PROBES other devices send a panic
# every EVERY_MS, ALARMS in all; one console's live stream times each alarm from the
# device's publish to its event (benches/live_stream.rs), beside vakt's own
# vakt_alarm_to_console_seconds over the same time.
#
#   benches/alarm-latency.sh                   # RATE=2000 ALARMS=300 EVERY_MS=200 PROBES=4
#   RATE=0 benches/alarm-latency.sh            # the same without the load
#   LOADGEN='...' benches/alarm-latency.sh     # another heartbeat generator (see below)
#   RATE=20000 LOAD_DEVICES=100 LOADGEN='"$bin/firmware-sim" saturate --port "$mqtt_port" --devices "$load_devices" --messages 30000 --window 32 --rate "$RATE" --duration 150' benches/alarm-latency.sh
#
# LOADGEN is a command line run with `eval`; it may use $bin (the release binaries),
# $mqtt_port, $load_devices (a file of `id key` lines of LOAD_DEVICES issued devices,
# RATE by default) and $RATE.
# The default, `firmware-sim load`, keeps one MQTT connection per device and beats every
# second, so RATE devices give RATE heartbeats a second (if the machine keeps up: the
# script prints the rate vakt actually took in).
RATE=${RATE:-2000}
ALARMS=${ALARMS:-300}
EVERY_MS=${EVERY_MS:-200}
PROBES=${PROBES:-4}
source "$(dirname "$0")/stage.sh"
LOADGEN=${LOADGEN:-'"$bin/firmware-sim" load --port "$mqtt_port" --devices "$load_devices" --hb 1 --alarm-every 0 --connect-rate 1000'}

register probe "$PROBES" "$work/probes.txt"
load_devices=$work/load.txt
if [ "$RATE" -gt 0 ]; then
  register load "${LOAD_DEVICES:-$RATE}" "$load_devices"
  eval "$LOADGEN" >"$work/load.json" 2>"$work/load.log" &
  load_pid=$!
  # Every device connected and beating before the alarms are timed.
  sleep $((RATE / 1000 + 10))
fi
heartbeats() {
  curl -sf "$url/metrics" | awk '/^vakt_device_messages_total\{kind="hb",result="accepted"\}/ {print $2}'
}
hb0=$(heartbeats); t0=$(date +%s.%N)
probe --devices "$work/probes.txt" --consoles 1 --alarms "$ALARMS" --every-ms "$EVERY_MS"
hb1=$(heartbeats); t1=$(date +%s.%N)
python3 -c "import sys; print(f'heartbeats taken in during the probe: {($hb1 - $hb0) / ($t1 - $t0):.0f} a second')"
echo "vakt RSS at the end: $(( $(rss) / 1024 )) MiB; vakt CPU: $(ps -o %cpu= -p "$vakt_pid")%"
