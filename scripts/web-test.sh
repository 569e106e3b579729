#!/usr/bin/env bash
# Runs a browser test of tests/web with the npm packages of web/ (installed by web-build.sh) and
# Debian's Chromium. CTest runs it (web_browser, web_lighthouse); by hand:
#   CATRACA_BIN=build/asan/catraca bash scripts/web-test.sh journeys [journey...]
#   CATRACA_BIN=build/catraca bash scripts/web-test.sh lighthouse
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 journeys|lighthouse [args...]" >&2; exit 2; }
script="$root/tests/web/$1.mjs"
shift
CATRACA_WEB_NODE_MODULES=$(bash "$root/scripts/web-build.sh" --install)
export CATRACA_WEB_NODE_MODULES
export CATRACA_WEB_SCREENSHOTS=${CATRACA_WEB_SCREENSHOTS:-$root/build/web-screenshots}
exec node "$script" "$@"
