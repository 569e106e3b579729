"""`catraca audit`: a clean sale audits clean; tampering with the store or the log is named."""
import os
import random
import sqlite3
import subprocess
import unittest

from catraca import BIN, FINAL, PAYMENTS, Server, buy, create_event, seed_from_env, token, wait_status


def audit(data):
    run = subprocess.run([BIN, "audit", "--data", data], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
    return run.returncode, run.stdout + run.stderr


class AuditTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rng = random.Random(seed_from_env("audit test"))
        cls.server = Server()
        c = cls.server.client()
        create_event(c, "ev-audit", (5, 3), hold_seconds=3, limit=2)
        ids = []
        for n in range(40):
            status, p, _ = buy(c, "ev-audit", f"a{n}", category=rng.choice(["cat0", "cat1"]),
                               quantity=rng.choice([1, 2]))
            assert status == 202
            ids.append((p["id"], f"a{n}"))
        for n, (pid, customer) in enumerate(ids[:12]):
            p = wait_status(c, pid, customer, lambda s: s != "queued")
            if p["status"] == "held" and n % 4 != 3:
                c.request("POST", f"/v1/purchases/{pid}/confirm", {"payment_ref": "r" + pid}, PAYMENTS())
            elif p["status"] == "held":
                c.request("DELETE", f"/v1/purchases/{pid}", tok=token(customer))
        cls.final = [wait_status(c, pid, cu, lambda s: s in FINAL, timeout=60) for pid, cu in ids]
        c.close()
        assert cls.server.stop() == 0
        # The embedded mode's two files: the log, and the store derived from it.
        cls.log_db = os.path.join(cls.server.data, "catraca.db")
        cls.db = os.path.join(cls.server.data, "store.db")

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def setUp(self):
        self.saved = {}
        for path in (self.log_db, self.db):
            with open(path, "rb") as f:
                self.saved[path] = f.read()

    def tearDown(self):
        for path, content in self.saved.items():
            with open(path, "wb") as f:
                f.write(content)
            for suffix in ("-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)

    def sql(self, statement, *args, path=None):
        db = sqlite3.connect(path or self.db)
        db.execute(statement, args)
        db.commit()
        db.close()

    def test_clean(self):
        code, out = audit(self.server.data)
        self.assertEqual(code, 0, out)
        self.assertIn("CLEAN", out)
        self.assertIn("40 purchases checked", out)

    def test_tampered_outcome_is_named(self):
        rejected = next(p for p in self.final if p["status"] == "rejected")
        pid = rejected["id"]
        db = sqlite3.connect(self.db)
        row_id = next(r[0] for r in db.execute("SELECT id FROM purchases") if self.name_of(r[0]) == pid)
        db.close()
        self.sql("UPDATE purchases SET status = 3, reason = 0 WHERE id = ?", row_id)
        code, out = audit(self.server.data)
        self.assertEqual(code, 1, out)
        self.assertIn(pid, out)
        self.assertIn("status=confirmed", out)

    def test_deleted_log_entry_is_found(self):
        self.sql("DELETE FROM log WHERE seq = (SELECT min(seq) FROM log WHERE purchase_id IS NOT NULL)",
                 path=self.log_db)
        code, out = audit(self.server.data)
        self.assertEqual(code, 1, out)
        self.assertIn("DIFFERENCE", out)

    def test_deleted_stored_purchase_is_named(self):
        victim = self.final[5]["id"]
        db = sqlite3.connect(self.db)
        row_id = next(r[0] for r in db.execute("SELECT id FROM purchases") if self.name_of(r[0]) == victim)
        db.close()
        self.sql("DELETE FROM purchases WHERE id = ?", row_id)
        code, out = audit(self.server.data)
        self.assertEqual(code, 1, out)
        self.assertIn(victim, out)
        self.assertIn("not in the store", out)

    def test_doubled_ticket_is_named(self):
        confirmed = [p for p in self.final if p["status"] == "confirmed"]
        self.assertGreaterEqual(len(confirmed), 2, "the sale confirmed too little to test this")
        a, b = confirmed[0], confirmed[1]
        db = sqlite3.connect(self.db)
        rows = {self.name_of(r[0]): (r[0], r[1]) for r in db.execute("SELECT id, tickets FROM purchases")}
        db.close()
        self.sql("UPDATE purchases SET tickets = ? WHERE id = ?", rows[a["id"]][1][:8 * b["quantity"]]
                 if len(rows[a["id"]][1]) >= 8 * b["quantity"] else rows[a["id"]][1], rows[b["id"]][0])
        code, out = audit(self.server.data)
        self.assertEqual(code, 1, out)
        self.assertIn(b["id"], out)

    @staticmethod
    def name_of(row_id):
        value = row_id & ((1 << 64) - 1)
        alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
        text = ""
        for _ in range(13):
            text = alphabet[value & 31] + text
            value >>= 5
        return "p_" + text


if __name__ == "__main__":
    unittest.main()
