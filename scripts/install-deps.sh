#!/usr/bin/env bash
# Installs every Debian package Catraca needs to build, test and benchmark.
# Idempotent and quiet when everything is already there.
set -euo pipefail

packages=(
    build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
    libcmocka-dev libcjson-dev libsqlite3-dev sqlite3 libssl-dev
    libhiredis-dev libpq-dev libhttp-parser-dev
    librdkafka-dev        # the Kafka log and bus (src/log/log_kafka.c, bus_kafka.c)
    libcurl4-openssl-dev  # catraca verify: HTTP(S) client
    libsodium-dev         # receipts: Ed25519 signatures (src/gateway/receipt.c)
    redis-server postgresql-15 postgresql-contrib
    wrk prometheus haproxy systemd python3 curl openssl valgrind
    jq iproute2 util-linux  # docs_runnable: README/DEPLOY blocks use jq; ip + unshare isolate them
    python3-venv nodejs  # contract tests: Schemathesis's venv, Prism (scripts/contract-tools.sh)
    chromium             # the browser tests (tests/web) drive Debian's Chromium, headless
    openjdk-17-jre-headless maven  # real Kafka brokers in tests: scripts/kafka-fetch.sh, tests/servers.py
    gdb                  # tests/servers.py --timeout prints a stuck test's thread stacks
)
# npm builds the web pages (scripts/web-build.sh). Debian ships it as its own package; a Node
# from elsewhere (nodesource) brings its own npm and conflicts with Debian's, so npm is asked
# for only when there is none.
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/catraca-apt.log 2>&1; then
    "${sudo_cmd[@]}" apt-get update -q >>/tmp/catraca-apt.log 2>&1
    "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/catraca-apt.log 2>&1 \
        || { echo "install-deps: apt-get failed, see /tmp/catraca-apt.log" >&2; exit 1; }
fi
# The Debian packages start their own servers; tests start private ones instead.
for svc in redis-server postgresql; do
    if command -v systemctl >/dev/null 2>&1; then "${sudo_cmd[@]}" systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
done
