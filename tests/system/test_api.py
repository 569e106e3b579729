"""Contract tests of API.md against a real `catraca serve` (embedded mode), or with
CATRACA_MODE=distributed against `catraca gateway` x2 + `catraca worker` x2 (on Redis, or on
Apache Kafka with CATRACA_LOG=kafka as well)."""
import base64
import os
import hashlib
import json
import shutil
import subprocess
import threading
import socket
import time
import unittest

from catraca import (ADMIN, PAYMENTS, FINAL, Client, Server, buy, create_event, seq_key, token,
                     wait_status)

IS_KAFKA = (os.environ.get("CATRACA_MODE") == "distributed" and
            os.environ.get("CATRACA_LOG") == "kafka")
if os.environ.get("CATRACA_MODE") == "distributed":
    # The same contract against 2 gateways + 2 workers on PostgreSQL and a log: Redis, or
    # Apache Kafka with CATRACA_LOG=kafka (one broker, replication factor 1).
    import functools
    from cluster import Cluster
    Server = functools.partial(Cluster, log=os.environ.get("CATRACA_LOG", "redis"))  # noqa: F811


def assert_error(test, status, answer, want_status, want_code):
    test.assertEqual(status, want_status, answer)
    test.assertIsInstance(answer, dict, answer)
    test.assertEqual(set(answer["error"]), {"code", "message"})
    test.assertEqual(answer["error"]["code"], want_code)


class ApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.c = cls.server.client()

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        code = cls.server.close()
        assert code == 0, f"graceful stop exit code {code}"

    def test_health_ready_metrics(self):
        status, answer, _ = self.c.request("GET", "/healthz")
        self.assertEqual((status, answer), (200, {"status": "ok"}))
        status, _, _ = self.c.request("GET", "/readyz")
        self.assertEqual(status, 200)
        status, text, headers = self.c.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn("catraca_invariant_violations_total 0", text)
        self.assertTrue(headers["content-type"].startswith("text/plain"))
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool (Debian package prometheus) is not installed")
        check = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                               capture_output=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_event_create_repeat_conflict(self):
        body = {"id": "ev-crud", "name": "Day 1", "hold_seconds": 600, "per_customer_limit": 4,
                "categories": [{"id": "pista", "name": "Pista", "price_cents": 79500, "capacity": 80}]}
        status, ev, _ = self.c.request("POST", "/v1/events", body, ADMIN())
        self.assertEqual(status, 201, ev)
        self.assertEqual(ev["state"], "open")
        self.assertEqual(ev["categories"][0]["available"], 80)
        self.assertEqual(ev["queue"]["pending"], 0)
        status, again, _ = self.c.request("POST", "/v1/events", body, ADMIN())
        self.assertEqual(status, 200, again)
        body["categories"][0]["capacity"] = 81
        assert_error(self, *self.c.request("POST", "/v1/events", body, ADMIN())[:2], 409, "conflict")
        status, got, _ = self.c.request("GET", "/v1/events/ev-crud")
        self.assertEqual(status, 200)
        self.assertEqual(got["categories"][0], {"id": "pista", "name": "Pista", "price_cents": 79500,
                                                "capacity": 80, "available": 80, "held": 0,
                                                "sold": 0, "waiting": 0})
        status, listed, _ = self.c.request("GET", "/v1/events")
        self.assertIn("ev-crud", [e["id"] for e in listed["events"]])
        assert_error(self, *self.c.request("GET", "/v1/events/nope")[:2], 404, "not_found")

    def test_event_validation_and_roles(self):
        bad = [{"id": "x y", "categories": [{"id": "a", "capacity": 1}]},
               {"id": "ok", "categories": []},
               {"id": "ok", "categories": [{"id": "a", "capacity": 0}]},
               {"id": "ok", "hold_seconds": 0, "categories": [{"id": "a", "capacity": 1}]},
               {"id": "ok", "state": "maybe", "categories": [{"id": "a", "capacity": 1}]}]
        for body in bad:
            assert_error(self, *self.c.request("POST", "/v1/events", body, ADMIN())[:2], 400,
                         "invalid_request")
        assert_error(self, *self.c.request("POST", "/v1/events", raw=b"{not json", tok=ADMIN())[:2],
                     400, "invalid_request")
        good = {"id": "ev-roles", "categories": [{"id": "a", "capacity": 1}]}
        assert_error(self, *self.c.request("POST", "/v1/events", good)[:2], 401, "unauthorized")
        assert_error(self, *self.c.request("POST", "/v1/events", good, token("b1"))[:2], 403,
                     "forbidden")
        assert_error(self, *self.c.request("POST", "/v1/events", good, PAYMENTS())[:2], 403,
                     "forbidden")

    def test_state_changes(self):
        create_event(self.c, "ev-state", (5,))
        status, ev, _ = self.c.request("POST", "/v1/events/ev-state/state", {"state": "paused"}, ADMIN())
        self.assertEqual((status, ev["state"]), (200, "paused"))
        status, p, _ = buy(self.c, "ev-state", "s1")
        self.assertEqual(status, 202)
        done = wait_status(self.c, p["id"], "s1", lambda s: s != "queued")
        self.assertEqual((done["status"], done["reason"]), ("rejected", "sale_closed"))
        assert_error(self, *self.c.request("POST", "/v1/events/ev-state/state", {"state": "x"},
                                           ADMIN())[:2], 400, "invalid_request")
        assert_error(self, *self.c.request("POST", "/v1/events/ev-state/state", {"state": "open"},
                                           token("s1"))[:2], 403, "forbidden")
        assert_error(self, *self.c.request("POST", "/v1/events/none/state", {"state": "open"},
                                           ADMIN())[:2], 404, "not_found")

    def test_purchase_lifecycle(self):
        create_event(self.c, "ev-life", (3,), hold_seconds=600, limit=2)
        status, p, headers = buy(self.c, "ev-life", "alice", quantity=2)
        self.assertEqual(status, 202, p)
        self.assertEqual(headers["location"], "/v1/purchases/" + p["id"])
        self.assertEqual(p["status"], "queued")
        self.assertRegex(p["seq"], r"^\d+-\d+$")
        self.assertRegex(p["id"], r"^p_[0-9A-Z]{13}$")
        held = wait_status(self.c, p["id"], "alice", lambda s: s != "queued")
        self.assertEqual(held["status"], "held")
        self.assertEqual(held["customer"], "alice")
        self.assertRegex(held["hold_expires_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        # the owner, payments and admin may read it; another buyer may not
        self.assertEqual(self.c.request("GET", f"/v1/purchases/{p['id']}", tok=token("alice"))[0], 200)
        self.assertEqual(self.c.request("GET", f"/v1/purchases/{p['id']}", tok=PAYMENTS())[0], 200)
        assert_error(self, *self.c.request("GET", f"/v1/purchases/{p['id']}", tok=token("bob"))[:2],
                     403, "forbidden")
        assert_error(self, *self.c.request("GET", "/v1/purchases/p_0000000000001", tok=ADMIN())[:2],
                     404, "not_found")
        # confirm: buyer refused, payments ok, same payment_ref repeats
        assert_error(self, *self.c.request("POST", f"/v1/purchases/{p['id']}/confirm",
                                           {"payment_ref": "psp_1"}, token("alice"))[:2], 403,
                     "forbidden")
        status, paid, _ = self.c.request("POST", f"/v1/purchases/{p['id']}/confirm",
                                         {"payment_ref": "psp_1"}, PAYMENTS())
        self.assertEqual((status, paid["status"]), (200, "confirmed"), paid)
        self.assertEqual(len(paid["tickets"]), 2)
        self.assertEqual(len({t["code"] for t in paid["tickets"]}), 2)
        status, again, _ = self.c.request("POST", f"/v1/purchases/{p['id']}/confirm",
                                          {"payment_ref": "psp_1"}, PAYMENTS())
        self.assertEqual((status, again["tickets"]), (200, paid["tickets"]))
        assert_error(self, *self.c.request("POST", f"/v1/purchases/{p['id']}/confirm", {},
                                           PAYMENTS())[:2], 400, "invalid_request")
        # the limit of 2 per customer
        status, p2, _ = buy(self.c, "ev-life", "alice", quantity=1)
        done = wait_status(self.c, p2["id"], "alice", lambda s: s != "queued")
        self.assertEqual((done["status"], done["reason"]), ("rejected", "limit_exceeded"))
        status, ev, _ = self.c.request("GET", "/v1/events/ev-life")
        self.assertEqual(ev["categories"][0]["sold"], 2)
        self.assertEqual(ev["categories"][0]["available"], 1)

    def test_purchase_validation(self):
        create_event(self.c, "ev-valid", (3,), limit=2)
        for body in ({"category": "cat0", "quantity": 0}, {"category": "cat0", "quantity": 3},
                     {"category": "cat0", "quantity": 1.5}, {"category": "cat0", "quantity": "1"},
                     {"quantity": 1}, {"category": "bad id!", "quantity": 1}):
            status, answer, _ = self.c.request("POST", "/v1/events/ev-valid/purchases", body,
                                               token("v1"))
            assert_error(self, status, answer, 400, "invalid_request")
        assert_error(self, *buy(self.c, "nope", "v1")[:2], 404, "not_found")
        status, answer, _ = self.c.request("POST", "/v1/events/ev-valid/purchases",
                                           {"category": "cat0", "quantity": 1})
        assert_error(self, status, answer, 401, "unauthorized")
        status, p, _ = buy(self.c, "ev-valid", "v1", category="nonexistent")
        self.assertEqual(status, 202)
        done = wait_status(self.c, p["id"], "v1", lambda s: s != "queued")
        self.assertEqual((done["status"], done["reason"]), ("rejected", "unknown_category"))

    def test_idempotency(self):
        if IS_KAFKA:
            return self.check_idempotency_over_kafka()
        create_event(self.c, "ev-idem", (5,))
        status, first, _ = buy(self.c, "ev-idem", "ida", quantity=1, key="k-1")
        self.assertEqual(status, 202)
        status, second, _ = buy(self.c, "ev-idem", "ida", quantity=1, key="k-1")
        self.assertEqual(status, 200, second)
        self.assertEqual((second["id"], second["seq"]), (first["id"], first["seq"]))
        status, other, _ = buy(self.c, "ev-idem", "ida", quantity=2, key="k-1")
        assert_error(self, status, other, 422, "invalid_request")
        status, theirs, _ = buy(self.c, "ev-idem", "idb", quantity=1, key="k-1")
        self.assertEqual(status, 202)
        self.assertNotEqual(theirs["id"], first["id"])
        self.assertEqual(self.c.request("GET", "/v1/events/ev-idem")[1]["categories"][0]["capacity"], 5)

    def check_idempotency_over_kafka(self):
        """API.md's idempotency as docs/DEPLOY.md ("Kafka") narrows it: Kafka cannot check a key
        atomically with an append, so the gateway that appended checks it at once, and every
        other gateway once the first purchase is committed (its id is derived from the key)."""
        took, other = self.c.clients[0], self.c.clients[1]
        create_event(took, "ev-idem", (5,))
        status, first, _ = buy(took, "ev-idem", "ida", quantity=1, key="k-1")
        self.assertEqual(status, 202)
        status, second, _ = buy(took, "ev-idem", "ida", quantity=1, key="k-1")
        self.assertEqual(status, 200, second)
        self.assertEqual((second["id"], second["seq"]), (first["id"], first["seq"]))
        status, reused, _ = buy(took, "ev-idem", "ida", quantity=2, key="k-1")
        assert_error(self, status, reused, 422, "invalid_request")
        wait_status(took, first["id"], "ida", lambda s: s != "queued")
        status, elsewhere, _ = buy(other, "ev-idem", "ida", quantity=1, key="k-1")
        self.assertEqual(status, 200, elsewhere)
        self.assertEqual((elsewhere["id"], elsewhere["seq"]), (first["id"], first["seq"]))
        status, theirs, _ = buy(other, "ev-idem", "idb", quantity=1, key="k-1")
        self.assertEqual(status, 202)
        self.assertNotEqual(theirs["id"], first["id"])
        self.assertEqual(took.request("GET", "/v1/events/ev-idem")[1]["categories"][0]["capacity"], 5)

    def test_wait_line_served_on_expiry_without_traffic(self):
        # 3 s, not 1: the second buyer must be seen waiting before the first hold runs out, and
        # over Kafka under load a decision and the read of it took more than 1 s (seen).
        create_event(self.c, "ev-expiry", (1,), hold_seconds=3)
        _, first, _ = buy(self.c, "ev-expiry", "e1")
        _, second, _ = buy(self.c, "ev-expiry", "e2")
        waiting = wait_status(self.c, second["id"], "e2", lambda s: s != "queued")
        self.assertEqual((waiting["status"], waiting["position"]), ("waiting", 1))
        started = time.time()
        status, held, _ = self.c.request("GET", f"/v1/purchases/{second['id']}?wait=30&status=waiting",
                                         tok=token("e2"))
        self.assertEqual((status, held["status"]), (200, "held"))
        self.assertLess(time.time() - started, 10)
        self.assertEqual(wait_status(self.c, first["id"], "e1", lambda s: s in FINAL)["status"],
                         "expired")
        status, late, _ = self.c.request("POST", f"/v1/purchases/{first['id']}/confirm",
                                         {"payment_ref": "late"}, PAYMENTS())
        self.assertEqual(status, 409, late)
        self.assertEqual(late["error"]["code"], "conflict")
        self.assertEqual(late["purchase"]["status"], "expired")
        # A late payment is recorded for refund, never a ticket (issue 16).
        self.assertEqual(late["error"]["reason"], "refund_due")
        self.assertEqual((late["purchase"]["refund_due"], late["purchase"]["payment_ref"]),
                         (True, "late"))
        self.assertEqual(late["purchase"]["tickets"], [])
        status, again, _ = self.c.request("POST", f"/v1/purchases/{first['id']}/confirm",
                                          {"payment_ref": "late"}, PAYMENTS())
        self.assertEqual((status, again["error"]["reason"]), (409, "refund_due"))
        status, other, _ = self.c.request("POST", f"/v1/purchases/{first['id']}/confirm",
                                          {"payment_ref": "other"}, PAYMENTS())
        self.assertEqual((status, other["purchase"]["payment_ref"]), (409, "late"))
        status, refunds, _ = self.c.request("GET", "/v1/events/ev-expiry/refunds", tok=PAYMENTS())
        self.assertEqual(status, 200, refunds)
        self.assertEqual([(p["id"], p["payment_ref"]) for p in refunds["purchases"]],
                         [(first["id"], "late")])
        self.assertFalse(refunds["more"])
        assert_error(self, *self.c.request("GET", "/v1/events/ev-expiry/refunds",
                                           tok=token("e1"))[:2], 403, "forbidden")
        event = self.c.request("GET", "/v1/events/ev-expiry")[1]
        self.assertEqual(event["categories"][0]["sold"], 0)

    def test_line_policies_with_mixed_quantities(self):
        """Issue 16: a later, smaller request that would fit never passes the line; a bounded
        line turns away with line_full (and a retry hint), an unbounded one keeps waiting."""
        # Over Kafka a decision takes ~100 ms more and a GET may wait for the store: a 2 s hold
        # could run out before a's status is first read (seen in CI under load).
        hold = 6 if IS_KAFKA else 2
        for policy in ("unbounded", "bounded"):
            ev = f"ev-mixed-{policy}"
            created = create_event(self.c, ev, (5,), hold_seconds=hold, limit=4, line_policy=policy)
            self.assertEqual(created["line_policy"], policy)
            _, a, _ = buy(self.c, ev, f"{policy}-a", quantity=4)
            _, b, _ = buy(self.c, ev, f"{policy}-b", quantity=3)
            _, c, _ = buy(self.c, ev, f"{policy}-c", quantity=1)
            _, d, _ = buy(self.c, ev, f"{policy}-d", quantity=2)
            held = wait_status(self.c, a["id"], f"{policy}-a", lambda s: s != "queued")
            self.assertEqual(held["status"], "held")
            small = wait_status(self.c, c["id"], f"{policy}-c", lambda s: s != "queued")
            # One ticket is available and c wants one, but b is ahead: c waits its turn.
            self.assertEqual((small["status"], small["position"], small["ahead"]),
                             ("waiting", 2, 3), small)
            self.assertTrue(0 <= small["estimate"]["chance"] <= 1, small)
            self.assertIn("wait_seconds", small["estimate"])
            last = wait_status(self.c, d["id"], f"{policy}-d", lambda s: s != "queued")
            if policy == "unbounded":
                self.assertEqual((last["status"], last["ahead"]), ("waiting", 4), last)
            else:
                self.assertEqual((last["status"], last["reason"]), ("rejected", "line_full"), last)
                # The time left on a's hold when d was decided, in whole seconds: the hold itself
                # when both were decided together (one batch), a second less at most over Kafka.
                self.assertIn(last["retry_after_seconds"],
                              (hold - 1, hold) if IS_KAFKA else (hold,), last)
            self.assertEqual(self.c.request("GET", f"/v1/events/{ev}")[1]["line_policy"], policy)
            # a's hold runs out: b, then c, in arrival order.
            self.assertEqual(wait_status(self.c, b["id"], f"{policy}-b",
                                         lambda s: s != "waiting")["status"], "held")
            self.assertEqual(wait_status(self.c, c["id"], f"{policy}-c",
                                         lambda s: s != "waiting")["status"], "held")

    def test_sold_out_only_when_it_is_true(self):
        create_event(self.c, "ev-true", (3,), limit=2)
        _, x, _ = buy(self.c, "ev-true", "t-x", quantity=2)
        wait_status(self.c, x["id"], "t-x", lambda s: s == "held")
        status, _, _ = self.c.request("POST", f"/v1/purchases/{x['id']}/confirm",
                                      {"payment_ref": "px"}, PAYMENTS())
        self.assertEqual(status, 200)
        _, y, _ = buy(self.c, "ev-true", "t-y", quantity=2)
        rejected = wait_status(self.c, y["id"], "t-y", lambda s: s != "queued")
        self.assertEqual((rejected["status"], rejected["reason"]), ("rejected", "sold_out"))
        self.assertIsNone(rejected["retry_after_seconds"])
        _, z, _ = buy(self.c, "ev-true", "t-z", quantity=1)  # the last ticket is still there
        self.assertEqual(wait_status(self.c, z["id"], "t-z", lambda s: s != "queued")["status"],
                         "held")

    def test_available_again_at(self):
        create_event(self.c, "ev-again", (1,), hold_seconds=1)
        category = self.c.request("GET", "/v1/events/ev-again")[1]["categories"][0]
        self.assertNotIn("available_again_at", category)
        _, p, _ = buy(self.c, "ev-again", "ag")
        self.assertEqual(wait_status(self.c, p["id"], "ag", lambda s: s in FINAL)["status"],
                         "expired")
        category = self.c.request("GET", "/v1/events/ev-again")[1]["categories"][0]
        self.assertRegex(category["available_again_at"], r"^\d{4}-\d\d-\d\dT.*Z$")
        self.assertEqual(category["available"], 1)

    def test_position_moves_with_the_line(self):
        create_event(self.c, "ev-line", (3,), limit=2)
        _, big, _ = buy(self.c, "ev-line", "l1", quantity=2)
        _, small, _ = buy(self.c, "ev-line", "l0", quantity=1)
        _, second, _ = buy(self.c, "ev-line", "l2", quantity=2)
        _, third, _ = buy(self.c, "ev-line", "l3", quantity=1)
        self.assertEqual(wait_status(self.c, second["id"], "l2", lambda s: s != "queued")["position"], 1)
        self.assertEqual(wait_status(self.c, third["id"], "l3", lambda s: s != "queued")["position"], 2)
        status, _, _ = self.c.request("DELETE", f"/v1/purchases/{big['id']}", tok=token("l1"))
        self.assertEqual(status, 200)
        self.assertEqual(wait_status(self.c, second["id"], "l2", lambda s: s != "waiting")["status"],
                         "held")
        status, moved, _ = self.c.request("GET", f"/v1/purchases/{third['id']}", tok=token("l3"))
        self.assertEqual((moved["status"], moved["position"]), ("waiting", 1))

    def test_long_poll_times_out_with_current_state(self):
        create_event(self.c, "ev-poll", (1,))
        _, p, _ = buy(self.c, "ev-poll", "lp")
        wait_status(self.c, p["id"], "lp", lambda s: s == "held")
        started = time.time()
        status, same, _ = self.c.request("GET", f"/v1/purchases/{p['id']}?wait=1&status=held",
                                         tok=token("lp"))
        self.assertEqual((status, same["status"]), (200, "held"))
        self.assertGreaterEqual(time.time() - started, 0.9)

    def test_cancel(self):
        create_event(self.c, "ev-cancel", (1,))
        _, p, _ = buy(self.c, "ev-cancel", "ca")
        _, q, _ = buy(self.c, "ev-cancel", "cb")
        _, r, _ = buy(self.c, "ev-cancel", "cc")
        wait_status(self.c, p["id"], "ca", lambda s: s == "held")
        wait_status(self.c, r["id"], "cc", lambda s: s == "waiting")
        assert_error(self, *self.c.request("DELETE", f"/v1/purchases/{p['id']}", tok=token("cb"))[:2],
                     403, "forbidden")
        # A waiting buyer leaves the line; the one behind moves up.
        status, left, _ = self.c.request("DELETE", f"/v1/purchases/{q['id']}", tok=token("cb"))
        self.assertEqual((status, left["status"]), (200, "cancelled"), left)
        status, again, _ = self.c.request("DELETE", f"/v1/purchases/{q['id']}", tok=token("cb"))
        self.assertEqual((status, again["status"]), (200, "cancelled"), again)
        moved = self.c.request("GET", f"/v1/purchases/{r['id']}", tok=token("cc"))[1]
        self.assertEqual((moved["position"], moved["ahead"]), (1, 0))
        status, cancelled, _ = self.c.request("DELETE", f"/v1/purchases/{p['id']}", tok=token("ca"))
        self.assertEqual((status, cancelled["status"]), (200, "cancelled"))
        # the tickets went to the one still waiting
        self.assertEqual(wait_status(self.c, r["id"], "cc", lambda s: s == "held")["status"], "held")
        status, answer, _ = self.c.request("DELETE", f"/v1/purchases/{r['id']}", tok=token("cb"))
        self.assertEqual(status, 403, answer)

    def test_server_sent_events(self):
        create_event(self.c, "ev-sse", (1,), hold_seconds=1)
        _, p, _ = buy(self.c, "ev-sse", "sse")
        wait_status(self.c, p["id"], "sse", lambda s: s == "held")
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=15)
        sock.sendall(f"GET /v1/purchases/{p['id']}/events HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {token('sse')}\r\n\r\n".encode())
        data, deadline = b"", time.time() + 15
        while time.time() < deadline and b'"expired"' not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
        self.assertIn(b"text/event-stream", data)
        events = [json.loads(line[6:]) for line in data.split(b"\n") if line.startswith(b"data: ")]
        self.assertEqual([e["status"] for e in events], ["held", "expired"])
        self.assertEqual(events[-1]["customer"], "sse")

    def test_jwt_attacks(self):
        create_event(self.c, "ev-jwt", (1,))
        path = "/v1/events/ev-jwt/purchases"
        body = {"category": "cat0", "quantity": 1}
        none_token = token("x", header={"alg": "none", "typ": "JWT"})
        attacks = [none_token, none_token.rsplit(".", 1)[0] + ".",
                   token("x", secret="another-key"), token("x", exp_in=-10),
                   token("x", claims={"sub": "x", "role": "buyer"}),
                   token("x", alg="HS512"), "garbage", "a.b.c", token("x") + "x"]
        for attack in attacks:
            status, answer, _ = self.c.request("POST", path, body, attack)
            assert_error(self, status, answer, 401, "unauthorized")
        status, answer, _ = self.c.request("POST", path, body, token("x", role="root"))
        assert_error(self, status, answer, 401, "unauthorized")

    def test_demo_token(self):
        server = Server(demo=True)
        try:
            c = Client(server.port)  # one gateway: each demo gateway draws its own secret
            status, answer, _ = c.request("POST", "/v1/demo/token", {"customer": "c42", "role": "buyer"})
            self.assertEqual(status, 200)
            header = json.loads(base64.urlsafe_b64decode(answer["token"].split(".")[0] + "=="))
            self.assertEqual(header["alg"], "HS256")
            assert_error(self, *c.request("POST", "/v1/demo/token", {"customer": "bad id"})[:2], 400,
                         "invalid_request")
            # The token is signed with the secret the demo drew for itself, and only with it.
            status, answer, _ = c.request("POST", "/v1/demo/token", {"customer": "c42", "role": "admin"})
            self.assertEqual(c.request("GET", "/v1/purchases/p-none", tok=answer["token"])[0], 404)
            self.assertEqual(c.request("GET", "/v1/purchases/p-none", tok=token("c42"))[0], 401)
        finally:
            server.close()

    def test_unknown_routes(self):
        assert_error(self, *self.c.request("GET", "/nope")[:2], 404, "not_found")
        status, answer, _ = self.c.request("PUT", "/v1/events")
        self.assertEqual(status, 405)
        self.assertEqual(answer["error"]["code"], "invalid_request")


class GracefulStopTest(unittest.TestCase):
    def test_sigterm_with_parked_requests(self):
        """SIGTERM answers parked long-polls and streams, then exits 0."""
        server = Server()
        c = server.client()
        create_event(c, "ev-stop", (1,))
        _, p, _ = buy(c, "ev-stop", "st")
        wait_status(c, p["id"], "st", lambda s: s == "held")
        answers = []

        def poll():
            answers.append(server.client().request(
                "GET", f"/v1/purchases/{p['id']}?wait=60&status=held", tok=token("st"))[:2])

        def stream():
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            sock.sendall(f"GET /v1/purchases/{p['id']}/events HTTP/1.1\r\nHost: x\r\n"
                         f"Authorization: Bearer {token('st')}\r\n\r\n".encode())
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            answers.append(("stream", data))

        threads = [threading.Thread(target=poll), threading.Thread(target=stream)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        started = time.time()
        self.assertEqual(server.close(), 0)
        self.assertLess(time.time() - started, 15)
        for t in threads:
            t.join(timeout=20)
        polled = [a for a in answers if a[0] != "stream"]
        self.assertEqual(polled[0][0], 200)
        self.assertEqual(polled[0][1]["status"], "held")
        streamed = [a for a in answers if a[0] == "stream"][0][1]
        self.assertIn(b'"status":"held"', streamed)


class DemoOffTest(unittest.TestCase):
    def test_demo_token_absent_without_demo(self):
        server = Server(demo=False)
        try:
            status, answer, _ = server.client().request("POST", "/v1/demo/token", {"customer": "c"})
            assert_error(self, status, answer, 404, "not_found")
        finally:
            server.close()


def solve(challenge):
    for number in range(challenge["maxnumber"] + 1):
        if hashlib.sha256(f"{challenge['salt']}{number}".encode()).hexdigest() == challenge["challenge"]:
            payload = {k: challenge[k] for k in ("algorithm", "challenge", "salt", "signature")}
            payload["number"] = number
            return base64.b64encode(json.dumps(payload).encode()).decode()
    raise AssertionError("unsolvable challenge")


class ChallengeTest(unittest.TestCase):
    def test_proof_of_work(self):
        server = Server("--challenge", "on", "--challenge-max-number", "2000")
        try:
            # One process: the set of used challenges is this server's (across gateways it
            # lives in Redis: test_shared_limits.py), so reuse is checked on one.
            c = Client(server.port)
            create_event(c, "ev-pow", (10,))
            assert_error(self, *buy(c, "ev-pow", "p1")[:2], 403, "challenge_required")
            status, challenge, _ = c.request("GET", "/v1/challenge")
            self.assertEqual(status, 200)
            self.assertEqual(challenge["algorithm"], "SHA-256")
            self.assertIn("?expires=", challenge["salt"])
            solution = solve(challenge)
            path = "/v1/events/ev-pow/purchases"
            body = {"category": "cat0", "quantity": 1}
            status, answer, _ = c.request("POST", path, body, token("p1"), {"X-Challenge": solution})
            self.assertEqual(status, 202, answer)
            status, answer, _ = c.request("POST", path, body, token("p2"), {"X-Challenge": solution})
            assert_error(self, status, answer, 403, "challenge_failed")  # reused
            forged = json.loads(base64.b64decode(solution))
            forged["number"] = (forged["number"] + 1) % 2001
            status, answer, _ = c.request("POST", path, body, token("p3"), {
                "X-Challenge": base64.b64encode(json.dumps(forged).encode()).decode()})
            assert_error(self, status, answer, 403, "challenge_failed")
            forged = dict(challenge, number=0, signature="0" * 64)
            status, answer, _ = c.request("POST", path, body, token("p4"), {
                "X-Challenge": base64.b64encode(json.dumps(forged).encode()).decode()})
            assert_error(self, status, answer, 403, "challenge_failed")
            status, answer, _ = c.request("POST", path, body, token("p5"), {"X-Challenge": "!!"})
            assert_error(self, status, answer, 403, "challenge_failed")
        finally:
            server.close()

    def test_challenge_off_by_default(self):
        server = Server()
        try:
            assert_error(self, *server.client().request("GET", "/v1/challenge")[:2], 404, "not_found")
        finally:
            server.close()


class RateLimitTest(unittest.TestCase):
    def test_customer_rate_limit(self):
        server = Server("--rate-customer", "1", "--rate-customer-burst", "2")
        try:
            c = Client(server.port)  # limits are per gateway process: talk to one
            create_event(c, "ev-rate", (100,))
            # Four at once: one after the other, a purchase that waits for its append (Kafka,
            # ASan, a loaded machine) can take a third of the second that refills a token.
            start = threading.Barrier(4)
            answers = [None] * 4

            def greedy(i):
                client = Client(server.port)
                start.wait(timeout=30)
                answers[i] = buy(client, "ev-rate", "greedy")

            threads = [threading.Thread(target=greedy, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            statuses = sorted(a[0] for a in answers)
            self.assertEqual(statuses, [202, 202, 429, 429])
            status, answer, headers = next(a for a in answers if a[0] == 429)
            assert_error(self, status, answer, 429, "rate_limited")
            self.assertGreaterEqual(int(headers["retry-after"]), 1)
            self.assertEqual(buy(c, "ev-rate", "patient")[0], 202)  # others unaffected
        finally:
            server.close()


if __name__ == "__main__":
    unittest.main()
