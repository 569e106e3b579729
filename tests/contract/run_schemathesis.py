"""Schemathesis against `catraca serve`: openapi.yaml checked with generated requests.

Three runs, each on a fresh server with a realistic set-up (the event of openapi.yaml's
examples, purchases held, waiting, confirmed, cancelled and rejected): with an admin token,
with a buyer's token (the owner of those purchases) and with no token. Every check of
Schemathesis is on; a failure that schemathesis_hooks.py knows (a rule no schema can hold, or
an entry of known_mismatches.KNOWN_SERVER_MISMATCHES) is listed at the end and does not fail
the run. The exit code is non-zero on any other failure.

    python3 tests/contract/run_schemathesis.py      (ctest: contract_schemathesis)
installs the pinned Schemathesis into build/venv-schemathesis (scripts/contract-tools.sh) and
runs again with that venv's python. CATRACA_SEED=n reproduces a run's generated requests;
CATRACA_SCHEMATHESIS_SECONDS (default 50) is each run's time budget; CATRACA_BIN names the
server binary (default build/asan/catraca).
"""
import base64
import collections
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
SPEC = os.path.join(REPO, "openapi.yaml")
VENV = os.path.join(REPO, "build", "venv-schemathesis")

if os.path.realpath(sys.prefix) != os.path.realpath(VENV):
    # Not the venv yet: install (or check) the pinned tools, then run again inside it.
    subprocess.run(["bash", os.path.join(REPO, "scripts", "contract-tools.sh"), "schemathesis"],
                   check=True, timeout=900)
    python = os.path.join(VENV, "bin", "python")
    os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:])
sys.path.insert(0, os.path.join(REPO, "tests", "system"))
os.environ.pop("CATRACA_VIA_PRISM", None)  # Schemathesis talks to the server itself
from catraca import ADMIN, PAYMENTS, Server, token, wait_status  # noqa: E402

BUYER = "buyer-1"
# The body of openapi.yaml's createEvent example: the examples phase then repeats it (200).
EXAMPLE_EVENT = {"id": "rir-2026-d1", "name": "Rock in Rio 2026 — day 1", "hold_seconds": 600,
                 "per_customer_limit": 4, "state": "open",
                 "categories": [{"id": "pista", "name": "Pista", "price_cents": 79500, "capacity": 80000},
                                {"id": "premium", "name": "Pista Premium", "price_cents": 149500,
                                 "capacity": 20000}]}


def solved_challenge(client):
    """X-Challenge for one purchase: GET /v1/challenge, solved (the ALTCHA way)."""
    status, challenge, _ = client.request("GET", "/v1/challenge")
    assert status == 200, (status, challenge)
    for number in range(challenge["maxnumber"] + 1):
        digest = hashlib.sha256(f"{challenge['salt']}{number}".encode()).hexdigest()
        if digest == challenge["challenge"]:
            payload = {k: challenge[k] for k in ("algorithm", "challenge", "salt", "signature")}
            payload["number"] = number
            return base64.b64encode(json.dumps(payload).encode()).decode()
    raise AssertionError("unsolvable challenge")


def set_up(client, is_challenge_on):
    """Events and purchases of every status, owned by BUYER; returns the ids for the hooks."""
    status, answer, _ = client.request("POST", "/v1/events", EXAMPLE_EVENT, ADMIN())
    assert status == 201, (status, answer)
    small = {"id": "ev-small", "name": "One seat", "hold_seconds": 600, "per_customer_limit": 2,
             "categories": [{"id": "seat", "capacity": 1}]}
    status, answer, _ = client.request("POST", "/v1/events", small, ADMIN())
    assert status == 201, (status, answer)
    purchases = {}

    def purchase(name, event, category, customer=BUYER, want=lambda s: s == "held"):
        headers = {"X-Challenge": solved_challenge(client)} if is_challenge_on else None
        status, p, _ = client.request("POST", f"/v1/events/{event}/purchases",
                                      {"category": category, "quantity": 1}, token(customer), headers)
        assert status == 202, (status, p)
        wait_status(client, p["id"], customer, want)
        purchases[name] = p["id"]
        return p["id"]

    purchase("held", "rir-2026-d1", "pista")
    confirmed = purchase("confirmed", "rir-2026-d1", "premium")
    status, answer, _ = client.request("POST", f"/v1/purchases/{confirmed}/confirm",
                                       {"payment_ref": "psp_123"}, PAYMENTS())
    assert status == 200, (status, answer)
    cancelled = purchase("cancelled", "rir-2026-d1", "pista")
    status, answer, _ = client.request("DELETE", f"/v1/purchases/{cancelled}", tok=token(BUYER))
    assert status == 200, (status, answer)
    purchase("rejected", "rir-2026-d1", "no-such-category", want=lambda s: s == "rejected")
    purchase("seat", "ev-small", "seat", customer="buyer-2")
    purchase("waiting", "ev-small", "seat", want=lambda s: s == "waiting")
    return {"events": [EXAMPLE_EVENT["id"], "ev-small"], "purchases": purchases}


def validate_spec():
    from openapi_spec_validator import validate
    from openapi_spec_validator.readers import read_from_filename
    spec, _ = read_from_filename(SPEC)
    validate(spec)
    print("openapi.yaml: valid OpenAPI", spec["openapi"], flush=True)


def statuses_seen(client):
    """route -> {status: count} from the server's own request counter."""
    status, text, _ = client.request("GET", "/metrics")
    seen = collections.defaultdict(dict)
    for m in re.finditer(r'^catraca_http_requests_total\{route="([^"]+)",status="(\d+)"\} (\d+)$',
                         text if status == 200 else "", re.M):
        seen[m.group(1)][int(m.group(2))] = int(m.group(3))
    return seen


def run(identity, authorization, seed, seconds, work, *server_options):
    server = Server(*server_options)
    try:
        data = set_up(server.client(), "--challenge" in server_options)
        data_path = os.path.join(work, f"data-{identity}.json")
        known_path = os.path.join(work, f"known-{identity}.ndjson")
        with open(data_path, "w") as f:
            json.dump(data, f)
        env = dict(os.environ, CATRACA_ST_DATA=data_path, CATRACA_ST_KNOWN=known_path,
                   SCHEMATHESIS_HOOKS="schemathesis_hooks",
                   PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
        args = [sys.executable, "-m", "schemathesis.cli", "--config-file",
                os.path.join(HERE, "schemathesis.toml"), "run", SPEC,
                "--url", f"http://127.0.0.1:{server.port}",
                "--seed", str(seed), "--max-time", str(seconds), "--workers", "1",
                "--request-timeout", "10", "--generation-database", "none", "--no-color",
                # A stream lasts until a final status, up to 600 s: test_contract.py reads it.
                "--exclude-operation-id", "streamPurchase",
                # The event and stats streams last until the client leaves: test_console.py
                # reads them.
                "--exclude-operation-id", "streamEvent",
                "--exclude-operation-id", "streamStats",
                # A rehearsal is a child process sending up to 20 000 purchases: the run's load
                # would be its own. test_console.py starts them.
                "--exclude-operation-id", "startRehearsal",
                # DELETE releases a hold; the purchase stays readable (cancelled), as API.md says.
                "--exclude-checks", "use_after_free"]
        if authorization:
            args += ["-H", f"Authorization: Bearer {authorization}"]
        print(f"== schemathesis as {identity}: {len(data['purchases'])} purchases, "
              f"{seconds} s, seed {seed}", flush=True)
        started = time.time()
        code = subprocess.run(args, env=env, cwd=work, timeout=seconds + 300).returncode
        known = []
        if os.path.exists(known_path):
            with open(known_path) as f:
                known = [json.loads(line) for line in f]
        print(f"== schemathesis as {identity}: exit {code} in {time.time() - started:.0f} s, "
              f"{len(known)} failures dropped as expected; answers by route:", flush=True)
        for route, counts in sorted(statuses_seen(server.client()).items()):
            print(f"   {route:16} " + ", ".join(f"{s} x{n}" for s, n in sorted(counts.items())))
        return code, known
    finally:
        stop_code = server.close()
        if stop_code != 0:
            print(f"== the server as {identity} exited {stop_code} (see its log)", flush=True)


def main():
    seed = int(os.environ.get("CATRACA_SEED", str(random.randrange(1 << 30))))
    seconds = int(os.environ.get("CATRACA_SCHEMATHESIS_SECONDS", "50"))
    print(f"contract_schemathesis: seed {seed} (CATRACA_SEED={seed} reproduces)", flush=True)
    validate_spec()
    failed = []
    known = collections.defaultdict(collections.Counter)
    with tempfile.TemporaryDirectory(prefix="catraca-schemathesis-") as work:
        # Without a token the purchases answer 401 anyway: that run turns the challenge on, so
        # GET /v1/challenge answers 200 (and not the 404 of a server without it).
        challenge_on = ("--challenge", "on", "--challenge-max-number", "1000")
        for identity, authorization, options in (("admin", token("ops", "admin"), ()),
                                                 ("buyer", token(BUYER), ()),
                                                 ("no token", None, challenge_on)):
            code, seen = run(identity, authorization, seed, seconds, work, *options)
            if code != 0:
                failed.append(identity)
            for k in seen:
                known[(k["kind"], k["key"])][k["operation"]] += 1
    if known:
        print("== failures dropped as expected (schemathesis_hooks.py):")
        for (kind, key), operations in sorted(known.items()):
            print(f"   {kind} {key}: {sum(operations.values())} on {len(operations)} operations "
                  f"({', '.join(sorted(operations)[:4])}{', ...' if len(operations) > 4 else ''})")
    print(f"contract_schemathesis: seed {seed}; "
          + (f"failed as {', '.join(failed)}" if failed else "0 failures as admin, buyer and no token"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
