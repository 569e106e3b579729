#!/usr/bin/env bash
# make run: the embedded service with the demo on, data in ./var. Ctrl-C stops it cleanly.
# Extra arguments go to catraca serve (make run ARGS... or bash scripts/run.sh --listen :9000);
# the addresses printed are built from the --listen actually used.
set -euo pipefail
mkdir -p var
listen=127.0.0.1:8080
previous=
for arg in "$@"; do
    case "$arg" in
    --listen=*) listen=${arg#--listen=} ;;
    *) [ "$previous" = "--listen" ] && listen=$arg ;;
    esac
    previous=$arg
done
host=${listen%:*}
port=${listen##*:}
case "$host" in
"" | 0.0.0.0 | "[::]") host=localhost ;;
esac
sed "s|localhost:8080|$host:$port|g" <<'TEXT'

  Catraca on http://localhost:8080   (demo mode, data in ./var, Ctrl-C to stop)

    Buyer's page:          http://localhost:8080/
    Organizer's console:   http://localhost:8080/admin   (demo: "Sign in as the demo organizer")

  Or try a sale from another terminal:

    T=$(curl -s -XPOST localhost:8080/v1/demo/token -H 'Content-Type: application/json' -d '{"customer":"ops","role":"admin"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
    curl -s -XPOST localhost:8080/v1/events -H "Authorization: Bearer $T" -H 'Content-Type: application/json' -d '{"id":"demo","categories":[{"id":"pista","capacity":100}]}'
    curl -s -XPOST localhost:8080/v1/events/demo/purchases -H "Authorization: Bearer $T" -H 'Content-Type: application/json' -d '{"category":"pista","quantity":2}'

TEXT
exec ./build/catraca serve --demo --data ./var --listen 127.0.0.1:8080 "$@"
