#!/usr/bin/env python3
"""Two builds side by side with receipts on (and the second with receipts off, for scale), in
one run: e.g. signing on the appender thread (c448ac4) against signer threads.

Rounds alternate the order; each round starts a fresh server per side (bench/receipts.py's
one_round) and posts purchases with wrk. Prints medians and every round.

Usage: receipts_ab.py BIN_A BIN_B [rounds (5)] [seconds (8)]
  e.g. git archive c448ac4 | tar -x -C /tmp/a && cmake -S /tmp/a -B /tmp/a/build \\
       -DCMAKE_BUILD_TYPE=Release && cmake --build /tmp/a/build --target catraca
       python3 bench/receipts_ab.py /tmp/a/build/catraca build/catraca
"""
import json
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import receipts  # noqa: E402
import service  # noqa: E402


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    bins = {"a_on": sys.argv[1], "b_on": sys.argv[2], "b_off": sys.argv[2]}
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    seconds = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    lua_dir = tempfile.mkdtemp(prefix="catraca-lua-")
    lua = os.path.join(lua_dir, "purchase.lua")
    service.write_lua(lua, customers=max(1000, 5000 * seconds))
    results = {side: [] for side in bins}
    try:
        for n in range(rounds):
            order = list(bins) if n % 2 == 0 else list(reversed(bins))
            for side in order:
                service.BIN = bins[side]
                result = receipts.one_round(side.split("_")[1], seconds, lua)
                results[side].append(result["good_rate"])
    finally:
        shutil.rmtree(lua_dir, ignore_errors=True)
    med = {side: statistics.median(v) for side, v in results.items()}
    print(f"receipts A/B: {rounds} alternating rounds of {seconds} s per side")
    for side, label in (("a_on", f"A {bins['a_on']}, receipts on"),
                        ("b_on", f"B {bins['b_on']}, receipts on"),
                        ("b_off", "B, receipts off")):
        print(f"  {label:60} {med[side]:8.0f}/s  ({', '.join(f'{v:.0f}' for v in results[side])})")
    print(json.dumps({"bench": "receipts_ab", **{k: round(v) for k, v in med.items()},
                      "rounds": rounds, "seconds": seconds}))


if __name__ == "__main__":
    main()
