#!/usr/bin/env python3
"""Benchmark of the distributed mode (`catraca gateway` + `catraca worker` on Redis and
PostgreSQL), side by side in one run, RUNS times (medians printed):

1. one gateway + one worker: wrk posts purchases to one event for SECONDS; decided
   purchases/s = the worker's catraca_worker_commands_total from the first request until its
   log lag is back to 0, divided by that time; accept p50/p99 as wrk measures them at full
   load; the worker's mean batch size and commit latency; the gateway's append batch size.
2. the naive design on the same PostgreSQL server (a database of its own): a transaction per
   purchase on a hot stock row, pgbench -c16 (bench/service.py's naive_pgbench). Ratio
   decided / naive (target >= 15x).
3. two events x two workers x two gateways: one wrk per event, each on its own gateway;
   decided purchases/s summed over the workers, and its ratio to configuration 1. Every
   process shares this machine's cores with Redis, PostgreSQL and both wrk, so the ratio says
   how partitions scale here, not on separate machines.

Each configuration gets a fresh Redis (AOF, appendfsync always) and PostgreSQL (fsync on,
synchronous_commit on) from tests/servers.py. Usage: distributed.py [runs] [seconds].
Prints a table and a final JSON line.
"""
import datetime
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
os.environ.setdefault("CATRACA_BIN", os.path.join(ROOT, "build", "catraca"))
sys.path[:0] = [HERE, os.path.join(ROOT, "tests", "system")]

import service  # noqa: E402  (bench/service.py: wrk, naive_pgbench, write_lua, token)
from catraca import SECRET  # noqa: E402
from cluster import Cluster  # noqa: E402

service.SECRET = SECRET  # tokens for the cluster's secret
# Big pools and bounds, as the embedded bench: a run must never hit one.
LIMITS = ["--max-purchases-per-event", "4194304", "--max-customers-per-event", "65536",
          "--queue-max", "100000", "--max-connections", "4096", "--lease-ms", "2000"]
DRAIN_SECONDS = 300


def metrics(port):
    """/metrics as {sample: value}, labels kept in the name."""
    text = service.http("GET", f"http://127.0.0.1:{port}/metrics")
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def wait(condition, seconds, what, poll_s=0.1):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(poll_s)


def pending(port, event):
    """The event's queue.pending (API.md): log entries not decided yet."""
    return json.loads(service.http("GET", f"http://127.0.0.1:{port}/v1/events/{event}"))[
        "queue"]["pending"]


def create_event(port, event):
    service.http("POST", f"http://127.0.0.1:{port}/v1/events", {
        "id": event, "name": event, "hold_seconds": 86400, "per_customer_limit": 10,
        "categories": [{"id": "pista", "name": "Pista", "capacity": 10000000}]},
        service.token("ops", "admin"))


def lag(worker_port, event):
    return metrics(worker_port).get(f'catraca_worker_log_lag_entries{{event="{event}"}}')


def run_config(events, workers, seconds, lua):
    """events x workers (one gateway per event); returns the figures of one run."""
    cluster = Cluster(*LIMITS, demo=False, gateways=events, workers=workers)
    try:
        names = [f"bench{i}" for i in range(events)]
        for gateway, name in zip(cluster.gateways, names):
            create_event(gateway.port, name)
        # Every event has an owner, and the workers share them out, before the clock starts.
        wait(lambda: sum(metrics(w.port)["catraca_worker_partitions_held"]
                         for w in cluster.workers) == events and
             all(metrics(w.port)["catraca_worker_partitions_held"] >= 1
                 for w in cluster.workers[:events]), 60, "the partitions to spread")
        owners = {}
        for name in names:  # the owner reports the event's log lag (measured each second)
            wait(lambda: any(lag(w.port, name) is not None for w in cluster.workers), 30,
                 f"the owner of {name}")
            owners[name] = next(w for w in cluster.workers if lag(w.port, name) is not None)
        before_w = {w.name: metrics(w.port) for w in cluster.workers}
        before_g = {g.name: metrics(g.port) for g in cluster.gateways}
        results = [None] * events

        def drive(i):
            url = f"http://127.0.0.1:{cluster.gateways[i].port}/v1/events/{names[i]}/purchases"
            results[i] = service.wrk(url, seconds, lua)

        started = time.monotonic()
        threads = [threading.Thread(target=drive, args=(i,)) for i in range(events)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds + 120)
        sent_s = time.monotonic() - started
        # Drained: nothing of any event left in its log undecided (polled every 50 ms; the
        # worker's log-lag gauge is measured once a second, too coarse for a 10 s run).
        for gateway, name in zip(cluster.gateways, names):
            wait(lambda: pending(gateway.port, name) == 0, DRAIN_SECONDS, f"{name} to drain",
                 poll_s=0.05)
        drained_s = time.monotonic() - started
        for name, owner in owners.items():  # and the owner agrees
            wait(lambda: lag(owner.port, name) == 0, 10, f"{name}'s log lag to reach 0")
        after_w = {w.name: metrics(w.port) for w in cluster.workers}
        after_g = {g.name: metrics(g.port) for g in cluster.gateways}

        def delta(before, after, key):
            return sum(after[n].get(key, 0) - before[n].get(key, 0) for n in after)

        commands = delta(before_w, after_w, "catraca_worker_commands_total")
        batches = delta(before_w, after_w, "catraca_worker_batches_total")
        commit_s = delta(before_w, after_w, "catraca_worker_commit_seconds_total")
        appended = delta(before_g, after_g, "catraca_log_appended_total")
        append_batches = delta(before_g, after_g, "catraca_log_append_batches_total")
        accepted = delta(before_g, after_g, "catraca_purchases_accepted_total")
        return {
            "decided_per_s": commands / drained_s,
            "accepted_per_s": accepted / sent_s,
            "drain_after_load_s": drained_s - sent_s,
            "accept_p50_ms": statistics.median(r["p50_ms"] for r in results),
            "accept_p99_ms": max(r["p99_ms"] for r in results),
            "batch_mean": commands / batches if batches else 0.0,
            "commit_ms_mean": 1000 * commit_s / batches if batches else 0.0,
            "commit_ms_max": 1000 * max(m["catraca_worker_commit_seconds_max"]
                                        for m in after_w.values()),
            "append_batch_mean": appended / append_batches if append_batches else 0.0,
            "partitions": {w.name: int(after_w[w.name]["catraca_worker_partitions_held"])
                           for w in cluster.workers},
            "naive_tps": naive_on(cluster, seconds) if events == 1 else None,
        }
    finally:
        cluster.close()


def naive_on(cluster, seconds):
    """pgbench's naive purchase on the cluster's own PostgreSQL server, in a database of its
    own, right after the catraca load (the same server and settings)."""
    pg = cluster.postgres
    cluster.postgres.psql("CREATE DATABASE naive")
    workdir = tempfile.mkdtemp(prefix="catraca-naive-")
    try:
        return service.naive_pgbench(["-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres"],
                                     "naive", seconds, 16, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    lua = os.path.join(tempfile.mkdtemp(prefix="catraca-lua-"), "purchase.lua")
    service.write_lua(lua)
    one, two = [], []
    for n in range(runs):
        one.append(run_config(1, 1, seconds, lua))
        two.append(run_config(2, 2, seconds, lua))
        print(f"run {n + 1}: 1x1 decided {one[-1]['decided_per_s']:.0f}/s "
              f"(pgbench {one[-1]['naive_tps']:.0f} tps), 2x2 decided "
              f"{two[-1]['decided_per_s']:.0f}/s", flush=True)
    med = statistics.median
    keys = ["decided_per_s", "accepted_per_s", "drain_after_load_s", "accept_p50_ms",
            "accept_p99_ms", "batch_mean", "commit_ms_mean", "commit_ms_max",
            "append_batch_mean"]
    print(f"\ndistributed bench: {runs} runs of {seconds} s, wrk -t{service.THREADS} "
          f"-c{service.CONNECTIONS} per event, Redis appendfsync always, PostgreSQL "
          f"synchronous_commit on, rate limits off (loopback), {os.cpu_count()} cores")
    print(f"{'figure':28} {'1 gw + 1 worker':>24} {'2 events x 2 workers':>24}")
    for key in keys:
        a = [r[key] for r in one]
        b = [r[key] for r in two]
        print(f"{key:28} {med(a):10.2f} ({' / '.join(f'{x:.1f}' for x in a):>11})"
              f" {med(b):10.2f} ({' / '.join(f'{x:.1f}' for x in b):>11})")
    naive = med(r["naive_tps"] for r in one)
    decided_one = med(r["decided_per_s"] for r in one)
    decided_two = med(r["decided_per_s"] for r in two)
    naive_runs = " / ".join(f"{r['naive_tps']:.0f}" for r in one)
    print(f"naive PostgreSQL (pgbench -c16, same server) {naive:.0f} tps ({naive_runs})")
    print(f"ratio decided 1x1 / naive: {decided_one / naive:.1f}x (target >= 15x)")
    print(f"ratio decided 2x2 / 1x1: {decided_two / decided_one:.2f}")
    print(json.dumps({
        "bench": "distributed", "date": datetime.date.today().isoformat(),
        "command": " ".join(["python3", "bench/distributed.py", str(runs), str(seconds)]),
        "cores": os.cpu_count(), "runs": runs, "seconds": seconds,
        "one": {k: round(med(r[k] for r in one), 2) for k in keys},
        "two": {k: round(med(r[k] for r in two), 2) for k in keys},
        "naive_tps": round(naive), "decided_vs_naive": round(decided_one / naive, 1),
        "scaling_2x2_vs_1x1": round(decided_two / decided_one, 2)}))


if __name__ == "__main__":
    main()
