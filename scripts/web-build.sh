#!/usr/bin/env bash
# Builds the web pages (web/) into OUT_DIR and writes OUT_DIR/web_assets.c, which CMake compiles
# into the catraca binary. The npm packages (pinned by web/package.json + package-lock.json) are
# installed once into build/web-node and again only when the pins or Node's version change, so a
# second build needs no network. The browser tests (tests/web) use the same install.
#
# usage: web-build.sh OUT_DIR        build the pages
#        web-build.sh --install      only install the packages (prints the node_modules path)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$root/build/web-node"
mkdir -p "$root/build"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "web-build: node and npm are needed; run scripts/install-deps.sh (make deps)" >&2
    exit 1
fi

# One installer at a time (two build directories, or a build and a test, may start together).
exec 9>"$root/build/.web-node.lock"
flock 9
stamp="$(cat "$root/web/package.json" "$root/web/package-lock.json" | sha256sum | cut -d' ' -f1) node-$(node --version)"
if [ ! -d "$cache/node_modules/esbuild" ] || [ "$(cat "$cache/.stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "web-build: installing the npm packages into $cache" >&2
    rm -rf "$cache"
    mkdir -p "$cache"
    cp "$root/web/package.json" "$root/web/package-lock.json" "$cache/"
    # --ignore-scripts: no install script of a dependency runs (esbuild's binary comes as an
    # optional dependency; the tests drive Debian's chromium, so no browser is downloaded).
    npm ci --prefix "$cache" --no-audit --no-fund --ignore-scripts --loglevel=error >&2
    echo "$stamp" >"$cache/.stamp"
fi
flock -u 9

if [ "${1:-}" = "--install" ]; then
    echo "$cache/node_modules"
    exit 0
fi
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR | --install" >&2; exit 2; }
exec node "$root/web/build.mjs" "$cache/node_modules" "$1"
