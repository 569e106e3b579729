#!/usr/bin/env python3
"""How fast a worker that takes a partition over works off its backlog: the failover case
(a worker killed mid-sale, its successor starts behind), and any moment a worker fell behind.

Each run, for each log (Redis, Kafka) and each binary (CATRACA_BIN, then --before BIN when
given, alternating so both see the same machine): fresh servers (bench/distributed.py's Setup),
1 gateway + 1 worker, one event; the worker is SIGSTOPped; wrk posts purchases for SECONDS
(bench/service.py's script) while nothing decides them; the stopped worker is killed -9 and a
new one started from the binary measured. Its rate is the entries it decided (its
catraca_worker_commands_total) over the time from holding the partition (after the dead one's
lease expired) until the event's queue is empty. Medians of RUNS; one JSON line at the end.

Usage: catchup.py [--runs N] [--seconds S] [--before BIN]
Environment: CATRACA_BIN (default build/catraca, the release build), BENCH_LOGS (redis,kafka).
"""
import argparse
import datetime
import json
import os
import signal
import statistics
import sys
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import distributed  # noqa: E402  its Setup, metrics, wait, event_state, LOGS
import service  # noqa: E402
import cluster  # noqa: E402  tests/system/cluster.py (distributed.py put it on the path)

CATCH_UP_SECONDS = 600  # bound: the new worker empties the queue
EVENT = dict(distributed.EVENT, id="catchup", name="catchup")


def one_run(log, binary, seconds, lua, limits):
    """(entries decided, seconds) for one catch-up by a worker of binary."""
    setup = distributed.Setup(limits, log)
    try:
        setup.start(gateways=1, workers=1)
        gateway = setup.gateways[0]
        service.http("POST", f"http://127.0.0.1:{gateway.port}/v1/events", EVENT,
                     service.token("ops", "admin"))
        first = setup.workers[0]
        distributed.wait(lambda: distributed.metrics(first.port).get(
            "catraca_worker_partitions_held") == 1, 60, "the first worker to hold the event")
        os.kill(first.proc.pid, signal.SIGSTOP)
        url = f"http://127.0.0.1:{gateway.port}/v1/events/catchup/purchases"
        service.wrk(url, seconds, lua)  # bounded: seconds + 60 s
        pending = distributed.event_state(gateway.port, "catchup")["queue"]["pending"]
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(30)
        setup.workers.remove(first)
        previous = cluster.BIN
        cluster.BIN = binary  # cluster.Proc starts `BIN worker ...`
        try:
            successor = cluster.Proc("worker", setup.common + cluster.options_of(
                "worker", limits) + ["--lease-ms", str(distributed.LEASE_MS), "--worker-id",
                                     f"catchup-successor-{os.getpid()}"],
                setup.dir, "successor", rb"metrics on http://127\.0\.0\.1:(\d+)")
        finally:
            cluster.BIN = previous
        setup.workers.append(successor)
        try:
            distributed.wait(lambda: distributed.metrics(successor.port).get(
                "catraca_worker_partitions_held") == 1, 60, "the successor to hold the event",
                poll_s=0.02)
        except RuntimeError:
            print(successor.log()[-3000:], file=sys.stderr)
            raise
        began = time.monotonic()
        distributed.wait(lambda: distributed.event_state(gateway.port, "catchup")["queue"][
            "pending"] == 0, CATCH_UP_SECONDS, "the successor to empty the queue", poll_s=0.02)
        took = time.monotonic() - began
        decided = distributed.metrics(successor.port).get("catraca_worker_commands_total", 0)
        if decided < pending:
            raise RuntimeError(f"the successor decided {decided:.0f} of {pending} queued")
        return decided, took
    finally:
        setup.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--before", help="another catraca binary whose worker catches up too")
    options = parser.parse_args()
    binaries = [("after", os.environ["CATRACA_BIN"])]
    if options.before:
        binaries.append(("before", os.path.abspath(options.before)))
    customers = 50000
    limits = ["--max-purchases-per-event", str(1 << 20), "--max-customers-per-event",
              str(1 << 16), "--queue-max", "100000", "--max-connections", "4096"]
    lua_dir = distributed.tempfile.mkdtemp(prefix="catraca-lua-")
    lua = os.path.join(lua_dir, "purchase.lua")
    service.write_lua(lua, customers)
    results = {log: {name: [] for name, _ in binaries} for log in distributed.LOGS}
    try:
        for run in range(options.runs):
            for log in distributed.LOGS:
                for name, binary in binaries:
                    decided, took = one_run(log, binary, options.seconds, lua, limits)
                    results[log][name].append((decided, took))
                    print(f"run {run + 1}/{options.runs} {log} {name}: {decided:.0f} entries "
                          f"in {took:.2f} s ({decided / took:.0f}/s)", flush=True)
    finally:
        distributed.shutil.rmtree(lua_dir, ignore_errors=True)
    summary = {}
    for log in distributed.LOGS:
        for name, _ in binaries:
            rates = [d / t for d, t in results[log][name]]
            summary[f"{log}_{name}_entries_per_s"] = round(statistics.median(rates))
            summary[f"{log}_{name}_runs"] = [round(r) for r in rates]
            print(f"{log} {name}: median {statistics.median(rates):.0f} entries/s "
                  f"(runs {', '.join(f'{r:.0f}' for r in rates)})")
    print(json.dumps(dict(bench="catchup", date=datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"), runs=options.runs,
        seconds=options.seconds, loadavg=open("/proc/loadavg").read().split()[:3], **summary)))


if __name__ == "__main__":
    main()
