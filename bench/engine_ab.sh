#!/bin/bash
# bench/engine_ab.sh - two builds of bench_engine side by side in one run (issue 17, part 4).
# Alternates A and B ROUNDS times (default 5), each `bench_engine BUYERS 1` (default 1 000 000
# buyers), and prints every round's figures and the median of each column per build: batched
# commands/s (wall clock), commands per CPU-second (the figure least moved by other processes on
# a shared machine; absent from builds before it existed), one-at-a-time commands/s, ns p50/p99,
# bytes per purchase and the recording run's outcomes hash (equal when both builds decide alike).
# usage: bench/engine_ab.sh A_BINARY B_BINARY [ROUNDS] [BUYERS]
A=${1:?usage: engine_ab.sh A_BINARY B_BINARY [ROUNDS] [BUYERS]}
B=${2:?usage: engine_ab.sh A_BINARY B_BINARY [ROUNDS] [BUYERS]}
ROUNDS=${3:-5} BUYERS=${4:-1000000}
OUT=$(mktemp -d /tmp/catraca-engine-ab-XXXXXX)
field() { # file label -> the last number on the line that starts with label
  grep -F "  $2" "$1" | head -1 | awk '{print $NF}'
}
echo "engine_ab: $(date -u +%FT%TZ), $ROUNDS rounds of A then B, $BUYERS buyers, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-5s %-3s %12s %12s %12s %7s %7s %6s %16s\n' round bin "batched/s" "per CPU-s" "one-by-one/s" "p50 ns" "p99 ns" "B/p" "outcomes hash"
for round in $(seq 1 "$ROUNDS"); do
  for tag in A B; do
    bin=$A; [ $tag = B ] && bin=$B
    "$bin" "$BUYERS" 1 > "$OUT/$tag.$round" 2>&1
    f=$OUT/$tag.$round
    one=$(field "$f" "commands/s, one at a time"); [ -z "$one" ] && one=$(field "$f" "commands/s, no prefetch")
    cpu=$(field "$f" "commands per CPU-second"); [ -z "$cpu" ] && cpu=-
    printf '%-5s %-3s %12s %12s %12s %7s %7s %6s %16s\n' "$round" "$tag" \
      "$(field "$f" "commands/s (median")" "$cpu" "$one" "$(field "$f" "ns per command p50")" \
      "$(field "$f" "ns per command p99")" "$(field "$f" "engine bytes")" "$(field "$f" "outcomes hash")" \
      | tee -a "$OUT/rows"
  done
done
median() { sort -n | awk '{v[NR]=$1} END {print (NR ? v[int((NR+1)/2)] : "-")}'; }
for tag in A B; do
  printf 'median %-3s' "$tag"
  for column in 3 4 5 6 7; do
    printf ' %12s' "$(awk -v t=$tag -v c=$column '$2==t && $c!="-" {print $c}' "$OUT/rows" | median)"
  done
  echo
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); rounds in $OUT"
