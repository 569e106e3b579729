"""Idempotency-Key over Kafka, across gateways (docs/DEPLOY.md, "Kafka"; CONTRACT17).

Kafka cannot check a key atomically with an append, so a keyed purchase's id is derived from
(customer, key, request) under the shared JWT secret: a retry on ANY gateway carries the same
id, and the sale decides it once. A GET of a purchase another gateway accepted waits (bounded)
for the store instead of answering 404. These fail if the id were minted per gateway, or if a
gateway answered 404 for a purchase only its peer's log table knows.
"""
import time
import unittest

from catraca import Client, buy, create_event, token, wait_status
from cluster import Cluster


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
        cls.cluster.close()

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


if __name__ == "__main__":
    unittest.main()
