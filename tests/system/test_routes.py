"""The route table and the API layer's strictness: 404, 405 + Allow, HEAD, 415, ids in paths,
Idempotency-Key, the event limit, and answers when every waiter slot is taken."""
import html
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import unittest

from catraca import ADMIN, Server, buy, create_event, demo_server, token


def raw_request(port, data, timeout=10):
    """Sends raw bytes on a fresh connection; returns (status, headers, body) of the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(data)
        answer = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    finally:
        sock.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def request_bytes(method, path, headers=(), body=b""):
    """One HTTP/1.1 request that closes its connection; path and header values are raw bytes."""
    lines = [method.encode() + b" " + path + b" HTTP/1.1", b"Host: x", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers]
    if body:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def assert_error(test, status, answer, want_status, want_code):
    test.assertEqual(status, want_status, answer)
    test.assertIsInstance(answer, dict, answer)
    test.assertEqual(set(answer["error"]), {"code", "message"})
    test.assertEqual(answer["error"]["code"], want_code)


def wait_held(client, purchase_id, customer, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, row, _ = client.request("GET", f"/v1/purchases/{purchase_id}", tok=token(customer))
        if status == 200 and row["status"] == "held":
            return row
        time.sleep(0.05)
    raise AssertionError(f"{purchase_id} not held after {timeout} s")


class RouteTableTest(unittest.TestCase):
    """404 and 405 come from the one route table; 405 lists the path's methods in Allow."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server()  # --demo off (demo routes: demo_server()), --challenge off
        cls.c = cls.server.client()
        create_event(cls.c, "ev-routes", (5,))
        _, cls.purchase, _ = buy(cls.c, "ev-routes", "r1")

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        assert cls.server.close() == 0

    def send(self, method, path, headers=(), body=b""):
        return raw_request(self.server.port, request_bytes(method, path.encode(), headers, body))

    def test_method_not_allowed_lists_the_path_methods(self):
        pid = self.purchase["id"]
        cases = [("POST", "/healthz", "GET, HEAD"), ("DELETE", "/readyz", "GET, HEAD"),
                 ("PUT", "/metrics", "GET, HEAD"), ("POST", "/", "GET, HEAD"),
                 ("PUT", "/v1/events", "GET, HEAD, POST"),
                 ("DELETE", "/v1/events/ev-routes", "GET, HEAD"),
                 ("GET", "/v1/events/ev-routes/state", "POST"),
                 ("GET", "/v1/events/ev-routes/purchases", "POST"),
                 ("POST", f"/v1/purchases/{pid}", "GET, HEAD, DELETE"),
                 ("DELETE", f"/v1/purchases/{pid}/events", "GET, HEAD"),
                 ("GET", f"/v1/purchases/{pid}/confirm", "POST"),
                 ("GET", "/v1/demo/token", "POST"), ("OPTIONS", "/v1/events", "GET, HEAD, POST")]
        for method, path, allow in cases:
            with self.subTest(method=method, path=path):
                port = demo_server().port if "/demo/" in path else self.server.port
                status, headers, body = raw_request(port, request_bytes(method, path.encode(), (),
                                                                        b""))
                assert_error(self, status, json.loads(body), 405, "invalid_request")
                self.assertEqual(headers.get("allow"), allow)

    def test_unknown_paths_are_not_found(self):
        for method, path in [("GET", "/nope"), ("POST", "/nope"), ("GET", "/v1"),
                             ("GET", "/v1/purchases"), ("GET", "/healthz/x"),
                             ("GET", "/v1/events/ev-routes/state/x"), ("GET", "/v1/challenge"),
                             ("POST", "/v1/challenge"), ("GET", "/a/b/c/d/e/f/g")]:
            with self.subTest(method=method, path=path):
                status, headers, body = self.send(method, path)
                assert_error(self, status, json.loads(body), 404, "not_found")
                self.assertNotIn("allow", headers)

    def test_head_answers_like_get_without_a_body(self):
        status, headers, body = self.send("HEAD", "/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"")
        self.assertTrue(headers["content-type"].startswith("application/json"))
        self.assertEqual(headers.get("content-length"), str(len(b'{"status":"ok"}')))
        for path in ("/", "/readyz", "/metrics", "/v1/events", "/v1/events/ev-routes"):
            with self.subTest(path=path):
                status, _, body = self.send("HEAD", path)
                self.assertEqual((status, body), (200, b""))
        status, _, body = self.send("HEAD", "/v1/events/ev-routes/purchases")
        self.assertEqual((status, body), (405, b""))

    def test_head_of_a_stream_is_its_headers_alone(self):
        """Not a stream: an end-of-stream chunk after a HEAD answer would desynchronise a
        keep-alive connection."""
        auth = [("Authorization", b"Bearer " + token("r1").encode())]
        path = f"/v1/purchases/{self.purchase['id']}/events"
        status, headers, body = self.send("HEAD", path, auth)
        self.assertEqual((status, body), (200, b""))
        self.assertTrue(headers["content-type"].startswith("text/event-stream"))
        status, _, body = self.send("HEAD", path)
        self.assertEqual((status, body), (401, b""))

    def test_segments_that_are_not_ids_are_not_found(self):
        """An event or purchase segment is an id, checked by the table before the token."""
        long_id = "e" * 65
        for method, path in [("GET", "/v1/events/bad!id"), ("GET", f"/v1/events/{long_id}"),
                             ("POST", "/v1/events/bad!id/purchases"),
                             ("POST", "/v1/events/x%20y/purchases"),
                             ("POST", f"/v1/events/{long_id}/state"),
                             ("GET", "/v1/purchases/p~1"), ("DELETE", "/v1/purchases/p~1"),
                             ("POST", "/v1/purchases/p~1/confirm")]:
            with self.subTest(method=method, path=path):
                status, _, body = self.send(method, path)  # no token: the path is wrong first
                assert_error(self, status, json.loads(body), 404, "not_found")

    def test_roles_come_from_the_table(self):
        pid = self.purchase["id"]
        buyer = [("Authorization", b"Bearer " + token("r1").encode())]
        for method, path in [("POST", "/v1/events"), ("POST", "/v1/events/ev-routes/state"),
                             ("POST", f"/v1/purchases/{pid}/confirm")]:
            with self.subTest(path=path):
                status, _, body = self.send(method, path)
                assert_error(self, status, json.loads(body), 401, "unauthorized")
                status, _, body = self.send(method, path, buyer)
                assert_error(self, status, json.loads(body), 403, "forbidden")

    def test_escaped_ids_are_not_found(self):
        """The path arrives as sent: an id never holds '%', so an escape, even of an id
        character, is no id (404), never a decoded or truncated match."""
        pid = self.purchase["id"]
        admin = [("Authorization", b"Bearer " + ADMIN().encode())]
        for method, path in [("GET", "/v1/events/ev%2Droutes"), ("GET", "/v1/events/ev-routes%41"),
                             ("GET", f"/v1/purchases/{pid[:-1]}%{ord(pid[-1]):02X}"),
                             ("GET", f"/v1/purchases/{pid}%2Fevents"),
                             ("POST", f"/v1/purchases/{pid}%20/confirm")]:
            with self.subTest(method=method, path=path):
                status, _, body = self.send(method, path, admin)
                assert_error(self, status, json.loads(body), 404, "not_found")

    def test_nul_escape_after_a_purchase_id_is_refused_not_truncated(self):
        """"<id>%00junk" must never answer for "<id>". The HTTP layer refuses an escape of a
        control character itself (400 invalid_request); were it to pass the path on, the route
        table would refuse the segment as no id (404)."""
        wait_held(self.c, self.purchase["id"], "r1")
        admin = [("Authorization", b"Bearer " + ADMIN().encode())]
        for suffix in ("%00junk", "%00", "%0A", "%7F"):
            with self.subTest(suffix=suffix):
                status, _, body = self.send("GET", f"/v1/purchases/{self.purchase['id']}{suffix}",
                                            admin)
                answer = json.loads(body)
                self.assertIn(status, (400, 404), answer)
                self.assertEqual(answer["error"]["code"],
                                 "invalid_request" if status == 400 else "not_found")


class MediaTypeTest(unittest.TestCase):
    """A body on a route that takes one must be declared JSON: otherwise 415."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.c = cls.server.client()
        create_event(cls.c, "ev-media", (50,))
        _, cls.purchase, _ = buy(cls.c, "ev-media", "m1")

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        assert cls.server.close() == 0

    def post(self, path, body, content_type, tok=None):
        headers = [("Authorization", b"Bearer " + tok.encode())] if tok else []
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        port = demo_server().port if path.startswith("/v1/demo/") else self.server.port
        status, _, answer = raw_request(port,
                                        request_bytes("POST", path.encode(), headers, body))
        return status, json.loads(answer) if answer else None

    def test_every_body_route_refuses_a_body_not_declared_json(self):
        pid = self.purchase["id"]
        routes = [("/v1/events", b'{"id":"ev-m2","categories":[{"id":"a","capacity":1}]}', ADMIN()),
                  ("/v1/events/ev-media/state", b'{"state":"open"}', ADMIN()),
                  ("/v1/events/ev-media/purchases", b'{"category":"cat0","quantity":1}',
                   token("m2")),
                  (f"/v1/purchases/{pid}/confirm", b'{"payment_ref":"x"}', ADMIN()),
                  ("/v1/demo/token", b'{"customer":"c1"}', None)]
        refused = [None, b"application/x-www-form-urlencoded", b"text/plain", b"text/json",
                   b"application/jsonx", b"application/json-patch+json", b"json", b""]
        for path, body, tok in routes:
            for content_type in refused:
                with self.subTest(path=path, content_type=content_type):
                    status, answer = self.post(path, body, content_type, tok)
                    assert_error(self, status, answer, 415, "unsupported_media_type")
        self.assertEqual(self.c.request("GET", "/v1/events/ev-m2")[0], 404)  # nothing was created

    def test_json_with_parameters_in_any_case_is_accepted(self):
        for n, content_type in enumerate([b"application/json", b"application/json; charset=utf-8",
                                          b"Application/JSON;charset=UTF-8",
                                          b"APPLICATION/JSON ; charset=utf-8"]):
            with self.subTest(content_type=content_type):
                status, answer = self.post("/v1/events/ev-media/purchases",
                                           b'{"category":"cat0","quantity":1}', content_type,
                                           token(f"m-ok{n}"))
                self.assertEqual(status, 202, answer)
                status, answer = self.post("/v1/demo/token", b'{"customer":"c1"}', content_type)
                self.assertEqual(status, 200, answer)

    def test_an_empty_body_is_judged_by_its_route(self):
        """No body, no media type to check: the route says what is missing (400)."""
        status, answer = self.post("/v1/demo/token", b"", None)
        assert_error(self, status, answer, 400, "invalid_request")
        status, answer = self.post("/v1/events", b"", None, ADMIN())
        assert_error(self, status, answer, 400, "invalid_request")

    def test_routes_without_a_body_ignore_its_type(self):
        status, _, _ = raw_request(self.server.port, request_bytes(
            "DELETE", f"/v1/purchases/{self.purchase['id']}".encode(),
            [("Authorization", b"Bearer " + token("m1").encode()),
             ("Content-Type", b"text/plain")], b"ignored"))
        self.assertIn(status, (200, 409))


class WalkthroughTest(unittest.TestCase):
    """The curl walkthroughs on the home page and in scripts/run.sh send JSON, and work."""

    def run_walkthrough(self, server, text):
        script = text.replace("localhost:8080", f"127.0.0.1:{server.port}")
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                              timeout=60, text=True)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn('"status":"queued"', done.stdout)  # the last command bought tickets
        self.assertNotIn("unsupported_media_type", done.stdout)

    @unittest.skipUnless(shutil.which("curl"), "curl is not installed")
    def test_home_page_walkthrough(self):
        server = Server(demo=True)
        try:
            client = server.client()
            status, page, _ = client.request("GET", "/")
            client.close()
            self.assertEqual(status, 200)
            self.run_walkthrough(server, html.unescape(re.search(r"<pre>(.*)</pre>", page, re.S)[1]))
        finally:
            self.assertEqual(server.close(), 0)

    @unittest.skipUnless(shutil.which("curl"), "curl is not installed")
    def test_run_sh_walkthrough(self):
        with open(os.path.join(os.path.dirname(__file__), "../../scripts/run.sh")) as f:
            text = re.search(r"<<'TEXT'\n(.*)\nTEXT\n", f.read(), re.S)[1]
        commands = "\n".join(line.strip() for line in text.splitlines()
                              if line.strip().startswith(("T=", "curl")))
        server = Server(demo=True)
        try:
            self.run_walkthrough(server, commands)
        finally:
            self.assertEqual(server.close(), 0)


class IdempotencyKeyTest(unittest.TestCase):
    """Idempotency-Key: 1-64 printable ASCII characters (0x21-0x7E); anything else is a 400."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.c = cls.server.client()
        create_event(cls.c, "ev-keys", (100,), limit=10)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        assert cls.server.close() == 0

    def buy_with_key(self, key, customer):
        body = b'{"category":"cat0","quantity":1}'
        headers = [("Authorization", b"Bearer " + token(customer).encode()),
                   ("Content-Type", b"application/json"), ("Idempotency-Key", key)]
        status, _, answer = raw_request(
            self.server.port, request_bytes("POST", b"/v1/events/ev-keys/purchases", headers, body))
        return status, json.loads(answer)

    def test_control_characters_and_non_ascii_are_refused(self):
        for n, key in enumerate([b"ab\x01cd", b"ab\tcd", b"ab cd", b"ab\x7fcd", b"ab\x80cd",
                                 b"\xc3\xa9t\xc3\xa9", b"abcd\x1b", b"k" * 65]):
            with self.subTest(key=key):
                status, answer = self.buy_with_key(key, f"k-bad{n}")
                assert_error(self, status, answer, 400, "invalid_request")

    def test_printable_keys_are_kept_whole(self):
        for n, key in enumerate([b"k", b"k" * 64, b"!~\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}"]):
            with self.subTest(key=key):
                status, first = self.buy_with_key(key, f"k-ok{n}")
                self.assertEqual(status, 202, first)
                status, again = self.buy_with_key(key, f"k-ok{n}")
                self.assertEqual((status, again["id"]), (200, first["id"]))

    def test_nul_in_a_key_is_refused_not_truncated(self):
        """"ab<NUL>cd" must not be taken for the key "ab" (C strings end at the NUL): the HTTP
        layer refuses a header with a NUL (400), before the API layer could be misled."""
        status, first = self.buy_with_key(b"ab", "k-nul")
        self.assertEqual(status, 202, first)
        status, answer = self.buy_with_key(b"ab\x00cd", "k-nul")
        assert_error(self, status, answer, 400, "invalid_request")


class EventLimitTest(unittest.TestCase):
    def test_an_event_beyond_max_events_is_a_conflict(self):
        """409 conflict, not 503 (which API.md keeps for a log that cannot be reached)."""
        server = Server("--max-events", "2")
        try:
            c = server.client()
            create_event(c, "ev-limit-a")
            create_event(c, "ev-limit-b")
            body = {"id": "ev-limit-c", "categories": [{"id": "a", "capacity": 1}]}
            status, answer, _ = c.request("POST", "/v1/events", body, ADMIN())
            assert_error(self, status, answer, 409, "conflict")
            self.assertIn("--max-events", answer["error"]["message"])
            self.assertEqual(c.request("GET", "/v1/events/ev-limit-c")[0], 404)
            create_event(c, "ev-limit-a")  # repeating a known event still answers 200
            c.close()
        finally:
            self.assertEqual(server.close(), 0)


class ModeRoutesTest(unittest.TestCase):
    def test_demo_and_challenge_routes_exist_only_in_their_mode(self):
        server = Server("--challenge", "on", demo=False)
        try:
            for method, path, want in [("POST", b"/v1/demo/token", 404),
                                       ("GET", b"/v1/demo/token", 404),
                                       ("GET", b"/v1/challenge", 200),
                                       ("HEAD", b"/v1/challenge", 200)]:
                with self.subTest(method=method, path=path):
                    body = b'{"customer":"c1"}' if method == "POST" else b""
                    headers = [("Content-Type", b"application/json")] if body else []
                    status, answer_headers, _ = raw_request(
                        server.port, request_bytes(method, path, headers, body))
                    self.assertEqual(status, want)
                    self.assertNotIn("allow", answer_headers)
            status, headers, _ = raw_request(server.port, request_bytes("POST", b"/v1/challenge"))
            self.assertEqual((status, headers.get("allow")), (405, "GET, HEAD"))
        finally:
            self.assertEqual(server.close(), 0)


class WaitersFullTest(unittest.TestCase):
    def test_long_poll_beyond_max_waiters_is_a_clean_503(self):
        """The answer used to copy 79 bytes out of a 74-byte string: garbage after the JSON."""
        server = Server("--max-waiters", "1")
        try:
            c = server.client()
            create_event(c, "ev-waiters", (5,))
            _, p, _ = buy(c, "ev-waiters", "w1")
            wait_held(c, p["id"], "w1")
            path = f"/v1/purchases/{p['id']}?wait=3&status=held"
            polling, second = server.client(), server.client()
            first = threading.Thread(target=lambda: polling.request("GET", path, tok=token("w1")))
            first.start()
            time.sleep(0.5)  # the first long-poll holds the only waiter slot
            status, answer, _ = second.request("GET", path, tok=token("w1"))
            assert_error(self, status, answer, 503, "unavailable")
            first.join(timeout=10)
            for client in (c, polling, second):
                client.close()
        finally:
            self.assertEqual(server.close(), 0)


if __name__ == "__main__":
    unittest.main()
