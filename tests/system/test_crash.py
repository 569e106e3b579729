"""Crash safety: kill -9 `catraca serve` at random moments of a rush, restart on the same data.

Every purchase answered 202 must exist afterwards with exactly one final outcome, no ticket is
sold twice, counts add up, and the decisions are in arrival order (FIFO). Seed printed;
CATRACA_SEED reproduces.
"""
import os
import random
import threading
import time
import unittest

from test_audit import audit
from catraca import (ADMIN, FINAL, PAYMENTS, Server, buy, create_event, seed_from_env, seq_key,
                     token, wait_status)

ROUNDS = 4
CAPACITY = 40


class CrashTest(unittest.TestCase):
    def test_kill9_mid_rush(self):
        rng = random.Random(seed_from_env("crash test"))
        server = Server("--snapshot-every", "25", "--worker-batch-max", "16")
        accepted = {}  # purchase id -> (customer, seq)
        lock = threading.Lock()
        try:
            create_event(server.client(), "ev-crash", (CAPACITY,), hold_seconds=2, limit=1)
            for round_number in range(ROUNDS):
                stop = threading.Event()

                def rush(worker_index):
                    client = server.client(timeout=5)
                    n = 0
                    while not stop.is_set() and n < 400:
                        customer = f"r{round_number}w{worker_index}n{n}"
                        n += 1
                        try:
                            status, answer, _ = buy(client, "ev-crash", customer)
                        except OSError:
                            return  # the server died under us: the answer never came
                        if status == 202:
                            with lock:
                                assert answer["id"] not in accepted, "one id for two purchases"
                                accepted[answer["id"]] = (customer, answer["seq"])
                    client.close()

                threads = [threading.Thread(target=rush, args=(i,)) for i in range(6)]
                for t in threads:
                    t.start()
                time.sleep(rng.uniform(0.2, 1.5))
                server.kill9()
                stop.set()
                for t in threads:
                    t.join(timeout=30)
                server.restart()
                # pay for some holds, so confirms are in the log across crashes too
                client = server.client()
                with lock:
                    this_round = sorted((seq_key(seq), pid) for pid, (customer, seq) in accepted.items()
                                        if customer.startswith(f"r{round_number}w"))
                sample = [pid for _, pid in this_round[:100]]  # the earliest are the ones holding
                for pid in sample:
                    status, row, _ = client.request("GET", f"/v1/purchases/{pid}", tok=ADMIN())
                    if status == 200 and row["status"] == "held":
                        client.request("POST", f"/v1/purchases/{pid}/confirm",
                                       {"payment_ref": "pay-" + pid}, PAYMENTS())
                client.close()
            self.check(server, accepted)
        finally:
            server.close()

    def check(self, server, accepted):
        client = server.client()
        self.assertGreater(len(accepted), 50, "the rush accepted too little to test anything")
        outcomes = {}
        for pid, (customer, seq) in accepted.items():
            p = wait_status(client, pid, customer, lambda s: s in FINAL, timeout=60)
            self.assertEqual(p["seq"], seq)
            self.assertEqual(p["customer"], customer)
            outcomes[pid] = p
        status, event, _ = client.request("GET", "/v1/events/ev-crash")
        cat = event["categories"][0]
        self.assertEqual(cat["available"] + cat["held"] + cat["sold"], CAPACITY)
        confirmed = [p for p in outcomes.values() if p["status"] == "confirmed"]
        self.assertEqual(cat["sold"], sum(p["quantity"] for p in confirmed))
        codes = [t["code"] for p in confirmed for t in p["tickets"]]
        self.assertEqual(len(codes), len(set(codes)), "a ticket code was issued twice")
        # FIFO: the first CAPACITY arrivals (by seq) were all granted a hold
        ordered = sorted(outcomes.values(), key=lambda p: seq_key(p["seq"]))
        granted = [p for p in ordered if p["status"] != "rejected"]
        first = ordered[:CAPACITY]
        self.assertTrue(all(p["status"] != "rejected" for p in first),
                        [(p["seq"], p["status"], p["reason"]) for p in first])
        self.assertGreaterEqual(len(granted), CAPACITY)
        counts = {}
        for p in outcomes.values():
            counts[p["status"]] = counts.get(p["status"], 0) + 1
        print(f"crash test: {len(accepted)} purchases accepted over {ROUNDS} kill -9 rounds: {counts}")
        self.assertEqual(server.stop(), 0)
        client.close()
        # every decision, after all the kills, is what a replay of the log decides
        code, out = audit(server.data)
        print(out.strip().splitlines()[-1])
        self.assertEqual(code, 0, out)


class LostStoreTest(unittest.TestCase):
    def test_store_is_rebuilt_from_the_log(self):
        """store.db is derived from the log: without it (lost, or a data directory from before
        the split) the server decides the log again and answers exactly what it answered."""
        server = Server()
        try:
            c = server.client()
            create_event(c, "ev-lost", (3,))
            bought = [buy(c, "ev-lost", f"l{i}")[1] for i in range(6)]
            before = [wait_status(c, p["id"], f"l{i}", lambda s: s != "queued")
                      for i, p in enumerate(bought)]
            c.request("POST", f"/v1/purchases/{before[0]['id']}/confirm", {"payment_ref": "x"},
                      PAYMENTS())
            wait_status(c, before[0]["id"], "l0", lambda s: s == "confirmed")
            # A confirm may reject a waiting request (no stock can return for it): read again.
            before = [c.request("GET", f"/v1/purchases/{p['id']}", tok=token(f"l{i}"))[1]
                      for i, p in enumerate(before)]
            self.assertEqual(before[0]["status"], "confirmed")
            c.close()
            self.assertEqual(server.stop(), 0)
            for suffix in ("", "-wal", "-shm"):
                path = os.path.join(server.data, "store.db" + suffix)
                if os.path.exists(path):
                    os.remove(path)
            server.restart()
            c = server.client()
            after = [wait_status(c, p["id"], f"l{i}", lambda s, want=p["status"]: s == want)
                     for i, p in enumerate(before)]
            self.assertEqual(after, before)
            c.close()
            code, out = audit(server.data)
            self.assertEqual(code, 0, out)
        finally:
            server.close()


if __name__ == "__main__":
    unittest.main()
