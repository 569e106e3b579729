#!/usr/bin/env python3
"""Memory per idle keep-alive connection of `catraca serve` (target <= 4 KiB).

Opens N connections (default 10 000), sends one GET /healthz on each and reads the answer
(so every connection has served a request and sits idle, kept alive), then reads the
server's resident memory (VmRSS) against the reading before the connections. Both readings
are taken after a warm-up connection round, so the allocator's first growth is not counted.
Median of RUNS runs; prints a table and a final JSON line.

Usage: idle_connections.py [runs] [connections]
"""
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("CATRACA_BIN", os.path.join(ROOT, "build", "catraca"))
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))


def raise_file_limit(count):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, count + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def start(data, connections):
    log = open(os.path.join(data, "catraca.log"), "w")
    proc = subprocess.Popen(
        [BIN, "serve", "--demo", "--listen", "127.0.0.1:0", "--data", data,
         "--max-connections", str(connections + 100), "--idle-timeout-ms", "600000"],
        stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(300):
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", open(log.name).read())
        if m:
            return proc, int(m.group(1))
        time.sleep(0.05)
    raise RuntimeError("catraca did not start: " + open(log.name).read())


def open_idle(port, count):
    """count connections, each with one answered request; returns the sockets."""
    sockets, selector = [], selectors.DefaultSelector()
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(REQUEST)
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ, bytearray())
        sockets.append(s)
    pending, deadline = count, time.time() + 120
    while pending and time.time() < deadline:
        for key, _ in selector.select(timeout=1):
            chunk = key.fileobj.recv(4096)
            key.data.extend(chunk)
            if b'{"status":"ok"}' in key.data:
                selector.unregister(key.fileobj)
                pending -= 1
    if pending:
        raise RuntimeError(f"{pending} connections were not answered")
    return sockets


def one_run(connections):
    data = tempfile.mkdtemp(prefix="catraca-idle-")
    proc, port = start(data, connections)
    try:
        for s in open_idle(port, min(1000, connections)):  # warm-up round
            s.close()
        time.sleep(0.5)
        before = rss_kib(proc.pid)
        sockets = open_idle(port, connections)
        time.sleep(0.5)
        after = rss_kib(proc.pid)
        alive = sum(1 for s in sockets if s.fileno() >= 0)
        for s in sockets:
            s.close()
        return {"before_kib": before, "after_kib": after, "alive": alive,
                "bytes_per_connection": (after - before) * 1024 / connections}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    connections = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    limit = raise_file_limit(connections)
    if limit < connections + 100:
        sys.exit(f"idle_connections: the open-file limit {limit} is below {connections}")
    results = [one_run(connections) for _ in range(runs)]
    per = [r["bytes_per_connection"] for r in results]
    median = statistics.median(per)
    print(f"idle keep-alive connections: {runs} runs of {connections}")
    for r in results:
        print(f"  RSS {r['before_kib']} KiB -> {r['after_kib']} KiB: "
              f"{r['bytes_per_connection']:.0f} bytes a connection")
    print(f"  median {median:.0f} bytes a connection (target <= 4096)")
    print(json.dumps({"bench": "idle_connections", "connections": connections, "runs": runs,
                      "bytes_per_connection_median": round(median),
                      "bytes_per_connection": [round(x) for x in per]}))


if __name__ == "__main__":
    main()
