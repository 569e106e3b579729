#!/usr/bin/env python3
"""The cost of receipts: accepted purchases/s of `catraca serve` with `--receipts on` (every 202
signed with Ed25519 and the log's Merkle tree kept) against `--receipts off`, in one run.

Rounds alternate the order (off, on / on, off) so that drift of the machine falls on both
sides; each round starts a fresh server and data directory, opens an event and posts
purchases with wrk for SECONDS. Prints the median of ROUNDS per side, their ratio (target:
on keeps >= 90 % of off), the per-round figures and a final JSON line.

Usage: receipts.py [rounds (default 5)] [seconds (default 8)]
"""
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import service  # noqa: E402  (wrk, token, write_lua, http: the service bench's helpers)

service.SECRET = "bench-receipts-secret-0123456789abcdef"  # >= 32 bytes


def start(data, receipts):
    log = open(os.path.join(data, "catraca.log"), "w")
    proc = subprocess.Popen([service.BIN, "serve", "--listen", "127.0.0.1:0", "--data", data,
                             "--jwt-secret", service.SECRET, "--rate-customer", "0",
                             "--rate-ip", "0", "--max-purchases-per-event", "4194304",
                             "--max-customers-per-event", "65536", "--queue-max", "100000",
                             "--max-connections", "4096", "--receipts", receipts],
                            stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(300):
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", open(log.name).read())
        if m:
            return proc, int(m.group(1))
        time.sleep(0.05)
    raise RuntimeError("catraca did not start: " + open(log.name).read())


def one_round(receipts, seconds, lua):
    data = tempfile.mkdtemp(prefix="catraca-bench-receipts-")
    proc, port = start(data, receipts)
    try:
        base = f"http://127.0.0.1:{port}"
        service.http("POST", base + "/v1/events", {
            "id": "bench", "hold_seconds": 86400, "per_customer_limit": 10,
            "categories": [{"id": "pista", "capacity": 10000000}]}, service.token("ops", "admin"))
        result = service.wrk(base + "/v1/events/bench/purchases", seconds, lua)
        if receipts == "on":  # the receipts were really there: one 202 checked
            answer = json.loads(service.http("POST", base + "/v1/events/bench/purchases",
                                             {"category": "pista", "quantity": 1},
                                             service.token("probe")))
            assert answer["receipt"]["signature"], answer
        return result
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    lua_dir = tempfile.mkdtemp(prefix="catraca-lua-")
    lua = os.path.join(lua_dir, "purchase.lua")
    service.write_lua(lua, customers=max(1000, 5000 * seconds))
    runs = {"off": [], "on": []}
    try:
        for n in range(rounds):
            for mode in (("off", "on") if n % 2 == 0 else ("on", "off")):
                runs[mode].append(one_round(mode, seconds, lua))
    finally:
        shutil.rmtree(lua_dir, ignore_errors=True)
    med = {m: statistics.median(r["good_rate"] for r in runs[m]) for m in runs}
    p99 = {m: statistics.median(r["p99_ms"] for r in runs[m]) for m in runs}
    ratio = med["on"] / med["off"]
    print(f"receipts bench: {rounds} alternating rounds of {seconds} s per side, wrk "
          f"-t{service.THREADS} -c{service.CONNECTIONS}, synchronous=FULL")
    print(f"  {'accepted purchases/s, receipts off':40} {med['off']:10.0f}   p99 {p99['off']:.2f} ms")
    print(f"  {'accepted purchases/s, receipts on':40} {med['on']:10.0f}   p99 {p99['on']:.2f} ms")
    print(f"  {'on / off':40} {ratio:10.3f}   (target >= 0.90)")
    for m in ("off", "on"):
        print(f"  per round, {m}: " + ", ".join(f"{r['good_rate']:.0f}" for r in runs[m]))
    print(json.dumps({"bench": "receipts", "accepted_off_per_s": round(med["off"]),
                      "accepted_on_per_s": round(med["on"]), "ratio": round(ratio, 3),
                      "p99_off_ms": p99["off"], "p99_on_ms": p99["on"], "rounds": rounds,
                      "seconds": seconds}))


if __name__ == "__main__":
    main()
