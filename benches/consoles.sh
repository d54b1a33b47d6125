#!/usr/bin/env bash
# A thousand consoles: N live streams on one vakt (PostgreSQL, a private Mosquitto) while
# PROBES devices send ALARMS panics, one every EVERY_MS; for each alarm, the time until the
# last of the N streams has its event (benches/live_stream.rs), and vakt's resident memory
# without and with the streams.
#
#   benches/consoles.sh                        # N=1000 ALARMS=50 EVERY_MS=200 PROBES=4
#   N=10000 benches/consoles.sh
N=${N:-1000}
ALARMS=${ALARMS:-50}
EVERY_MS=${EVERY_MS:-200}
PROBES=${PROBES:-4}
source "$(dirname "$0")/stage.sh"
register probe "$PROBES" "$work/probes.txt"
probe --devices "$work/probes.txt" --consoles "$N" --alarms "$ALARMS" --every-ms "$EVERY_MS"
