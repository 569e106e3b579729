#!/usr/bin/env bash
# bench/rush_vs_wrk.sh - is `catraca rush` fast enough not to be the bottleneck, and the headline.
#
#  1. GET /healthz against one `catraca serve`: `wrk -t2 -c64 -d5s` and
#     `catraca rush --healthz-only --connections 64 --seconds 5`, alternately, 3 times each;
#     prints both medians and rush/wrk (the issue's target: >= 0.8).
#  2. The headline, HEADLINE_RUNS times: `catraca rush --buyers 1000000 --tickets 100000` against a fresh embedded
#     `catraca serve` (rate limits off: --rate-customer 0 --rate-ip 0), capped by --max-seconds,
#     then `catraca audit --data DIR`; prints the time to all decided and the accept p99.
#
# Environment: CATRACA_BIN (default build/catraca, the release build), BUYERS, TICKETS,
# MAX_SECONDS (default 600), SYNC (full|normal, the server's --sync, default full),
# ROUNDS (default 3), HEADLINE_RUNS (default 3; medians reported), SKIP_HEADLINE=1 to run
# part 1 only. Ends with one JSON line.
# Exit 1 when a server does not start or the audit is not clean; rush's own verdict is reported.
set -euo pipefail

BIN=${CATRACA_BIN:-build/catraca}
BUYERS=${BUYERS:-1000000}
TICKETS=${TICKETS:-100000}
MAX_SECONDS=${MAX_SECONDS:-600}
SYNC=${SYNC:-full}
ROUNDS=${ROUNDS:-3}
SECRET=$(openssl rand -base64 48)  # catraca refuses short or documented secrets
WORK=$(mktemp -d /tmp/catraca-rush-bench-XXXXXX)
SERVER_PID=

stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        wait "$SERVER_PID" || true
    fi
    SERVER_PID=
}
cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT

# start_server DATA_DIR: starts `catraca serve` on a free port; sets SERVER_PID and PORT.
start_server() {
    local data=$1
    mkdir -p "$data"
    "$BIN" serve --listen 127.0.0.1:0 --data "$data" --jwt-secret "$SECRET" --sync "$SYNC" \
        --rate-customer 0 --rate-ip 0 2>"$data/stderr.log" &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$data/stderr.log")
        [ -n "$PORT" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "rush_vs_wrk: catraca serve did not start:" >&2
    cat "$data/stderr.log" >&2
    exit 1
}

median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

[ -x "$BIN" ] || { echo "rush_vs_wrk: $BIN not found (make build)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "rush_vs_wrk: wrk not installed (make deps)" >&2; exit 1; }

# ---- 1. GET /healthz: wrk and rush, alternately ----------------------------------------------
start_server "$WORK/healthz"
URL=http://127.0.0.1:$PORT
: >"$WORK/wrk.txt"
: >"$WORK/rush.txt"
printf '%-6s %-5s %12s\n' round tool 'req/s'
for round in $(seq 1 "$ROUNDS"); do
    wrk_rps=$(wrk -t2 -c64 -d5s "$URL/healthz" | awk '/^Requests\/sec:/ {print $2}')
    echo "$wrk_rps" >>"$WORK/wrk.txt"
    printf '%-6s %-5s %12.0f\n' "$round" wrk "$wrk_rps"
    rush_rps=$("$BIN" rush --url "$URL" --healthz-only --connections 64 --seconds 5 |
        sed -n 's/.*"healthz_requests_per_s":\([0-9.]*\).*/\1/p')
    echo "$rush_rps" >>"$WORK/rush.txt"
    printf '%-6s %-5s %12.0f\n' "$round" rush "$rush_rps"
done
stop_server
WRK_MEDIAN=$(median <"$WORK/wrk.txt")
RUSH_MEDIAN=$(median <"$WORK/rush.txt")
RATIO=$(awk -v r="$RUSH_MEDIAN" -v w="$WRK_MEDIAN" 'BEGIN {printf "%.2f", r / w}')
echo "healthz medians: wrk $WRK_MEDIAN req/s, rush $RUSH_MEDIAN req/s, rush/wrk $RATIO (target >= 0.8)"

if [ "${SKIP_HEADLINE:-0}" = 1 ]; then
    printf '{"bench":"rush_vs_wrk","wrk_rps":%s,"rush_rps":%s,"ratio":%s}\n' \
        "$WRK_MEDIAN" "$RUSH_MEDIAN" "$RATIO"
    exit 0
fi

# ---- 2. the headline, HEADLINE_RUNS times on fresh data directories -------------------------
HEADLINE_RUNS=${HEADLINE_RUNS:-3}
echo "headline: $BUYERS buyers, $TICKETS tickets, embedded serve --sync $SYNC, rate limits off," \
    "$HEADLINE_RUNS runs"
AUDIT_FAILED=0
for run in $(seq 1 "$HEADLINE_RUNS"); do
    DATA=$WORK/headline-$run
    start_server "$DATA"
    set +e
    "$BIN" rush --url "http://127.0.0.1:$PORT" --jwt-secret "$SECRET" --buyers "$BUYERS" \
        --tickets "$TICKETS" --max-seconds "$MAX_SECONDS" --json "$WORK/headline-$run.json" \
        >"$WORK/rush-$run.txt" 2>&1
    echo "$?" >"$WORK/rush-$run.exit"
    set -e
    stop_server
    if "$BIN" audit --data "$DATA" >"$WORK/audit-$run.txt" 2>&1; then
        echo 0 >"$WORK/audit-$run.exit"
    else
        echo 1 >"$WORK/audit-$run.exit"
        AUDIT_FAILED=1
    fi
    grep -E '^(time|rate|result)' "$WORK/rush-$run.txt" | sed "s/^/run $run: /"
    tail -1 "$WORK/audit-$run.txt" | sed "s/^/run $run: /"
    rm -rf "$DATA"
done
python3 - "$WORK" "$HEADLINE_RUNS" "$WRK_MEDIAN" "$RUSH_MEDIAN" "$RATIO" "$SYNC" <<'EOF'
import json, statistics, sys
work, runs = sys.argv[1], int(sys.argv[2])
rows = []
for run in range(1, runs + 1):
    report = json.load(open(f"{work}/headline-{run}.json"))
    rows.append({"all_decided_s": report["all_decided_s"], "all_final_s": report["all_final_s"],
                 "sell_out_s": report["sell_out_s"],
                 "accept_p99_ms": report["latency"]["accept"]["p99_ms"],
                 "decision_p99_ms": report["latency"]["decision"]["p99_ms"],
                 "accepted_per_s": round(report["accepted_per_s"]),
                 "rush_pass": int(open(f"{work}/rush-{run}.exit").read()) == 0,
                 "audit_clean": int(open(f"{work}/audit-{run}.exit").read()) == 0,
                 "buyers": report["buyers"], "tickets": report["tickets"]})
keys = ("all_decided_s", "all_final_s", "sell_out_s", "accept_p99_ms", "decision_p99_ms",
        "accepted_per_s")
print("run " + " ".join(f"{k:>15}" for k in keys) + "  checks audit")
for n, r in enumerate(rows, 1):
    cells = " ".join(f"{r[k] if r[k] is not None else float('nan'):>15.2f}" for k in keys)
    print(f"{n:>3} {cells}  {'PASS' if r['rush_pass'] else 'FAIL':>6} "
          f"{'CLEAN' if r['audit_clean'] else 'DIRTY'}")
# A run that never got there (None) counts as infinitely slow.
summary = {k: statistics.median(r[k] if r[k] is not None else float("inf") for r in rows)
           for k in keys}
print("median " + ", ".join(f"{k} {v:.2f}" for k, v in summary.items()))
print(json.dumps({"bench": "rush_vs_wrk", "wrk_rps": float(sys.argv[3]),
                  "rush_rps": float(sys.argv[4]), "ratio": float(sys.argv[5]),
                  "headline": dict(summary, runs=runs, buyers=rows[0]["buyers"],
                                   tickets=rows[0]["tickets"], sync=sys.argv[6],
                                   rush_pass=all(r["rush_pass"] for r in rows),
                                   audit_clean=all(r["audit_clean"] for r in rows))}))
EOF
[ "$AUDIT_FAILED" = 0 ]
