"""The outcome counters, the capacity gauge, catraca_ready and catraca_build_info on /metrics
(what the Grafana overview and the alert rules read) agree with what the API answered."""
import re
import subprocess
import unittest

from catraca import BIN, PAYMENTS, Server, buy, create_event, wait_status


def samples(client):
    status, text, _ = client.request("GET", "/metrics")
    assert status == 200, status
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


class OutcomeMetricsTest(unittest.TestCase):
    def test_counters_follow_the_decisions(self):
        server = Server()
        try:
            c = server.client()
            create_event(c, "ev-count", (2,))
            status, held, _ = buy(c, "ev-count", "alice", quantity=2)
            self.assertEqual(status, 202, held)
            wait_status(c, held["id"], "alice", lambda s: s == "held")
            status, answer, _ = c.request("POST", f"/v1/purchases/{held['id']}/confirm",
                                          {"payment_ref": "pay-1"}, PAYMENTS())
            self.assertEqual(status, 200, answer)
            rejected = []
            for customer, quantity in (("bob", 3), ("carol", 1)):
                status, answer, _ = buy(c, "ev-count", customer, quantity=quantity)
                self.assertEqual(status, 202, answer)
                final = wait_status(c, answer["id"], customer, lambda s: s == "rejected")
                rejected.append(final["reason"])
            self.assertEqual(rejected, ["sold_out", "sold_out"])
            m = samples(c)
            self.assertEqual(m["catraca_purchases_confirmed_total"], 1)
            self.assertEqual(m["catraca_purchases_cancelled_total"], 0)
            self.assertEqual(m['catraca_purchases_rejected_total{reason="sold_out"}'], 2)
            self.assertEqual(m['catraca_purchases_rejected_total{reason="limit_exceeded"}'], 0)
            self.assertEqual(m['catraca_category_capacity{event="ev-count",category="cat0"}'], 2)
            self.assertEqual(m['catraca_category_sold{event="ev-count",category="cat0"}'], 2)
            self.assertEqual(m["catraca_ready"], 1)
            version = subprocess.run([BIN, "--version"], capture_output=True, text=True,
                                     timeout=30).stdout.split()[-1]
            self.assertEqual(m[f'catraca_build_info{{version="{version}"}}'], 1)
        finally:
            server.close()


if __name__ == "__main__":
    unittest.main()
