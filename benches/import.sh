#!/usr/bin/env bash
# Member import benchmark (on demand; never part of `cargo test`):
#
#   bash benches/import.sh [ROWS]        # default 1,000,000
#
# Generates ROWS rows of `email,firstname,lastname,plan,seats` (emails in random order,
# a SingleSelect and a Number property), then times the real release binary, whole
# process (reading and parsing the file included):
#   1. `openspot members import --dry-run` over the empty spot (validation and email
#      lookups, nothing written): the baseline, measured in the same run;
#   2. the import itself (every row creates a member and two values);
#   3. a re-run of the first min(ROWS, 100,000) rows (members exist, nothing changes);
# and a filter on one property over the imported spot through the HTTP API.
# Rates are also printed as ratios to the baseline, so runs on other machines compare.
# OPENSPOT_BENCH_DATABASE_URL selects another (empty) database, e.g. PostgreSQL.
set -euo pipefail

ROWS=${1:-1000000}
RERUN_ROWS=$((ROWS < 100000 ? ROWS : 100000))
cd "$(dirname "$0")/.."
cargo build --release --bin openspot >&2
BIN=$PWD/target/release/openspot
WORK=$(mktemp -d)
SERVER=
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export OPENSPOT_DATABASE_URL=${OPENSPOT_BENCH_DATABASE_URL:-sqlite://$WORK/bench.db}
export RUST_LOG=warn

awk -v n="$ROWS" 'BEGIN {
    srand(7); split("Free Pro Team", plans, " ");
    print "email,firstname,lastname,plan,seats";
    for (i = 0; i < n; i++) {
        f = int(rand() * 300); l = int(rand() * 2000);
        printf "first%d.last%d.%d@example%d.com,First%d,Last%d,%s,%d\n",
            f, l, i, i % 97, f, l, plans[int(rand() * 3) + 1], int(rand() * 500) + 1;
    }
}' > "$WORK/rows.csv"
head -n $((RERUN_ROWS + 1)) "$WORK/rows.csv" > "$WORK/rerun.csv"

json_field() { python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }
SPOT=$("$BIN" spots create --name "import bench" --json)
SPOT_ID=$(echo "$SPOT" | json_field spotId)
KEY=$(echo "$SPOT" | json_field apiKey)

PORT=$((20000 + RANDOM % 20000))
"$BIN" serve --listen "127.0.0.1:$PORT" > "$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "127.0.0.1:$PORT/healthz" > /dev/null && break; sleep 0.1; done
api() { curl -sf -H "Authorization: $KEY" -H 'content-type: application/json' "$@"; }
api -X POST "127.0.0.1:$PORT/v1/customProperties" \
    -d '{"label": "Plan", "slug": "plan", "type": "SingleSelect", "possibleValues": ["Free", "Pro", "Team"]}' > /dev/null
api -X POST "127.0.0.1:$PORT/v1/customProperties" -d '{"label": "Seats", "slug": "seats", "type": "Number"}' > /dev/null
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=

# Runs one import and prints its wall-clock seconds.
timed_import() {
    local start end
    start=$(date +%s.%N)
    "$BIN" members import --spot "$SPOT_ID" "$@" --json > "$WORK/report.json"
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}
rate() { echo "$1 / $2" | bc -l | xargs printf "%.0f"; }
ratio() { echo "$1 / $2" | bc -l | xargs printf "%.2f"; }

DRY=$(timed_import "$WORK/rows.csv" --dry-run)
DRY_RATE=$(rate "$ROWS" "$DRY")
FRESH=$(timed_import "$WORK/rows.csv")
FRESH_RATE=$(rate "$ROWS" "$FRESH")
CREATED=$(json_field created < "$WORK/report.json")
RERUN=$(timed_import "$WORK/rerun.csv")
RERUN_RATE=$(rate "$RERUN_ROWS" "$RERUN")
UPDATED=$(json_field updated < "$WORK/report.json")

"$BIN" serve --listen "127.0.0.1:$PORT" > "$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "127.0.0.1:$PORT/healthz" > /dev/null && break; sleep 0.1; done
FILTER_URL="127.0.0.1:$PORT/v1/spotMembers?customProperties.seats%5Bgt%5D=490&limit=100"
api "$FILTER_URL" > /dev/null # warm
FILTER_S=$(api -o /dev/null -w '%{time_total}' "$FILTER_URL")
MATCHES=$(api "$FILTER_URL" | json_field total)

printf '%-58s %12s %10s %8s\n' scenario rows "rows/s" ratio
printf '%-58s %12s %10s %8s\n' "dry run, nothing written (baseline)" "$ROWS" "$DRY_RATE" 1.00
printf '%-58s %12s %10s %8s\n' "import, every row new ($CREATED created, $(printf %.1f "$FRESH") s)" \
    "$ROWS" "$FRESH_RATE" "$(ratio "$FRESH_RATE" "$DRY_RATE")"
printf '%-58s %12s %10s %8s\n' "re-run of those rows ($UPDATED already there, unchanged)" \
    "$RERUN_ROWS" "$RERUN_RATE" "$(ratio "$RERUN_RATE" "$DRY_RATE")"
echo "filter customProperties.seats[gt]=490 over $CREATED members: $MATCHES matches," \
    "first page of 100 in $(echo "$FILTER_S * 1000" | bc -l | xargs printf %.1f) ms"
