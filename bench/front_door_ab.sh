#!/bin/bash
# bench/front_door_ab.sh - issue 13 side by side: a baseline binary against a new one, in one run.
# service.py alternately (3 rounds each), idle connections, the 1 M / 100 k headline (base once,
# new 3 times, each audited), rush at a fixed 20 k buyers/s (new 3 times, base once), distributed.py.
# Results: one file per figure in OUT_DIR; docs/BENCHMARKS.md has the 2026-12-01 figures.
cd "$(dirname "$0")/.."
BASE=${1:?usage: front_door_ab.sh BASE_BINARY NEW_BINARY [OUT_DIR]} NEW=${2:?usage: front_door_ab.sh BASE_BINARY NEW_BINARY [OUT_DIR]}
OUT=${3:-$(mktemp -d /tmp/catraca-front-door-XXXXXX)}; echo "front_door_ab: results in $OUT" >&2
SECRET=$(openssl rand -base64 48)  # catraca refuses short or documented secrets
date > $OUT/start
# 1. service bench, alternating
for i in 1 2 3; do
  for tag in base new; do
    bin=BASE; [ $tag = new ] && bin=NEW
    CATRACA_BIN=${!bin} timeout 300 python3 bench/service.py 1 8 2>&1 | grep -E '^\{' | sed "s/^/$tag /" >> $OUT/service.txt
  done
done
# 2. idle connections
CATRACA_BIN=$NEW timeout 600 python3 bench/idle_connections.py 3 10000 > $OUT/idle.txt 2>&1
# 3. headline: new x3, base x1, alternating start with base
run_rush() { # tag bin args...
  local tag=$1 bin=$2; shift 2
  local D=$(mktemp -d)
  $bin serve --listen 127.0.0.1:0 --data $D --jwt-secret $SECRET --rate-customer 0 --rate-ip 0 2>$D/err &
  local pid=$!
  local port=""
  for _ in $(seq 1 100); do port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' $D/err); [ -n "$port" ] && break; sleep 0.1; done
  timeout 400 $NEW rush --url http://127.0.0.1:$port --jwt-secret $SECRET "$@" > $OUT/rush-$tag.tmp 2>&1
  echo "== $tag $* exit=$?" >> $OUT/rush.txt
  grep -E '^(time|rate|result)|accept +p50|decision p50|send_lag|send lag' $OUT/rush-$tag.tmp >> $OUT/rush.txt
  kill $pid; wait $pid
  if [ "$tag" != "${tag#headline}" ]; then $NEW audit --data $D > $OUT/audit-$tag.txt 2>&1; echo "audit exit=$?" >> $OUT/rush.txt; fi
  rm -rf $D
}
run_rush headline-base $BASE --buyers 1000000 --tickets 100000 --max-seconds 300
for i in 1 2 3; do run_rush headline-new $NEW --buyers 1000000 --tickets 100000 --max-seconds 300; done
# 4. fixed rate 20k/s purchases, buyers long-poll and pay
for i in 1 2 3; do run_rush rate-new $NEW --rate 20000 --buyers 200000 --tickets 100000 --confirm 0.6 --cancel 0.1 --connections 2048 --max-seconds 120; done
run_rush rate-base $BASE --rate 20000 --buyers 200000 --tickets 100000 --confirm 0.6 --cancel 0.1 --connections 2048 --max-seconds 120
# 5. distributed
CATRACA_BIN=$NEW timeout 1200 python3 bench/distributed.py 3 8 > $OUT/distributed.txt 2>&1
date > $OUT/end
