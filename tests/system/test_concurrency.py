"""Many concurrent buyers: no oversell, arrival order (FIFO) kept, wait line served on expiry."""
import random
import threading
import unittest

from catraca import FINAL, PAYMENTS, Server, buy, create_event, seed_from_env, seq_key, wait_status

CAPACITY = 300
BUYERS = 2000
THREADS = 16


class ConcurrencyTest(unittest.TestCase):
    def test_rush_fifo_no_oversell(self):
        rng = random.Random(seed_from_env("concurrency test"))
        server = Server()
        try:
            client = server.client()
            # hold_seconds: long enough for every status read and confirm below on a busy machine
            # (make test runs suites side by side), short enough for the expiries to come soon.
            # The bounded line (issue 16): as many wait as tickets could come back, the rest are
            # told line_full; sold_out would be a lie while tickets are held.
            create_event(client, "ev-rush", (CAPACITY,), hold_seconds=8, limit=1,
                         line_policy="bounded")
            accepted, lock = {}, threading.Lock()

            def rush(index):
                c = server.client()
                for n in range(index, BUYERS, THREADS):
                    status, answer, _ = buy(c, "ev-rush", f"b{n}")
                    assert status == 202, (status, answer)
                    with lock:
                        accepted[answer["id"]] = (f"b{n}", answer["seq"])
                c.close()

            threads = [threading.Thread(target=rush, args=(i,)) for i in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            self.assertEqual(len(accepted), BUYERS)
            decided = {pid: wait_status(client, pid, c, lambda s: s != "queued")
                       for pid, (c, _) in accepted.items()}
            ordered = sorted(decided.values(), key=lambda p: seq_key(p["seq"]))
            statuses = [p["status"] for p in ordered]
            # the earliest CAPACITY arrivals hold, then the line, then rejections: never out of order
            self.assertEqual(statuses[:CAPACITY], ["held"] * CAPACITY)
            rest = statuses[CAPACITY:]
            first_rejected = rest.index("rejected") if "rejected" in rest else len(rest)
            self.assertTrue(all(s == "waiting" for s in rest[:first_rejected]))
            self.assertTrue(all(s == "rejected" for s in rest[first_rejected:]))
            self.assertEqual(first_rejected, CAPACITY)  # as many may wait as could ever be served
            self.assertTrue(all(p["reason"] == "line_full" for p in ordered[2 * CAPACITY:]))
            # pay for a random third; the rest expire and the line takes their place, in order
            holders = [p for p in ordered[:CAPACITY]]
            paid = set(p["id"] for p in rng.sample(holders, CAPACITY // 3))
            for pid in paid:
                status, answer, _ = client.request("POST", f"/v1/purchases/{pid}/confirm",
                                                   {"payment_ref": "x" + pid}, PAYMENTS())
                self.assertEqual(status, 200, answer)
            line = ordered[CAPACITY:2 * CAPACITY]
            served = [wait_status(client, p["id"], p["customer"], lambda s: s != "waiting",
                                  timeout=60) for p in line]
            expected_served = CAPACITY - len(paid)
            self.assertEqual([p["status"] for p in served[:expected_served]],
                             ["held"] * expected_served)
            # Paid tickets left the line's budget: those no longer kept are told line_full (not
            # sold_out: tickets are still held, and may come back).
            self.assertTrue(all(p["status"] == "rejected" and p["reason"] == "line_full"
                                for p in served[expected_served:]))
            status, event, _ = client.request("GET", "/v1/events/ev-rush")
            cat = event["categories"][0]
            self.assertEqual(cat["sold"], len(paid))
            self.assertEqual(cat["available"] + cat["held"] + cat["sold"], CAPACITY)
            client.close()
        finally:
            self.assertEqual(server.close(), 0)


if __name__ == "__main__":
    unittest.main()
