#!/usr/bin/env python3
"""What a sale costs in memory and disk, for docs/DEPLOY.md's sizing table.

One `catraca rush` of BUYERS buyers (TICKETS tickets in 2 categories, 60 % of holds paid, 10 %
cancelled, the rest expire) against, in turn:
  1. embedded `catraca serve --sync full`: the data directory's size (log + store) and the
     server's peak resident memory;
  2. 1 gateway + 1 worker on a private Redis (AOF, appendfsync always) and PostgreSQL 15:
     Redis's used_memory and AOF size, PostgreSQL's database size, each process's peak RSS.
Per purchase = growth / buyers. Rush's own figures (accepted/s, all decided) are kept too.
Usage: sizing.py [buyers] [tickets]. Prints a table and one JSON line {"bench": "sizing", ...}.
Release build by default (CATRACA_BIN overrides); rate limits off (every buyer is loopback).
"""
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
os.environ.setdefault("CATRACA_BIN", os.path.join(ROOT, "build", "catraca"))
sys.path[:0] = [HERE, os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "system")]

from servers import Postgres, Redis  # noqa: E402
from cluster import BIN, Proc  # noqa: E402

SECRET = "sizing-secret-0123456789abcdef-0123456789abcdef"


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) / 1024


def directory_mb(path):
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(folder, name))
    return total / 1e6


def rush(port, buyers, tickets, out):
    run = subprocess.run([BIN, "rush", "--url", f"http://127.0.0.1:{port}", "--jwt-secret",
                          SECRET, "--buyers", str(buyers), "--tickets", str(tickets),
                          "--categories", "2", "--confirm", "0.6", "--cancel", "0.1",
                          "--pay-delay-ms", "500-3000", "--json", out],
                         capture_output=True, text=True, timeout=1800)
    if run.returncode != 0:
        raise RuntimeError("rush failed:\n" + run.stdout[-3000:] + run.stderr[-3000:])
    with open(out) as f:
        return json.load(f)


def redis_info(redis, field):
    text = redis.command("INFO", "memory").decode(errors="replace")
    return int(re.search(rf"{field}:(\d+)", text).group(1))


def embedded(buyers, tickets, directory):
    data = os.path.join(directory, "embedded")
    proc = Proc("serve", ["--data", data, "--listen", "127.0.0.1:0", "--jwt-secret", SECRET,
                          "--rate-customer", "0", "--rate-ip", "0", "--sync", "full"],
                directory, "serve", rb"listening on http://127\.0\.0\.1:(\d+)")
    try:
        before = directory_mb(data)
        report = rush(proc.port, buyers, tickets, os.path.join(directory, "embedded.json"))
        rss = peak_rss_mb(proc.proc.pid)
    finally:
        proc.stop()
    return {"disk_mb": directory_mb(data) - before, "rss_mb": rss, "rush": report}


def distributed(buyers, tickets, directory):
    redis, postgres = Redis(), Postgres()
    procs = []
    try:
        subprocess.run([BIN, "migrate", "--postgres", postgres.conninfo], check=True,
                       stdout=subprocess.DEVNULL, timeout=60)
        common = ["--redis", redis.url, "--postgres", postgres.conninfo, "--listen",
                  "127.0.0.1:0"]
        procs.append(Proc("worker", common + ["--worker-id", "sizing"], directory, "worker",
                          rb"metrics on http://127\.0\.0\.1:(\d+)"))
        procs.append(Proc("gateway", common + ["--jwt-secret", SECRET, "--rate-customer", "0",
                                               "--rate-ip", "0"], directory, "gateway",
                          rb"listening on http://127\.0\.0\.1:(\d+)"))
        memory_before = redis_info(redis, "used_memory")
        pg_query = "SELECT pg_database_size('catraca')"
        pg_before = int(postgres.psql(pg_query))
        report = rush(procs[1].port, buyers, tickets, os.path.join(directory, "distributed.json"))
        time.sleep(2)  # the worker's last commits
        rss = {p.name: peak_rss_mb(p.proc.pid) for p in procs}
        return {"redis_memory_mb": (redis_info(redis, "used_memory") - memory_before) / 1e6,
                "redis_aof_mb": directory_mb(redis.dir),
                "postgres_mb": (int(postgres.psql(pg_query)) - pg_before) / 1e6,
                "gateway_rss_mb": rss["gateway"], "worker_rss_mb": rss["worker"],
                "rush": report}
    finally:
        for p in reversed(procs):
            p.stop()
        postgres.close()
        redis.close()


def main():
    buyers = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    tickets = int(sys.argv[2]) if len(sys.argv) > 2 else buyers // 10
    directory = tempfile.mkdtemp(prefix="catraca-sizing-")
    try:
        one = embedded(buyers, tickets, directory)
        two = distributed(buyers, tickets, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    per = lambda mb: round(mb * 1e6 / buyers)
    result = {
        "bench": "sizing", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"), "command": " ".join(["python3", "bench/sizing.py"] + sys.argv[1:]),
        "nproc": os.cpu_count(), "buyers": buyers, "tickets": tickets,
        "embedded": {"disk_bytes_per_purchase": per(one["disk_mb"]),
                     "rss_mb": round(one["rss_mb"], 1)},
        "distributed": {"redis_memory_bytes_per_purchase": per(two["redis_memory_mb"]),
                        "redis_aof_bytes_per_purchase": per(two["redis_aof_mb"]),
                        "postgres_bytes_per_purchase": per(two["postgres_mb"]),
                        "gateway_rss_mb": round(two["gateway_rss_mb"], 1),
                        "worker_rss_mb": round(two["worker_rss_mb"], 1)},
    }
    for name, part in (("embedded", one), ("distributed", two)):
        r = part["rush"]
        result[name]["rush"] = {"accepted_per_s": round(r["accepted_per_s"]),
                                "all_decided_s": r["all_decided_s"],
                                "accept_p99_ms": r["latency"]["accept"]["p99_ms"],
                                "pass": r["pass"]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
