"""Real Redis, PostgreSQL and Apache Kafka servers for tests, on free loopback ports in
temporary directories.

Standard library only. Used two ways:
  - as a module: `with Redis() as r, Postgres() as p:` (system tests of the distributed mode),
    `with Kafka(brokers=3) as k:` (k.bootstrap, k.kill9(i), k.start_broker(i), k.leader_of(t));
  - as a wrapper: `python3 tests/servers.py [--timeout S] [--kafka [--brokers N]] COMMAND ARGS...`
    starts them, runs COMMAND with CATRACA_TEST_REDIS=redis://127.0.0.1:PORT,
    CATRACA_TEST_POSTGRES=<conninfo> (and CATRACA_TEST_KAFKA=<bootstrap> with --kafka; with
    one broker also CATRACA_TEST_KAFKA_FAULT=<relay port>:<upstream port>, see Kafka's
    fault_listener) in its environment, stops them, and exits with COMMAND's status (unit tests
    of the adapters). With --timeout, S seconds after it started it says what it was doing
    (with COMMAND's thread stacks when COMMAND runs), kills COMMAND and exits 124 (_Deadline).

PostgreSQL refuses to run as root: initdb and postgres run as the `postgres` user
(runuser), in a directory that user owns. Every wait is bounded; servers die with the tests.
"""
import atexit
import base64
import fcntl
import hashlib
import os
import signal
import struct
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

PG_BIN = "/usr/lib/postgresql/15/bin"
_RUNNING = []


@atexit.register
def _stop_leftovers():
    for server in list(_RUNNING):
        server.stop()


_HANDED_OUT = set()


def free_port():
    """A loopback port free now and not handed out before by this process: a server with two
    listeners (a Kafka broker and its controller) asks twice before it binds either, and the
    kernel may well give the same free port both times."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("free_port: no loopback port this process has not handed out already")


def _wait_port(port, proc, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {seconds} s")


class Redis:
    """redis-server with the shipped durability settings: AOF on, fsync before every answer."""

    def __init__(self, port=None, directory=None):
        self.port = port or free_port()
        self.dir = directory or tempfile.mkdtemp(prefix="catraca-redis-")
        self.owns_dir = directory is None
        self.proc = None
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        """Starts (or restarts on the same AOF and port)."""
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--appendonly", "yes", "--appendfsync", "always",
                "--save", "", "--protected-mode", "no", "--daemonize", "no",
                "--loglevel", "warning", "--logfile", os.path.join(self.dir, "redis.log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _RUNNING.append(self)
        _wait_port(self.port, self.proc, 15, "redis-server")
        # Listening is not loaded: wait until it answers PING with PONG (AOF replay done).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.command("PING") == b"+PONG\r\n":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not finish loading within 30 s")

    def command(self, *words):
        """One command over a raw socket; returns the raw reply bytes (tests use it sparingly)."""
        payload = f"*{len(words)}\r\n".encode()
        for w in words:
            b = w if isinstance(w, bytes) else str(w).encode()
            payload += b"$%d\r\n%s\r\n" % (len(b), b)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(payload)
                return s.recv(1 << 20)
        except OSError:
            return b""

    def kill9(self):
        self.proc.kill()
        self.proc.wait(10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self in _RUNNING:
            _RUNNING.remove(self)

    def close(self):
        self.stop()
        if self.owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _as_postgres(args, **kw):
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    return subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


class Postgres:
    """A PostgreSQL 15 cluster in a temporary directory; database `catraca`, trust auth on loopback."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="catraca-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        _as_postgres([f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                      "--no-sync", "-E", "UTF8", "--locale=C"])
        self.proc = None
        self.start()
        _as_postgres([f"{PG_BIN}/createdb", "-h", "127.0.0.1", "-p", str(self.port),
                      "-U", "postgres", "catraca"])

    @property
    def conninfo(self):
        return f"host=127.0.0.1 port={self.port} dbname=catraca user=postgres connect_timeout=5"

    def start(self):
        args = [f"{PG_BIN}/postgres", "-D", self.data, "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                "-c", "max_connections=200", "-c", "shared_buffers=128MB",
                "-c", "fsync=on", "-c", "synchronous_commit=on"]
        if os.geteuid() == 0:
            args = ["runuser", "-u", "postgres", "--"] + args
        self.log = open(os.path.join(self.dir, "postgres.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        _RUNNING.append(self)
        _wait_port(self.port, self.proc, 30, "postgres")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run([f"{PG_BIN}/pg_isready", "-h", "127.0.0.1", "-p", str(self.port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("postgres not ready within 30 s")

    def psql(self, sql):
        """Runs SQL; returns the unaligned, tuples-only output."""
        out = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                              self.conninfo, "-c", sql],
                             check=True, capture_output=True, text=True, timeout=60)
        return out.stdout.strip()

    def kill9(self):
        # runuser forks the postgres postmaster as a child: kill the postmaster itself.
        pid_file = os.path.join(self.data, "postmaster.pid")
        with open(pid_file) as f:
            pid = int(f.readline())
        os.kill(pid, 9)
        self.proc.wait(10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # smart shutdown via runuser's forwarding; fall back to kill
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self in _RUNNING:
            _RUNNING.remove(self)

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KAFKA_FETCH = os.path.join(ROOT, "scripts", "kafka-fetch.sh")

# The broker's log4j2 configuration: warnings and errors only, into the node's directory.
_KAFKA_LOG4J2 = """status = error
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
"""


def kafka_classpath():
    """The broker's jars, fetched (once, then cached under build/) by scripts/kafka-fetch.sh.
    Raises RuntimeError saying why when they cannot be had: Kafka tests fail, never skip."""
    try:
        run = subprocess.run(["bash", KAFKA_FETCH], capture_output=True, text=True, timeout=1300)
    except subprocess.TimeoutExpired:
        raise RuntimeError("scripts/kafka-fetch.sh did not finish within 1300 s") from None
    if run.returncode != 0:
        raise RuntimeError("cannot run a Kafka broker: scripts/kafka-fetch.sh failed:\n" + run.stderr)
    lib = run.stdout.strip().splitlines()[-1]
    return os.path.join(lib, "*")


# Every broker and storage-tool JVM: small heap, the serial collector and the first JIT tier
# only (start-up and little CPU matter more here than peak speed).
# What Kafka's own scripts start a broker with (kafka-server-start.sh's heap, kafka-run-class.sh's
# KAFKA_JVM_PERFORMANCE_OPTS): the C2 compiler and G1. bench/distributed.py measures with these
# (Kafka(jvm_flags=KAFKA_JVM_FLAGS_PRODUCTION)): the tests' flags below cost about twice the
# broker CPU per request (docs/BENCHMARKS.md, 2026-12-02).
KAFKA_JVM_FLAGS_PRODUCTION = ["-Xms1g", "-Xmx1g", "-server", "-XX:+UseG1GC",
                              "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
                              "-XX:+ExplicitGCInvokesConcurrent", "-XX:MaxInlineLevel=15",
                              "-Djava.awt.headless=true"]
# The tests' flags: fast start and small footprint (C1 only, serial GC, small heap).
KAFKA_JVM_FLAGS = ["-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                   "-XX:-UsePerfData", "-Djava.awt.headless=true"]


def kafka_class_archive(classpath):
    """A class-data-sharing archive of the classes a broker loads (Java's AppCDS), made once
    per machine next to the jars and used by every broker JVM after: a broker then starts in
    about half the time and CPU (7.5 s -> 3.5-4 s measured for one). It is made by starting a
    throwaway broker with -XX:ArchiveClassesAtExit and stopping it gracefully (the JVM writes
    the archive as it exits). Only an optimization: None when it cannot be made (brokers
    then start without it), or when CATRACA_KAFKA_CDS=0. The name carries the JVM, its flags
    and the jars: any change makes a new one, and the JVM itself ignores one that does not
    match."""
    if os.environ.get("CATRACA_KAFKA_CDS") == "0":
        return None
    lib = os.path.dirname(classpath)
    java = os.path.realpath(shutil.which("java") or "java")
    try:
        stat = os.stat(java)
        identity = repr((java, stat.st_mtime_ns, stat.st_size, KAFKA_JVM_FLAGS,
                         sorted(os.listdir(lib))))
    except OSError:
        return None
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    archive = os.path.join(os.path.dirname(lib), f"classes-{key}.jsa")
    if os.path.exists(archive):
        return archive
    with open(os.path.join(os.path.dirname(lib), ".classes.lock"), "w") as lock:
        deadline = time.monotonic() + 180  # another test is making it: wait, bounded
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.2)
        if os.path.exists(archive):
            return archive
        partial = f"{archive}.{os.getpid()}.tmp"
        started = time.monotonic()
        try:
            with Kafka(brokers=1, _archive_to=partial) as throwaway:
                proc = throwaway.procs[0]
                proc.send_signal(signal.SIGTERM)  # a graceful exit writes the archive
                proc.wait(90)
            if os.path.getsize(partial) > 0:
                os.replace(partial, archive)
                print(f"servers.py: made {archive} in {time.monotonic() - started:.1f} s",
                      file=sys.stderr)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            print(f"servers.py: no class-data-sharing archive for Kafka ({e}); brokers start "
                  f"without one", file=sys.stderr)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
    return archive if os.path.exists(archive) else None


def _kafka_uuid():
    """A Kafka Uuid (cluster.id, directory.id): 16 random bytes, base64url without padding.
    Kafka's own generator never starts one with '-' (it would read as an option)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _die_with_parent():
    """In the child before exec: SIGKILL when the process that started it dies, so a test
    killed by its time-out (no atexit then) leaves no JVM holding ports and memory."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class _Wire:
    """The few Kafka protocol primitives a Metadata request needs (big-endian, non-flexible)."""

    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, fmt):
        value = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return value[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        text = self.data[self.at:self.at + n].decode()
        self.at += n
        return text

    def array(self, item):
        n = self.take(">i")
        return [item() for _ in range(max(n, 0))]


def _kafka_string(text):
    if text is None:
        return struct.pack(">h", -1)
    b = text.encode()
    return struct.pack(">h", len(b)) + b


def _kafka_call(host, port, api_key, version, body, timeout):
    """One request (header v1) and its answer's body (after the v0 response header)."""
    request = struct.pack(">hhi", api_key, version, 1) + _kafka_string("catraca-tests") + body
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(request)) + request)
        data = b""
        size = None
        while size is None or len(data) < size + 4:
            chunk = s.recv(1 << 16)
            if not chunk:
                raise OSError(f"broker closed the connection before answering API {api_key}")
            data += chunk
            if size is None and len(data) >= 4:
                size = struct.unpack_from(">i", data)[0]
    w = _Wire(data[4:4 + size])
    w.take(">i")  # correlation id
    return w


def kafka_create_topic(host, port, topic, partitions=1, replication=1, configs=None, timeout=30.0):
    """CreateTopics (API key 19, version 2) on one broker; returns (error code, message).
    0 is created, 36 TOPIC_ALREADY_EXISTS. For tests of the harness: the adapter creates its
    own topics."""
    body = struct.pack(">i", 1) + _kafka_string(topic) + struct.pack(">ihi", partitions, replication, 0)
    configs = configs or {}
    body += struct.pack(">i", len(configs))
    for key, value in configs.items():
        body += _kafka_string(key) + _kafka_string(str(value))
    body += struct.pack(">ib", int(timeout * 1000), 0)
    w = _kafka_call(host, port, 19, 2, body, timeout + 5)
    w.take(">i")  # throttle_time_ms
    w.take(">i")  # one topic
    w.string()
    return w.take(">h"), w.string()


def kafka_init_producer_id(host, port, timeout=5.0):
    """InitProducerId (API key 22, version 1) for an idempotent producer, as librdkafka asks
    before its first produce; returns the error code: 0 once the broker hands out producer
    ids, 14 COORDINATOR_LOAD_IN_PROGRESS for a while after it starts."""
    body = _kafka_string(None) + struct.pack(">i", 60000)  # no transactional id
    w = _kafka_call(host, port, 22, 1, body, timeout)
    w.take(">i")  # throttle_time_ms
    return w.take(">h")


def kafka_high_watermark(host, port, topic, partition=0, timeout=5.0):
    """ListOffsets (API key 2, version 1) for the latest offset, asked as a consumer
    (replica id -1): the partition's high watermark as its LEADER counts it (the offset below
    which every in-sync replica holds the records; acks=all answers a produce once it passes
    it). Must be sent to the leader. Returns (error code, offset); 6 NOT_LEADER_OR_FOLLOWER
    from another broker."""
    body = struct.pack(">ii", -1, 1) + _kafka_string(topic) + struct.pack(">iiq", 1, partition, -1)
    w = _kafka_call(host, port, 2, 1, body, timeout)
    w.take(">i")  # one topic
    w.string()
    w.take(">i")  # one partition
    w.take(">i")  # its index
    error = w.take(">h")
    w.take(">q")  # timestamp
    return error, w.take(">q")


def kafka_metadata(host, port, topics=(), timeout=5.0):
    """One Metadata request (API key 3, version 4: the oldest Kafka 4 still serves) to one broker.
    Returns {"brokers": {node_id: port}, "controller": id, "topics": {name: {"error": code,
    "partitions": {index: {"error", "leader", "replicas", "isr"}}}}}. Raises OSError when the
    broker does not answer. topics=() asks for no topic (brokers only); None for every topic."""
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        body = struct.pack(">i", len(topics))
        for t in topics:
            b = t.encode()
            body += struct.pack(">h", len(b)) + b
    body += b"\x00"  # allow_auto_topic_creation: false (the cluster refuses it anyway)
    w = _kafka_call(host, port, 3, 4, body, timeout)
    w.take(">i")  # throttle_time_ms
    brokers = {}
    for _ in range(w.take(">i")):
        node, _host, bport = w.take(">i"), w.string(), w.take(">i")
        w.string()  # rack
        brokers[node] = bport
    w.string()  # cluster id
    controller = w.take(">i")
    answer = {"brokers": brokers, "controller": controller, "topics": {}}
    for _ in range(w.take(">i")):
        error, name = w.take(">h"), w.string()
        w.take(">b")  # is_internal
        partitions = {}
        for _ in range(w.take(">i")):
            perror, index, leader = w.take(">h"), w.take(">i"), w.take(">i")
            replicas = w.array(lambda: w.take(">i"))
            isr = w.array(lambda: w.take(">i"))
            partitions[index] = {"error": perror, "leader": leader, "replicas": replicas, "isr": isr}
        answer["topics"][name] = {"error": error, "partitions": partitions}
    return answer


class Kafka:
    """Apache Kafka 4 in KRaft mode: `brokers` nodes, each a combined broker + controller, a
    static controller quorum of all of them, on loopback ports, in a temporary directory.

    Node i has node.id i, so the index tests pass to kill9/start_broker is the id the cluster
    reports (leader_of). Settings are for tests: small heaps, one partition and replication
    factor min(3, brokers) by default, automatic topic creation OFF (the adapter creates its
    topics itself and must not depend on it), a dead broker fenced after 3 s instead of 9 s.
    Every wait is bounded; brokers die with the tests (stop() kills them: their data is
    thrown away, so a graceful shutdown would only cost time)."""

    START_TIMEOUT_S = 120  # 3 JVMs starting at once on 2 busy cores took 31 s here

    def __init__(self, brokers=1, _archive_to=None, fault_listener=False, jvm_flags=None,
                 **overrides):
        """fault_listener: each node also listens on fault_upstream_ports[i] and ADVERTISES
        fault_ports[i] there, where nothing listens until a test starts
        tests/log/fault_proxy.h's relay on it (in front of fault_upstream_ports[i]). A client
        that bootstraps at fault_bootstrap then reaches the broker only through that relay,
        since Kafka clients connect to the addresses brokers advertise: the relay can cut it.
        Inter-broker and controller traffic keep their own listeners.
        jvm_flags: the brokers' JVM flags instead of KAFKA_JVM_FLAGS (then without the
        class-data-sharing archive, which is made for those)."""
        if not 1 <= brokers <= 9:
            raise ValueError("Kafka(brokers=1..9)")
        self.fault_listener = fault_listener
        self.classpath = kafka_classpath()
        # _archive_to: kafka_class_archive's throwaway broker, which writes the archive
        self.archive_to = _archive_to
        self.jvm_flags = KAFKA_JVM_FLAGS if jvm_flags is None else list(jvm_flags)
        self.archive = (None if _archive_to or jvm_flags is not None
                        else kafka_class_archive(self.classpath))
        self.count = brokers
        self.overrides = overrides
        self.procs = [None] * brokers
        self.dir = None
        _RUNNING.append(self)
        # free_port() only finds ports free NOW: another process may take one before the JVM
        # binds it. Then the whole cluster starts again on other ports (a few times at most).
        for attempt in range(3):
            try:
                self._start_new_cluster()
                return
            except RuntimeError as e:
                self._kill_all()
                if attempt == 2 or "Address already in use" not in str(e):
                    self.stop()
                    raise
            except BaseException:
                self.stop()
                raise

    def _start_new_cluster(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = tempfile.mkdtemp(prefix="catraca-kafka-")
        brokers = self.count
        self.ports = [free_port() for _ in range(brokers)]
        self.controller_ports = [free_port() for _ in range(brokers)]
        self.fault_upstream_ports = [free_port() for _ in range(brokers)] if self.fault_listener else []
        self.fault_ports = [free_port() for _ in range(brokers)] if self.fault_listener else []
        self.cluster_id = _kafka_uuid()
        voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(self.controller_ports))
        replication = min(3, brokers)
        with open(os.path.join(self.dir, "log4j2.properties"), "w") as f:
            f.write(_KAFKA_LOG4J2)
        for i in range(brokers):
            node_dir = self.node_dir(i)
            os.makedirs(node_dir)
            listeners = (f"PLAINTEXT://127.0.0.1:{self.ports[i]},"
                         f"CONTROLLER://127.0.0.1:{self.controller_ports[i]}")
            advertised = f"PLAINTEXT://127.0.0.1:{self.ports[i]}"
            protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
            if self.fault_listener:
                listeners += f",FAULTY://127.0.0.1:{self.fault_upstream_ports[i]}"
                advertised += f",FAULTY://127.0.0.1:{self.fault_ports[i]}"
                protocols += ",FAULTY:PLAINTEXT"
            settings = {
                "process.roles": "broker,controller",
                "node.id": i,
                "controller.quorum.voters": voters,
                "listeners": listeners,
                "advertised.listeners": advertised,
                "controller.listener.names": "CONTROLLER",
                "inter.broker.listener.name": "PLAINTEXT",
                "listener.security.protocol.map": protocols,
                "log.dirs": os.path.join(node_dir, "data"),
                "auto.create.topics.enable": "false",
                "num.partitions": 1,
                "default.replication.factor": replication,
                "min.insync.replicas": 1,
                "offsets.topic.replication.factor": replication,
                "offsets.topic.num.partitions": 1,
                "transaction.state.log.replication.factor": replication,
                "transaction.state.log.min.isr": 1,
                "transaction.state.log.num.partitions": 1,
                "share.coordinator.state.topic.replication.factor": replication,
                "share.coordinator.state.topic.min.isr": 1,
                "share.coordinator.state.topic.num.partitions": 1,
                "group.initial.rebalance.delay.ms": 0,
                # A killed broker is fenced (and leaves every ISR) after 3 s, not 9 s.
                "broker.heartbeat.interval.ms": 500,
                "broker.session.timeout.ms": 3000,
                "replica.lag.time.max.ms": 5000,
                # Two cores shared with the tests: few threads, small sparse index files.
                "num.network.threads": 2,
                "num.io.threads": 2,
                "num.replica.fetchers": 1,
                "background.threads": 2,
                "log.cleaner.threads": 1,
                "log.index.size.max.bytes": 1 << 20,
            }
            settings.update(self.overrides)
            with open(self.config(i), "w") as f:
                for key, value in settings.items():
                    f.write(f"{key}={value}\n")
        self._format()
        for i in range(brokers):
            self._launch(i)
        self._wait_ready(range(brokers), self.START_TIMEOUT_S)

    # -- layout -------------------------------------------------------------------------------
    def node_dir(self, i):
        return os.path.join(self.dir, f"node{i}")

    def config(self, i):
        return os.path.join(self.node_dir(i), "server.properties")

    @property
    def bootstrap(self):
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    @property
    def fault_bootstrap(self):
        """Where a client reaches the brokers only through fault relays (fault_listener)."""
        return ",".join(f"127.0.0.1:{p}" for p in self.fault_ports)

    def log(self, i):
        """Node i's broker log (warnings and errors) and console output, for failure messages."""
        text = ""
        for name in ("server.log", "console.log"):
            try:
                with open(os.path.join(self.node_dir(i), name), errors="replace") as f:
                    text += f"--- kafka node{i} {name}\n" + f.read()[-4000:]
            except OSError:
                pass
        return text

    def logs(self):
        return "\n".join(self.log(i) for i in range(self.count))

    def _java(self, main, *args, log4j=True):
        command = ["java"] + (self.jvm_flags if main == "kafka.Kafka" else KAFKA_JVM_FLAGS)
        if self.archive:
            command.append("-XX:SharedArchiveFile=" + self.archive)
        if self.archive_to and main == "kafka.Kafka":
            command.append("-XX:ArchiveClassesAtExit=" + self.archive_to)
        if log4j:
            command.append("-Dlog4j2.configurationFile=" + os.path.join(self.dir, "log4j2.properties"))
        return command + ["-cp", self.classpath, main] + list(args)

    def _format(self):
        """kafka-storage format for every node, side by side (one JVM start each)."""
        running = []
        for i in range(self.count):
            command = self._java("kafka.tools.StorageTool", "format", "-t", self.cluster_id,
                                 "-c", self.config(i), "--ignore-formatted", log4j=False)
            running.append(subprocess.Popen(command, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True))
        for i, proc in enumerate(running):
            try:
                out, _ = proc.communicate(timeout=self.START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"kafka storage format of node{i} did not finish") from None
            if proc.returncode != 0:
                raise RuntimeError(f"kafka storage format of node{i} failed:\n{out}")

    def _launch(self, i):
        node_dir = self.node_dir(i)
        console = open(os.path.join(node_dir, "console.log"), "ab")
        command = self._java("kafka.Kafka", self.config(i))
        command.insert(1, f"-Dkafka.logs.dir={node_dir}")
        self.procs[i] = subprocess.Popen(command, stdout=console, stderr=console,
                                         stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        console.close()

    def _wait_ready(self, nodes, seconds):
        """Until each node in `nodes` answers Metadata listing every running node as a broker
        (a broker is listed once the controller has unfenced it) and hands out producer ids:
        a catraca process starting on a broker that still answers "coordinator load in
        progress" would spend its whole log time-out (2 s) waiting for its first produce."""
        deadline = time.monotonic() + seconds
        nodes = list(nodes)
        while True:
            running = {i for i in range(self.count) if self.running(i)}
            for i in nodes:
                if i not in running:
                    raise RuntimeError(f"kafka node{i} exited with {self.procs[i].returncode} "
                                       f"during start-up:\n{self.log(i)}")
            pending = []
            for i in nodes:
                try:
                    listed = set(kafka_metadata("127.0.0.1", self.ports[i], timeout=2)["brokers"])
                    ready = running <= listed and \
                        kafka_init_producer_id("127.0.0.1", self.ports[i], timeout=2) == 0
                except OSError:
                    ready = False
                if not ready:
                    pending.append(i)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"kafka nodes {pending} not ready within {seconds} s:\n"
                                   + self.logs())
            time.sleep(0.1)

    # -- what tests do ------------------------------------------------------------------------
    def running(self, i):
        return self.procs[i] is not None and self.procs[i].poll() is None

    def kill9(self, i):
        """kill -9 node i (its broker and its controller): no flush, no controlled shutdown."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def start_broker(self, i):
        """(Re)starts node i on its data, ports and id; returns once the cluster lists it."""
        if self.running(i):
            raise RuntimeError(f"kafka node{i} is running already")
        self._launch(i)
        self._wait_ready([i], self.START_TIMEOUT_S)

    def metadata(self, topics=()):
        """Metadata from the first running node that answers."""
        error = None
        for i in range(self.count):
            if self.running(i):
                try:
                    return kafka_metadata("127.0.0.1", self.ports[i], topics)
                except OSError as e:
                    error = e
        raise OSError(f"no kafka node answers Metadata: {error}")

    def create_topic(self, topic, replication=None, configs=None):
        """Creates a one-partition topic through a running node (tests of the harness itself:
        the adapter creates its own). Raises RuntimeError unless created or already there."""
        replication = replication or min(3, self.count)
        for i in range(self.count):
            if self.running(i):
                code, message = kafka_create_topic("127.0.0.1", self.ports[i], topic,
                                                   replication=replication, configs=configs)
                if code in (0, 36):  # created, TOPIC_ALREADY_EXISTS
                    return
                raise RuntimeError(f"CreateTopics {topic}: error {code} {message}")
        raise RuntimeError("no kafka node is running")

    def partition(self, topic, index=0):
        """{"leader", "replicas", "isr"} of a partition as a running node reports it, or None
        when the topic does not exist (yet)."""
        t = self.metadata([topic])["topics"].get(topic)
        if t is None or t["error"] != 0 or index not in t["partitions"]:
            return None
        return t["partitions"][index]

    def high_watermark(self, topic, node, timeout=5.0):
        """(error code, offset): partition 0's high watermark as node (its leader) reports it."""
        return kafka_high_watermark("127.0.0.1", self.ports[node], topic, timeout=timeout)

    def log_end_offset(self, node, topic, partition=0):
        """The end offset (last offset + 1; 0 when empty) of the partition's copy in node's data
        directory, read from its segment files: what that broker holds, alive or killed (kill -9
        keeps what the process wrote; the page cache has it). A torn last batch does not count.
        None when the node has no copy."""
        directory = os.path.join(self.node_dir(node), "data", f"{topic}-{partition}")
        if not os.path.isdir(directory):
            return None
        end = 0
        for name in sorted(os.listdir(directory)):
            if not name.endswith(".log"):
                continue
            with open(os.path.join(directory, name), "rb") as f:
                data = f.read()
            at = 0
            # v2 record batch: base offset (8), batch length (4), leader epoch (4), magic (1),
            # crc (4), attributes (2), last offset delta (4), ...
            while at + 27 <= len(data):
                base, length = struct.unpack_from(">qi", data, at)
                if length <= 0 or at + 12 + length > len(data):
                    break
                delta = struct.unpack_from(">i", data, at + 23)[0]
                end = max(end, base + delta + 1)
                at += 12 + length
        return end

    def leader_of(self, topic, timeout=30):
        """The node index leading the topic's partition 0. Waits (bounded) while the topic has
        no leader or the reported leader is a node this harness killed (it is reported until
        the controller fences it)."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = self.partition(topic)
            except OSError as e:
                last = str(e)
            if isinstance(last, dict) and 0 <= last["leader"] < self.count \
                    and self.running(last["leader"]):
                return last["leader"]
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic}: no live leader within {timeout} s ({last})")
            time.sleep(0.1)

    def wait_isr(self, topic, size, timeout=60):
        """Until the topic's partition 0 has `size` in-sync replicas (bounded)."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = self.partition(topic)
            except OSError as e:
                last = str(e)
            if isinstance(last, dict) and len(last["isr"]) >= size:
                return last
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic}: ISR not {size} within {timeout} s ({last})")
            time.sleep(0.1)

    def _kill_all(self):
        for i in range(self.count):
            self.kill9(i)

    def stop(self):
        """Kills every node and removes the directory."""
        self._kill_all()
        if self in _RUNNING:
            _RUNNING.remove(self)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    close = stop

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def print_stacks(pid):
    """Every thread's stack of process pid on stderr: where a command that ran out of time was
    waiting. With gdb (scripts/install-deps.sh installs it), bounded; else each thread's name
    and kernel wait channel."""
    gdb = shutil.which("gdb")
    if gdb:
        try:
            subprocess.run([gdb, "-p", str(pid), "-batch", "-nx", "-ex", "set pagination off",
                            "-ex", "thread apply all bt"], stdin=subprocess.DEVNULL,
                           stdout=sys.stderr, stderr=subprocess.STDOUT, timeout=120)
            return
        except (OSError, subprocess.SubprocessError) as e:
            print(f"servers.py: gdb failed ({e})", file=sys.stderr, flush=True)
    try:
        for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
            def read(name):
                try:
                    with open(f"/proc/{pid}/task/{tid}/{name}") as f:
                        return f.read().strip()
                except OSError:
                    return "?"
            print(f"servers.py: thread {tid} {read('comm')}: waiting in {read('wchan')}",
                  file=sys.stderr, flush=True)
    except OSError as e:
        print(f"servers.py: cannot list pid {pid}'s threads ({e})", file=sys.stderr, flush=True)


class _Deadline:
    """servers.py's own time-out (--timeout SECONDS, set under the ctest entry's TIMEOUT: ctest
    kills with SIGKILL and prints nothing of where the test was). When it passes, one line says
    what was going on; while COMMAND runs, every thread's stack of it follows and it is killed
    (servers.py exits 124); while the servers start, servers.py stops them and exits 143."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.phase = "starting the servers"
        self.command = None  # the Popen of COMMAND once it runs
        self.expired = False
        self.timer = None
        if seconds:
            self.timer = threading.Timer(seconds, self._expire)
            self.timer.daemon = True
            self.timer.start()

    def _expire(self):
        self.expired = True
        print(f"servers.py: --timeout {self.seconds} s passed while {self.phase}",
              file=sys.stderr, flush=True)
        command = self.command
        if command is not None and command.poll() is None:
            print(f"servers.py: the stacks of pid {command.pid}, then it is killed:",
                  file=sys.stderr, flush=True)
            print_stacks(command.pid)
            command.kill()  # the main thread's wait returns; the servers stop on the way out
        else:
            os.kill(os.getpid(), signal.SIGTERM)  # the start-up's waits end in SystemExit

    def cancel(self):
        if self.timer:
            self.timer.cancel()


def main(argv):
    """servers.py [--timeout SECONDS] [--kafka [--brokers N]] COMMAND [ARGS...]"""
    brokers = None
    timeout = None
    while argv and argv[0] in ("--kafka", "--brokers", "--timeout"):
        if argv[0] == "--kafka":
            brokers = brokers or 1
            argv = argv[1:]
        elif len(argv) > 1 and argv[1].isdigit():
            if argv[0] == "--timeout":
                timeout = int(argv[1])
            else:
                brokers = int(argv[1])
            argv = argv[2:]
        else:
            argv = []
    if not argv:
        print("usage: servers.py [--timeout SECONDS] [--kafka [--brokers N]] COMMAND [ARGS...]",
              file=sys.stderr)
        return 2
    # a SIGTERM (and --timeout during the start) stops the servers on the way out (atexit
    # alone would not)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    deadline = _Deadline(timeout)
    kafka = None
    try:
        if brokers:
            # first: it fails loudly when it cannot be fetched
            kafka = Kafka(brokers=brokers, fault_listener=brokers == 1)
        with Redis() as redis, Postgres() as postgres:
            env = dict(os.environ, CATRACA_TEST_REDIS=redis.url,
                       CATRACA_TEST_POSTGRES=postgres.conninfo)
            if kafka:
                env["CATRACA_TEST_KAFKA"] = kafka.bootstrap
                if kafka.fault_listener:
                    # one broker: the relay listens on the first port, in front of the second
                    env["CATRACA_TEST_KAFKA_FAULT"] = \
                        f"{kafka.fault_ports[0]}:{kafka.fault_upstream_ports[0]}"
            deadline.phase = f"running {' '.join(argv)}"
            with subprocess.Popen(argv, env=env) as command:
                deadline.command = command
                try:
                    returncode = command.wait(1800)
                except subprocess.TimeoutExpired:
                    print("servers.py: command timed out after 1800 s", file=sys.stderr)
                    command.kill()
                    return 124
            return 124 if deadline.expired else returncode
    except RuntimeError as e:
        print(f"servers.py: {e}", file=sys.stderr)
        return 1
    finally:
        deadline.cancel()
        if kafka:
            kafka.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
