#!/usr/bin/env bash
# Installs the tools that hold the server to openapi.yaml, pinned, into a cache under build/:
#   prism         Prism (npm @stoplight/prism-cli), the validating proxy: build/node
#   schemathesis  Schemathesis (PyPI), the property-based API tester: build/venv-schemathesis
# The pins live in tests/contract/ (package.json + package-lock.json, requirements.txt). A tool
# is installed again only when its pins change, so a second run needs no network.
#
# usage: contract-tools.sh prism|schemathesis... [-- command args...]
#   With a command, runs it with CATRACA_PRISM (the prism executable) and CATRACA_SCHEMATHESIS_PYTHON
#   (the venv's python) in its environment.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$root/build"
pins="$root/tests/contract"
mkdir -p "$cache"

# One installer at a time (ctest -j runs the two contract tests side by side).
exec 9>"$cache/.contract-tools.lock"
flock 9

stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

install_prism() {
    local dir="$cache/node" stamp
    stamp="$(stamp_of "$pins/package.json" "$pins/package-lock.json") node-$(node --version 2>/dev/null || echo none)"
    if [ -x "$dir/node_modules/.bin/prism" ] && [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$stamp" ]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        echo "contract-tools: npm is missing; installing Debian's nodejs and npm" >&2
        local sudo_cmd=()
        [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
        DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q nodejs npm >&2
    fi
    echo "contract-tools: installing Prism into $dir" >&2
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$pins/package.json" "$pins/package-lock.json" "$dir/"
    # --ignore-scripts: no install script of a dependency runs (none is needed to proxy).
    npm ci --prefix "$dir" --no-audit --no-fund --ignore-scripts --loglevel=error >&2
    echo "$stamp" >"$dir/.stamp"
}

install_schemathesis() {
    local dir="$cache/venv-schemathesis" stamp
    stamp="$(stamp_of "$pins/requirements.txt") $(python3 --version 2>&1)"
    if [ -x "$dir/bin/schemathesis" ] && [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$stamp" ]; then
        return 0
    fi
    echo "contract-tools: installing Schemathesis into $dir" >&2
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check -r "$pins/requirements.txt" >&2
    echo "$stamp" >"$dir/.stamp"
}

command=()
while [ $# -gt 0 ]; do
    case "$1" in
    prism) install_prism ;;
    schemathesis) install_schemathesis ;;
    --) shift; command=("$@"); break ;;
    *) echo "usage: $0 prism|schemathesis... [-- command args...]" >&2; exit 2 ;;
    esac
    shift
done
flock -u 9

export CATRACA_PRISM="$cache/node/node_modules/.bin/prism"
export CATRACA_SCHEMATHESIS_PYTHON="$cache/venv-schemathesis/bin/python"
[ ${#command[@]} -eq 0 ] || exec "${command[@]}"
