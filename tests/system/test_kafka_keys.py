"""Idempotency-Key over Kafka, across gateways (docs/DEPLOY.md, "Kafka"; CONTRACT17).

Kafka cannot check a key atomically with an append, so a keyed purchase's id is derived from
(customer, key, request) under the shared JWT secret: a retry on ANY gateway carries the same
id, and the sale decides it once. A GET of a purchase another gateway accepted waits (bounded)
for the store instead of answering 404. These fail if the id were minted per gateway, or if a
gateway answered 404 for a purchase only its peer's log table knows.

That wait is parked (api_pending_park_store_wait, gateway/store_wait.h), not polled on an event
loop: many reads of made-up ids stall nothing, each is a 404 after ~1 s, a commit notification
answers a real one at once, and beyond the bound a read is a 503 with Retry-After.
"""
import json
import random
import socket
import threading
import time
import unittest

from catraca import PAYMENTS, Client, buy, create_event, seed_from_env, token, wait_status
from cluster import Cluster
from servers import Redis

BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def made_up_ids(count, name):
    """Ids no gateway minted that look derived (bit 63 set: the first digit is 8-F), so a
    gateway must wait for the store before its 404. Seeded: CATRACA_SEED reproduces."""
    rng = random.Random(seed_from_env(name))
    return ["p_" + rng.choice("89ABCDEF") + "".join(rng.choice(BASE32) for _ in range(12))
            for _ in range(count)]


def concurrent_gets(port, ids, customer):
    """GETs every id at once, one connection each: [(status, answer, headers, seconds)]."""
    results = [None] * len(ids)
    ready = threading.Barrier(len(ids) + 1)

    def get(i):
        client = Client(port, 30)
        try:
            ready.wait()
            started = time.monotonic()
            status, answer, headers = client.request("GET", f"/v1/purchases/{ids[i]}",
                                                     tok=token(customer))
            results[i] = (status, answer, headers, time.monotonic() - started)
        finally:
            client.close()

    threads = [threading.Thread(target=get, args=(i,)) for i in range(len(ids))]
    for t in threads:
        t.start()
    return ready, threads, results


class KafkaKeysTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(log="kafka", gateways=2, workers=1)
        cls.g = [Client(g.port, 30) for g in cls.cluster.gateways]
        create_event(cls.g[0], "keys", capacities=(5,), limit=2)

    @classmethod
    def tearDownClass(cls):
        for c in cls.g:
            c.close()
        code = cls.cluster.close()
        assert code == 0, f"graceful stop exit code {code}"

    def test_retry_on_another_gateway_is_the_same_purchase(self):
        create_event(self.g[0], "keys-retry", capacities=(5,), limit=2)
        status, first, _ = buy(self.g[0], "keys-retry", "alice", key="k-alice")
        self.assertEqual(status, 202, first)
        # At once, on the other gateway: its log table does not know the key
        status, again, _ = buy(self.g[1], "keys-retry", "alice", key="k-alice")
        self.assertIn(status, (200, 202), again)
        self.assertEqual(again["id"], first["id"])
        held = wait_status(self.g[1], first["id"], "alice", lambda s: s != "queued")
        self.assertEqual(held["status"], "held")
        # Once committed, a retry anywhere answers the purchase as it is now (200), not a new one
        for gateway in self.g:
            status, repeat, _ = buy(gateway, "keys-retry", "alice", key="k-alice")
            self.assertEqual(status, 200, repeat)
            self.assertEqual(repeat["id"], first["id"])
            self.assertEqual(repeat["status"], "held")
        # One purchase, one hold: the second log entry was a repeat for the engine
        status, event, _ = self.g[0].request("GET", "/v1/events/keys-retry",
                                             tok=token("ops", "admin"))
        self.assertEqual(status, 200, event)
        self.assertEqual(event["categories"][0]["held"], 1, event)

    def test_made_up_ids_wait_parked_and_stall_nothing(self):
        """200 GETs of made-up ids at once on one gateway (2 event loops): meanwhile /healthz
        and a purchase are answered at once, and each GET is a 404 after ~1 s. Polled on an
        event loop, the waits would stall both loops (or, bounded at 1, answer 503s)."""
        ids = made_up_ids(200, "made-up ids")
        ready, threads, results = concurrent_gets(self.cluster.gateways[1].port, ids, "mallory")
        ready.wait()
        time.sleep(0.2)  # the GETs are parked now
        side = Client(self.cluster.gateways[1].port, 30)
        started = time.monotonic()
        status, _, _ = side.request("GET", "/healthz")
        healthz_s = time.monotonic() - started
        self.assertEqual(status, 200)
        started = time.monotonic()
        status, bought, _ = buy(side, "keys", "frank")
        purchase_s = time.monotonic() - started
        self.assertEqual(status, 202, bought)
        side.close()
        for t in threads:
            t.join(30)
        print(f"made-up ids: /healthz {healthz_s * 1000:.0f} ms, purchase {purchase_s * 1000:.0f}"
              f" ms; GETs {min(r[3] for r in results):.2f}-{max(r[3] for r in results):.2f} s",
              flush=True)
        self.assertLess(healthz_s, 0.5)
        self.assertLess(purchase_s, 0.75)  # well before the waits end: no loop is held
        for status, answer, _, seconds in results:
            self.assertEqual(status, 404, answer)
            self.assertEqual(answer["error"]["code"], "not_found")
            self.assertGreaterEqual(seconds, 0.95)
            self.assertLess(seconds, 5)

    def test_a_read_on_the_other_gateway_is_woken_by_the_commit(self):
        """GET, long-poll, cancel and confirm of a purchase the other gateway took a moment
        ago: each parks until the commit names it, then goes on as if found at once."""
        create_event(self.g[0], "keys-woken", capacities=(10,), limit=2)
        waited = []
        for customer in ("gina", "hugo", "ivan", "jane"):
            status, first, _ = buy(self.g[0], "keys-woken", customer, key=f"k-{customer}")
            self.assertEqual(status, 202, first)
            path = f"/v1/purchases/{first['id']}"
            started = time.monotonic()
            if customer == "gina":
                status, row, _ = self.g[1].request("GET", path, tok=token(customer))
                self.assertEqual((status, row["id"]), (200, first["id"]), row)
            elif customer == "hugo":  # queued is left at once: the long-poll answers
                status, row, _ = self.g[1].request("GET", path + "?wait=20&status=queued",
                                                   tok=token(customer))
                self.assertEqual((status, row["status"]), (200, "held"), row)
            elif customer == "ivan":
                status, row, _ = self.g[1].request("DELETE", path, tok=token(customer))
                self.assertEqual((status, row["status"]), (200, "cancelled"), row)
            else:
                status, row, _ = self.g[1].request("POST", path + "/confirm",
                                                   {"payment_ref": "pay-jane"}, tok=PAYMENTS())
                self.assertEqual((status, row["status"]), (200, "confirmed"), row)
            waited.append(time.monotonic() - started)
        print("woken reads: " + ", ".join(f"{s * 1000:.0f} ms" for s in waited), flush=True)
        for seconds in waited:
            self.assertLess(seconds, 5)
        # Woken by the commit, not by the store read at the end of the 1 s wait
        self.assertLess(min(waited), 0.9, waited)
        # Another customer's purchase, found after the wait, is still not theirs to cancel
        status, first, _ = buy(self.g[0], "keys-woken", "kurt", key="k-kurt")
        self.assertEqual(status, 202, first)
        status, answer, _ = self.g[1].request("DELETE", f"/v1/purchases/{first['id']}",
                                              tok=token("mallory"))
        self.assertEqual(status, 403, answer)

    def test_other_customers_and_keys_get_other_ids(self):
        ids = set()
        for customer, key in (("bob", "k1"), ("bob", "k2"), ("carol", "k1")):
            status, answer, _ = buy(self.g[0], "keys", customer, key=key)
            self.assertEqual(status, 202, answer)
            ids.add(answer["id"])
        self.assertEqual(len(ids), 3)

    def test_reused_key_with_another_request_on_the_same_gateway(self):
        status, first, _ = buy(self.g[0], "keys", "dave", key="k-dave")
        self.assertEqual(status, 202, first)
        status, answer, _ = buy(self.g[0], "keys", "dave", quantity=2, key="k-dave")
        self.assertEqual(status, 422, answer)

    def test_get_on_a_gateway_that_did_not_take_the_purchase(self):
        status, first, _ = buy(self.g[0], "keys", "erin")
        self.assertEqual(status, 202, first)
        started = time.monotonic()
        status, row, _ = self.g[1].request("GET", f"/v1/purchases/{first['id']}",
                                           tok=token("erin"))
        self.assertEqual(status, 200, row)
        self.assertEqual(row["id"], first["id"])
        self.assertLess(time.monotonic() - started, 5)
        # An id nobody minted recently is a 404 at once, not after the wait
        started = time.monotonic()
        status, _, _ = self.g[1].request("GET", "/v1/purchases/p_0000000000001",
                                         tok=token("erin"))
        self.assertEqual(status, 404)
        self.assertLess(time.monotonic() - started, 0.9)


    def test_a_stream_on_the_other_gateway_starts_once_committed(self):
        """GET /v1/purchases/{id}/events on the gateway that did not take the purchase, right
        after the 202: the stream starts once the commit is known (not a 503 to retry), shows
        the state then, and follows later changes; a made-up id is still a 404."""
        create_event(self.g[0], "keys-stream", capacities=(10,), limit=2)
        status, first, _ = buy(self.g[0], "keys-stream", "lena")
        self.assertEqual(status, 202, first)
        sock = socket.create_connection(("127.0.0.1", self.cluster.gateways[1].port), timeout=20)
        started = time.monotonic()
        sock.sendall(f"GET /v1/purchases/{first['id']}/events HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {token('lena')}\r\n\r\n".encode())
        data, deadline, cancelled = b"", time.time() + 20, False
        while time.time() < deadline and b'"cancelled"' not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and not data.startswith(b"HTTP/1.1 200"):
                break  # a 503 to retry (what a gateway answered before it waited)
            if not cancelled and b'"held"' in data:
                waited = time.monotonic() - started
                status, row, _ = self.g[0].request("DELETE", f"/v1/purchases/{first['id']}",
                                                   tok=token("lena"))
                self.assertEqual((status, row["status"]), (200, "cancelled"), row)
                cancelled = True
        sock.close()
        head = data.split(b"\r\n\r\n", 1)[0]
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), data[:400])
        self.assertIn(b"text/event-stream", head)
        events = [json.loads(line[6:]) for line in data.split(b"\n") if line.startswith(b"data: ")]
        self.assertEqual([e["status"] for e in events], ["held", "cancelled"], data[-500:])
        self.assertEqual({e["id"] for e in events}, {first["id"]})
        print(f"stream on the other gateway: first event after {waited * 1000:.0f} ms", flush=True)
        self.assertLess(waited, 5)
        # An id that may be queued but never was: the stream's wait ends in a 404
        status, answer, _ = self.g[1].request("GET", f"/v1/purchases/{made_up_ids(1, 'stream')[0]}"
                                              "/events", tok=token("lena"))
        self.assertEqual(status, 404, answer)
        self.assertEqual(answer["error"]["code"], "not_found")


class KafkaStoreWaitBoundTest(unittest.TestCase):
    """The parked store-waits are bounded (API_STORE_WAITS_MAX, and --max-waiters): one beyond
    is a 503 with Retry-After and API.md's JSON error, never a stall or a wrong 404."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster("--max-waiters", "8", log="kafka", gateways=1, workers=1)

    @classmethod
    def tearDownClass(cls):
        code = cls.cluster.close()
        assert code == 0, f"graceful stop exit code {code}"

    def test_beyond_the_bound_is_a_503(self):
        ids = made_up_ids(40, "store-wait bound")
        ready, threads, results = concurrent_gets(self.cluster.port, ids, "mallory")
        ready.wait()
        for t in threads:
            t.join(30)
        refused = [r for r in results if r[0] == 503]
        waited = [r for r in results if r[0] == 404]
        print(f"store-wait bound 8: {len(waited)} 404, {len(refused)} 503", flush=True)
        self.assertEqual(len(refused) + len(waited), len(ids), [r[:2] for r in results])
        self.assertGreaterEqual(len(refused), 1)
        self.assertGreaterEqual(len(waited), 1)
        self.assertLessEqual(len(waited), 16)  # 8 at a time, and the GETs came within 1 s
        for status, answer, headers, seconds in refused:
            self.assertEqual(set(answer["error"]), {"code", "message"})
            self.assertEqual(answer["error"]["code"], "unavailable")
            self.assertEqual(headers.get("retry-after"), "1")
            self.assertLess(seconds, 0.9)  # refused at once
        for status, answer, headers, seconds in waited:
            self.assertGreaterEqual(seconds, 0.95)
        # The slots come back: a made-up id waits again once the others are over
        status, answer, _, seconds = concurrent_gets_one(self.cluster.port, ids[0])
        self.assertEqual(status, 404, answer)

    def test_stop_answers_parked_reads(self):
        """SIGTERM while reads wait for the store: each is answered, and the gateway exits 0.
        (Named to run last: it stops the class's only gateway.)"""
        ids = made_up_ids(5, "store-wait stop")
        ready, threads, results = concurrent_gets(self.cluster.port, ids, "mallory")
        ready.wait()
        time.sleep(0.3)
        gateway = self.cluster.gateways[0]
        code = gateway.stop()
        for t in threads:
            t.join(30)
        self.assertEqual(code, 0, gateway.log()[-3000:])
        for status, answer, _, seconds in results:
            self.assertIn(status, (404, 503), answer)
            self.assertLess(seconds, 10)


def concurrent_gets_one(port, purchase_id):
    ready, threads, results = concurrent_gets(port, [purchase_id], "mallory")
    ready.wait()
    threads[0].join(30)
    return results[0]


def request_hash(event, category, quantity):
    """api_purchases.c's hash_request: FNV-1a of event "/" category, then the quantity."""
    h, prime, mask = 1469598103934665603, 1099511628211, (1 << 64) - 1
    for byte in event.encode() + b"/" + category.encode():
        h = ((h ^ byte) * prime) & mask
    return ((h ^ quantity) * prime) & mask


class KafkaSharedKeysTest(unittest.TestCase):
    """With --limits-redis, an Idempotency-Key is claimed in that Redis by its first request
    (limits_redis.h, step 4), so ANY gateway answers a retry like the first even before the
    commit: 200 with the purchase (not a 202 of a second entry), and 422 for the key reused
    with another request (not a purchase of its own elsewhere)."""

    @classmethod
    def setUpClass(cls):
        cls.redis = Redis()
        cls.cluster = Cluster("--limits-redis", cls.redis.url, log="kafka", gateways=2,
                              workers=1)
        cls.g = [Client(g.port, 30) for g in cls.cluster.gateways]
        create_event(cls.g[0], "shared-keys", capacities=(20,), limit=2)

    @classmethod
    def tearDownClass(cls):
        for c in cls.g:
            c.close()
        code = cls.cluster.close()
        cls.redis.close()
        assert code == 0, f"graceful stop exit code {code}"

    def test_a_retry_on_the_other_gateway_before_the_commit_is_a_200(self):
        create_event(self.g[0], "shared-retry", capacities=(20,), limit=2)
        answered = []
        for customer in ("lena", "milo", "nora"):
            status, first, _ = buy(self.g[0], "shared-retry", customer, key=f"k-{customer}")
            self.assertEqual(status, 202, first)
            started = time.monotonic()
            status, again, headers = buy(self.g[1], "shared-retry", customer,
                                         key=f"k-{customer}")
            answered.append(time.monotonic() - started)
            self.assertEqual(status, 200, again)
            self.assertEqual(again["id"], first["id"])
            self.assertEqual(again["status"], "held", again)  # as committed: the first's
            self.assertEqual(headers["location"], f"/v1/purchases/{first['id']}")
        print("retries answered after " + ", ".join(f"{s * 1000:.0f} ms" for s in answered),
              flush=True)
        self.assertLess(min(answered), 0.9, answered)  # woken by the commit, not the wait
        # One purchase each: the retries were never appended
        status, event, _ = self.g[0].request("GET", "/v1/events/shared-retry",
                                             tok=token("ops", "admin"))
        self.assertEqual(status, 200, event)
        self.assertEqual(event["categories"][0]["held"], 3, event)

    def test_a_key_reused_with_another_request_is_a_422_on_any_gateway(self):
        status, first, _ = buy(self.g[0], "shared-keys", "olga", key="k-olga")
        self.assertEqual(status, 202, first)
        for gateway in self.g:
            status, answer, _ = buy(gateway, "shared-keys", "olga", quantity=2, key="k-olga")
            self.assertEqual(status, 422, answer)
            self.assertEqual(answer["error"]["code"], "invalid_request")
        # Another customer's key of the same name is theirs
        status, other, _ = buy(self.g[1], "shared-keys", "pete", key="k-olga")
        self.assertEqual(status, 202, other)
        self.assertNotEqual(other["id"], first["id"])

    def test_a_claim_whose_first_request_never_reached_the_log(self):
        """A claim left by a request that never reached the log (its gateway died between
        the claim and the append): the retry waits out the store-wait, then is appended and
        answered 202, never refused or left hanging."""
        create_event(self.g[0], "shared-lost", capacities=(5,), limit=2)
        claim = f"catraca:key:{len('quinn')}:quinn:k-lost"
        value = "%016x" % request_hash("shared-lost", "cat0", 1)
        self.assertEqual(self.redis.command("SET", claim, value, "EX", "600"), b"+OK\r\n")
        started = time.monotonic()
        status, answer, _ = buy(self.g[1], "shared-lost", "quinn", key="k-lost")
        seconds = time.monotonic() - started
        self.assertEqual(status, 202, answer)
        self.assertGreaterEqual(seconds, 0.95)
        self.assertLess(seconds, 5)
        held = wait_status(self.g[0], answer["id"], "quinn", lambda s: s != "queued")
        self.assertEqual(held["status"], "held")
        # Once committed, a retry anywhere is the 200 of that purchase
        for gateway in self.g:
            status, again, _ = buy(gateway, "shared-lost", "quinn", key="k-lost")
            self.assertEqual((status, again["id"]), (200, answer["id"]), again)


if __name__ == "__main__":
    unittest.main()
