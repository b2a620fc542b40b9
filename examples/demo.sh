#!/bin/sh
# Posts a database outage (five alerts on five CIs) to a running incidentd and
# shows what on-call gets: one incident, its root cause and what it impacts,
# and the one notification the data team's webhook receives.
set -e
URL=${INCIDENTD_URL:-http://127.0.0.1:9095}
HERE=$(dirname "$0")
python3 "$HERE/webhook_sink.py" 9099 &
SINK=$!
trap 'kill $SINK 2>/dev/null' EXIT
for i in $(seq 1 30); do curl -fsS "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
curl -fsS -X POST -H 'Content-Type: application/json' --data @"$HERE/alerts-db-outage.json" "$URL/api/v1/alerts"
echo
sleep 4   # the notification waits group_wait (2s) for the rest of the storm
python3 "$HERE/show_incidents.py" "$URL"
