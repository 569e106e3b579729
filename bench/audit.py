#!/usr/bin/env python3
"""Benchmark of `catraca audit`: commands replayed per second and peak memory, embedded and
distributed, on a rush-shaped sale.

The sale: `catraca rush --buyers BUYERS --tickets TICKETS` (defaults 1 000 000 and 100 000: 2
categories, opening bell, 60 % of holds paid and 10 % cancelled, the rest expire) against
  embedded     a fresh `catraca serve --sync normal` (rate limits off), on a data directory;
  distributed  1 gateway + 1 worker on a private Redis (AOF), or with --log kafka a one-broker
               Apache Kafka, and PostgreSQL from tests/servers.py (only with --distributed).
Then `catraca audit` (--data DIR, or --redis URL --postgres CONNINFO) RUNS times (default 5):
each run's commands/s is the audit's own last line (commands replayed / wall time, from the
first read to the verdict; it also gives the CPU time of that part, the steadier figure on a
shared machine), its peak memory the child's ru_maxrss (os.wait4: the whole `catraca audit`,
the Merkle tree check after the replay included; pages of a memory-mapped file count), and
the whole command's wall time (from its start to its exit, that check included). With
--before BIN, that binary audits the same data too (embedded and distributed), alternating
run by run, so both see the same machine load. Medians reported; an audit that is not CLEAN
fails the bench (exit 1).

Usage: audit.py [--runs N] [--before BIN] [--data DIR] [--distributed [--log kafka]] [--keep]
       audit.py [--runs N] [--before BIN] (--redis URL | --kafka BOOTSTRAP) --postgres CONNINFO
       audit.py --hold [--log kafka]
  --data DIR   audit an existing embedded data directory instead of making one.
  --redis or --kafka, --postgres  audit an existing distributed sale (and nothing else).
  --keep       keep the data made (path printed) for a later --data.
  --hold       only make a distributed sale, print the options that audit it, and keep its
               servers running until interrupted (Ctrl-C): audit it again and again with
               --redis/--kafka --postgres (a large sale takes minutes to make).
Environment: CATRACA_BIN (default build/catraca, the release build), BUYERS, TICKETS.
Ends with one JSON line {"bench": "audit", ...}. Standard library only.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
os.environ.setdefault("CATRACA_BIN", os.path.join(ROOT, "build", "catraca"))
sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "system")]

BIN = os.environ["CATRACA_BIN"]
BUYERS = int(os.environ.get("BUYERS", "1000000"))
TICKETS = int(os.environ.get("TICKETS", "100000"))
SECRET = "audit-bench-" + "s" * 40
AUDIT_LINE = re.compile(r"audit: (\d+) events, (\d+) commands in ([0-9.]+) s \(\d+ commands/s\): "
                        r"(CLEAN|DIFFERENCES FOUND)(?: \(([0-9.]+) s of CPU\))?")


def wait_port(stderr_path, pattern, proc, what):
    deadline = time.time() + 60
    while time.time() < deadline:
        with open(stderr_path, "rb") as f:
            m = re.findall(pattern, f.read())
        if m:
            return int(m[-1])
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    sys.exit(f"bench/audit.py: {what} did not start:\n" + open(stderr_path, errors="replace").read())


def rush(url, work):
    started = time.time()
    with open(os.path.join(work, "rush.txt"), "w") as out:
        code = subprocess.run([BIN, "rush", "--url", url, "--jwt-secret", SECRET, "--buyers",
                               str(BUYERS), "--tickets", str(TICKETS), "--max-seconds", "900"],
                              stdout=out, stderr=subprocess.STDOUT, timeout=1200).returncode
    print(f"rush: {BUYERS} buyers, {TICKETS} tickets in {time.time() - started:.0f} s, exit {code}",
          flush=True)


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_embedded(work):
    data = os.path.join(work, "data")
    os.makedirs(data)
    log = os.path.join(work, "serve.log")
    with open(log, "wb") as err:
        proc = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--data", data,
                                 "--jwt-secret", SECRET, "--sync", "normal", "--rate-customer", "0",
                                 "--rate-ip", "0"], stdout=subprocess.DEVNULL, stderr=err)
    try:
        port = wait_port(log, rb"listening on http://127\.0\.0\.1:(\d+)", proc, "catraca serve")
        rush(f"http://127.0.0.1:{port}", work)
    finally:
        stop(proc)
    return ["--data", data]


def make_distributed(work, servers, log="redis"):
    """A sale through 1 gateway + 1 worker on PostgreSQL and the log `log` (redis, or kafka: one
    broker, replication 1). Returns the options that name it for `catraca audit`."""
    from servers import Kafka, Postgres, Redis  # tests/servers.py
    postgres = Postgres()
    servers.append(postgres)
    if log == "kafka":
        kafka = Kafka()
        servers.append(kafka)
        log_args = ["--kafka", kafka.bootstrap, "--kafka-topic-prefix", "catraca.bench-audit."]
        writer_args = log_args + ["--kafka-replication-factor", "1",
                                  "--kafka-min-insync-replicas", "1"]
    else:
        redis = Redis()
        servers.append(redis)
        log_args = writer_args = ["--redis", redis.url]
    subprocess.run([BIN, "migrate", "--postgres", postgres.conninfo], check=True,
                   stdout=subprocess.DEVNULL, timeout=60)
    common = writer_args + ["--postgres", postgres.conninfo, "--listen", "127.0.0.1:0"]
    procs = []
    try:
        for name, args, pattern in (
                ("worker", common + ["--worker-id", "bench"], rb"metrics on http://127\.0\.0\.1:(\d+)"),
                ("gateway", common + ["--jwt-secret", SECRET, "--rate-customer", "0", "--rate-ip", "0"],
                 rb"listening on http://127\.0\.0\.1:(\d+)")):
            log = os.path.join(work, name + ".log")
            with open(log, "wb") as err:
                procs.append(subprocess.Popen([BIN, name] + args, stdout=subprocess.DEVNULL,
                                              stderr=err))
            port = wait_port(log, pattern, procs[-1], "catraca " + name)
        rush(f"http://127.0.0.1:{port}", work)
    finally:
        for p in reversed(procs):
            stop(p)
    return log_args + ["--postgres", postgres.conninfo]


def _stop_holding(signum, frame):
    raise KeyboardInterrupt


def audit_once(binary, where):
    """(commands, seconds, commands/s, CPU seconds or None, peak RSS MiB, whole command's wall
    seconds) of one audit; exits the bench unless CLEAN. An older binary does not print its CPU
    time: None. The whole command includes what follows the replay (embedded: the Merkle tree
    check of audit_tree.c)."""
    with tempfile.TemporaryFile() as out:
        started = time.monotonic()
        proc = subprocess.Popen([binary, "audit"] + where, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        whole = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    m = AUDIT_LINE.search(text)
    if proc.returncode != 0 or m is None or m.group(4) != "CLEAN":
        sys.exit(f"bench/audit.py: {binary} audit exited {proc.returncode}:\n{text[-3000:]}")
    commands, seconds = int(m.group(2)), float(m.group(3))
    cpu = float(m.group(5)) if m.group(5) else None
    return commands, seconds, commands / seconds, cpu, usage.ru_maxrss / 1024.0, whole


def measure(label, where, binaries, runs):
    rows = {name: [] for name, _ in binaries}
    for run in range(1, runs + 1):
        for name, binary in binaries:
            commands, seconds, rate, cpu, rss, whole = audit_once(binary, where)
            rows[name].append((seconds, rate, cpu, rss, whole))
            cpu_text = f", {cpu:.3f} s of CPU" if cpu is not None else ""
            print(f"{label} run {run} {name:>6}: {commands} commands in {seconds:.3f} s{cpu_text}, "
                  f"{rate / 1e6:.2f} M commands/s, peak {rss:.0f} MiB, whole command "
                  f"{whole:.3f} s", flush=True)
    result = {"commands": commands}
    for name, _ in binaries:
        seconds = statistics.median(r[0] for r in rows[name])
        rate = statistics.median(r[1] for r in rows[name])
        cpus = [r[2] for r in rows[name] if r[2] is not None]
        cpu = statistics.median(cpus) if cpus else None
        rss = statistics.median(r[3] for r in rows[name])
        whole = statistics.median(r[4] for r in rows[name])
        cpu_text = f", {cpu:.3f} s of CPU ({commands / cpu / 1e6:.2f} M commands per CPU-second)" \
            if cpu else ""
        print(f"{label} median {name:>6}: {seconds:.3f} s, {rate / 1e6:.2f} M commands/s{cpu_text}, "
              f"peak {rss:.0f} MiB, whole command {whole:.3f} s", flush=True)
        result[name] = {"seconds": round(seconds, 3), "commands_per_s": round(rate),
                        "whole_command_seconds": round(whole, 3),
                        "cpu_seconds": cpu and round(cpu, 3), "peak_mib": round(rss),
                        "runs": [[round(r[0], 3), r[2] and round(r[2], 3), round(r[3]),
                                  round(r[4], 3)]
                                 for r in rows[name]]}
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", help="another catraca binary to audit the same data")
    parser.add_argument("--data", help="an existing embedded data directory")
    parser.add_argument("--distributed", action="store_true")
    parser.add_argument("--log", choices=("redis", "kafka"), default="redis",
                        help="the distributed sale's log (default redis)")
    parser.add_argument("--redis", help="with --postgres: audit an existing distributed sale")
    parser.add_argument("--kafka", help="with --postgres: audit an existing distributed sale on "
                                        "Kafka (BOOTSTRAP)")
    parser.add_argument("--kafka-topic-prefix", default="catraca.bench-audit.",
                        help="with --kafka (default: the prefix --distributed --log kafka uses)")
    parser.add_argument("--postgres")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--hold", action="store_true",
                        help="make a distributed sale and keep its servers until interrupted")
    args = parser.parse_args()
    binaries = ([("before", args.before)] if args.before else []) + [("after", BIN)]
    work = tempfile.mkdtemp(prefix="catraca-audit-bench-")
    servers = []
    report = {"bench": "audit", "runs": args.runs}
    if not (args.redis or args.kafka or args.data):
        report.update(buyers=BUYERS, tickets=TICKETS)  # the sale this run makes
    try:
        if args.hold:
            os.makedirs(os.path.join(work, "d"))
            where = make_distributed(os.path.join(work, "d"), servers, args.log)
            print("hold: audit it with: " + " ".join(shlex.quote(w) for w in where), flush=True)
            # Ctrl-C, or a kill (a shell's background job ignores SIGINT): the servers close.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, _stop_holding)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                return
        if args.redis or args.kafka:
            where = (["--redis", args.redis] if args.redis else
                     ["--kafka", args.kafka, "--kafka-topic-prefix", args.kafka_topic_prefix])
            where += ["--postgres", args.postgres]
            report["distributed"] = measure("distributed", where, binaries, args.runs)
            return print(json.dumps(report))
        where = ["--data", args.data] if args.data else make_embedded(os.path.join(work, "e"))
        report["embedded"] = measure("embedded", where, binaries, args.runs)
        if args.distributed:
            os.makedirs(os.path.join(work, "d"))
            where = make_distributed(os.path.join(work, "d"), servers, args.log)
            report["distributed"] = measure("distributed", where, binaries, args.runs)
    finally:
        for s in servers:
            s.close()
        if args.keep:
            print(f"data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
