#!/usr/bin/env bash
# bench/rush_vs_wrk.sh - is `catraca rush` fast enough not to be the bottleneck, and the headline.
#
#  1. GET /healthz against one `catraca serve`: `wrk -t2 -c64 -d5s` and
#     `catraca rush --healthz-only --connections 64 --seconds 5`, alternately, 3 times each;
#     prints both medians and rush/wrk (the issue's target: >= 0.8).
#  2. The headline: `catraca rush --buyers 1000000 --tickets 100000` against a fresh embedded
#     `catraca serve` (rate limits off: --rate-customer 0 --rate-ip 0), capped by --max-seconds,
#     then `catraca audit --data DIR`; prints the time to all decided and the accept p99.
#
# Environment: CATRACA_BIN (default build/catraca, the release build), BUYERS, TICKETS,
# MAX_SECONDS (default 600), SYNC (full|normal, the server's --sync, default full),
# ROUNDS (default 3), SKIP_HEADLINE=1 to run part 1 only. Ends with one JSON line.
# Exit 1 when a server does not start or the audit is not clean; rush's own verdict is reported.
set -euo pipefail

BIN=${CATRACA_BIN:-build/catraca}
BUYERS=${BUYERS:-1000000}
TICKETS=${TICKETS:-100000}
MAX_SECONDS=${MAX_SECONDS:-600}
SYNC=${SYNC:-full}
ROUNDS=${ROUNDS:-3}
SECRET=bench-secret-$$
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

# ---- 2. the headline -------------------------------------------------------------------------
DATA=$WORK/headline
start_server "$DATA"
echo "headline: $BUYERS buyers, $TICKETS tickets, embedded serve --sync $SYNC, rate limits off"
set +e
"$BIN" rush --url "http://127.0.0.1:$PORT" --jwt-secret "$SECRET" --buyers "$BUYERS" \
    --tickets "$TICKETS" --max-seconds "$MAX_SECONDS" --json "$WORK/headline.json"
RUSH_EXIT=$?
set -e
stop_server
AUDIT_OUT=$("$BIN" audit --data "$DATA" 2>&1) && AUDIT_EXIT=0 || AUDIT_EXIT=$?
echo "$AUDIT_OUT" | tail -2
python3 - "$WORK/headline.json" "$RUSH_EXIT" "$AUDIT_EXIT" "$WRK_MEDIAN" "$RUSH_MEDIAN" "$RATIO" \
    "$SYNC" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
rush_exit, audit_exit = int(sys.argv[2]), int(sys.argv[3])
fmt = lambda v: "-" if v is None else f"{v:.2f} s"
print(f"headline: all decided {fmt(report['all_decided_s'])}, all final {fmt(report['all_final_s'])}, "
      f"sell-out {fmt(report['sell_out_s'])}, accept p99 {report['latency']['accept']['p99_ms']:.2f} ms, "
      f"decision p99 {report['latency']['decision']['p99_ms']:.2f} ms, "
      f"{report['accepted_per_s']:.0f} accepted/s, rush checks {'PASS' if report['pass'] else 'FAIL'}, "
      f"audit {'CLEAN' if audit_exit == 0 else 'NOT CLEAN'}")
print(json.dumps({"bench": "rush_vs_wrk", "wrk_rps": float(sys.argv[4]),
                  "rush_rps": float(sys.argv[5]), "ratio": float(sys.argv[6]),
                  "headline": {"buyers": report["buyers"], "tickets": report["tickets"],
                               "sync": sys.argv[7], "all_decided_s": report["all_decided_s"],
                               "all_final_s": report["all_final_s"],
                               "sell_out_s": report["sell_out_s"],
                               "accept_p99_ms": report["latency"]["accept"]["p99_ms"],
                               "decision_p99_ms": report["latency"]["decision"]["p99_ms"],
                               "accepted_per_s": round(report["accepted_per_s"]),
                               "rush_exit": rush_exit, "audit_clean": audit_exit == 0}}))
EOF
[ "$AUDIT_EXIT" = 0 ]
