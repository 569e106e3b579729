"""Bad input is refused, never truncated (issue 13): a hostile client's bodies, ids and tokens
against a real `catraca serve`. cJSON decodes \\u0000 into a C string, which ends there, so
each of these once read as a shorter, valid value."""
import hashlib
import hmac
import json
import time
import unittest

from catraca import (ADMIN, SECRET, Server, b64url, buy, create_event, demo_server, token,
                     wait_status)


def assert_error(test, status, answer, want_status, want_code):
    test.assertEqual(status, want_status, answer)
    test.assertIsInstance(answer, dict, answer)
    test.assertEqual(answer["error"]["code"], want_code, answer)


def raw_token(header, claims):
    """A correctly signed token over any header and claims bytes (the issuer's own words)."""
    signing = b64url(header) + "." + b64url(claims)
    return signing + "." + b64url(hmac.new(SECRET.encode(), signing.encode(), hashlib.sha256).digest())


def event_body(event_id, name="Night", category_name="Pista", **category):
    return {"id": event_id, "name": name,
            "categories": [dict({"id": "pista", "name": category_name, "capacity": 5}, **category)]}


class StrictInputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.c = cls.server.client()
        create_event(cls.c, "ev-strict", (100, 100), limit=2)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        code = cls.server.close()
        assert code == 0, f"graceful stop exit code {code}"

    def post_purchase(self, raw, customer="s1"):
        return self.c.request("POST", "/v1/events/ev-strict/purchases", raw=raw,
                              tok=token(customer))[:2]

    def post_event(self, body=None, raw=None):
        return self.c.request("POST", "/v1/events", body, ADMIN(), raw=raw)[:2]

    def test_category_with_nul_is_refused_not_truncated(self):
        status, answer = self.post_purchase(b'{"category":"cat0\\u0000x","quantity":1}')
        assert_error(self, status, answer, 400, "invalid_request")

    def test_event_id_with_nul_is_refused_not_truncated(self):
        status, answer = self.post_event(raw=b'{"id":"evx\\u0000y","categories":'
                                             b'[{"id":"pista","capacity":5}]}')
        assert_error(self, status, answer, 400, "invalid_request")
        assert_error(self, *self.c.request("GET", "/v1/events/evx")[:2], 404, "not_found")

    def test_token_with_nul_is_refused_not_truncated(self):
        status, p, _ = buy(self.c, "ev-strict", "alice")
        self.assertEqual(status, 202, p)
        path = f"/v1/purchases/{p['id']}"
        self.assertEqual(self.c.request("GET", path, tok=token("alice"))[0], 200)
        forged = [token("alice\u0000x"), token("alice\u0001"),
                  token("mallory", role="admin\u0000x"),
                  token("alice", header={"alg": "HS256\u0000x", "typ": "JWT"}),
                  token("alice", header={"alg": "HS256", "typ": "JWT\u0000x"}),
                  raw_token(b'{"alg":"HS256"}', b'{"sub":"alice","exp":%d} x' % (time.time() + 60)),
                  raw_token(b'{"alg":"HS256"}',
                            b'{"sub":"mallory","sub":"alice","exp":%d}' % (time.time() + 60))]
        for forgery in forged:
            status, answer, _ = self.c.request("GET", path, tok=forgery)
            assert_error(self, status, answer, 401, "unauthorized")

    def test_body_is_exactly_one_object(self):
        good = b'{"category":"cat0","quantity":1}'
        for raw in (good + b" x", good + good, good + b"\x00", good + b"\x0b", b"\xef\xbb\xbf" + good,
                    b"[" + good + b"]", b'"cat0"', b""):
            assert_error(self, *self.post_purchase(raw), 400, "invalid_request")
        status, answer = self.post_purchase(good + b" \r\n\t")
        self.assertEqual(status, 202, answer)

    def test_member_given_twice_is_refused(self):
        raw = b'{"category":"cat1","category":"cat0","quantity":1}'
        assert_error(self, *self.post_purchase(raw), 400, "invalid_request")
        raw = b'{"category\\u0000x":"cat1","category":"cat0","quantity":1}'
        assert_error(self, *self.post_purchase(raw), 400, "invalid_request")

    def test_names_refuse_control_characters_and_bad_utf8(self):
        for i, name in enumerate(["a\u0000b", "a\u0001b", "a\nb", "a\tb", "a\u001fb", "a\u007fb"]):
            status, answer = self.post_event(event_body(f"ev-ctl-{i}", name=name))
            assert_error(self, status, answer, 400, "invalid_request")
            status, answer = self.post_event(event_body(f"ev-ctl-{i}", category_name=name))
            assert_error(self, status, answer, 400, "invalid_request")
        for i, raw_name in enumerate([b"a\xffb", b"a\xc0\xafb", b"a\xed\xa0\x80b", b"a\x7fb",
                                      b"a\\ud800b"]):
            raw = b'{"id":"ev-utf8-%d","name":"%s","categories":[{"id":"a","capacity":1}]}' % (
                i, raw_name)
            assert_error(self, *self.post_event(raw=raw), 400, "invalid_request")
        for i, bad in enumerate([b"a\\u0000b", b"a\\u0001b", b"a\x01b", b"a\x7fb"]):
            raw = b'{"id":"ev-cat-%d","categories":[{"id":"a","name":"%s","capacity":1}]}' % (
                i, bad)
            assert_error(self, *self.post_event(raw=raw), 400, "invalid_request")

    def test_name_length_counts_characters(self):
        # 32 characters of 4 bytes each is the longest name: 128 bytes, the engine's storage.
        for i, unit in enumerate(["a", "\u00e9", "\u2014", "\U0001f3b8"]):
            body = event_body(f"ev-name-{i}", name=unit * 32, category_name=unit * 32)
            status, answer = self.post_event(body)
            self.assertEqual(status, 201, answer)
            status, got, _ = self.c.request("GET", f"/v1/events/ev-name-{i}")
            self.assertEqual((got["name"], got["categories"][0]["name"]), (unit * 32, unit * 32))
            status, answer = self.post_event(event_body(f"ev-long-{i}", name=unit * 33))
            assert_error(self, status, answer, 400, "invalid_request")
            status, answer = self.post_event(event_body(f"ev-long-{i}", category_name=unit * 33))
            assert_error(self, status, answer, 400, "invalid_request")

    def test_price_bound_and_distinct_category_ids(self):
        status, answer = self.post_event(event_body("ev-price", price_cents=2 ** 50))
        self.assertEqual(status, 201, answer)
        self.assertEqual(answer["categories"][0]["price_cents"], 2 ** 50)
        for price in (2 ** 50 + 1, -1, 1.5):
            status, answer = self.post_event(event_body("ev-price-bad", price_cents=price))
            assert_error(self, status, answer, 400, "invalid_request")
        twice = {"id": "ev-twice", "categories": [{"id": "a", "capacity": 1},
                                                  {"id": "a", "capacity": 2}]}
        assert_error(self, *self.post_event(twice), 400, "invalid_request")

    def test_quantity_above_the_events_limit(self):
        status, answer = self.post_purchase(b'{"category":"cat0","quantity":3}')
        assert_error(self, status, answer, 400, "invalid_request")
        status, p = self.post_purchase(b'{"category":"cat0","quantity":2}', customer="s-limit")
        self.assertEqual(status, 202, p)
        self.assertEqual(wait_status(self.c, p["id"], "s-limit", lambda s: s != "queued")["status"],
                         "held")

    def test_purchase_id_is_its_exact_text(self):
        status, p, _ = buy(self.c, "ev-strict", "bob")
        self.assertEqual(status, 202, p)
        for path in (f"/v1/purchases/{p['id']}junk", f"/v1/purchases/{p['id'][:-1]}",
                     f"/v1/purchases/{p['id'].lower()}", f"/v1/purchases/{p['id']}%41"):
            status, answer, _ = self.c.request("GET", path, tok=token("bob"))
            assert_error(self, status, answer, 404, "not_found")

    # The HTTP layer never decodes the path; an escape of a NUL or control character is refused
    # there (400), so nothing after it can be cut short (libmicrohttpd decoded %00 in place).
    def test_purchase_path_with_nul_is_refused(self):
        status, p, _ = buy(self.c, "ev-strict", "carol")
        self.assertEqual(status, 202, p)
        status, answer, _ = self.c.request("GET", f"/v1/purchases/{p['id']}%00junk",
                                           tok=token("carol"))
        assert_error(self, status, answer, 400, "invalid_request")
        status, answer, _ = self.c.request("GET", f"/v1/purchases/{p['id']}%01",
                                           tok=token("carol"))
        assert_error(self, status, answer, 400, "invalid_request")

    def test_event_path_with_nul_is_refused(self):
        status, answer, _ = self.c.request("GET", "/v1/events/ev-strict%00junk")
        assert_error(self, status, answer, 400, "invalid_request")
        status, answer, _ = self.c.request("POST", "/v1/events/ev-strict%00junk/purchases",
                                           {"category": "cat0", "quantity": 1}, token("dave"))
        assert_error(self, status, answer, 400, "invalid_request")

    def test_demo_token_body_is_read_strictly(self):
        c = demo_server().client()
        for raw in (b'{"customer":"c1\\u0000x"}', b'{"customer":"a","customer":"b"}',
                    b'{"customer":"c1"} x', b'{"customer":"c1","role":"admin\\n"}'):
            status, answer, _ = c.request("POST", "/v1/demo/token", raw=raw)
            assert_error(self, status, answer, 400, "invalid_request")
        status, answer, _ = c.request("POST", "/v1/demo/token", {"customer": "c1"})
        self.assertEqual(status, 200, answer)


if __name__ == "__main__":
    unittest.main()
