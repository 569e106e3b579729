#!/usr/bin/env bash
# make run: the embedded service with the demo on, data in ./var. Ctrl-C stops it cleanly.
set -euo pipefail
mkdir -p var
cat <<'TEXT'

  Catraca on http://127.0.0.1:8080   (demo mode, data in ./var, Ctrl-C to stop)
  Try a sale from another terminal:

    T=$(curl -s -XPOST localhost:8080/v1/demo/token -H 'Content-Type: application/json' -d '{"customer":"ops","role":"admin"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
    curl -s -XPOST localhost:8080/v1/events -H "Authorization: Bearer $T" -H 'Content-Type: application/json' -d '{"id":"demo","categories":[{"id":"pista","capacity":100}]}'
    curl -s -XPOST localhost:8080/v1/events/demo/purchases -H "Authorization: Bearer $T" -H 'Content-Type: application/json' -d '{"category":"pista","quantity":2}'

TEXT
exec ./build/catraca serve --demo --data ./var --listen 127.0.0.1:8080 "$@"
