#!/usr/bin/env python3
"""Benchmark of the distributed mode (`catraca gateway` + `catraca worker` on a log - Redis
Streams or Apache Kafka - and PostgreSQL), side by side in one run, RUNS times (default 3) of
SECONDS each (default 10).

Each run has four configurations (1x1 and 2x2, each on Redis and on Kafka; BENCH_LOGS and
BENCH_SKIP_2X2 narrow them), each on a fresh log - a private Redis (appendonly yes, appendfsync
always), or a private Kafka 4 in KRaft mode of BENCH_KAFKA_BROKERS brokers (default 1:
replication factor 1, min.insync.replicas 1; 3: factor 3, min.insync.replicas 2) - and a fresh
PostgreSQL 15 (fsync on, synchronous_commit on) from tests/servers.py, then `catraca migrate`.
The pgbench baseline runs once per run, in the first log's 1x1 (Redis by default), and that
run's Kafka ratio divides by the same figure:

  1x1  The naive design first, on that same PostgreSQL server (a database `naive` of its own,
       before any catraca process starts): pgbench -c16 -j2, one transaction per purchase on a
       hot stock row (bench/service.py's naive_pgbench). Then 1 gateway + 1 worker, one event,
       and wrk -t2 -c64 --latency posting purchases for SECONDS.
  2x2  2 events x 2 workers x 2 gateways. Once each worker holds one partition, two wrk run at
       once, one per event, each against its own gateway (the same -t2 -c64 and Lua script as
       1x1: each event gets the load 1x1's event gets, so 128 connections in all).

Before the window, BENCH_WARMUP seconds (default 5) of the same load, then the log drains: a
fresh broker's JVM compiles its hot paths under its first load. CPU accounting: each process's
user + system seconds over the window (/proc/PID/stat, its threads and children), per 1 000
decided purchases, for the gateways, workers, log server, PostgreSQL, wrk and the whole machine
(other users' processes too); BENCH_THREADS=1 also prints the busiest threads.

Figures, from /metrics samples taken right before wrk starts and right after it exits (the run
window): decided purchases/s = delta of catraca_worker_commands_total (summed over workers) /
window; accepted/s = delta of catraca_purchases_accepted_total / window; accept latency p50/p99
as wrk reports it at full load (wrk2 is not packaged in Debian 12: no fixed rate); then the
time to drain (every event's queue.pending back to 0, polled every 50 ms, and the owner's
log-lag gauge, measured by the worker once a second, back to 0); the worker's mean batch size
and commit latency (mean and max) and the gateway's mean append batch. Ratios: decided 1x1 /
pgbench tps (target >= 15x) and decided 2x2 / decided 1x1.

The Lua script is bench/service.py's (write_lua): a pool of customer tokens, one category,
quantity 1. An event allows at most 10 tickets per customer (CATRACA_QUANTITY_MAX), so the pool
is sized to SECONDS x 5000 customers (BENCH_CUSTOMERS overrides): up to 50 k purchases/s per
event are decided as holds, not LIMIT_EXCEEDED rejections, and the event (10 M tickets) never
sells out. The table shows the share of accepted purchases that ended held.

Usage: distributed.py [runs] [seconds]. Prints a table per configuration (every run and the
median), then one JSON line {"bench": "distributed", ...}. Standard library only; every wait
is bounded; every process started is stopped, also on an exception or Ctrl-C.
"""
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ left in bench/ or tests/
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# tests/system/catraca.py (imported by cluster.py) reads the binary at import: the release one.
os.environ.setdefault("CATRACA_BIN", os.path.join(ROOT, "build", "catraca"))
sys.path[:0] = [HERE, os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "system")]

import service  # noqa: E402  bench/service.py: token, http, wrk, write_lua, naive_pgbench
from servers import Kafka, KAFKA_JVM_FLAGS_PRODUCTION, Postgres, Redis  # noqa: E402  tests/servers.py
from cluster import BIN, Proc, options_of  # noqa: E402  tests/system/cluster.py: one gateway|worker process

PGBENCH_CLIENTS = 16
LEASE_MS = 2000
SPREAD_SECONDS = 60    # bound: the workers share the partitions out (one each)
DRAIN_SECONDS = 300    # bound: the log decided after the load
LAG_SECONDS = 15       # bound: the worker's once-a-second log-lag gauge reads 0
CUSTOMERS_PER_SECOND = 5000
EVENT = {"hold_seconds": 86400, "per_customer_limit": 10,
         "categories": [{"id": "pista", "name": "Pista", "capacity": 10000000}]}


def metrics(port):
    """One /metrics page as {sample: value}; labelled samples keep their labels in the key."""
    values = {}
    for line in service.http("GET", f"http://127.0.0.1:{port}/metrics").splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def wait(condition, seconds, what, poll_s=0.1):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(poll_s)


def event_state(gateway_port, event):
    return json.loads(service.http("GET", f"http://127.0.0.1:{gateway_port}/v1/events/{event}"))


def lag(worker_port, event):
    """The worker's log-lag gauge for the event, or None when it does not decide it."""
    return metrics(worker_port).get(f'catraca_worker_log_lag_entries{{event="{event}"}}')


def delta(before, after, key):
    return sum(after[n].get(key, 0.0) - before[n].get(key, 0.0) for n in after)


# BENCH_GATEWAY_ARGS: options appended to every gateway's (later ones win), e.g.
# "--rate-customer 1000 --rate-customer-burst 1000" measures the shared limits' EVALSHA per
# purchase with limits that are on but never reached.
GATEWAY_EXTRA = os.environ.get("BENCH_GATEWAY_ARGS", "").split()
# BENCH_LOGS: the logs measured, in this order, each configuration on fresh servers (default
# both). The pgbench baseline runs once per run, on the first log's 1x1 PostgreSQL, and every
# log's ratio of that run divides by it.
LOGS = [x for x in os.environ.get("BENCH_LOGS", "redis,kafka").split(",") if x]
if not LOGS or any(x not in ("redis", "kafka") for x in LOGS):
    raise SystemExit("distributed.py: BENCH_LOGS is a comma-separated list of redis, kafka")
# BENCH_KAFKA_BROKERS: 1 (default) = one KRaft broker, replication factor 1 and
# min.insync.replicas 1, what a 202 then promises is one broker's acknowledgement (no fsync:
# Kafka's default flush policy); 3 = replication factor 3, min.insync.replicas 2.
KAFKA_BROKERS = int(os.environ.get("BENCH_KAFKA_BROKERS", "1"))
# BENCH_SKIP_2X2=1: only 1 gateway + 1 worker (half the time).
SKIP_2X2 = os.environ.get("BENCH_SKIP_2X2", "") == "1"
# BENCH_WARMUP: seconds of the same load before the measured window (default 5, 0: none), then
# the log drains. A fresh broker's JVM compiles its hot paths in its first seconds under load
# (measured 2026-12-02: 3.2 of its 7 CPU seconds in a 10 s window went to the C1 and C2
# compiler threads); a broker in production has done that long before. Redis, PostgreSQL and
# Catraca have no such start-up cost, and the warm-up does not change their figures.
WARMUP_SECONDS = int(os.environ.get("BENCH_WARMUP", "5"))
# BENCH_KAFKA_JVM=tests: the brokers' JVM as the tests start it (C1 only, serial GC, 384 MB);
# the default is the JVM flags of Kafka's own start scripts (C2, G1, 1 GB), as in production.
KAFKA_JVM = os.environ.get("BENCH_KAFKA_JVM", "production")
if KAFKA_JVM not in ("production", "tests"):
    raise SystemExit("distributed.py: BENCH_KAFKA_JVM is production or tests")


def log_label(log):
    if log == "redis":
        return "Redis (AOF, appendfsync always)"
    replication = min(3, KAFKA_BROKERS)
    return (f"Kafka ({KAFKA_BROKERS} KRaft broker{'s' if KAFKA_BROKERS > 1 else ''}, "
            f"replication factor {replication}, min.insync.replicas {min(2, replication)}, "
            f"acks=all, idempotent producer, broker JVM flags: {KAFKA_JVM})")


class Setup:
    """The log (a fresh Redis, or a fresh Kafka of KAFKA_BROKERS brokers) + a fresh PostgreSQL
    (+ migrate) and the catraca processes started on them; close() stops whatever was started,
    in reverse order."""

    def __init__(self, limits, log):
        self.dir = tempfile.mkdtemp(prefix="catraca-bench-dist-")
        self.limits = limits
        self.redis = self.kafka = self.postgres = None
        self.gateways, self.workers = [], []
        try:
            if log == "redis":
                self.redis = Redis()
                log_args = ["--redis", self.redis.url]
            else:
                self.kafka = Kafka(brokers=KAFKA_BROKERS,  # bounded: Kafka.START_TIMEOUT_S
                                   jvm_flags=KAFKA_JVM_FLAGS_PRODUCTION
                                   if KAFKA_JVM == "production" else None)
                replication = min(3, KAFKA_BROKERS)
                log_args = ["--kafka", self.kafka.bootstrap,
                            "--kafka-replication-factor", str(replication),
                            "--kafka-min-insync-replicas", str(min(2, replication))]
            self.postgres = Postgres()
            subprocess.run([BIN, "migrate", "--postgres", self.postgres.conninfo], check=True,
                           stdout=subprocess.DEVNULL, timeout=60)
        except BaseException:
            self.close()
            raise
        self.common = log_args + ["--postgres", self.postgres.conninfo, "--listen", "127.0.0.1:0"]

    def start(self, gateways, workers):
        for i in range(workers):
            # Each command refuses the options it does not read (catraca COMMAND --help).
            self.workers.append(Proc("worker", self.common + options_of("worker", self.limits) + [
                "--lease-ms", str(LEASE_MS), "--worker-id", f"bench-w{i}-{os.getpid()}"],
                self.dir, f"worker{i}", rb"metrics on http://127\.0\.0\.1:(\d+)"))
        for i in range(gateways):
            self.gateways.append(Proc("gateway", self.common + options_of("gateway", self.limits) + [
                "--jwt-secret", service.SECRET, "--rate-customer", "0", "--rate-ip", "0"]
                + GATEWAY_EXTRA,
                self.dir, f"gateway{i}", rb"listening on http://127\.0\.0\.1:(\d+)"))

    def close(self):
        for p in self.gateways + self.workers:  # SIGTERM, 30 s, then SIGKILL (cluster.Proc)
            try:
                p.stop()
            except Exception as e:  # keep stopping the others
                print(f"distributed.py: stopping {p.name}: {e}", file=sys.stderr)
        for server in (self.postgres, self.redis):
            if server is not None:
                server.close()
        if self.kafka is not None:
            self.kafka.stop()  # kills the brokers, throws their data away
        shutil.rmtree(self.dir, ignore_errors=True)


def naive_on(postgres, seconds):
    """bench/service.py's naive_pgbench on this PostgreSQL server, in a database of its own."""
    postgres.psql("CREATE DATABASE naive")
    workdir = tempfile.mkdtemp(prefix="catraca-naive-")
    try:
        return service.naive_pgbench(["-h", "127.0.0.1", "-p", str(postgres.port),
                                      "-U", "postgres"], "naive", seconds, PGBENCH_CLIENTS,
                                     workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    """/proc/PID/stat's fields after the command name (field 3 on), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _children_by_parent():
    """{pid: [its live children's pids]} from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def tree_cpu_s(root):
    """CPU seconds (user + system, all threads) of root and every live descendant, plus what
    they collected of their exited children (a PostgreSQL backend that came and went)."""
    parents = _children_by_parent()
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # fields[11..14]: utime stime cutime cstime (stat fields 14-17)
        # a dead child's time is in the cutime of the one parent that waited for it
        total += sum(int(x) for x in fields[11:15])
        todo.extend(parents.get(pid, []))
    return total / CLOCK_TICKS


def tree_threads_s(root):
    """{thread name: CPU seconds} over root and its live descendants' threads (BENCH_THREADS)."""
    out, todo = {}, [root]
    children = _children_by_parent()
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    text = f.read()
            except OSError:
                continue
            name = text[text.index("(") + 1:text.rindex(")")]
            name = name.rstrip("0123456789-#")  # one row per pool (kafka-request-handler-0..)
            fields = text.rsplit(")", 1)[1].split()
            out[name] = out.get(name, 0) + (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


# BENCH_THREADS=1: print the busiest threads of each run's window (CPU seconds, by role).
THREADS = os.environ.get("BENCH_THREADS", "") == "1"


def machine_busy_s():
    """CPU seconds the whole machine spent not idle (every process, other users' too)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLOCK_TICKS  # minus idle and iowait


def cpu_sample(setup):
    """CPU seconds so far per role of this configuration: {role: seconds}. wrk's is what this
    process's waited-for children used (wrk is the only child that exits in a window)."""
    import resource
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    log_roots = ([setup.redis.proc.pid] if setup.redis is not None else
                 [p.pid for p in setup.kafka.procs if p is not None])
    if THREADS:
        threads = {}
        for role, roots in (("gateway", [g.proc.pid for g in setup.gateways]),
                            ("worker", [w.proc.pid for w in setup.workers]),
                            ("log", log_roots), ("postgres", [setup.postgres.proc.pid])):
            for root in roots:
                for name, seconds in tree_threads_s(root).items():
                    threads[(role, name)] = threads.get((role, name), 0) + seconds
        setup.threads_sample = threads
    return {
        "gateway": sum(tree_cpu_s(g.proc.pid) for g in setup.gateways),
        "worker": sum(tree_cpu_s(w.proc.pid) for w in setup.workers),
        "log": sum(tree_cpu_s(pid) for pid in log_roots),
        "postgres": tree_cpu_s(setup.postgres.proc.pid),
        "wrk": children.ru_utime + children.ru_stime,
        "machine": machine_busy_s(),
    }


def run_config(log, events, seconds, lua, limits, baseline):
    """events gateways + events workers on log ("redis" or "kafka"), one wrk per event;
    returns the figures of one run."""
    setup = Setup(limits, log)
    try:
        naive = naive_on(setup.postgres, seconds) if baseline else None
        setup.start(gateways=events, workers=events)
        names = [f"bench{i}" for i in range(events)]
        admin = service.token("ops", "admin")
        for gateway, name in zip(setup.gateways, names):
            service.http("POST", f"http://127.0.0.1:{gateway.port}/v1/events",
                         dict(EVENT, id=name, name=name), admin)
        # Before the clock starts: each worker holds exactly one partition, and each event's
        # owner is known (it reports the event's log lag).
        wait(lambda: all(metrics(w.port).get("catraca_worker_partitions_held") == 1
                         for w in setup.workers), SPREAD_SECONDS, "one partition per worker",
             poll_s=0.2)
        owners = {}
        for name in names:
            wait(lambda: any(lag(w.port, name) is not None for w in setup.workers),
                 SPREAD_SECONDS, f"the owner of {name}", poll_s=0.2)
            owners[name] = next(w for w in setup.workers if lag(w.port, name) is not None)

        results = [None] * events

        def drive(i, duration=seconds):
            url = f"http://127.0.0.1:{setup.gateways[i].port}/v1/events/{names[i]}/purchases"
            results[i] = service.wrk(url, duration, lua)  # bounded: duration + 60 s

        if WARMUP_SECONDS > 0:  # the same load, not measured; then the log drains
            warm = [threading.Thread(target=drive, args=(i, WARMUP_SECONDS), daemon=True)
                    for i in range(events)]
            for t in warm:
                t.start()
            for t in warm:
                t.join(timeout=WARMUP_SECONDS + 90)
            for gateway, name in zip(setup.gateways, names):
                wait(lambda: event_state(gateway.port, name)["queue"]["pending"] == 0,
                     DRAIN_SECONDS, f"{name} to drain after the warm-up", poll_s=0.05)
            results = [None] * events
        threads = [threading.Thread(target=drive, args=(i,), daemon=True) for i in range(events)]
        held_before = sum(c["held"] + c["sold"] for name in names
                          for c in event_state(setup.gateways[0].port, name)["categories"])
        before_w = {w.name: metrics(w.port) for w in setup.workers}
        before_g = {g.name: metrics(g.port) for g in setup.gateways}
        cpu_before = cpu_sample(setup)
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds + 90)
        window_s = time.monotonic() - started
        threads_before = getattr(setup, "threads_sample", {})
        cpu_after = cpu_sample(setup)
        if THREADS:
            used = sorted(((setup.threads_sample[k] - threads_before.get(k, 0), k)
                           for k in setup.threads_sample), reverse=True)
            print(f"threads' CPU seconds in the window ({log}, {events}x{events}):",
                  file=sys.stderr)
            for seconds, (role, name) in used[:25]:
                print(f"  {role:9} {name:32} {seconds:8.2f}", file=sys.stderr)
        end_w = {w.name: metrics(w.port) for w in setup.workers}
        end_g = {g.name: metrics(g.port) for g in setup.gateways}
        if any(r is None for r in results):
            raise RuntimeError("a wrk run failed or did not finish (see its exception above)")
        for gateway, name in zip(setup.gateways, names):
            wait(lambda: event_state(gateway.port, name)["queue"]["pending"] == 0,
                 DRAIN_SECONDS, f"{name} to drain", poll_s=0.05)
        drain_s = time.monotonic() - started - window_s
        # The lag gauge is refreshed once a second: read it once a fresh measure is certain.
        time.sleep(max(0.0, 1.2 - drain_s))
        for name, owner in owners.items():
            wait(lambda: lag(owner.port, name) == 0, LAG_SECONDS, f"{name}'s log lag to be 0")
        after_w = {w.name: metrics(w.port) for w in setup.workers}
        after_g = {g.name: metrics(g.port) for g in setup.gateways}
        states = [event_state(setup.gateways[0].port, name) for name in names]

        commands = delta(before_w, end_w, "catraca_worker_commands_total")
        commands_all = delta(before_w, after_w, "catraca_worker_commands_total")
        batches = delta(before_w, after_w, "catraca_worker_batches_total")
        commit_s = delta(before_w, after_w, "catraca_worker_commit_seconds_total")
        accepted = delta(before_g, end_g, "catraca_purchases_accepted_total")
        accepted_all = delta(before_g, after_g, "catraca_purchases_accepted_total")
        appended = delta(before_g, after_g, "catraca_log_appended_total")
        append_batches = delta(before_g, after_g, "catraca_log_append_batches_total")
        append_s = delta(before_g, after_g, "catraca_log_append_seconds_total")
        held = sum(c["held"] + c["sold"] for s in states for c in s["categories"]) - held_before
        errors = {k: delta(before_w, after_w, k) for k in (
            "catraca_worker_commit_errors_total", "catraca_worker_commit_epoch_conflicts_total")}
        errors["catraca_log_append_failures_total"] = delta(
            before_g, after_g, "catraca_log_append_failures_total")
        for key, value in errors.items():
            if value:
                print(f"distributed.py: warning: {key} rose by {value:.0f}", file=sys.stderr)
        return {
            "decided_per_s": commands / window_s,
            "accepted_per_s": accepted / window_s,
            "wrk_2xx_per_s": sum(r["good_rate"] for r in results),
            "accept_p50_ms": statistics.median(r["p50_ms"] for r in results),
            "accept_p99_ms": max(r["p99_ms"] for r in results),
            "drain_s": drain_s,
            "held_share": held / accepted_all if accepted_all else 0.0,
            "batch_mean": commands_all / batches if batches else 0.0,
            "batch_max": max(m.get("catraca_worker_batch_commands_max", 0) for m in after_w.values()),
            "commit_ms_mean": 1000 * commit_s / batches if batches else 0.0,
            "commit_ms_max": 1000 * max(m["catraca_worker_commit_seconds_max"]
                                        for m in after_w.values()),
            "append_batch_mean": appended / append_batches if append_batches else 0.0,
            "append_ms_mean": 1000 * append_s / append_batches if append_batches else 0.0,
            "window_s": window_s,
            "per_worker_per_s": [
                (end_w[w.name]["catraca_worker_commands_total"]
                 - before_w[w.name]["catraca_worker_commands_total"]) / window_s
                for w in setup.workers],
            "partitions_after": [int(after_w[w.name]["catraca_worker_partitions_held"])
                                 for w in setup.workers],
            "undecided": accepted_all - commands_all,
            "errors": sum(errors.values()),
            "naive_tps": naive,
            # CPU ms per 1 000 decided purchases over the wrk window, per role (the machine's
            # includes other users' processes: its gap to the sum is the noise)
            **{f"cpu_{role}_ms_per_k": 1000 * 1000 * (cpu_after[role] - cpu_before[role])
               / max(commands, 1) for role in cpu_before},
            "cpu_machine_share": (cpu_after["machine"] - cpu_before["machine"])
                                 / (window_s * (os.cpu_count() or 1)),
        }
    finally:
        setup.close()


ROWS = [  # key, label, format
    ("decided_per_s", "decided purchases/s (worker commits)", "{:.0f}"),
    ("accepted_per_s", "accepted purchases/s (202, gateway)", "{:.0f}"),
    ("wrk_2xx_per_s", "  wrk's count of 2xx answers/s", "{:.0f}"),
    ("accept_p50_ms", "accept latency p50 ms (wrk)", "{:.2f}"),
    ("accept_p99_ms", "accept latency p99 ms (wrk)", "{:.2f}"),
    ("drain_s", "time to drain after the load, s", "{:.2f}"),
    ("held_share", "accepted purchases ending held", "{:.4f}"),
    ("batch_mean", "worker batch, mean commands", "{:.1f}"),
    ("batch_max", "worker batch, max commands", "{:.0f}"),
    ("commit_ms_mean", "worker commit mean ms", "{:.2f}"),
    ("commit_ms_max", "worker commit max ms", "{:.2f}"),
    ("append_batch_mean", "gateway append batch, mean", "{:.1f}"),
    ("append_ms_mean", "gateway append (one group commit) mean ms", "{:.2f}"),
    ("window_s", "run window, s", "{:.2f}"),
    ("cpu_gateway_ms_per_k", "CPU ms / 1 000 decided: gateway", "{:.0f}"),
    ("cpu_worker_ms_per_k", "  worker", "{:.0f}"),
    ("cpu_log_ms_per_k", "  log server (Redis or broker JVMs)", "{:.0f}"),
    ("cpu_postgres_ms_per_k", "  PostgreSQL (all backends)", "{:.0f}"),
    ("cpu_wrk_ms_per_k", "  wrk", "{:.0f}"),
    ("cpu_machine_ms_per_k", "  whole machine (other users too)", "{:.0f}"),
    ("cpu_machine_share", "machine busy share in the window", "{:.2f}"),
]


def table(title, runs, extra_rows):
    med = statistics.median
    width = max(12, max(len(f"run {i + 1}") for i in range(len(runs))))
    print(f"\n{title}")
    print(f"  {'figure':40}" + "".join(f"{f'run {i + 1}':>{width}}" for i in range(len(runs)))
          + f"{'median':>{width}}")
    for key, label, fmt in ROWS + extra_rows:
        values = [r[key] for r in runs]
        print(f"  {label:40}" + "".join(f"{fmt.format(v):>{width}}" for v in values)
              + f"{fmt.format(med(values)):>{width}}")


def nproc():
    try:
        return int(subprocess.run(["nproc"], capture_output=True, text=True, timeout=10).stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return len(os.sched_getaffinity(0))


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    customers = int(os.environ.get("BENCH_CUSTOMERS",
                                   max(1000, min(200000, CUSTOMERS_PER_SECOND * seconds))))
    # Big enough pools and bounds that a run never meets one (the engine's purchase pool is
    # sized for 60 k purchases/s per event; ENGINE_FULL would show as a lower held share).
    purchases = max(1 << 20, 60000 * seconds)
    limits = ["--max-purchases-per-event", str(purchases),
              "--max-customers-per-event", str(max(1 << 16, customers)),
              "--queue-max", "100000", "--max-connections", "4096"]
    began = time.monotonic()
    lua_dir = tempfile.mkdtemp(prefix="catraca-lua-")
    lua = os.path.join(lua_dir, "purchase.lua")
    service.write_lua(lua, customers)
    one = {log: [] for log in LOGS}
    two = {log: [] for log in LOGS}
    naives = []
    try:
        for n in range(runs):
            for k, log in enumerate(LOGS):
                one[log].append(run_config(log, 1, seconds, lua, limits, baseline=k == 0))
                if k == 0:
                    naives.append(one[log][-1]["naive_tps"])
                one[log][-1]["naive_tps"] = naives[-1]
            if not SKIP_2X2:
                for log in LOGS:
                    two[log].append(run_config(log, 2, seconds, lua, limits, baseline=False))
            print(f"run {n + 1}/{runs}: pgbench {naives[-1]:.0f} tps; "
                  + "; ".join(f"{log} 1x1 decided {one[log][-1]['decided_per_s']:.0f}/s"
                              + ("" if SKIP_2X2 else
                                 f", 2x2 {two[log][-1]['decided_per_s']:.0f}/s")
                              for log in LOGS)
                  + f" ({time.monotonic() - began:.0f} s so far)", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(lua_dir, ignore_errors=True)

    med = statistics.median
    for log in LOGS:
        for r in one[log]:
            r["ratio_naive"] = r["decided_per_s"] / r["naive_tps"]
    cores = nproc()
    try:
        load = " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        load = "unknown"
    print(f"distributed bench: {runs} runs of {seconds} s; wrk -t{service.THREADS} "
          f"-c{service.CONNECTIONS} --latency per event, {customers} customer tokens, 1 category, "
          f"quantity 1; logs: {', '.join(log_label(log) for log in LOGS)}; PostgreSQL fsync + "
          f"synchronous_commit on; every server fresh per configuration; rate limits off "
          f"(loopback) unless BENCH_GATEWAY_ARGS ({' '.join(GATEWAY_EXTRA) or 'none'}); binary "
          f"{BIN}; nproc {cores}; load average at the end {load}")
    print(f"\nnaive PostgreSQL baseline, pgbench tps (database `naive` on run n's first "
          f"PostgreSQL, -c{PGBENCH_CLIENTS} -j2, transaction per purchase, hot stock row): "
          + " / ".join(f"{x:.0f}" for x in naives) + f"; median {med(naives):.0f}")
    for log in LOGS:
        table(f"{log_label(log)}: 1 gateway + 1 worker, 1 event", one[log],
              [("naive_tps", "naive PostgreSQL, pgbench tps", "{:.0f}"),
               ("ratio_naive", "ratio decided / pgbench", "{:.1f}x")])
    for log in LOGS if not SKIP_2X2 else []:
        for r in two[log]:
            r["worker0_per_s"], r["worker1_per_s"] = r["per_worker_per_s"]
        table(f"{log_label(log)}: 2 events x 2 workers x 2 gateways (one wrk per event, each on "
              f"its own gateway; {2 * service.CONNECTIONS} connections in all)", two[log],
              [("worker0_per_s", "  of which worker 0 decided/s", "{:.0f}"),
               ("worker1_per_s", "  of which worker 1 decided/s", "{:.0f}")])
        print("  partitions held after each run (worker 0, worker 1): "
              + "; ".join("/".join(map(str, r["partitions_after"])) for r in two[log]))

    keys = [k for k, _, _ in ROWS]
    naive = med(naives)
    summary = {}
    problems = 0
    print()
    for log in LOGS:
        d_one = med(r["decided_per_s"] for r in one[log])
        entry = {"one": {k: round(med(r[k] for r in one[log]), 3) for k in keys},
                 "decided_vs_naive": round(d_one / naive, 2)}
        print(f"{log}: ratio decided 1x1 / pgbench (medians): {d_one / naive:.1f}x (target >= "
              f"15x: {'met' if d_one / naive >= 15 else 'NOT met'})")
        if not SKIP_2X2:
            d_two = med(r["decided_per_s"] for r in two[log])
            entry["two"] = {k: round(med(r[k] for r in two[log]), 3) for k in keys}
            entry["scaling_2x2_vs_1x1"] = round(d_two / d_one, 3)
            print(f"{log}: ratio decided 2x2 / 1x1 (medians): {d_two / d_one:.2f} (ideal 2; this "
                  f"machine has {cores} cores shared by the log, PostgreSQL, 2 gateways, 2 "
                  f"workers and 2 wrk, so this shows what the split costs here, not how it "
                  f"scales on separate machines)")
        problems += sum(r["errors"] + abs(r["undecided"]) for r in one[log] + two[log])
        summary[log] = entry
    if problems:
        print(f"WARNING: commit/append errors or accepted-but-undecided purchases: {problems:.0f}")
    print(json.dumps({
        "bench": "distributed",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python3", os.path.relpath(os.path.abspath(sys.argv[0]), os.getcwd())]
                            + sys.argv[1:]),
        "gateway_args": " ".join(GATEWAY_EXTRA),
        "kafka_brokers": KAFKA_BROKERS, "kafka_jvm": KAFKA_JVM, "warmup_s": WARMUP_SECONDS,
        "nproc": cores, "loadavg": load, "runs": runs, "seconds": seconds, "customers": customers,
        "wrk": f"-t{service.THREADS} -c{service.CONNECTIONS} per event",
        "naive_tps": round(naive), "naive_runs": [round(x) for x in naives],
        "baseline": "pgbench on the same PostgreSQL server",
        **summary,
        "elapsed_s": round(time.monotonic() - began, 1)}))


if __name__ == "__main__":
    main()
