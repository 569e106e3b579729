"""Test harness for black-box tests of `catraca serve`: real processes on loopback.

Standard library only. Every wait is bounded in time; servers are killed on exit.
"""
import atexit
import base64
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

# Tests only: at least 32 bytes (catraca refuses shorter secrets and the examples printed in its
# documentation), and never printed in README.md, docs/, deploy/ or scripts/.
SECRET = "catraca-system-tests-only-3f9a1c7e5b2d4f6a8c0e"
BIN = os.environ.get("CATRACA_BIN", os.path.join(os.path.dirname(__file__), "../../build/asan/catraca"))


def seed_from_env(name):
    seed = int(os.environ.get("CATRACA_SEED", str(random.randrange(1 << 30))))
    print(f"{name}: seed {seed} (CATRACA_SEED={seed} reproduces)", flush=True)
    return seed


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(sub, role="buyer", exp_in=3600, secret=SECRET, alg="HS256", claims=None, header=None):
    head = header if header is not None else {"alg": alg, "typ": "JWT"}
    body = {"sub": sub, "role": role, "exp": int(time.time()) + exp_in}
    if claims is not None:
        body = claims
    signing = b64url(json.dumps(head).encode()) + "." + b64url(json.dumps(body).encode())
    sig = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64url(sig)


_RUNNING = []


@atexit.register
def _kill_leftovers():
    """A test that failed in set-up never reached close(): no server outlives the tests."""
    for proc in _RUNNING:
        if proc.poll() is None:
            proc.kill()


class Server:
    """One `catraca serve` process on a free port, with its data directory. Without demo mode
    it checks tokens signed with SECRET; in demo mode it draws its own secret (it refuses a
    supplied one), read from its first lines into self.secret: token(..., secret=server.secret)."""

    def __init__(self, *extra, data=None, demo=False):
        self.data = data or tempfile.mkdtemp(prefix="catraca-test-")
        self.owns_data = data is None
        self.extra = list(extra)
        self.demo = demo
        self.proc = None
        self.port = None
        self.start()

    def start(self):
        if not os.path.exists(BIN):
            raise RuntimeError(f"catraca binary not found at {BIN} (set CATRACA_BIN)")
        args = [BIN, "serve", "--listen", "127.0.0.1:0", "--data", self.data,
                "--rate-customer", "0", "--rate-ip", "0"]
        args += ["--demo"] if self.demo else ["--jwt-secret", SECRET]
        self.secret = SECRET
        args += self.extra
        # A small ASan quarantine, so resident memory reflects the program, not freed blocks.
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:quarantine_size_mb=8")
        self.stderr_path = os.path.join(self.data, "stderr.log")
        self.stderr = open(self.stderr_path, "ab")
        offset = self.stderr.tell()  # a restart appends: read only this run's lines
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.stderr, env=env)
        _RUNNING.append(self.proc)
        deadline = time.time() + 30
        while time.time() < deadline:
            with open(self.stderr_path, "rb") as f:
                f.seek(offset)
                m = re.findall(rb"listening on http://127\.0\.0\.1:(\d+)", f.read())
            if m:
                with open(self.stderr_path, "rb") as f:
                    f.seek(offset)
                    drawn = re.findall(rb"random JWT secret for this run: (\S+)", f.read())
                if drawn:
                    self.secret = drawn[-1].decode()
                self.port = int(m[-1])
                self.upstream_port = self.port
                if VIA_PRISM:
                    self.prism = Prism(self.port, os.path.join(self.data, "prism.log"))
                    self.port = self.prism.port
                return
            if self.proc.poll() is not None:
                raise RuntimeError("catraca exited at start:\n" + open(self.stderr_path).read())
            time.sleep(0.05)
        raise RuntimeError("catraca did not start in 30 s")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.stderr.close()
        self._stop_prism()

    def _stop_prism(self):
        prism = getattr(self, "prism", None)
        if prism is not None:
            prism.stop()
            self.prism = None

    def restart(self):
        self.start()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
        else:
            code = self.proc.returncode if self.proc else 0
        self.stderr.close()
        self._stop_prism()
        return code

    def close(self):
        code = self.stop()
        if code != 0:  # a crash or a sanitizer report: show its end before the files go
            print(f"catraca exited {code}; the end of its stderr:\n" + self.log()[-6000:],
                  file=sys.stderr, flush=True)
        if self.owns_data:
            shutil.rmtree(self.data, ignore_errors=True)
        return code

    def log(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def client(self, timeout=30):
        return Client(self.port, timeout)


class Client:
    """A keep-alive HTTP/1.1 client; reconnects when the server closed the connection."""

    def __init__(self, port, timeout=30):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None, tok=None, headers=None, raw=None):
        hdrs = dict(headers or {})
        if tok:
            hdrs["Authorization"] = "Bearer " + tok
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
        upstream = prism_bypass(self.port, method, data)
        if upstream is not None:
            direct = Client(upstream, self.timeout)
            try:
                return direct.request(method, path, body, tok, headers, raw)
            finally:
                direct.close()
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                payload = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                try:
                    parsed = json.loads(payload) if payload else None
                except ValueError:
                    parsed = payload.decode(errors="replace")
                answer_headers = {k.lower(): v for k, v in resp.getheaders()}
                prism_check(method, path, resp.status, answer_headers, data)
                return resp.status, parsed, answer_headers
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


_DEMO_SERVER = []


def demo_server():
    """One `catraca serve --demo` shared by the tests of the demo-only routes, started on first
    use and stopped at exit (the other tests' servers check tokens signed with SECRET)."""
    if not _DEMO_SERVER:
        server = Server(demo=True)
        _DEMO_SERVER.append(server)
        atexit.register(server.close)
    return _DEMO_SERVER[0]


ADMIN = lambda: token("ops", "admin")
PAYMENTS = lambda: token("psp", "payments")


def create_event(client, event_id, capacities=(10,), hold_seconds=600, limit=4, state="open",
                 line_policy=None, admin_token=None):
    body = {"id": event_id, "name": "Test " + event_id, "hold_seconds": hold_seconds,
            "per_customer_limit": limit, "state": state,
            "categories": [{"id": f"cat{i}", "name": f"Category {i}", "price_cents": 1000 * (i + 1),
                            "capacity": c} for i, c in enumerate(capacities)]}
    if line_policy is not None:
        body["line_policy"] = line_policy
    status, answer, _ = client.request("POST", "/v1/events", body, admin_token or ADMIN())
    assert status in (200, 201), (status, answer)
    return answer


def buy(client, event_id, customer, category="cat0", quantity=1, key=None):
    headers = {"Idempotency-Key": key} if key else None
    return client.request("POST", f"/v1/events/{event_id}/purchases",
                          {"category": category, "quantity": quantity}, token(customer), headers)


FINAL = {"confirmed", "expired", "cancelled", "rejected"}


def wait_status(client, purchase_id, customer, done, timeout=30):
    """Long-polls until the status satisfies done(status); returns the purchase."""
    deadline = time.time() + timeout
    current = None
    while time.time() < deadline:
        path = f"/v1/purchases/{purchase_id}"
        if current is not None:
            path += f"?wait=5&status={current['status']}"
        status, current, _ = client.request("GET", path, tok=token(customer, "admin"))
        assert status == 200, (status, current)
        if done(current["status"]):
            return current
    raise AssertionError(f"{purchase_id} still {current and current['status']} after {timeout} s")


def seq_key(seq):
    a, b = seq.split("-")
    return (int(a), int(b))


# ---- Prism: every answer checked against openapi.yaml (CATRACA_VIA_PRISM=1) -----------------
#
# With CATRACA_VIA_PRISM=1 each Server starts `prism proxy openapi.yaml` in front of itself and
# its `port` is Prism's (the server's own is `upstream_port`), so every request of a test goes
# through Prism, which reports what disagrees with openapi.yaml in an `sl-violations` header.
# Client.request fails the test on:
#   - any violation of the answer (status, headers, body): the server and the spec disagree;
#   - a violation of the request when the server accepted it (2xx/3xx): the spec refuses what
#     the server takes. A request that breaks the spec on purpose and is refused (an error
#     status) is the test doing its job, and its answer is still checked.
# A violation that known_mismatches.KNOWN_SERVER_MISMATCHES lists is counted, not failed.
# Two kinds of request cannot go through Prism and go straight to the server: HEAD (Prism
# cannot forward an answer that says JSON and has no body) and a body that is not JSON (Prism
# answers 400 itself, never forwarding it).

VIA_PRISM = os.environ.get("CATRACA_VIA_PRISM") == "1"
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SPEC = os.path.join(REPO, "openapi.yaml")
PRISM_STATS = {"checked": 0, "bypassed": 0, "violations": 0, "known": {}}
_PRISM_UPSTREAM = {}  # Prism's port -> the server's


def prism_executable():
    """Prism from scripts/contract-tools.sh (CATRACA_PRISM), installed on first use."""
    path = os.environ.get("CATRACA_PRISM") or os.path.join(REPO, "build/node/node_modules/.bin/prism")
    if not os.path.exists(path):
        subprocess.run(["bash", os.path.join(REPO, "scripts/contract-tools.sh"), "prism"],
                       check=True, timeout=600)
    return path


class Prism:
    """`prism proxy openapi.yaml` on a free loopback port, in front of one upstream port."""

    def __init__(self, upstream_port, log_path):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        offset = self.log.tell()
        args = [prism_executable(), "proxy", SPEC, f"http://127.0.0.1:{upstream_port}",
                "--errors=false", "--cors=false", "--host", "127.0.0.1", "--port", "0"]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        _RUNNING.append(self.proc)
        deadline = time.time() + 90
        while time.time() < deadline:
            with open(log_path, "rb") as f:
                f.seek(offset)
                m = re.findall(rb"Prism is listening on http://127\.0\.0\.1:(\d+)", f.read())
            if m:
                self.port = int(m[-1])
                _PRISM_UPSTREAM[self.port] = upstream_port
                return
            if self.proc.poll() is not None:
                raise RuntimeError("prism exited at start:\n" + open(log_path, errors="replace").read())
            time.sleep(0.1)
        self.proc.kill()
        raise RuntimeError("prism did not start in 90 s")

    def stop(self):
        _PRISM_UPSTREAM.pop(getattr(self, "port", None), None)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def prism_bypass(port, method, data):
    """The server's own port for a request Prism cannot forward, else None."""
    upstream = _PRISM_UPSTREAM.get(port)
    if upstream is None:
        return None
    is_json = True
    if data is not None:
        try:
            json.loads(data)
        except ValueError:
            is_json = False
    if method.upper() == "HEAD" or not is_json:
        PRISM_STATS["bypassed"] += 1
        return upstream
    return None


def _known_prism_mismatch(method, path, status, violation, body):
    from known_mismatches import KNOWN_SERVER_MISMATCHES
    for key, entry in KNOWN_SERVER_MISMATCHES.items():
        matches = entry.get("prism")
        if matches is not None and matches(method, path, status, violation, body):
            return key
    return None


def prism_check(method, path, status, headers, data=None):
    """Fails on what Prism reported against openapi.yaml (see above); a no-op without Prism."""
    if "sl-violations" not in headers and not VIA_PRISM:
        return
    PRISM_STATS["checked"] += 1
    raw = headers.get("sl-violations")
    if raw is None:
        return
    try:
        violations = json.loads(raw)
    except ValueError:
        violations = [{"location": ["response"], "message": raw}]  # "Too many violations! ..."
    failing = []
    for v in violations:
        where = (v.get("location") or ["?"])[0]
        if where == "request" and status >= 400:
            continue
        try:
            body = json.loads(data) if data else None
        except ValueError:
            body = None
        known = _known_prism_mismatch(method, path, status, v, body)
        if known is not None:
            PRISM_STATS["known"][known] = PRISM_STATS["known"].get(known, 0) + 1
            continue
        failing.append(v)
    if failing:
        PRISM_STATS["violations"] += len(failing)
        raise AssertionError(f"openapi.yaml and the server disagree (Prism): {method} {path} -> "
                             f"{status}: {json.dumps(failing)}")


@atexit.register
def _prism_summary():
    if PRISM_STATS["checked"]:
        print(f"prism: {PRISM_STATS['checked']} answers checked against openapi.yaml, "
              f"{PRISM_STATS['violations']} violations, known {PRISM_STATS['known'] or 'none'}, "
              f"{PRISM_STATS['bypassed']} requests sent around Prism (HEAD, bodies not JSON)",
              file=sys.stderr, flush=True)
