"""Real Redis and PostgreSQL servers for tests, on free loopback ports in temporary directories.

Standard library only. Used two ways:
  - as a module: `with Redis() as r, Postgres() as p:` (system tests of the distributed mode);
  - as a wrapper: `python3 tests/servers.py COMMAND ARGS...` starts both, runs COMMAND with
    CATRACA_TEST_REDIS=redis://127.0.0.1:PORT and CATRACA_TEST_POSTGRES=<conninfo> in its
    environment, stops both, and exits with COMMAND's status (unit tests of the adapters).

PostgreSQL refuses to run as root: initdb and postgres run as the `postgres` user
(runuser), in a directory that user owns. Every wait is bounded; servers die with the tests.
"""
import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

PG_BIN = "/usr/lib/postgresql/15/bin"
_RUNNING = []


@atexit.register
def _stop_leftovers():
    for server in list(_RUNNING):
        server.stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def main(argv):
    if not argv:
        print("usage: servers.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    with Redis() as redis, Postgres() as postgres:
        env = dict(os.environ, CATRACA_TEST_REDIS=redis.url, CATRACA_TEST_POSTGRES=postgres.conninfo)
        try:
            return subprocess.run(argv, env=env, timeout=1800).returncode
        except subprocess.TimeoutExpired:
            print("servers.py: command timed out after 1800 s", file=sys.stderr)
            return 124


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
