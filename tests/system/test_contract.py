"""What openapi.yaml says beyond test_api.py: the limits, the idempotent repeat in any status,
the announced changes of issue 13, and the places where the server breaks API.md.

Run it like test_api.py, and through Prism with CATRACA_VIA_PRISM=1 (ctest system_api_prism):
then every answer here is also checked against openapi.yaml. A test marked
@known_mismatch(KEY) checks what the contract says and is expected to fail while KEY is in
known_mismatches.KNOWN_SERVER_MISMATCHES; after the fix it passes and the run fails (an
unexpected success) until the entry is removed.
"""
import json
import re
import socket
import time
import unittest

from catraca import (ADMIN, PAYMENTS, SPEC, Client, Server, buy, create_event, demo_server, token,
                     wait_status)
from known_mismatches import KNOWN_SERVER_MISMATCHES, is_known

CHECKED_MISMATCHES = set()


def known_mismatch(key):
    CHECKED_MISMATCHES.add(key)

    def wrap(test):
        return unittest.expectedFailure(test) if is_known(key) else test
    return wrap


def spec_name_max():
    """maxLength of the Name schema of openapi.yaml: the one place that sets it."""
    with open(SPEC) as f:
        m = re.search(r"^    Name:\n      type: string\n      maxLength: (\d+)$", f.read(), re.M)
    assert m, "openapi.yaml: components.schemas.Name has no maxLength"
    return int(m.group(1))


NAME_MAX = spec_name_max()


def assert_error(test, answer, want_status, want_code):
    status, body = answer[0], answer[1]
    test.assertEqual(status, want_status, body)
    test.assertIsInstance(body, dict, body)
    test.assertEqual(set(body["error"]), {"code", "message"})
    test.assertEqual(body["error"]["code"], want_code)


def event_body(event_id, **fields):
    body = {"id": event_id, "categories": [{"id": "a", "capacity": 5}]}
    body.update(fields)
    return body


class ContractTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.c = cls.server.client()

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        code = cls.server.close()
        assert code == 0, f"graceful stop exit code {code}"

    def create(self, body):
        return self.c.request("POST", "/v1/events", body, ADMIN())

    def test_event_limits(self):
        """Each bound of openapi.yaml: the last value accepted, the first refused."""
        cases = [
            ("price", {"categories": [{"id": "a", "capacity": 1, "price_cents": 2**50}]},
             {"categories": [{"id": "a", "capacity": 1, "price_cents": 2**50 + 1}]}),
            ("capacity", {"categories": [{"id": "a", "capacity": 10**7}]},
             {"categories": [{"id": "a", "capacity": 10**7 + 1}]}),
            ("categories", {"categories": [{"id": f"c{i}", "capacity": 1} for i in range(16)]},
             {"categories": [{"id": f"c{i}", "capacity": 1} for i in range(17)]}),
            ("hold", {"hold_seconds": 86400}, {"hold_seconds": 86401}),
            ("limit", {"per_customer_limit": 10}, {"per_customer_limit": 11}),
            ("name", {"name": "n" * NAME_MAX}, {"name": "n" * (NAME_MAX + 1)}),
            ("catname", {"categories": [{"id": "a", "capacity": 1, "name": "n" * NAME_MAX}]},
             {"categories": [{"id": "a", "capacity": 1, "name": "n" * (NAME_MAX + 1)}]}),
        ]
        for name, good, bad in cases:
            with self.subTest(name):
                status, event, _ = self.create(event_body(f"lim-{name}", **good))
                self.assertEqual(status, 201, event)
                assert_error(self, self.create(event_body(f"lim-{name}-over", **bad)), 400,
                             "invalid_request")
        status, event, _ = self.create(event_body("x" * 64))
        self.assertEqual(status, 201, event)
        assert_error(self, self.create(event_body("x" * 65)), 400, "invalid_request")
        # distinct category ids: a rule no schema can say, so openapi.yaml says it in words
        twice = [{"id": "a", "capacity": 1}, {"id": "a", "capacity": 2}]
        assert_error(self, self.create(event_body("lim-twice", categories=twice)), 400,
                     "invalid_request")

    def test_purchase_limits(self):
        create_event(self.c, "ev-plim", (20,), limit=3)
        path = "/v1/events/ev-plim/purchases"
        for quantity in (0, 4, 11):
            with self.subTest(quantity=quantity):
                body = {"category": "cat0", "quantity": quantity}
                assert_error(self, self.c.request("POST", path, body, token("pl")), 400,
                             "invalid_request")
        self.assertEqual(buy(self.c, "ev-plim", "pl", quantity=3, key="k" * 64)[0], 202)
        assert_error(self, buy(self.c, "ev-plim", "pl", key="k" * 65), 400, "invalid_request")

    def test_idempotent_repeat_answers_the_current_purchase(self):
        """200 with the purchase as it is now: held, then confirmed, not only queued."""
        create_event(self.c, "ev-repeat", (5,))
        status, first, headers = buy(self.c, "ev-repeat", "rp", quantity=2, key="once")
        self.assertEqual(status, 202, first)
        self.assertEqual(headers["location"], "/v1/purchases/" + first["id"])
        wait_status(self.c, first["id"], "rp", lambda s: s == "held")
        status, held, headers = buy(self.c, "ev-repeat", "rp", quantity=2, key="once")
        self.assertEqual((status, held["id"], held["status"]), (200, first["id"], "held"), held)
        self.assertEqual(headers["location"], "/v1/purchases/" + first["id"])
        status, paid, _ = self.c.request("POST", f"/v1/purchases/{first['id']}/confirm",
                                         {"payment_ref": "psp_rp"}, PAYMENTS())
        self.assertEqual((status, paid["status"]), (200, "confirmed"), paid)
        status, again, _ = buy(self.c, "ev-repeat", "rp", quantity=2, key="once")
        self.assertEqual((status, again["status"], again["tickets"]),
                         (200, "confirmed", paid["tickets"]), again)

    def test_ready_and_query_errors(self):
        self.assertEqual(self.c.request("GET", "/readyz")[:2], (200, {"status": "ready"}))
        create_event(self.c, "ev-query", (1,))
        _, p, _ = buy(self.c, "ev-query", "qe")
        for wait in ("abc", "-1", "1.5"):
            with self.subTest(wait=wait):
                assert_error(self, self.c.request("GET", f"/v1/purchases/{p['id']}?wait={wait}",
                                                  tok=token("qe")), 400, "invalid_request")
        # a status the purchase is not in: answered at once, whatever the word
        started = time.time()
        status, now, _ = self.c.request("GET", f"/v1/purchases/{p['id']}?wait=30&status=nope",
                                        tok=token("qe"))
        self.assertEqual(status, 200, now)
        self.assertLess(time.time() - started, 10)
        for bad in ("p_nope", "p_Z000000000000", "p_0000000000000"):
            with self.subTest(id=bad):
                assert_error(self, self.c.request("GET", f"/v1/purchases/{bad}", tok=ADMIN()), 404,
                             "not_found")

    def test_release_repeat_and_confirm_conflict(self):
        create_event(self.c, "ev-release", (2,))
        _, p, _ = buy(self.c, "ev-release", "rl")
        wait_status(self.c, p["id"], "rl", lambda s: s == "held")
        status, first, _ = self.c.request("DELETE", f"/v1/purchases/{p['id']}", tok=token("rl"))
        self.assertEqual((status, first["status"]), (200, "cancelled"), first)
        status, again, _ = self.c.request("DELETE", f"/v1/purchases/{p['id']}", tok=token("rl"))
        self.assertEqual((status, again["status"]), (200, "cancelled"), again)
        status, late, _ = self.c.request("POST", f"/v1/purchases/{p['id']}/confirm",
                                         {"payment_ref": "psp_late"}, ADMIN())
        assert_error(self, (status, {"error": late["error"]}), 409, "conflict")
        self.assertEqual(late["purchase"]["status"], "cancelled")
        status, ev, _ = self.c.request("GET", "/v1/events/ev-release")
        self.assertEqual(ev["categories"][0]["available"], 2)

    def test_stream_until_final(self):
        """The stream as a client reads it: each change, then the end after a final status."""
        create_event(self.c, "ev-stream", (1,), hold_seconds=1)
        _, p, _ = buy(self.c, "ev-stream", "sm")
        wait_status(self.c, p["id"], "sm", lambda s: s == "held")
        status, text, headers = Client(self.server.port, timeout=20).request(
            "GET", f"/v1/purchases/{p['id']}/events", tok=token("sm"))
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/event-stream"), headers)
        events = [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: ")]
        self.assertEqual([e["status"] for e in events], ["held", "expired"])

    def test_stream_of_a_final_purchase_ends(self):
        create_event(self.c, "ev-stream-final", (1,))
        _, p, _ = buy(self.c, "ev-stream-final", "sf")
        wait_status(self.c, p["id"], "sf", lambda s: s == "held")
        self.assertEqual(self.c.request("DELETE", f"/v1/purchases/{p['id']}", tok=token("sf"))[0], 200)
        stream = Client(self.server.port, timeout=5)
        try:
            status, text, _ = stream.request("GET", f"/v1/purchases/{p['id']}/events", tok=token("sf"))
        finally:
            stream.close()
        self.assertEqual(status, 200)
        self.assertEqual(text.count("data: "), 1, text)
        self.assertIn('"status":"cancelled"', text)

    @known_mismatch("demo-admin-page")
    def test_demo_serves_the_admin_page(self):
        status, page, headers = self.c.request("GET", "/admin")
        self.assertEqual(status, 200, page)
        self.assertTrue(headers["content-type"].startswith("text/html"), headers)

    def test_method_not_allowed_names_the_allowed(self):
        for method, path, allowed in (("PUT", "/v1/events", {"GET", "HEAD", "POST"}),
                                      ("PATCH", "/v1/events/ev-any", {"GET", "HEAD"}),
                                      ("GET", "/v1/events/ev-any/purchases", {"POST"}),
                                      ("POST", "/healthz", {"GET", "HEAD"}),
                                      ("GET", "/v1/demo/token", {"POST"})):
            with self.subTest(method=method, path=path):
                c = demo_server().client() if "/demo/" in path else self.c
                status, answer, headers = c.request(method, path, tok=ADMIN())
                assert_error(self, (status, answer), 405, "invalid_request")
                self.assertEqual({m.strip() for m in headers.get("allow", "").split(",")}, allowed)

    def test_head_wherever_get(self):
        create_event(self.c, "ev-head", (1,))
        _, p, _ = buy(self.c, "ev-head", "hd")
        for path in ("/", "/healthz", "/readyz", "/metrics", "/v1/events", "/v1/events/ev-head",
                     "/v1/events/nope", f"/v1/purchases/{p['id']}"):
            with self.subTest(path=path):
                got = self.c.request("GET", path, tok=token("hd"))
                head = self.c.request("HEAD", path, tok=token("hd"))
                self.assertEqual(head[0], got[0], head)
                self.assertIsNone(head[1])
                self.assertEqual(head[2].get("content-type"), got[2].get("content-type"))

    def test_body_that_is_not_declared_json(self):
        create_event(self.c, "ev-media", (5,))
        status, answer, _ = self.c.request("POST", "/v1/events/ev-media/purchases",
                                           {"category": "cat0", "quantity": 1}, token("md"),
                                           headers={"Content-Type": "text/plain"})
        assert_error(self, (status, answer), 415, "unsupported_media_type")

    def test_names_count_characters(self):
        status, event, _ = self.create(event_body("ev-chars", name="é" * NAME_MAX))
        self.assertEqual((status, event.get("name")), (201, "é" * NAME_MAX), event)
        assert_error(self, self.create(event_body("ev-chars-over", name="é" * (NAME_MAX + 1))), 400,
                     "invalid_request")
        status, event, _ = self.create(event_body(
            "ev-chars-cat", categories=[{"id": "a", "capacity": 1, "name": "ü" * NAME_MAX}]))
        self.assertEqual(status, 201, event)

    def test_a_nul_in_a_string_is_refused(self):
        create_event(self.c, "ev-nul", (5,))
        nul_category = [{"id": "a\x00b", "capacity": 1}]
        bodies = [("/v1/events", event_body("ev-nul-cat", categories=nul_category), ADMIN()),
                  ("/v1/events", event_body("ev-nul-name", name="a\x00b"), ADMIN()),
                  ("/v1/events/ev-nul/purchases", {"category": "cat0\x00x", "quantity": 1},
                   token("nl"))]
        for path, body, tok in bodies:
            with self.subTest(path=path, body=body):
                assert_error(self, self.c.request("POST", path, body, tok), 400, "invalid_request")

    def test_a_nul_in_the_demo_customer_is_refused(self):
        assert_error(self, demo_server().client().request("POST", "/v1/demo/token",
                                                          {"customer": "c\x00 x"}),
                     400, "invalid_request")

    def raw_answer(self, request):
        """Head and body of one request sent as bytes, straight to the server (Prism, Node,
        would refuse these itself: over its 16 KiB of headers, or malformed)."""
        sock = socket.create_connection(("127.0.0.1", self.server.upstream_port), timeout=10)
        answer = b""
        try:
            sock.sendall(request)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
        finally:
            sock.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        return head, body

    def test_errors_of_the_http_layer_are_json(self):
        for name, want, request in (
                ("headers over the limit", b"431",
                 b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " +
                 b"a" * 100000 + b"\r\n\r\n"),
                ("header line without a colon", b"400",
                 b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\nConnection: close\r\n\r\n"),
                ("broken chunked body", b"400",
                 b"POST /v1/demo/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 b"Connection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")):
            with self.subTest(name):
                head, body = self.raw_answer(request)
                self.assertTrue(head.startswith(b"HTTP/1.1 " + want), head)
                self.assertEqual(json.loads(body)["error"]["code"], "invalid_request")

    def test_an_escaped_slash_or_nul_in_the_path(self):
        """A path id is never percent-escaped (404); an escaped NUL is refused anywhere (400)."""
        create_event(self.c, "ev-escape", (1,))
        smuggled = event_body("ev-smuggled")
        for method, path, body, want in (
                ("GET", "/v1/events/a%2Fstate", None, (404, "not_found")),
                ("GET", "/v1/events/ev%2Descape", None, (404, "not_found")),
                ("GET", "/v1/events/%00", None, (400, "invalid_request")),
                ("POST", "/v1/events%00/ev-escape/purchases", smuggled, (400, "invalid_request"))):
            with self.subTest(method=method, path=path):
                assert_error(self, self.c.request(method, path, body, ADMIN()), *want)
        self.assertEqual(self.c.request("GET", "/v1/events/ev-smuggled")[0], 404)


class KnownMismatchesTest(unittest.TestCase):
    def test_every_known_mismatch_has_a_check_here(self):
        """An entry without a check would never tell that its fix landed."""
        self.assertEqual(set(KNOWN_SERVER_MISMATCHES) - CHECKED_MISMATCHES, set())


class EventsMaxTest(unittest.TestCase):
    def test_a_new_event_beyond_the_maximum_is_a_conflict(self):
        server = Server("--max-events", "2")
        try:
            c = server.client()
            create_event(c, "ev-max-1", (1,))
            create_event(c, "ev-max-2", (1,))
            assert_error(self, c.request("POST", "/v1/events", event_body("ev-max-3"), ADMIN()), 409,
                         "conflict")
            # an event that exists is still its idempotent self
            self.assertEqual(create_event(c, "ev-max-1", (1,))["id"], "ev-max-1")
            c.close()
        finally:
            server.close()


if __name__ == "__main__":
    unittest.main()
