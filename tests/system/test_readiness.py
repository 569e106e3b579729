"""Honest readiness (issue 15): /readyz and purchases agree across a Redis and a PostgreSQL restart.

A real Redis (AOF on) and PostgreSQL, one gateway and one worker (tests/system/cluster.py).
While Redis is stopped, the gateway's and the worker's /readyz answer 503; once Redis is back on
its AOF and /readyz answers 200 again, every purchase sent is accepted (202, never the 503 of a
dead append connection) and decided. The same for PostgreSQL, which the gateway reads and the
worker commits to.
"""
import os
import signal
import time
import unittest

from catraca import SECRET, Client, token
from cluster import Cluster



def readyz(port):
    client = Client(port, 5)
    try:
        return client.request("GET", "/readyz")[0]
    except OSError:
        return None
    finally:
        client.close()


def wait_for(what, predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {seconds} s")


class TestReadiness(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(gateways=1, workers=1)  # gateways check tokens signed with SECRET
        cls.gateway = cls.cluster.gateways[0]
        cls.worker = cls.cluster.workers[0]
        cls.client = Client(cls.gateway.port, 30)
        body = {"id": "ready", "name": "Ready", "hold_seconds": 600, "per_customer_limit": 4,
                "categories": [{"id": "pista", "name": "Pista", "price_cents": 100,
                                "capacity": 1000}]}
        status, answer, _ = cls.client.request("POST", "/v1/events", body,
                                               token("ops", "admin", secret=SECRET))
        assert status == 201, (status, answer)
        cls.customer = 0

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        codes = [p.stop() for p in cls.cluster.gateways + cls.cluster.workers]
        logs = cls.cluster.logs()
        cls.cluster.close()
        assert codes == [0] * len(codes), f"exit codes {codes} (a sanitizer report?):\n{logs}"

    def buy_and_settle(self, count):
        """count purchases, each must be 202 at once; then each must be decided (held)."""
        accepted = []
        for _ in range(count):
            TestReadiness.customer += 1
            buyer = token(f"c{self.customer}", secret=SECRET)
            status, answer, _ = self.client.request(
                "POST", "/v1/events/ready/purchases", {"category": "pista", "quantity": 1}, buyer)
            self.assertEqual(status, 202, (answer, self.cluster.logs()))
            accepted.append((answer["id"], buyer))
        for pid, buyer in accepted:
            deadline = time.monotonic() + 30
            while True:
                status, answer, _ = self.client.request(
                    "GET", f"/v1/purchases/{pid}?wait=5&status=queued", tok=buyer)
                self.assertEqual(status, 200, answer)
                if answer["status"] != "queued":
                    break
                self.assertLess(time.monotonic(), deadline, f"{pid} never decided")
            self.assertEqual(answer["status"], "held")

    def test_redis_restart(self):
        self.assertEqual(readyz(self.gateway.port), 200)
        wait_for("worker ready", lambda: readyz(self.worker.port) == 200, 15)
        self.buy_and_settle(3)
        self.cluster.redis.stop()
        wait_for("gateway /readyz 503 without Redis", lambda: readyz(self.gateway.port) == 503, 5)
        wait_for("worker /readyz 503 without Redis", lambda: readyz(self.worker.port) == 503, 5)
        # The worker says which part is missing, in words of any backend: the log or the bus.
        probe = Client(self.worker.port, 5)
        status, answer, _ = probe.request("GET", "/readyz")
        probe.close()
        self.assertEqual(status, 503, answer)
        self.assertIn(answer["error"]["message"],
                      ("the log is not reachable", "the bus is not reachable"))
        self.cluster.redis.start()  # the same port and AOF; returns once it answers PING
        wait_for("gateway /readyz 200 after Redis returned",
                 lambda: readyz(self.gateway.port) == 200, 10)
        # Ready means ready: the very next purchases are accepted, none meets a dead connection.
        self.buy_and_settle(12)
        wait_for("worker /readyz 200 after Redis returned",
                 lambda: readyz(self.worker.port) == 200, 10)

    def test_postgres_restart(self):
        postgres = self.cluster.postgres
        wait_for("gateway ready", lambda: readyz(self.gateway.port) == 200, 15)
        wait_for("worker ready", lambda: readyz(self.worker.port) == 200, 15)
        # A fast shutdown (SIGINT to the postmaster): a smart one waits for our connections.
        with open(os.path.join(postgres.data, "postmaster.pid")) as f:
            os.kill(int(f.readline()), signal.SIGINT)
        postgres.proc.wait(30)
        wait_for("gateway /readyz 503 without PostgreSQL",
                 lambda: readyz(self.gateway.port) == 503, 10)
        wait_for("worker /readyz 503 without PostgreSQL",
                 lambda: readyz(self.worker.port) == 503, 15)
        postgres.start()
        wait_for("gateway /readyz 200 after PostgreSQL returned",
                 lambda: readyz(self.gateway.port) == 200, 15)
        wait_for("worker /readyz 200 after PostgreSQL returned",
                 lambda: readyz(self.worker.port) == 200, 15)
        # Reads go to PostgreSQL on whichever HTTP thread takes the connection: none of them
        # may meet a connection the restart closed.
        for _ in range(8):
            fresh = Client(self.gateway.port, 10)
            status, answer, _ = fresh.request("GET", "/v1/events/ready")
            fresh.close()
            self.assertEqual(status, 200, answer)
        self.buy_and_settle(5)


if __name__ == "__main__":
    unittest.main()
