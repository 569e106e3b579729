"""`catraca rush`: a rehearsal against a real server passes its checks and audits clean;
its checks fail when the answers break a promise; bad command lines are usage errors."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from catraca import BIN, SECRET, Server, seed_from_env

WRONG_SECRET = "not-the-secret-of-the-server-but-long-enough-0123"

ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1")


def rush(port, *args, timeout=300):
    """Runs `catraca rush` against 127.0.0.1:port; returns (exit code, stdout, stderr)."""
    command = [BIN, "rush", "--url", f"http://127.0.0.1:{port}", *args]
    run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=ENV)
    return run.returncode, run.stdout, run.stderr


def audit(data):
    run = subprocess.run([BIN, "audit", "--data", data], capture_output=True, text=True,
                         timeout=120, env=ENV)
    return run.returncode, run.stdout + run.stderr


class RehearsalTest(unittest.TestCase):
    """The brief's rehearsal: 3000 buyers for 500 tickets, short holds, then an audit."""

    def setUp(self):
        self.seed = seed_from_env("rush rehearsal")
        self.server = Server(demo=False)
        self.tmp = tempfile.mkdtemp(prefix="catraca-rush-")

    def tearDown(self):
        self.server.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_rehearsal_passes_and_audits_clean(self):
        self.rehearse("unbounded")

    def test_bounded_line_rehearsal_passes_and_audits_clean(self):
        self.rehearse("bounded")

    def rehearse(self, line_policy):
        report_path = os.path.join(self.tmp, "report.json")
        code, out, err = rush(self.server.port, "--jwt-secret", SECRET, "--buyers", "3000",
                              "--tickets", "500", "--categories", "2", "--confirm", "0.5",
                              "--cancel", "0.1", "--pay-delay-ms", "10-50", "--hold-seconds", "2",
                              "--connections", "128", "--seed", str(self.seed), "--max-seconds",
                              "240", "--line-policy", line_policy, "--json", report_path)
        self.assertEqual(code, 0, out + err)
        self.assertIn("result   PASS", out)
        with open(report_path) as f:
            report = json.load(f)
        self.assertTrue(report["pass"], report["checks"])
        for name, check in report["checks"].items():
            self.assertTrue(check["pass"], (name, check))
        self.assertEqual(report["accepted"], 3000)
        self.assertEqual(sum(report["final"].values()), report["accepted"])
        self.assertEqual(sum(report["not_final"].values()), 0)
        sold = sum(c["sold"] for c in report["categories"])
        self.assertLessEqual(sold, 500)
        for category in report["categories"]:
            self.assertTrue(category["read_back"])
            self.assertLessEqual(category["sold"], category["capacity"])
            self.assertEqual(category["sold"] + category["held"] + category["available"],
                             category["capacity"])
        # Rush was the only buyer and everything is final: what it saw confirmed is what sold.
        self.assertEqual(report["final"]["confirmed"], sold)
        self.assertEqual(report["line_policy"], line_policy)
        # Issue 16: never "sold out" while a ticket is left.
        self.assertEqual(report["unsold_while_sold_out"], 0)
        if line_policy == "unbounded":
            # Every request that could still be served waited: the only rejection is the
            # true sold_out, once every ticket is sold.
            self.assertEqual(report["rejected"]["sold_out"], report["final"]["rejected"])
            if report["final"]["rejected"] > 0:
                self.assertEqual(sold, 500)
        else:
            self.assertGreater(report["final"]["rejected"], 0)
            self.assertEqual(report["rejected"]["sold_out"] + report["rejected"]["line_full"],
                             report["final"]["rejected"])
        self.assertGreater(report["latency"]["accept"]["count"], 0)
        self.assertEqual(report["latency"]["accept"]["from"], "sent")
        self.assertNotIn("send_lag", report["latency"])
        self.assertGreaterEqual(report["latency"]["decision"]["p99_ms"],
                                report["latency"]["decision"]["p50_ms"])
        self.assertEqual(report["http"]["5xx"], 0)

        self.assertEqual(self.server.stop(), 0)
        code, out = audit(self.server.data)
        self.assertEqual(code, 0, out)
        self.assertIn("CLEAN", out)
        self.assertIn("3000 purchases checked", out)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerCrashTest(unittest.TestCase):
    """kill -9 in the middle of the rush, restart on the same port: rush retries with the same
    Idempotency-Keys, so every buyer ends with exactly one purchase and the audit is clean."""

    def test_rush_survives_a_server_crash(self):
        port = free_port()
        server = Server("--listen", f"127.0.0.1:{port}", demo=False)
        try:
            command = [BIN, "rush", "--url", f"http://127.0.0.1:{port}", "--jwt-secret", SECRET,
                       "--buyers", "20000", "--tickets", "2000", "--hold-seconds", "1",
                       "--pay-delay-ms", "10-100", "--connections", "64", "--max-seconds", "240"]
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=ENV)
            started = proc.stderr.readline()  # printed once the event exists and the run begins
            self.assertIn("20000 buyers", started)
            time.sleep(0.3)
            server.kill9()
            time.sleep(0.5)
            server.restart()
            out, err = proc.communicate(timeout=300)
            self.assertEqual(proc.returncode, 0, out + err)
            self.assertRegex(out, r"accepted 20000 ")
            self.assertEqual(server.stop(), 0)
            code, audit_out = audit(server.data)
            self.assertEqual(code, 0, audit_out)
            self.assertIn("20000 purchases checked", audit_out)  # none bought twice
        finally:
            server.close()


class FailingRunsTest(unittest.TestCase):
    """Runs against a real server that cannot pass, or cannot run at all."""

    @classmethod
    def setUpClass(cls):
        cls.seed = seed_from_env("rush failing runs")
        cls.server = Server(demo=False)
        cls.tmp = tempfile.mkdtemp(prefix="catraca-rush-")

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_deadline_leaves_holds_unfinished_and_fails_the_check(self):
        """Hold 60 s, nobody pays, 3 s to go: the holds cannot reach a final status in time."""
        report_path = os.path.join(self.tmp, "deadline.json")
        code, out, err = rush(self.server.port, "--jwt-secret", SECRET, "--buyers", "200",
                              "--tickets", "40", "--confirm", "0", "--cancel", "0",
                              "--hold-seconds", "60", "--max-seconds", "3", "--event",
                              f"deadline-{self.seed}", "--json", report_path)
        self.assertEqual(code, 1, out + err)
        with open(report_path) as f:
            report = json.load(f)
        self.assertFalse(report["pass"])
        self.assertTrue(report["deadline_hit"])
        self.assertFalse(report["checks"]["all_final"]["pass"])
        self.assertTrue(report["checks"]["no_oversell"]["pass"], report["checks"])
        self.assertTrue(report["checks"]["fifo"]["pass"], report["checks"])
        self.assertEqual(report["not_final"]["held"], 40)
        self.assertIn("check    all_final     FAIL", out)

    def test_event_with_another_definition_is_not_run(self):
        args = ["--jwt-secret", SECRET, "--buyers", "10", "--event", f"taken-{self.seed}",
                "--hold-seconds", "1", "--pay-delay-ms", "0-10", "--max-seconds", "30"]
        code, out, err = rush(self.server.port, *args, "--tickets", "10")
        self.assertEqual(code, 0, out + err)
        code, out, err = rush(self.server.port, *args, "--tickets", "9")
        self.assertEqual(code, 3, out + err)
        self.assertIn("another definition", err)

    def test_wrong_secret_is_refused_and_fails(self):
        """Tokens the server does not accept: set-up cannot even create the event."""
        code, out, err = rush(self.server.port, "--jwt-secret", WRONG_SECRET, "--buyers", "5")
        self.assertEqual(code, 3, out + err)
        self.assertIn("401", err)


class DemoTest(unittest.TestCase):
    """--demo: tokens from POST /v1/demo/token; --rate paces the purchases."""

    def test_demo_tokens_and_rate(self):
        server = Server(demo=True)
        try:
            started = time.time()
            code, out, err = rush(server.port, "--demo", "--buyers", "300", "--tickets", "60",
                                  "--rate", "400", "--pay-delay-ms", "5-20", "--hold-seconds",
                                  "1", "--connections", "16", "--max-seconds", "120")
            self.assertEqual(code, 0, out + err)
            self.assertGreaterEqual(time.time() - started, 300 / 400 - 0.1)
            self.assertIn("paced by --rate", out)
            self.assertRegex(out, r"accepted 300 ")
        finally:
            server.close()

    def test_healthz_only(self):
        server = Server()
        try:
            code, out, err = rush(server.port, "--healthz-only", "--seconds", "1",
                                  "--connections", "4", timeout=60)
            self.assertEqual(code, 0, out + err)
            line = json.loads(out.strip().splitlines()[-1])
            self.assertGreater(line["healthz_requests_per_s"], 0)
            self.assertEqual(line["failures"], 0)
        finally:
            server.close()


class FixedRateTest(unittest.TestCase):
    """Issue 13: at a fixed --rate, with buyers who pay and cancel (about 3 requests a buyer),
    rush opens more connections than the rate keeps busy; it uses the most recently freed
    first, so some never carry a request until the server closes them as idle. Rush took each
    such close for a lost request of buyer 0: it counted one request less in flight than it
    had (an abort at `r->in_flight > 0`), and scheduled a phantom retry for buyer 0. This
    server closes idle connections after 1 s instead of 10 s so the test stays short."""

    def test_fixed_rate_with_payments_and_cancellations(self):
        seed = seed_from_env("rush fixed rate")
        server = Server("--header-timeout-ms", "1000", demo=True)
        tmp = tempfile.mkdtemp(prefix="catraca-rush-")
        try:
            report_path = os.path.join(tmp, "report.json")
            started = time.time()
            code, out, err = rush(server.port, "--demo", "--rate", "300", "--buyers", "900",
                                  "--tickets", "900", "--confirm", "0.6", "--cancel", "0.1",
                                  "--pay-delay-ms", "10-200", "--hold-seconds", "1",
                                  "--connections", "64", "--seed", str(seed), "--max-seconds",
                                  "120", "--json", report_path, timeout=180)
            self.assertEqual(code, 0, out + err)
            self.assertGreaterEqual(time.time() - started, 900 / 300 - 0.1)
            with open(report_path) as f:
                report = json.load(f)
            self.assertTrue(report["pass"], report["checks"])
            self.assertEqual(report["accepted"], 900)
            final = report["final"]
            self.assertEqual(final["confirmed"] + final["cancelled"] + final["expired"], 900)
            for status in ("confirmed", "cancelled", "expired"):
                self.assertGreater(final[status], 0, final)
            self.assertEqual(report["latency"]["accept"]["from"], "scheduled")
            self.assertEqual(report["latency"]["send_lag"]["count"], 900)
            # Not asserted: transport_errors == 0. With a 1 s idle time-out a request sometimes
            # meets the server's close of its kept-alive connection; rush retries it.
        finally:
            server.close()
            shutil.rmtree(tmp, ignore_errors=True)


class LyingServer:
    """A stand-in for Catraca that answers the API's shapes but breaks a promise:
    'oversell' confirms every purchase (and claims it sold only the capacity);
    'unfair' gives the tickets to the last arrivals and sold_out to the first;
    'honest' gives them to the first arrivals. Each purchase takes purchase_delay_s.
    Like Catraca, it answers 415 to a body that is not declared application/json."""

    def __init__(self, mode, buyers, capacity, purchase_delay_s=0):
        self.mode, self.buyers, self.capacity = mode, buyers, capacity
        self.purchase_delay_s = purchase_delay_s
        self.lock = threading.Lock()
        self.purchases = {}  # id -> dict
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def body(self):
                length = int(self.headers.get("Content-Length", "0"))
                return json.loads(self.rfile.read(length) or b"{}")

            def do_POST(self):
                content_type = self.headers.get("Content-Type", "")
                if content_type.split(";")[0].strip().lower() != "application/json":
                    self.body()  # read it, so the connection stays usable
                    self.answer(415, {"error": "unsupported_media_type"})
                    return
                body = self.body()
                status, answer = outer.post(self.path, body)
                self.answer(status, answer)

            def do_GET(self):
                status, answer = outer.get(self.path)
                self.answer(status, answer)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def event(self, event_id):
        sold = self.capacity // 2 if self.mode == "false_sold_out" else self.capacity
        return {"id": event_id, "name": "liar", "state": "open", "hold_seconds": 60,
                "per_customer_limit": 4,
                "categories": [{"id": "c0", "name": "c0", "price_cents": 1, "capacity": self.capacity,
                                "available": self.capacity - sold, "held": 0, "sold": sold,
                                "waiting": 0}],
                "queue": {"pending": 0}}

    def decide(self, n):
        """The first decision of arrival n (0-based)."""
        if self.mode == "honest":
            return "held" if n < self.capacity else "rejected"
        if self.mode == "false_sold_out":  # half the tickets never offered: "sold out"
            return "held" if n < self.capacity // 2 else "rejected"
        if self.mode == "oversell" or n >= self.buyers - self.capacity:
            return "held"
        return "rejected"

    def post(self, path, body):
        if path == "/v1/events":
            return 201, self.event(body["id"])
        match = re.fullmatch(r"/v1/purchases/(p_\d+)/confirm", path)
        if match:
            with self.lock:
                p = self.purchases[match.group(1)]
                p.update(status="confirmed", hold_expires_at=None, tickets=[{"code": "X"}])
                return 200, dict(p)
        time.sleep(self.purchase_delay_s)
        with self.lock:
            n = len(self.purchases)
            p = {"id": f"p_{n}", "event": "e", "category": body["category"], "quantity": 1,
                 "customer": "?", "seq": f"{n + 1}-0", "status": "queued", "reason": None,
                 "hold_expires_at": None, "position": None, "tickets": []}
            self.purchases[p["id"]] = p
            decided = dict(p)
            status = self.decide(n)
            p["status"] = status
            if status == "held":
                expires = time.gmtime(time.time() + 60)
                p["hold_expires_at"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", expires)
            else:
                p["reason"] = "sold_out"
        return 202, decided

    def get(self, path):
        match = re.match(r"/v1/purchases/(p_\d+)", path)
        if match:
            with self.lock:
                return 200, dict(self.purchases[match.group(1)])
        return 200, self.event(path.rsplit("/", 1)[-1])


class ChecksFailTest(unittest.TestCase):
    """Rush's checks catch a server that breaks a promise (rush is honest; the server lies)."""

    def run_against(self, mode):
        liar = LyingServer(mode, buyers=40, capacity=10)
        try:
            report_path = tempfile.mktemp(prefix="catraca-rush-", suffix=".json")
            code, out, err = rush(liar.port, "--jwt-secret", SECRET, "--buyers", "40", "--tickets",
                                  "10", "--categories", "1", "--confirm", "1", "--cancel", "0",
                                  "--pay-delay-ms", "0-5", "--connections", "4", "--max-seconds",
                                  "60", "--json", report_path, timeout=120)
            with open(report_path) as f:
                report = json.load(f)
            os.remove(report_path)
            return code, out + err, report
        finally:
            liar.close()

    def test_oversell_is_caught(self):
        code, out, report = self.run_against("oversell")
        self.assertEqual(code, 1, out)
        self.assertFalse(report["checks"]["no_oversell"]["pass"], report["checks"])
        self.assertIn("answered confirmed", report["checks"]["no_oversell"]["detail"])
        self.assertEqual(report["final"]["confirmed"], 40)
        self.assertTrue(report["checks"]["all_final"]["pass"])

    def test_sold_out_with_tickets_left_is_caught(self):
        code, out, report = self.run_against("false_sold_out")
        self.assertEqual(code, 1, out)
        self.assertTrue(report["checks"]["no_oversell"]["pass"], report["checks"])
        self.assertTrue(report["checks"]["fifo"]["pass"], report["checks"])
        self.assertFalse(report["checks"]["honest_sold_out"]["pass"], report["checks"])
        self.assertEqual(report["unsold_while_sold_out"], 5)
        self.assertIn("5 tickets unsold while buyers were told sold_out", out)

    def test_unfair_order_is_caught(self):
        code, out, report = self.run_against("unfair")
        self.assertEqual(code, 1, out)
        self.assertTrue(report["checks"]["no_oversell"]["pass"], report["checks"])
        self.assertFalse(report["checks"]["fifo"]["pass"], report["checks"])
        self.assertIn("sold_out", report["checks"]["fifo"]["detail"])


class CoordinatedOmissionTest(unittest.TestCase):
    """At --rate, accept latency runs from each purchase's scheduled send: one connection to a
    server that takes 20 ms a purchase cannot send 40 purchases in the 40 ms the schedule
    gives them, and the time they waited in rush counts. Measured from the actual send, as
    before, every accept latency was about 20 ms and the report looked healthy."""

    def test_accept_latency_counts_the_wait_behind_the_schedule(self):
        liar = LyingServer("honest", buyers=40, capacity=40, purchase_delay_s=0.02)
        try:
            report_path = tempfile.mktemp(prefix="catraca-rush-", suffix=".json")
            code, out, err = rush(liar.port, "--jwt-secret", SECRET, "--buyers", "40", "--tickets",
                                  "40", "--categories", "1", "--confirm", "1", "--cancel", "0",
                                  "--pay-delay-ms", "0-5", "--connections", "1", "--rate",
                                  "1000", "--max-seconds", "60", "--json", report_path,
                                  timeout=120)
            with open(report_path) as f:
                report = json.load(f)
            os.remove(report_path)
        finally:
            liar.close()
        self.assertEqual(code, 0, out + err)
        self.assertIn("accept: scheduled send -> 202", out)
        self.assertIn("send lag", out)
        accept, lag = report["latency"]["accept"], report["latency"]["send_lag"]
        self.assertEqual(accept["from"], "scheduled")
        self.assertEqual(accept["count"], 40)
        self.assertEqual(lag["count"], 40)
        # Purchase k goes out after the k before it took 20 ms each, not at k ms.
        self.assertGreaterEqual(lag["max_ms"], 39 * 20 - 39)
        self.assertGreaterEqual(accept["max_ms"], 39 * 20 - 39 + 20)
        self.assertGreaterEqual(accept["p50_ms"], 20 * 20 - 20)
        # Each purchase's accept latency holds its send lag, so every percentile does.
        for key in ("p50_ms", "p99_ms", "max_ms"):
            self.assertGreaterEqual(accept[key], lag[key], (accept, lag))


class UsageTest(unittest.TestCase):
    def run_usage(self, *args):
        run = subprocess.run([BIN, "rush", *args], capture_output=True, text=True, timeout=30,
                             env=ENV)
        return run.returncode, run.stdout, run.stderr

    def test_usage_errors_exit_2(self):
        for args in (
            [],  # no --url
            ["--url", "http://127.0.0.1:1"],  # neither --demo nor --jwt-secret
            ["--url", "http://127.0.0.1:1", "--demo", "--jwt-secret", SECRET],
            ["--url", "http://127.0.0.1:1", "--jwt-secret", "short"],  # under 32 bytes
            ["--url", "http://127.0.0.1:1", "--jwt-secret", SECRET, "--jwt-secret-file", "/f"],
            ["--url", "http://127.0.0.1:1", "--jwt-secret-file", "/nonexistent/secret"],
            ["--url", "http://127.0.0.1:1", "--demo", "--confirm", "1.5"],
            ["--url", "http://127.0.0.1:1", "--demo", "--confirm", "0.7", "--cancel", "0.4"],
            ["--url", "http://127.0.0.1:1", "--demo", "--buyers", "0"],
            ["--url", "http://127.0.0.1:1", "--demo", "--buyers", "ten"],
            ["--url", "http://127.0.0.1:1", "--demo", "--pay-delay-ms", "300-100"],
            ["--url", "http://127.0.0.1:1", "--demo", "--tickets", "1", "--categories", "2"],
            ["--url", "https://127.0.0.1:1", "--demo"],
            ["--url", "http://127.0.0.1:1", "--demo", "--event", "no spaces"],
            ["--url", "http://127.0.0.1:1", "--demo", "--frobnicate"],
            ["--url", "http://127.0.0.1:1", "--demo", "--buyers"],
        ):
            with self.subTest(args=args):
                code, out, err = self.run_usage(*args)
                self.assertEqual(code, 2, (out, err))
                self.assertIn("catraca rush:", err)

    def test_help(self):
        code, out, _ = self.run_usage("--help")
        self.assertEqual(code, 0)
        self.assertIn("--jwt-secret", out)
        self.assertIn("--healthz-only", out)

    def test_no_server_is_not_run(self):
        code, out, err = self.run_usage("--url", "http://127.0.0.1:1", "--jwt-secret", SECRET,
                                        "--buyers", "3")
        self.assertEqual(code, 3, (out, err))

    def test_secret_from_a_file(self):
        """--jwt-secret-file: one trailing newline ignored; a weak secret refused unechoed."""
        with tempfile.NamedTemporaryFile("w", suffix=".secret") as f:
            f.write("change-me\n")
            f.flush()
            code, out, err = self.run_usage("--url", "http://127.0.0.1:1", "--jwt-secret-file",
                                            f.name)
            self.assertEqual(code, 2, (out, err))
            self.assertIn("shorter than 32 bytes", err)
            self.assertNotIn("change-me", err)
            f.seek(0)
            f.truncate()
            f.write(SECRET + "\n")
            f.flush()
            code, out, err = self.run_usage("--url", "http://127.0.0.1:1", "--jwt-secret-file",
                                            f.name, "--buyers", "3")
            self.assertEqual(code, 3, (out, err))  # accepted; then no server answers


if __name__ == "__main__":
    unittest.main()
