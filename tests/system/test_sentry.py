"""--sentry-dsn against a local receiver started by the test (issue 15).

The receiver is a small HTTP server that records every request and checks nothing itself; the
tests check each envelope: the endpoint path the DSN names, the X-Sentry-Auth header, the
content type, the envelope header, the item header (type, length of the payload in bytes) and
the event (event_id, timestamp, level, release, environment, server_name, message or exception,
request id tag). Errors: a purchase refused while Redis is down (distributed mode), and a 429
from the receiver pauses sending. Fatal signals: SIGSEGV on `catraca serve` spools the report,
the next start sends it.
"""
import http.server
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from catraca import BIN, SECRET, _RUNNING, Client, token
from cluster import Cluster

PUBLIC_KEY = "0123456789abcdef0123456789abcdef"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


class Receiver:
    """Records POSTs; answers each with the next status of `statuses` (then 200)."""

    def __init__(self, statuses=(), tls=None):
        self.tls = tls  # (cert, key): HTTPS
        self.envelopes = []
        self.statuses = list(statuses)
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.envelopes.append((self.path, dict(self.headers), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "60")
                payload = b'{"id":"x"}'
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def dsn(self, project=42):
        if self.tls is not None:  # the certificate names localhost
            return f"https://{PUBLIC_KEY}@localhost:{self.port}/{project}"
        return f"http://{PUBLIC_KEY}@127.0.0.1:{self.port}/{project}"

    def received(self):
        with self.lock:
            return list(self.envelopes)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def wait_for(what, predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {seconds} s")


def parse_envelope(test, path, headers, body, project=42):
    """Checks one request's transport and envelope framing; returns (header, item, event)."""
    test.assertEqual(path, f"/api/{project}/envelope/")
    headers = {k.lower(): v for k, v in headers.items()}
    test.assertEqual(headers["content-type"], "application/x-sentry-envelope")
    auth = headers["x-sentry-auth"]
    test.assertTrue(auth.startswith("Sentry "), auth)
    parts = dict(p.strip().split("=", 1) for p in auth[len("Sentry "):].split(","))
    test.assertEqual(parts["sentry_version"], "7")
    test.assertEqual(parts["sentry_key"], PUBLIC_KEY)
    test.assertRegex(parts["sentry_client"], r"^catraca/\d+\.\d+\.\d+$")
    test.assertTrue(body.endswith(b"\n"))
    first, rest = body.split(b"\n", 1)
    envelope_header = json.loads(first)
    second, rest = rest.split(b"\n", 1)
    item_header = json.loads(second)
    test.assertEqual(item_header["type"], "event")
    payload = rest[:item_header["length"]]
    test.assertEqual(rest[item_header["length"]:], b"\n")  # the length is exact, in bytes
    event = json.loads(payload)
    test.assertRegex(envelope_header["event_id"], r"^[0-9a-f]{32}$")
    test.assertEqual(event["event_id"], envelope_header["event_id"])
    test.assertRegex(event["timestamp"], TIME)
    test.assertRegex(event["release"], r"^catraca@\d+\.\d+\.\d+$")
    test.assertTrue(event["server_name"])
    test.assertEqual(event["platform"], "c")
    return envelope_header, item_header, event


class TestSentry(unittest.TestCase):
    def test_errors_are_sent_with_their_request_id_and_a_429_pauses_sending(self):
        receiver = Receiver(statuses=[429])
        cluster = Cluster("--sentry-dsn", receiver.dsn(), "--sentry-environment", "staging",
                          gateways=1, workers=1)  # gateways check tokens signed with SECRET
        try:
            client = Client(cluster.gateways[0].port, 10)
            body = {"id": "sentry", "name": "Sentry", "hold_seconds": 600,
                    "per_customer_limit": 4,
                    "categories": [{"id": "pista", "name": "P", "price_cents": 1, "capacity": 9}]}
            status, _, _ = client.request("POST", "/v1/events", body,
                                          token("ops", "admin", secret=SECRET))
            self.assertEqual(status, 201)
            cluster.redis.stop()
            buyer = token("c1", secret=SECRET)
            status, answer, headers = client.request(
                "POST", "/v1/events/sentry/purchases", {"category": "pista", "quantity": 1},
                buyer, {"X-Request-Id": "sentry-req-1"})
            self.assertEqual(status, 503, answer)
            self.assertEqual(headers["x-request-id"], "sentry-req-1")

            def ours():
                for path, h, b in receiver.received():
                    if b"sentry-req-1" in b:
                        return path, h, b
                return None
            path, headers, body = wait_for("the error event", ours, 15)
            _, _, event = parse_envelope(self, path, headers, body)
            self.assertEqual(event["level"], "error")
            self.assertEqual(event["environment"], "staging")
            self.assertEqual(event["tags"]["request_id"], "sentry-req-1")
            self.assertIn("refused", event["message"]["formatted"])
            self.assertEqual(event["extra"]["event"], "sentry")
            self.assertNotIn(SECRET.encode(), body)
            self.assertNotIn(buyer.encode(), body)
            # That first envelope was answered 429 (Retry-After: 60): the gateway sends nothing
            # more for a while, though a purchase is refused (an error line) every second.
            gateway_count = sum(1 for _, _, b in receiver.received() if b"sentry-req-" in b)
            for i in range(2, 6):
                status, _, _ = client.request(
                    "POST", "/v1/events/sentry/purchases", {"category": "pista", "quantity": 1},
                    buyer, {"X-Request-Id": f"sentry-req-{i}"})
                self.assertEqual(status, 503)
                time.sleep(1.0)
            later = sum(1 for _, _, b in receiver.received() if b"sentry-req-" in b)
            self.assertEqual(later, gateway_count, "sent while paused by a 429")
            client.close()
        finally:
            cluster.redis.start()
            codes = [p.stop() for p in cluster.gateways + cluster.workers]
            logs = cluster.logs()
            cluster.close()
            receiver.close()
        self.assertEqual(codes, [0] * len(codes), logs)

    def test_fatal_signal_is_spooled_then_sent_at_the_next_start(self):
        self.fatal_signal_round(https=False)

    def test_fatal_signal_over_https_with_a_verified_certificate(self):
        self.fatal_signal_round(https=True)

    def fatal_signal_round(self, https):
        data = tempfile.mkdtemp(prefix="catraca-sentry-")
        env = dict(os.environ, CATRACA_JWT_SECRET=SECRET,
                   ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:handle_segv=0")
        tls = None
        if https:  # OpenSSL's default verify paths read SSL_CERT_FILE: trust this one only
            cert, key = os.path.join(data, "cert.pem"), os.path.join(data, "key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                            key, "-out", cert, "-days", "2", "-subj", "/CN=localhost", "-addext",
                            "subjectAltName=DNS:localhost"], check=True, capture_output=True)
            tls = (cert, key)
            env["SSL_CERT_FILE"] = cert
        receiver = Receiver(tls=tls)
        spool = os.path.join(data, "crash.envelope")
        args = [BIN, "serve", "--listen", "127.0.0.1:0", "--data", data,
                "--sentry-dsn", receiver.dsn(7), "--sentry-spool", spool]
        err_path = os.path.join(data, "stderr.log")

        def start(env=env):
            err = open(err_path, "ab")
            offset = err.tell()
            proc = subprocess.Popen(args, stdout=err, stderr=err, env=env)
            _RUNNING.append(proc)

            def started():
                with open(err_path, "rb") as f:
                    f.seek(offset)
                    return re.search(rb"listening on http://127\.0\.0\.1:(\d+)", f.read())
            wait_for("catraca serve", lambda: started() or proc.poll() is not None, 30)
            return proc, err
        try:
            proc, err = start()
            proc.send_signal(signal.SIGSEGV)
            code = proc.wait(30)
            err.close()
            self.assertEqual(code, -signal.SIGSEGV)
            with open(err_path) as f:
                log = f.read()
            self.assertTrue(os.path.exists(spool), log)
            self.assertRegex(log, r"(?m)^time=\S+ level=fatal component=sentry .*signal=SIGSEGV$")
            self.assertEqual(receiver.received(), [])  # nothing is sent from the handler
            if https:  # a certificate nobody vouches for: nothing is sent, the report waits
                untrusted = {k: v for k, v in env.items() if k != "SSL_CERT_FILE"}
                proc, err = start(untrusted)
                def kept():
                    with open(err_path, errors="replace") as f:
                        return "spooled crash report waits" in f.read()
                wait_for("the report kept for later", kept, 15)
                self.assertEqual(receiver.received(), [])
                self.assertTrue(os.path.exists(spool))
                proc.terminate()
                self.assertEqual(proc.wait(30), 0)
                err.close()
            proc, err = start()
            path, headers, body = wait_for("the crash report", lambda: receiver.received(), 15)[0]
            _, _, event = parse_envelope(self, path, headers, body, project=7)
            self.assertEqual(event["level"], "fatal")
            self.assertEqual(event["environment"], "production")
            exception = event["exception"]["values"][0]
            self.assertEqual(exception["type"], "SIGSEGV")
            self.assertFalse(exception["mechanism"]["handled"])
            wait_for("the spool file removed", lambda: not os.path.exists(spool), 10)
            proc.terminate()
            self.assertEqual(proc.wait(30), 0)
            err.close()
        finally:
            receiver.close()
            shutil.rmtree(data, ignore_errors=True)

    def test_a_bad_dsn_is_refused_without_showing_it(self):
        run = subprocess.run([BIN, "serve", "--demo", "--sentry-dsn", "ftp://secretkey@x/1"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(run.returncode, 2)
        self.assertIn("--sentry-dsn", run.stderr)
        self.assertNotIn("secretkey", run.stderr)


if __name__ == "__main__":
    unittest.main()
