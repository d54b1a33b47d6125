#!/usr/bin/env bash
# The fault campaign at full size (tests/fault_campaign.rs): DEVICES firmware-sim devices,
# each alarming every ALARM_EVERY_MS and beating every 5 s, against two `vakt serve`
# processes (the debug build `cargo test` makes) on a private PostgreSQL cluster and a
# private Mosquitto, through ROUNDS rounds of every fault. VAKT_TEST_POSTGRES (default: the
# local server) is used only where the private cluster cannot be made. Prints the
# campaign's figures; fails when an alarm is lost, stored or counted twice, or left
# unanswered, when a device that kept beating is declared silent, or when fewer than
# MIN_ALARMS alarms were sent.
#
#   benches/fault-campaign.sh                         # 1,000 devices, an alarm every 10 s
#   DEVICES=100 ALARM_EVERY_MS=2000 benches/fault-campaign.sh
set -euo pipefail
DEVICES=${DEVICES:-1000}
ALARM_EVERY_MS=${ALARM_EVERY_MS:-10000}
ROUNDS=${ROUNDS:-1}
MIN_ALARMS=${MIN_ALARMS:-10000}
cd "$(dirname "$0")/.."
# A thousand device connections to the broker, and as many in the test process.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
VAKT_CAMPAIGN_DEVICES=$DEVICES VAKT_CAMPAIGN_ALARM_EVERY_MS=$ALARM_EVERY_MS \
VAKT_CAMPAIGN_ROUNDS=$ROUNDS \
VAKT_TEST_POSTGRES=${VAKT_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432} \
  cargo test --locked --test fault_campaign -- --nocapture 2>&1 | tee "$out"
sent=$(grep -o '"alarms_sent": [0-9]*' "$out" | grep -o '[0-9]*$' || echo 0)
if [ "$sent" -lt "$MIN_ALARMS" ]; then
  echo "only $sent alarms sent, fewer than $MIN_ALARMS: raise DEVICES or lower ALARM_EVERY_MS" >&2
  exit 1
fi
echo "fault campaign: $sent alarms from $DEVICES devices, none lost, none counted twice, no false silence"
