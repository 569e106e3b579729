"""Distributed mode: the rate limits and the spent challenges are shared by every gateway.

Two gateways on one Redis (cluster.py): a customer's bucket and an address's bucket are
one bucket whichever gateway is asked; a challenge solved and spent on gateway A is refused
on gateway B; with that Redis down a purchase is refused 503 JSON (fail closed), and the
next one after it is back is decided by the same limits.
"""
import base64
import hashlib
import json
import time
import unittest

from catraca import Client, create_event, token
from cluster import Cluster, Proc
from servers import Redis

PURCHASE = {"category": "cat0", "quantity": 1}


def solve(challenge):
    for number in range(challenge["maxnumber"] + 1):
        if hashlib.sha256(f"{challenge['salt']}{number}".encode()).hexdigest() == challenge["challenge"]:
            payload = {k: challenge[k] for k in ("algorithm", "challenge", "salt", "signature")}
            payload["number"] = number
            return base64.b64encode(json.dumps(payload).encode()).decode()
    raise AssertionError("unsolvable challenge")


def start_gateways(cluster, *extra, count=2):
    """Gateways of this test's own options (cluster.py's default ones turn the limits off)."""
    for i in range(count):
        cluster.gateways.append(Proc("gateway", cluster.gateway_args + list(extra), cluster.dir,
                                     f"limited{i}", rb"listening on http://127\.0\.0\.1:(\d+)"))
    return [Client(g.port) for g in cluster.gateways]


def metric(client, name):
    status, text, _ = client.request("GET", "/metrics")
    assert status == 200, status
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} missing from /metrics")


class SharedLimitsTest(unittest.TestCase):
    def test_rates_are_shared_and_fail_closed(self):
        cluster = Cluster(gateways=0)
        try:
            # Refill 1 a second, burst 3: 8 requests in well under a second allow 3 (4 if a
            # token refills meanwhile); per-gateway buckets would allow 6.
            a, b = start_gateways(cluster, "--rate-customer", "1", "--rate-customer-burst", "3",
                                  "--rate-ip", "1", "--rate-ip-burst", "5")
            create_event(a, "ev-shared", (100,), limit=1)
            path = "/v1/events/ev-shared/purchases"
            statuses = [(a if i % 2 == 0 else b).request("POST", path, PURCHASE, token("greedy"))
                        for i in range(8)]
            codes = [s[0] for s in statuses]
            self.assertIn(codes.count(202), (3, 4), codes)
            self.assertEqual(codes.count(202) + codes.count(429), 8, codes)
            refused = next(s for s in statuses if s[0] == 429)
            self.assertEqual(refused[1]["error"]["code"], "rate_limited")
            self.assertGreaterEqual(int(refused[2]["retry-after"]), 1)
            # The address's bucket (burst 5) is shared too: every request above came from
            # 127.0.0.1, so other customers now meet the per-IP limit on either gateway.
            others = [(b if i % 2 == 0 else a).request("POST", path, PURCHASE, token(f"o{i}"))[0]
                      for i in range(6)]
            self.assertIn(429, others, others)
            self.assertLessEqual(others.count(202), 3, others)

            # Redis down: refused 503 JSON by the limit check, never let through.
            before = metric(a, "catraca_shared_limits_unavailable_total")
            cluster.redis.stop()
            status, answer, _ = a.request("POST", path, PURCHASE, token("late"))
            self.assertEqual(status, 503, answer)
            self.assertEqual(answer["error"]["code"], "unavailable")
            self.assertEqual(metric(a, "catraca_shared_limits_unavailable_total"), before + 1)
            cluster.redis.start()  # the buckets are not in the AOF: they start full again
            down = metric(a, "catraca_shared_limits_unavailable_total")
            for attempt in range(20):  # the log's own connections may take a moment longer
                status, answer, _ = a.request("POST", path, PURCHASE, token(f"back{attempt}"))
                if status != 503:
                    break
                time.sleep(0.5)
            self.assertEqual(status, 202, answer)
            # The limit check itself reconnected at once (and loaded its script again).
            self.assertEqual(metric(a, "catraca_shared_limits_unavailable_total"), down)
        finally:
            code = cluster.close()
        self.assertEqual(code, 0, "a process exited non-zero (a sanitizer's report?)")

    def test_a_challenge_is_spent_once_across_gateways(self):
        cluster = Cluster(gateways=0)
        try:
            a, b = start_gateways(cluster, "--challenge", "on", "--challenge-max-number", "2000",
                                  "--rate-customer", "100")
            create_event(a, "ev-pow", (10,))
            path = "/v1/events/ev-pow/purchases"
            status, challenge, _ = a.request("GET", "/v1/challenge")
            self.assertEqual(status, 200)
            solution = solve(challenge)
            status, answer, _ = b.request("POST", path, PURCHASE, token("p0"), {"X-Challenge": "!!"})
            self.assertEqual((status, answer["error"]["code"]), (403, "challenge_failed"))
            status, answer, _ = b.request("POST", path, PURCHASE, token("p0"))
            self.assertEqual((status, answer["error"]["code"]), (403, "challenge_required"))
            status, answer, _ = a.request("POST", path, PURCHASE, token("p1"), {"X-Challenge": solution})
            self.assertEqual(status, 202, answer)
            for gateway in (b, a):  # spent on A: refused on B, and on A again
                status, answer, _ = gateway.request("POST", path, PURCHASE, token("p2"),
                                                    {"X-Challenge": solution})
                self.assertEqual(status, 403, answer)
                self.assertEqual(answer["error"]["code"], "challenge_failed")
                self.assertIn("already used", answer["error"]["message"])
            # The spent challenge's key expires with the challenge (plus the clock allowance).
            key = "catraca:challenge:" + challenge["challenge"]
            ttl = int(cluster.redis.command("TTL", key).strip(b":\r\n"))
            expires = int(challenge["salt"].split("?expires=")[1])
            self.assertTrue(0 < ttl <= 300 + 30 + 1, ttl)
            self.assertGreater(expires, 0)
            # A fresh challenge solved for gateway A is good on gateway B (shared key).
            status, challenge, _ = a.request("GET", "/v1/challenge")
            status, answer, _ = b.request("POST", path, PURCHASE, token("p3"),
                                          {"X-Challenge": solve(challenge)})
            self.assertEqual(status, 202, answer)
        finally:
            code = cluster.close()
        self.assertEqual(code, 0, "a process exited non-zero (a sanitizer's report?)")

    def test_limits_live_where_limits_redis_says(self):
        """--limits-redis URL: the buckets live in that Redis, still shared by the gateways, and
        none in the log's; with that Redis down purchases are refused 503 though the log is up."""
        cluster = Cluster(gateways=0)
        limits = Redis()
        try:
            a, b = start_gateways(cluster, "--limits-redis", limits.url, "--rate-customer", "1",
                                  "--rate-customer-burst", "2")
            create_event(a, "ev-elsewhere", (100,), limit=1)
            path = "/v1/events/ev-elsewhere/purchases"
            codes = [(a if i % 2 == 0 else b).request("POST", path, PURCHASE, token("moved"))[0]
                     for i in range(6)]
            self.assertIn(codes.count(202), (2, 3), codes)  # shared: per gateway would allow 4
            self.assertIn(b"catraca:rate:customer:moved", limits.command("KEYS", "catraca:rate:*"))
            self.assertNotIn(b"catraca:rate:", cluster.redis.command("KEYS", "catraca:rate:*"))
            limits.stop()
            status, answer, _ = a.request("POST", path, PURCHASE, token("limits-down"))
            self.assertEqual((status, answer["error"]["code"]), (503, "unavailable"), answer)
        finally:
            limits.close()
            code = cluster.close()
        self.assertEqual(code, 0, "a process exited non-zero (a sanitizer's report?)")

    def test_noscript_is_handled(self):
        cluster = Cluster(gateways=0)
        try:
            (a,) = start_gateways(cluster, "--rate-customer", "100", count=1)
            create_event(a, "ev-flush", (10,))
            path = "/v1/events/ev-flush/purchases"
            self.assertEqual(a.request("POST", path, PURCHASE, token("f1"))[0], 202)
            self.assertIn(b"OK", cluster.redis.command("SCRIPT", "FLUSH"))
            status, answer, _ = a.request("POST", path, PURCHASE, token("f2"))
            self.assertEqual(status, 202, answer)
        finally:
            code = cluster.close()
        self.assertEqual(code, 0, "a process exited non-zero (a sanitizer's report?)")


if __name__ == "__main__":
    unittest.main()
