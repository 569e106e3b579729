"""A scheduled on-sale with a fair pre-queue, end to end (docs/DESIGN.md, "A fair pre-queue").

Buyers join during the pre-queue window; at opens_at the worker appends the DRAW, which
reveals the seed; the outcome order must be the order scripts/verify_draw.py computes from the
published seed (run as a journalist would: a separate process, ids on stdin), the seed must hash
to the SHA-256 published at creation, a buyer before the window is refused sale_not_open, and a
buyer after the draw stands behind the whole pre-queue. In embedded and distributed mode, and
with a kill -9 of the deciding process around the draw (the order must not change). Seed
printed; CATRACA_SEED reproduces the kill's moment.
"""
import datetime
import hashlib
import os
import random
import subprocess
import sys
import threading
import time
import unittest

from catraca import (ADMIN, FINAL, Server, buy, seed_from_env, token, wait_status)

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts",
                      "verify_draw.py")
CAPACITY = 5
BUYERS = 9            # 5 held, 4 waiting in the draw's order (a line bounded by held stock)
# Short windows, with room for a loaded machine (the 201 of a creation waits for its decision).
WINDOW_IN_S = 3       # the pre-queue window opens this long after creation (embedded)
WINDOW_IN_S_DISTRIBUTED = 6  # a new event waits for a worker to take its lease first
PREQUEUE_S = 3        # and lasts this long


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def create_scheduled(client, event_id, window_in_s):
    opens_at = time.time() + window_in_s + PREQUEUE_S
    body = {"id": event_id, "name": "Scheduled " + event_id, "hold_seconds": 600,
            "per_customer_limit": 1, "opens_at": rfc3339(opens_at),
            "prequeue_seconds": PREQUEUE_S,
            "categories": [{"id": "cat0", "name": "Pista", "price_cents": 1000,
                            "capacity": CAPACITY}]}
    status, event, _ = client.request("POST", "/v1/events", body, ADMIN())
    assert status == 201, (status, event)
    return event, opens_at


def recompute(seed, seed_sha256, purchase_ids):
    """The draw's order by the documented script, as an outsider runs it."""
    run = subprocess.run([sys.executable, SCRIPT, seed, seed_sha256],
                         input="\n".join(purchase_ids), capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def wait_drawn(client, event_id, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            status, view, _ = client.request("GET", f"/v1/events/{event_id}")
            if status == 200 and view["draw"]["state"] == "done":
                return view
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{event_id}: no draw within {timeout} s")


class Sale:
    """One scheduled sale driven through a client factory (a Server or a Cluster)."""

    def __init__(self, test, target, event_id, window_in_s=WINDOW_IN_S):
        self.test, self.target, self.event_id = test, target, event_id
        self.window_in_s = window_in_s

    def before_the_draw(self):
        t = self.test
        c = self.target.client()
        created, self.opens_at = create_scheduled(c, self.event_id, self.window_in_s)
        t.assertEqual(created["prequeue_seconds"], PREQUEUE_S)
        t.assertIsNone(created["draw"]["seed"], "the seed is secret until the draw")
        self.commitment = created["draw"]["seed_sha256"]
        t.assertRegex(self.commitment, "^[0-9a-f]{64}$")
        window = self.opens_at - PREQUEUE_S
        # The 201 waits for the event's decision: the early buyer below must still be early.
        t.assertLess(time.time(), window - 0.5, "creating the event took too long for the test")
        # Before the window: accepted into the log, refused by the engine with its own reason.
        status, early, _ = buy(c, self.event_id, "early")
        t.assertEqual(status, 202, early)
        early = wait_status(c, early["id"], "early", lambda s: s != "queued")
        t.assertEqual((early["status"], early["reason"]), ("rejected", "sale_not_open"))
        time.sleep(max(0.0, window - time.time()) + 0.2)
        self.ids, answers = {}, {}

        def join(customer):  # all at once: the window is short
            client = self.target.client()
            answers[customer] = buy(client, self.event_id, customer)
            client.close()

        threads = [threading.Thread(target=join, args=(f"b{n}",)) for n in range(BUYERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for customer, (status, p, _) in sorted(answers.items()):
            t.assertEqual(status, 202, p)
            self.ids[p["id"]] = customer
        t.assertEqual(len(self.ids), BUYERS)
        t.assertLess(time.time(), self.opens_at - 0.3, "the window was too short for the buyers")
        pid, customer = next(iter(self.ids.items()))
        deadline = time.time() + 10
        while True:  # decided into the pre-queue: still queued, now with prequeue true
            status, p, _ = c.request("GET", f"/v1/purchases/{pid}", tok=token(customer))
            if p.get("prequeue") or time.time() > deadline:
                break
            time.sleep(0.05)
        t.assertEqual((p["status"], p["prequeue"]), ("queued", True), p)
        while True:  # the view is the decided state: it may lag the buyers' 202s a moment
            status, view, _ = c.request("GET", f"/v1/events/{self.event_id}")
            if view["draw"]["prequeued"] == BUYERS or time.time() > deadline:
                break
            time.sleep(0.05)
        t.assertEqual((view["draw"]["state"], view["draw"]["prequeued"]), ("pending", BUYERS))
        c.close()

    def after_the_draw(self):
        t = self.test
        c = self.target.client()
        view = wait_drawn(c, self.event_id)
        seed = view["draw"]["seed"]
        t.assertEqual(view["draw"]["seed_sha256"], self.commitment)
        t.assertEqual(hashlib.sha256(bytes.fromhex(seed)).hexdigest(), self.commitment)
        # After the draw: behind the whole pre-queue.
        status, late, _ = buy(c, self.event_id, "late")
        t.assertEqual(status, 202, late)
        final = {pid: wait_status(c, pid, customer, lambda s: s != "queued", timeout=60)
                 for pid, customer in self.ids.items()}
        late = wait_status(c, late["id"], "late", lambda s: s != "queued", timeout=60)
        order = recompute(seed, self.commitment, list(self.ids))
        t.assertEqual(sorted(order), sorted(self.ids))
        held = {pid for pid, p in final.items() if p["status"] == "held"}
        waiting = sorted((p["position"], pid) for pid, p in final.items()
                         if p["status"] == "waiting")
        t.assertEqual(held, set(order[:CAPACITY]), "the draw's first must hold the tickets")
        t.assertEqual([pid for _, pid in waiting], order[CAPACITY:],
                      "the line must follow the draw")
        t.assertEqual([position for position, _ in waiting],
                      list(range(1, BUYERS - CAPACITY + 1)))
        t.assertEqual(late["status"], "waiting", late)
        t.assertEqual(late["position"], BUYERS - CAPACITY + 1, "after the pre-queue")
        for pid, p in final.items():
            t.assertFalse(p["prequeue"], p)
        c.close()
        return order


class ScriptTest(unittest.TestCase):
    def test_the_design_shows_the_script_that_runs(self):
        with open(os.path.join(os.path.dirname(SCRIPT), "..", "docs", "DESIGN.md")) as f:
            block = f.read().split("```python\n", 1)[1].split("```", 1)[0]
        with open(SCRIPT) as f:
            self.assertTrue(f.read().endswith(block), "docs/DESIGN.md and the script differ")

    def test_a_seed_that_is_not_the_committed_one_is_refused(self):
        seed = "11" * 32
        run = subprocess.run([sys.executable, SCRIPT, seed, hashlib.sha256(b"other").hexdigest()],
                             input="p_0000000000001\n", capture_output=True, text=True, timeout=30)
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("not the committed draw", run.stderr)
        commitment = hashlib.sha256(bytes.fromhex(seed)).hexdigest()
        ids = ["p_%013d" % n for n in range(20)]
        expected = sorted(ids, key=lambda p: hashlib.sha256(bytes.fromhex(seed) + p.encode()).digest())
        self.assertEqual(recompute(seed, commitment, ids[::-1]), expected)


class EmbeddedPrequeueTest(unittest.TestCase):
    def test_the_order_is_the_published_seeds(self):
        server = Server()
        try:
            sale = Sale(self, server, "ev-pre")
            sale.before_the_draw()
            sale.after_the_draw()
            self.assertEqual(server.stop(), 0)
            from test_audit import audit
            code, output = audit(server.data)
            self.assertEqual(code, 0, output)
            self.assertIn("pre-queue draw at entry", output)
        finally:
            server.close()

    def test_kill9_around_the_draw_keeps_the_order(self):
        rng = random.Random(seed_from_env("pre-queue crash"))
        server = Server()
        try:
            sale = Sale(self, server, "ev-pre-crash")
            sale.before_the_draw()
            # Anywhere from just before opens_at to just after the draw is appended.
            time.sleep(max(0.0, sale.opens_at - time.time() + rng.uniform(-0.3, 0.4)))
            server.kill9()
            server.restart()
            order = sale.after_the_draw()
            server.kill9()  # and once more after it: recovery must not draw again
            server.restart()
            c = server.client()
            for rank, pid in enumerate(order[:CAPACITY]):
                p = wait_status(c, pid, sale.ids[pid], lambda s: s != "queued")
                self.assertEqual(p["status"], "held", (rank, p))
            view = wait_drawn(c, "ev-pre-crash")
            self.assertEqual(view["categories"][0]["held"], CAPACITY)
            c.close()
            self.assertEqual(server.stop(), 0)
            from test_audit import audit
            code, output = audit(server.data)
            self.assertEqual(code, 0, output)
        finally:
            server.close()


class DistributedPrequeueTest(unittest.TestCase):
    def test_the_order_is_the_published_seeds_and_survives_the_owners_death(self):
        from cluster import Cluster
        rng = random.Random(seed_from_env("pre-queue distributed"))
        cluster = Cluster(lease_ms=1500)
        try:
            sale = Sale(self, cluster, "ev-pre-dist", WINDOW_IN_S_DISTRIBUTED)
            sale.before_the_draw()
            time.sleep(max(0.0, sale.opens_at - time.time() + rng.uniform(-0.3, 0.4)))
            owner, _ = cluster.owner_of("ev-pre-dist")
            victim = cluster.worker_by_id(owner)
            self.assertIsNotNone(victim, f"no live owner found ({owner})")
            victim.kill9()
            sale.after_the_draw()
            new_owner, _ = cluster.owner_of("ev-pre-dist")
            self.assertNotEqual(new_owner, owner)
        except Exception:
            print(cluster.logs())
            raise
        finally:
            cluster.close()


if __name__ == "__main__":
    unittest.main()
