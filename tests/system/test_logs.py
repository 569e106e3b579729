"""Log lines, request ids, the access log, and secrets never logged (issue 15).

A real `catraca serve` with --access-log: purchases, confirms, bad tokens, malformed requests
and errors; then every line of its stderr is checked: one event per line, RFC 3339 UTC time
with milliseconds, level, component; the JSON format parses line by line; every answer carries
X-Request-Id (the client's when sane) and that id is on the access line; and neither the JWT
secret nor any token sent (nor its signature) appears anywhere in the output.
"""
import json
import os
import re
import shlex
import socket
import subprocess
import tempfile
import time
import unittest
import shutil

from catraca import BIN, _RUNNING, Client, token

# A secret of 48 bytes, as `openssl rand -base64 36` makes: what a real operator has.
SECRET = "q3Jx8Yv2mN7pR4tW9zA1cE6hK0sU5bD8fG3jL2nP7rT4vX9y"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"debug", "info", "warn", "error", "fatal"}
LOGFMT_PAIR = re.compile(r'([A-Za-z0-9_.]+)=("(?:[^"\\]|\\.)*"|[^ "=]+)(?: |$)')


def parse_logfmt(line):
    """key=value pairs of one logfmt line; fails on anything else."""
    fields, at = {}, 0
    while at < len(line):
        m = LOGFMT_PAIR.match(line, at)
        assert m, f"not logfmt at {at}: {line!r}"
        key, value = m.group(1), m.group(2)
        fields[key] = json.loads(value) if value.startswith('"') else value
        at = m.end()
    return fields


class Service:
    """`catraca serve` with the secret in its environment (never on the command line)."""

    def __init__(self, *extra):
        self.data = tempfile.mkdtemp(prefix="catraca-logs-")
        self.err_path = os.path.join(self.data, "stderr.log")
        args = [BIN, "serve", "--listen", "127.0.0.1:0", "--data", self.data,
                "--rate-customer", "0", "--rate-ip", "0", "--max-header-bytes", "2048"] + list(extra)
        env = dict(os.environ, CATRACA_JWT_SECRET=SECRET,
                   ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.err, stderr=self.err, env=env)
        _RUNNING.append(self.proc)
        deadline = time.time() + 30
        while time.time() < deadline:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                raise RuntimeError("catraca exited at start:\n" + self.log())
            time.sleep(0.05)
        raise RuntimeError("catraca did not start")

    def log(self):
        if getattr(self, "text", None) is not None:
            return self.text
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.err.close()
        self.text = self.log()
        shutil.rmtree(self.data, ignore_errors=True)
        return self.proc.returncode


def raw_exchange(port, data):
    """Sends raw bytes, returns the raw answer (the server closes after a refusal)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")


def a_sale(test, client):
    """Purchases, confirms, bad tokens and errors; returns (tokens sent, ids answered)."""
    sent, ids = [], []

    def call(method, path, body=None, tok=None, headers=None, raw=None):
        if tok:
            sent.append(tok)
        status, answer, answer_headers = client.request(method, path, body, tok, headers, raw)
        test.assertIn("x-request-id", answer_headers, (method, path, status))
        ids.append((answer_headers["x-request-id"], status, path.split("?")[0]))
        return status, answer, answer_headers

    admin = token("ops", "admin", secret=SECRET)
    payments = token("psp", "payments", secret=SECRET)
    status, _, _ = call("POST", "/v1/events", {
        "id": "logs", "name": "Logs", "hold_seconds": 600, "per_customer_limit": 4,
        "categories": [{"id": "pista", "name": "Pista", "price_cents": 100, "capacity": 3}]}, admin)
    test.assertEqual(status, 201)
    purchases = []
    for i in range(6):
        buyer = token(f"c{i}", secret=SECRET)
        status, answer, _ = call("POST", "/v1/events/logs/purchases",
                                 {"category": "pista", "quantity": 1}, buyer,
                                 {"Idempotency-Key": f"k-{i}"})
        test.assertEqual(status, 202, answer)
        purchases.append((answer["id"], buyer))
    for pid, buyer in purchases:
        status, answer, _ = call("GET", f"/v1/purchases/{pid}?wait=10&status=queued", tok=buyer)
        test.assertEqual(status, 200)
    held = [pid for pid, buyer in purchases
            if call("GET", f"/v1/purchases/{pid}", tok=buyer)[1]["status"] == "held"]
    test.assertTrue(held)
    status, _, _ = call("POST", f"/v1/purchases/{held[0]}/confirm", {"payment_ref": "psp_1"},
                        payments)
    test.assertEqual(status, 200)
    # Bad tokens: another secret, expired, garbage, none where one is needed.
    for bad in (token("c9", secret="another-secret-of-enough-length-0123456789"),
                token("c9", exp_in=-60, secret=SECRET), "not.a.token",
                token("c9", "admin", secret=SECRET)[:-4] + "AAAA"):
        status, _, _ = call("POST", "/v1/events/logs/purchases",
                            {"category": "pista", "quantity": 1}, bad)
        test.assertEqual(status, 401)
    status, _, _ = call("POST", "/v1/events", {"id": "x"}, token("c1", secret=SECRET))
    test.assertEqual(status, 403)
    # Errors: unknown route, malformed body, an id in the request that is not sane.
    test.assertEqual(call("GET", "/v1/nowhere")[0], 404)
    test.assertEqual(call("POST", "/v1/events/logs/purchases", None, token("c1", secret=SECRET),
                          raw=b"{not json")[0], 400)
    return sent, ids


class TestLogs(unittest.TestCase):
    def test_logfmt_lines_ids_access_and_no_secrets(self):
        server = Service("--access-log")
        try:
            client = Client(server.port)
            sent, ids = a_sale(self, client)
            admin_token = token("ops", "admin", secret=SECRET)
            sent.append(admin_token)
            waiting = None
            for _, status, path in ids:
                if path.startswith("/v1/purchases/p_") and path.count("/") == 3:
                    answer = client.request("GET", path, tok=admin_token)[1]
                    if answer["status"] in ("held", "waiting"):
                        waiting = (answer["id"], answer["status"])
            # The client's id when sane; a new one (32 hex digits) when not.
            status, _, h = client.request("GET", "/healthz", headers={"X-Request-Id": "lb-7f3a:1"})
            self.assertEqual(h["x-request-id"], "lb-7f3a:1")
            ids.append(("lb-7f3a:1", 200, "/healthz"))
            for insane in ("has space", "x" * 65, "semi;colon", "quote\"d"):
                status, _, h = client.request("GET", "/healthz", headers={"X-Request-Id": insane})
                self.assertRegex(h["x-request-id"], r"^[0-9a-f]{32}$")
                ids.append((h["x-request-id"], 200, "/healthz"))
            # Ids are fresh per request.
            fresh = {client.request("GET", "/healthz")[2]["x-request-id"] for _ in range(20)}
            self.assertEqual(len(fresh), 20)
            # The HTTP layer's own refusals carry one too, with a token on the line.
            bearer = token("c2", secret=SECRET)
            sent.append(bearer)
            answer = raw_exchange(server.port, (
                "GET /v1/events?access_token=" + bearer + " HTTP/1.1\r\nHost: a\r\n"
                "Authorization: Bearer " + bearer + "\r\nX-Request-Id: refused-1\r\n"
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc").encode())
            self.assertIn(" 400 ", answer.splitlines()[0])
            self.assertIn("X-Request-Id: refused-1", answer)
            # A client that leaves before its answer (a long-poll): status 499 on its line.
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
                s.sendall(("GET /v1/purchases/%s?wait=30&status=%s HTTP/1.1\r\n" % waiting +
                           "Host: a\r\nX-Request-Id: left-early\r\nAuthorization: Bearer " +
                           admin_token + "\r\n\r\n").encode())
                time.sleep(0.5)
            answer = raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " +
                                  b"y" * 4000 + b"\r\n\r\n")
            self.assertIn(" 431 ", answer.splitlines()[0])
            self.assertRegex(answer, r"X-Request-Id: [0-9a-f]{32}\r\n")
            client.close()
        finally:
            code = server.close()
        self.assertEqual(code, 0)
        log = server.log()
        lines = [line for line in log.splitlines() if line]
        self.assertTrue(lines)
        access = {}
        for line in lines:
            fields = parse_logfmt(line)
            self.assertRegex(fields.get("time", ""), TIME, line)
            self.assertIn(fields.get("level"), LEVELS, line)
            self.assertTrue(fields.get("component"), line)
            self.assertIn("msg", fields, line)
            if fields["component"] == "access":
                access[fields["request_id"]] = fields
        for request_id, status, path in ids:
            self.assertIn(request_id, access, f"no access line for {request_id} {path}")
            line = access[request_id]
            self.assertEqual(int(line["status"]), status, line)
            self.assertEqual(line["path"], path, line)
            self.assertEqual(line["client"], "127.0.0.1")
            float(line["duration_ms"])
            int(line["bytes"])
        self.assertEqual(access["refused-1"]["status"], "400")
        wait_line = access["left-early"]
        self.assertEqual(wait_line["status"], "499", wait_line)
        # A line the request caused on another thread (the engine's answer to the event's
        # creation, written by the responder) carries the request's id.
        create_id = next(i for i, status, path in ids if path == "/v1/events" and status == 201)
        created = [parse_logfmt(line) for line in lines if 'msg="event created"' in line]
        self.assertEqual([c["request_id"] for c in created], [create_id])
        self.assertEqual(access["refused-1"]["path"], "/v1/events")  # the query never shown
        # Secrets and tokens: not the secret, no token, not even a token's signature.
        self.assertNotIn(SECRET, log)
        for tok in sent:
            self.assertNotIn(tok, log)
            self.assertNotIn(tok.rsplit(".", 1)[1], log)
        self.assertNotIn("access_token", log)

    def test_json_format_parses_line_by_line(self):
        server = Service("--log-format", "json", "--access-log")
        try:
            client = Client(server.port)
            a_sale(self, client)
            client.request("GET", "/healthz", headers={"X-Request-Id": "json-1"})
            client.close()
        finally:
            self.assertEqual(server.close(), 0)
        seen = set()
        for line in server.log().splitlines():
            record = json.loads(line)
            self.assertRegex(record["time"], TIME)
            self.assertIn(record["level"], LEVELS)
            self.assertIsInstance(record["component"], str)
            self.assertIsInstance(record["msg"], str)
            seen.add(record.get("request_id"))
        self.assertIn("json-1", seen)

    def test_a_bad_log_format_is_refused(self):
        run = subprocess.run([BIN, "serve", "--log-format", "xml", "--demo"], capture_output=True,
                             text=True, timeout=30)
        self.assertEqual(run.returncode, 2)
        self.assertIn("--log-format", run.stderr)


if __name__ == "__main__":
    unittest.main()
