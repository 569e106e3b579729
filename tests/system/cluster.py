"""The distributed mode for black-box tests: a log (Redis, or Apache Kafka with log="kafka")
+ PostgreSQL + N gateways + M workers.

`Cluster` offers what tests use of `catraca.Server` (port, client(), close()), so the API
contract suite runs unchanged against it (CATRACA_MODE=distributed); its client spreads
requests over every gateway, so a purchase made on one is followed and confirmed on
another. Standard library only; every wait is bounded; processes die with the tests.
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import shutil

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from servers import Kafka, Postgres, Redis  # noqa: E402
from catraca import BIN, SECRET, _RUNNING, Client  # noqa: E402


class Proc:
    """One `catraca gateway|worker` process; its port is read from its first log lines."""

    def __init__(self, command, args, directory, name, ready_pattern):
        self.command, self.args, self.name = command, list(args), name
        self.stderr_path = os.path.join(directory, f"{name}.log")
        self.pattern = ready_pattern
        self.proc = None
        self.port = None
        self.start()

    def start(self):
        """Starts the process and waits for its ready line. A process that exits first is an
        error of the test, with its exit code and its whole log: every way `catraca gateway`
        or `worker` can stop at start logs why (StartFailureTest in test_distributed.py)."""
        # GCC's UBSan runtime reads UBSAN_OPTIONS, not ASAN_OPTIONS: without abort_on_error an
        # undefined behaviour report ends the process with exit code 1, like a start failure.
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:quarantine_size_mb=8",
                   UBSAN_OPTIONS="print_stacktrace=1:abort_on_error=1")
        self.stderr = open(self.stderr_path, "ab")
        offset = self.stderr.tell()
        self.proc = subprocess.Popen([BIN, self.command] + self.args, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr, env=env)
        _RUNNING.append(self.proc)
        deadline = time.time() + 30
        while time.time() < deadline:
            with open(self.stderr_path, "rb") as f:
                f.seek(offset)
                m = re.findall(self.pattern, f.read())
            if m:
                self.port = int(m[-1])
                return
            if self.proc.poll() is not None:
                self.stderr.close()
                log = self.log()
                raise RuntimeError(f"{self.name} exited at start with {self.proc.returncode}; "
                                   f"its log ({self.stderr_path}):\n"
                                   + (log if log.strip() else "(empty: a silent exit is a bug)"))
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start in 30 s:\n" + self.log())

    def signal(self, number):
        self.proc.send_signal(number)

    def kill9(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.stderr.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a test may have left it stopped
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
        else:
            code = self.proc.returncode
        self.stderr.close()
        return code

    def log(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()


class SpreadClient:
    """Sends each request to the next gateway in turn (each keeps its own connection)."""

    def __init__(self, ports, timeout=30):
        self.clients = [Client(p, timeout) for p in ports]
        self.turn = 0

    def request(self, *args, **kwargs):
        client = self.clients[self.turn % len(self.clients)]
        self.turn += 1
        return client.request(*args, **kwargs)

    def close(self):
        for c in self.clients:
            c.close()


def options_of(command, args):
    """The "--name [value]" items of args that `catraca COMMAND` reads (its --help lists them):
    each command refuses the options of the others."""
    run = subprocess.run([BIN, command, "--help"], capture_output=True, text=True, timeout=30)
    known = set(re.findall(r"^\s+(--[a-z0-9-]+)", run.stdout, re.M))
    kept, i = [], 0
    while i < len(args):
        has_value = i + 1 < len(args) and not args[i + 1].startswith("--")
        item = args[i:i + 2] if has_value else args[i:i + 1]
        if item[0].split("=")[0] in known:
            kept += item
        i += len(item)
    return kept


_SHARED_KAFKA = None
_CLUSTERS_STARTED = 0


def shared_kafka():
    """One single-broker Kafka for every Cluster(log="kafka") of this process that brings none
    of its own: each cluster gets topics of its own (a prefix per cluster), so they share
    nothing but the broker, as sales share a deployment's Kafka, and a test file starts the
    JVM once instead of once per cluster. Stopped when the process exits."""
    global _SHARED_KAFKA
    if _SHARED_KAFKA is None or not _SHARED_KAFKA.running(0):
        if _SHARED_KAFKA is not None:
            _SHARED_KAFKA.stop()
        _SHARED_KAFKA = Kafka(brokers=1)
    return _SHARED_KAFKA


class Cluster:
    """log: "redis" (default) or "kafka". With "kafka", `kafka` may be a
    servers.Kafka the test controls (kill9, start_broker); without one the cluster runs on
    the process's shared 1-broker Kafka. replication/min_insync: the --kafka-replication-factor
    and --kafka-min-insync-replicas passed to every process (default: min(3, brokers) and
    min(2, replication))."""

    def __init__(self, *extra, demo=False, gateways=2, workers=2, lease_ms=1500, log=None,
                 kafka=None, replication=None, min_insync=None):
        global _CLUSTERS_STARTED
        _CLUSTERS_STARTED += 1
        self.log = log or "redis"
        if self.log not in ("redis", "kafka"):
            raise ValueError(f"Cluster(log={self.log!r}): redis or kafka")
        self.dir = tempfile.mkdtemp(prefix="catraca-cluster-")
        self.extra = list(extra)
        self.redis = self.kafka = None
        if self.log == "redis":
            self.redis = Redis()
            log_args = ["--redis", self.redis.url]
        else:
            self.kafka = kafka or shared_kafka()
            brokers = self.kafka.count
            self.replication = replication or min(3, brokers)
            self.min_insync = min_insync or min(2, self.replication)
            # Topics of this cluster only: <prefix>event.*, <prefix>sys.*
            self.topic_prefix = f"catraca.t{os.getpid()}-{_CLUSTERS_STARTED}."
            log_args = ["--kafka", self.kafka.bootstrap,
                        "--kafka-topic-prefix", self.topic_prefix,
                        "--kafka-replication-factor", str(self.replication),
                        "--kafka-min-insync-replicas", str(self.min_insync)]
        self.postgres = Postgres()
        subprocess.run([BIN, "migrate", "--postgres", self.postgres.conninfo], check=True,
                       stdout=subprocess.DEVNULL, timeout=60)
        common = log_args + ["--postgres", self.postgres.conninfo, "--listen", "127.0.0.1:0"]
        # Workers check no token: they take no secret. Demo gateways draw their own each.
        self.worker_args = common + ["--lease-ms", str(lease_ms)] + \
            options_of("worker", self.extra)
        self.gateway_args = common + ["--rate-customer", "0", "--rate-ip", "0"] + \
            (["--demo"] if demo else ["--jwt-secret", SECRET]) + self.extra
        if "--receipt-key" not in self.extra:  # every gateway of a system signs with one key
            self.gateway_args += ["--receipt-key", os.path.join(self.dir, "receipt-key.pem")]
        self.workers = [self.start_worker(i) for i in range(workers)]
        self.gateways = [self.start_gateway(i) for i in range(gateways)]

    def log_args(self):
        """The options that name this cluster's log (for catraca audit and the like)."""
        if self.redis:
            return ["--redis", self.redis.url]
        return ["--kafka", self.kafka.bootstrap, "--kafka-topic-prefix", self.topic_prefix]

    def event_topic(self, event):
        """The Kafka topic of an event's log (CONTRACT17: <prefix>event.<enc(event)>)."""
        enc = "".join(c if c.isalnum() and c.isascii() else
                      {".": "-d", "_": "-u", "-": "--"}[c] for c in event)
        return f"{self.topic_prefix}event.{enc}"

    def start_gateway(self, i):
        return Proc("gateway", self.gateway_args, self.dir, f"gateway{i}",
                    rb"listening on http://127\.0\.0\.1:(\d+)")

    def start_worker(self, i):
        return Proc("worker", self.worker_args + ["--worker-id", f"w{i}-{time.monotonic_ns()}"],
                    self.dir, f"worker{i}", rb"metrics on http://127\.0\.0\.1:(\d+)")

    @property
    def port(self):
        return self.gateways[0].port

    def client(self, timeout=30):
        return SpreadClient([g.port for g in self.gateways], timeout)

    def worker_metrics(self, worker):
        """The worker's /metrics as {name: value} (unlabelled samples only)."""
        status, text, _ = Client(worker.port, 10).request("GET", "/metrics")
        assert status == 200, (status, text)
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def sql(self, query):
        return self.postgres.psql(query)

    def owner_of(self, event):
        """(worker id, epoch) holding the event's lease now, by the store."""
        row = self.sql(f"SELECT coalesce(owner, ''), epoch FROM partitions "
                       f"WHERE event = '{event}' AND lease_until > now()")
        if not row:
            return None, None
        owner, epoch = row.split("|")
        return owner, int(epoch)

    def worker_by_id(self, worker_id):
        for w in self.workers:
            if worker_id and worker_id in " ".join(w.args):
                return w
        return None

    def logs(self):
        return "\n".join(f"--- {p.name}\n{p.log()[-3000:]}" for p in self.gateways + self.workers)

    def stop_processes(self):
        """Stops every gateway and worker (the log and the store stay up, e.g. for an audit);
        returns the worst exit code."""
        codes = [g.stop() for g in self.gateways] + [w.stop() for w in self.workers]
        return max(codes) if codes else 0

    def close(self):
        codes = [self.stop_processes()]
        if self.redis:
            self.redis.close()
        self.postgres.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return max(codes) if codes else 0
