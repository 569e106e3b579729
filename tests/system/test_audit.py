"""`catraca audit`: a clean sale audits clean; tampering with the store or the log is named.

Embedded (AuditTest: the SQLite log and store of `catraca serve`) and distributed
(DistributedAuditTest: a Redis Streams log and a PostgreSQL store written by 2 gateways and 2
workers, tests/system/cluster.py). Randomized sales: the seed is printed, CATRACA_SEED
reproduces it.
"""
import os
import random
import socket
import sqlite3
import subprocess
import unittest

from catraca import BIN, FINAL, PAYMENTS, Server, buy, create_event, seed_from_env, token, wait_status
from cluster import Cluster


def audit(data=None, where=None):
    """Runs `catraca audit` on a data directory (embedded) or on where's options (distributed)."""
    run = subprocess.run([BIN, "audit"] + (where or ["--data", data]), capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
    return run.returncode, run.stdout + run.stderr


def audit_with(data, options):
    """`catraca audit --data DATA` with more options."""
    run = subprocess.run([BIN, "audit", "--data", data] + options, capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
    return run.returncode, run.stdout + run.stderr


def name_of(row_id):
    """The API's "p_..." id of a store row's integer id (signed in PostgreSQL)."""
    value = row_id & ((1 << 64) - 1)
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    text = ""
    for _ in range(13):
        text = alphabet[value & 31] + text
        value >>= 5
    return "p_" + text


def make_sale(client, event, rng):
    """40 purchases in 2 categories (5 and 3 tickets, holds of 3 s, 2 a customer); of the first
    12, held ones are paid or cancelled, the rest expire. Returns every purchase once final."""
    create_event(client, event, (5, 3), hold_seconds=3, limit=2)
    ids = []
    for n in range(40):
        status, p, _ = buy(client, event, f"a{n}", category=rng.choice(["cat0", "cat1"]),
                           quantity=rng.choice([1, 2]))
        assert status == 202, (status, p)
        ids.append((p["id"], f"a{n}"))
    for n, (pid, customer) in enumerate(ids[:12]):
        p = wait_status(client, pid, customer, lambda s: s != "queued")
        if p["status"] == "held" and n % 4 != 3:
            client.request("POST", f"/v1/purchases/{pid}/confirm", {"payment_ref": "r" + pid},
                           PAYMENTS())
        elif p["status"] == "held":
            client.request("DELETE", f"/v1/purchases/{pid}", tok=token(customer))
    return [wait_status(client, pid, cu, lambda s: s in FINAL, timeout=60) for pid, cu in ids]


class AuditTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rng = random.Random(seed_from_env("audit test"))
        cls.server = Server()
        c = cls.server.client()
        cls.final = make_sale(c, "ev-audit", rng)
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
        row_id = next(r[0] for r in db.execute("SELECT id FROM purchases") if name_of(r[0]) == pid)
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
        row_id = next(r[0] for r in db.execute("SELECT id FROM purchases") if name_of(r[0]) == victim)
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
        rows = {name_of(r[0]): (r[0], r[1]) for r in db.execute("SELECT id, tickets FROM purchases")}
        db.close()
        self.sql("UPDATE purchases SET tickets = ? WHERE id = ?", rows[a["id"]][1][:8 * b["quantity"]]
                 if len(rows[a["id"]][1]) >= 8 * b["quantity"] else rows[a["id"]][1], rows[b["id"]][0])
        code, out = audit(self.server.data)
        self.assertEqual(code, 1, out)
        self.assertIn(b["id"], out)

    def row_of(self, purchase_id):
        db = sqlite3.connect(self.db)
        row = next(r for r in db.execute("SELECT id, customer, category, tickets, seq_major "
                                         "FROM purchases") if name_of(r[0]) == purchase_id)
        db.close()
        return row

    def assert_named(self, purchase_id, statement, *args):
        """statement changes one stored field of purchase_id's row: the audit names it."""
        self.sql(statement, *args)
        code, out = audit(self.server.data)
        self.assertEqual(code, 1, out)
        self.assertIn("stored outcome differs from the replay", out)
        self.assertIn(purchase_id, out)

    # Each field the audit reads from the store (packed while the log is replayed: customer and
    # category kept as keys, ticket codes apart) is compared: one changed field is named.
    def test_changed_customer_is_named(self):
        victim = self.final[3]["id"]
        row_id = self.row_of(victim)[0]
        self.assert_named(victim, "UPDATE purchases SET customer = 'mallory' WHERE id = ?", row_id)

    def test_changed_category_is_named(self):
        victim = next(p for p in self.final if p["status"] != "rejected")["id"]
        row_id, _, category, _, _ = self.row_of(victim)
        other = "cat1" if category == "cat0" else "cat0"
        self.assert_named(victim, "UPDATE purchases SET category = ? WHERE id = ?", other, row_id)

    def test_changed_ticket_code_is_named(self):
        confirmed = next(p for p in self.final if p["status"] == "confirmed")
        row_id, _, _, tickets, _ = self.row_of(confirmed["id"])
        changed = bytes([tickets[0] ^ 1]) + tickets[1:]
        self.assert_named(confirmed["id"], "UPDATE purchases SET tickets = ? WHERE id = ?", changed,
                          row_id)

    def test_changed_arrival_is_named(self):
        victim = self.final[7]["id"]
        row_id, _, _, _, seq = self.row_of(victim)
        self.assert_named(victim, "UPDATE purchases SET seq_major = ? WHERE id = ?", seq + 1, row_id)

    def test_refund_flag_is_compared(self):
        victim = next(p for p in self.final if p["status"] == "rejected")["id"]
        row_id = self.row_of(victim)[0]
        self.assert_named(victim, "UPDATE purchases SET payment_ref = 'pay-x' WHERE id = ?", row_id)

    def test_more_rows_than_the_pool_is_a_difference(self):
        # 40 stored purchases, an engine of 20: the first 20 agree, the 21st row is one the
        # replay cannot have decided.
        code, out = audit_with(self.server.data, ["--max-purchases-per-event", "20"])
        self.assertEqual(code, 1, out)
        self.assertIn("the store has more purchases than the replay can hold", out)


class Resp:
    """A minimal Redis client over a raw socket (binary-safe replies: bulk strings, arrays,
    integers), enough to read, delete and rewrite one stream's entries."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")

    def __call__(self, *words):
        payload = b"*%d\r\n" % len(words)
        for w in words:
            b = w if isinstance(w, bytes) else str(w).encode()
            payload += b"$%d\r\n%s\r\n" % (len(b), b)
        self.sock.sendall(payload)
        return self.reply()

    def reply(self):
        line = self.file.readline()[:-2]
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b":"):
            return int(rest) if kind == b":" else rest
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            if int(rest) < 0:
                return None
            data = self.file.read(int(rest) + 2)[:-2]
            return data
        if kind == b"*":
            return None if int(rest) < 0 else [self.reply() for _ in range(int(rest))]
        raise RuntimeError(f"unexpected reply {line!r}")

    def close(self):
        self.file.close()
        self.sock.close()


class DistributedCases:
    """`catraca audit (--redis URL | --kafka BOOTSTRAP) --postgres CONNINFO` on a sale made by
    2 gateways + 2 workers on the log LOG: a clean sale is clean; tampering in PostgreSQL is
    named. Subclasses add their log's own tampering (save_log / restore_log keep it)."""

    LOG = "redis"
    EVENT = "ev-audit-d"

    @classmethod
    def setUpClass(cls):
        rng = random.Random(seed_from_env(f"distributed audit test ({cls.LOG})"))
        cls.cluster = Cluster(gateways=2, workers=2, log=cls.LOG)
        try:
            c = cls.cluster.client()
            cls.final = make_sale(c, cls.EVENT, rng)
            c.close()
            # The sale is over: nothing writes while the tests tamper (the log and PostgreSQL
            # stay).
            for p in cls.cluster.gateways + cls.cluster.workers:
                assert p.stop() == 0, p.log()[-3000:]
            cls.cluster.gateways, cls.cluster.workers = [], []
            cls.where = cls.cluster.log_args() + ["--postgres", cls.cluster.postgres.conninfo]
            cls.cluster.sql("CREATE TABLE saved_purchases AS SELECT * FROM purchases")
            cls.save_log()
        except BaseException:
            cls.cluster.close()
            raise

    @classmethod
    def save_log(cls):
        pass

    def restore_log(self):
        pass

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def tearDown(self):
        self.cluster.sql("BEGIN; DELETE FROM purchases; INSERT INTO purchases SELECT * FROM "
                         "saved_purchases; COMMIT")
        self.restore_log()

    def row_id(self, purchase):
        return next(int(r) for r in self.cluster.sql(f"SELECT id FROM purchases WHERE event = "
                                                     f"'{self.EVENT}'").split()
                    if name_of(int(r)) == purchase["id"])

    def assert_named(self, purchase_id, *phrases):
        code, out = audit(where=self.where)
        self.assertEqual(code, 1, out)
        self.assertIn("DIFFERENCES FOUND", out)
        difference = next((line for line in out.splitlines() if line.startswith("DIFFERENCE")), "")
        self.assertTrue(difference, out)
        self.assertIn(purchase_id, out)
        for phrase in phrases:
            self.assertIn(phrase, out)
        return out

    def test_clean_sale_audits_clean(self):
        code, out = audit(where=self.where)
        self.assertEqual(code, 0, out)
        self.assertIn("CLEAN", out)
        self.assertIn("40 purchases checked", out)

    def test_changed_status_is_named(self):
        rejected = next(p for p in self.final if p["status"] == "rejected")
        self.cluster.sql(f"UPDATE purchases SET status = 3, reason = 0 WHERE id = {self.row_id(rejected)}")
        self.assert_named(rejected["id"], "stored outcome differs", "status=confirmed")

    def test_added_ticket_is_named(self):
        confirmed = next(p for p in self.final if p["status"] == "confirmed")
        self.cluster.sql(f"UPDATE purchases SET tickets = tickets || '\\x0102030405060708'::bytea "
                         f"WHERE id = {self.row_id(confirmed)}")
        self.assert_named(confirmed["id"], "stored outcome differs")

    def test_deleted_row_is_named(self):
        victim = self.final[5]
        self.cluster.sql(f"DELETE FROM purchases WHERE id = {self.row_id(victim)}")
        self.assert_named(victim["id"], "not in the store")

    # Each column the audit reads from PostgreSQL (in binary: integers of 2, 4 and 8 bytes, text,
    # bytea, a boolean) is compared: one changed column is named.
    def assert_column_named(self, purchase, assignment):
        self.cluster.sql(f"UPDATE purchases SET {assignment} WHERE id = {self.row_id(purchase)}")
        self.assert_named(purchase["id"], "stored outcome differs")

    def test_changed_customer_is_named(self):
        self.assert_column_named(self.final[3], "customer = 'mallory'")

    def test_changed_category_is_named(self):
        victim = next(p for p in self.final if p["status"] != "rejected")
        self.assert_column_named(victim, "category = CASE WHEN category = 'cat0' THEN 'cat1' "
                                         "ELSE 'cat0' END")

    def test_changed_quantity_is_named(self):
        self.assert_column_named(self.final[4], "quantity = quantity + 1")

    def test_changed_arrival_is_named(self):
        self.assert_column_named(self.final[7], "seq_major = seq_major + 1")

    def test_changed_arrival_minor_is_named(self):
        self.assert_column_named(self.final[8], "seq_minor = seq_minor + 1")

    def test_changed_reason_is_named(self):
        rejected = next(p for p in self.final if p["status"] == "rejected")
        self.assert_column_named(rejected, "reason = reason + 1")

    def test_changed_ticket_code_is_named(self):
        confirmed = next(p for p in self.final if p["status"] == "confirmed")
        self.assert_column_named(confirmed, "tickets = set_byte(tickets, 0, get_byte(tickets, 0) # 1)")

    def test_refund_flag_is_compared(self):
        rejected = next(p for p in self.final if p["status"] == "rejected")
        self.assert_column_named(rejected, "payment_ref = 'pay-x'")

    # The rows come as one binary COPY (store/pg_copy.c): a text longer than any id, a NULL
    # where tickets belong, and a COPY stopped early (the pool is full) are read right.
    def test_long_customer_is_named(self):
        self.assert_column_named(self.final[6], "customer = repeat('m', 300)")

    def test_missing_tickets_are_named(self):
        confirmed = next(p for p in self.final if p["status"] == "confirmed")
        self.assert_column_named(confirmed, "tickets = NULL")

    def test_more_rows_than_the_pool_is_a_difference(self):
        # 40 stored purchases, an engine of 20: a row the replay cannot have decided (the rows
        # come in the table's order, so which difference is met first varies).
        code, out = audit(where=self.where + ["--max-purchases-per-event", "20"])
        self.assertEqual(code, 1, out)
        self.assertTrue("the store has more purchases than the replay can hold" in out or
                        "the store has a purchase the log never decided" in out, out)
        self.assertIn("DIFFERENCES FOUND", out)

    def test_forged_purchase_is_named(self):
        confirmed = next(p for p in self.final if p["status"] == "confirmed")
        forged = 0x0123456789ABCDE
        self.cluster.sql(f"INSERT INTO purchases SELECT {forged}, event, 'mallory', category, quantity, "
                         f"seq_major, seq_minor + 1000, created_ms, status, reason, hold_expires_at_ms, "
                         f"position, tickets, updated_ms FROM purchases WHERE id = {self.row_id(confirmed)}")
        self.assert_named(name_of(forged), "the log never decided")


class DistributedAuditTest(DistributedCases, unittest.TestCase):
    """On Redis Streams, whose entries a tamperer can remove (XDEL) or rewrite (a new stream
    with the same ids).

    What the audit detects in the log: an entry removed or altered whose command decided a
    stored purchase (its seq, outcome or existence then differs from the store). What it
    cannot: a log and a store changed consistently (that is what receipts are for), entries
    after the store's committed offset (not decided yet), and the removal of an entry that
    changed nothing (a retry answered REPEATED, a TICK that expired no hold).
    """

    @classmethod
    def save_log(cls):
        cls.stream = f"catraca:{{{cls.EVENT}}}:log"
        cls.redis = Resp(cls.cluster.redis.port)
        cls.saved_stream = cls.redis("DUMP", cls.stream)

    def restore_log(self):
        self.redis("RESTORE", self.stream, 0, self.saved_stream, "REPLACE")

    @classmethod
    def tearDownClass(cls):
        cls.redis.close()
        super().tearDownClass()

    def entries(self):
        """The stream's entries: [(id, {field: value})], in order."""
        return [(entry_id, dict(zip(fields[::2], fields[1::2])))
                for entry_id, fields in self.redis("XRANGE", self.stream, "-", "+")]

    def purchase_entry(self, purchase):
        row = self.cluster.sql(f"SELECT seq_major || '-' || seq_minor FROM purchases "
                               f"WHERE id = {self.row_id(purchase)}")
        return next(e for e in self.entries() if e[0].decode() == row)

    def test_removed_log_entry_is_named(self):
        victim = self.final[7]
        entry_id, _ = self.purchase_entry(victim)
        self.assertEqual(self.redis("XDEL", self.stream, entry_id), 1)
        self.assert_named(victim["id"], "the log never decided")

    def test_altered_log_entry_is_named(self):
        """Streams never change an entry: rewrite the stream with the same ids, two purchases'
        records swapped (each then arrives at the other's place)."""
        a, b = self.final[2], self.final[9]
        a_id, _ = self.purchase_entry(a)
        b_id, _ = self.purchase_entry(b)
        entries = self.entries()
        records = {e[0]: e[1][b"r"] for e in entries}
        self.redis("DEL", self.stream)
        for entry_id, fields in entries:
            if entry_id in (a_id, b_id):
                fields[b"r"] = records[b_id if entry_id == a_id else a_id]
            flat = [x for kv in fields.items() for x in kv]
            self.redis("XADD", self.stream, entry_id, *flat)
        code, out = audit(where=self.where)
        self.assertEqual(code, 1, out)
        self.assertIn("stored outcome differs", out)
        # The first of the two in the store's (id) order is named, with both versions.
        named = [p["id"] for p in (a, b) if f"store   {p['id']}" in out and f"replay  {p['id']}" in out]
        self.assertEqual(len(named), 1, out)

    def test_removed_stream_is_found(self):
        self.redis("DEL", self.stream)
        self.assert_named(self.final[0]["id"], "the log never decided")


class KafkaAuditTest(DistributedCases, unittest.TestCase):
    """On Kafka (one topic per event, tests/system/cluster.py's shared broker): the same sale and
    the same tampering in PostgreSQL. The log side is not tampered with here: a Kafka record can
    be neither changed nor removed on its own (a topic only loses its oldest records, or all of
    them), and whatever the audit reads it compares exactly as on Redis (the store's rows
    against the replay of what the log holds)."""

    LOG = "kafka"


if __name__ == "__main__":
    unittest.main()
