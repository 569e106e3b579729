"""Receipts and the log's Merkle tree, end to end, in both modes.

Every 202 carries a receipt signed with Ed25519; `catraca verify` checks it against the
published log (inclusion in the tree it signed, consistency with today's head) and
`catraca audit --receipt` against the log on disk. Then the log is tampered with (an entry
changed, one deleted, two reordered) and receipts are forged: each is detected, and only
receipts whose place or prefix was touched fail.
"""
import base64
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import tempfile
import unittest
import urllib.request

from catraca import (BIN, FINAL, PAYMENTS, Server, buy, create_event, seed_from_env, token,
                     wait_status)

PURCHASES = 12


def run(*args):
    proc = subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
    return proc.returncode, proc.stdout + proc.stderr


def verify(path, port, *extra):
    return run("verify", path, "--url", f"http://127.0.0.1:{port}", *extra)


def message_of(r):
    """The signed bytes, rebuilt by hand from receipt.h's description."""
    return ("catraca-receipt/1\n"
            f"event={r['event']}\nseq={r['seq']}\npurchase={r['purchase']}\ntime_ms={r['time_ms']}\n"
            f"request_sha256={r['request_sha256']}\nentry_sha256={r['entry_sha256']}\n"
            f"leaf_index={r['leaf_index']}\ntree_size={r['tree_size']}\nroot={r['root']}\n")


def sign_with(key_path, receipt, directory):
    """Signs the receipt's message with an Ed25519 PEM key through the openssl command."""
    msg = os.path.join(directory, "message.txt")
    with open(msg, "w") as f:
        f.write(message_of(receipt))
    sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", key_path, "-rawin", "-in", msg],
                         capture_output=True, check=True).stdout
    forged = dict(receipt, signature=base64.b64encode(sig).decode())
    return forged


def buy_all(client, event, rng):
    """PURCHASES accepted purchases; returns their receipts in log order."""
    receipts = []
    for n in range(PURCHASES):
        status, body, _ = buy(client, event, f"r{n}-{rng.randrange(10**6)}",
                              category=rng.choice(["cat0", "cat1"]), quantity=rng.choice([1, 2]))
        assert status == 202, (status, body)
        r = body["receipt"]
        assert r is not None and r["seq"] == body["seq"] and r["purchase"] == body["id"], body
        assert r["tree_size"] == r["leaf_index"] + 1
        receipts.append(r)
    return receipts


class ReceiptChecks:
    """What both modes share: self.port(), self.receipts, self.files, self.dir."""

    def write(self, name, receipt):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            json.dump(receipt, f)
        return path

    def assert_verifies(self, index, port=None):
        code, out = verify(self.files[index], port or self.port())
        self.assertEqual(code, 0, out)
        self.assertIn("VERIFIED", out)

    def assert_fails(self, index, words, port=None):
        code, out = verify(self.files[index], port or self.port())
        self.assertEqual(code, 1, out)
        self.assertIn("FAIL", out)
        self.assertRegex(out, words)

    def check_forgeries(self):
        r = self.receipts[3]
        # An altered field under the original signature.
        for field, value in (("leaf_index", r["leaf_index"] - 1), ("tree_size", r["tree_size"] + 1),
                             ("seq", self.receipts[4]["seq"]), ("purchase", self.receipts[4]["purchase"]),
                             ("request_sha256", "0" * 64)):
            changed = dict(r, **{field: value})
            if field == "leaf_index":
                changed["tree_size"] = value + 1
            if field == "tree_size":
                changed["leaf_index"] = value - 1
            code, out = verify(self.write("altered.json", changed), self.port())
            self.assertEqual(code, 1, (field, out))
            self.assertIn("forged or altered", out, field)
        # A receipt signed by another key.
        other = os.path.join(self.dir, "other-key.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", other], check=True,
                       capture_output=True)
        # Pinned keys: the server's own verifies, another one refuses the genuine receipt.
        der = subprocess.run(["openssl", "pkey", "-in", other, "-pubout", "-outform", "DER"],
                             capture_output=True, check=True).stdout
        other_public = base64.b64encode(der[-32:]).decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port()}/.well-known/catraca-receipt-key") as f:
            server_public = json.load(f)["public_key"]
        self.assertEqual(verify(self.files[3], self.port(), "--public-key", server_public)[0], 0)
        code, out = verify(self.files[3], self.port(), "--public-key", other_public)
        self.assertEqual(code, 1, out)
        self.assertIn("forged or altered", out)
        forged = sign_with(other, dict(r, request_sha256="ab" * 32), self.dir)
        code, out = verify(self.write("other.json", forged), self.port())
        self.assertEqual(code, 1, out)
        self.assertIn("forged or altered", out)
        # Signed with the server's own key, the message rebuilt by hand: the unchanged receipt
        # verifies (the signed bytes are as documented), one claiming a purchase that is not in
        # the log at that place does not.
        same = sign_with(self.key_path, r, self.dir)
        code, out = verify(self.write("resigned.json", same), self.port())
        self.assertEqual(code, 0, out)
        fake = sign_with(self.key_path, dict(r, request_sha256="cd" * 32), self.dir)
        code, out = verify(self.write("fake.json", fake), self.port())
        self.assertEqual(code, 1, out)
        self.assertIn("not this purchase", out)
        # Not a receipt at all.
        code, out = verify(self.write("junk.json", {"receipt": {"version": 1}}), self.port())
        self.assertEqual(code, 1, out)


class EmbeddedReceiptsTest(unittest.TestCase, ReceiptChecks):
    @classmethod
    def setUpClass(cls):
        rng = random.Random(seed_from_env("receipts test"))
        cls.server = Server()
        cls.dir = tempfile.mkdtemp(prefix="catraca-receipts-")
        c = cls.server.client()
        create_event(c, "ev-r", (30, 30), limit=2)
        create_event(c, "ev-other", (5,), limit=2)
        cls.receipts = buy_all(c, "ev-r", rng)
        buy(c, "ev-other", "someone")  # another event's entries interleave in the SQLite log
        cls.receipts += buy_all(c, "ev-r", rng)
        c.close()
        cls.files = [os.path.join(cls.dir, f"receipt-{i}.json") for i in range(len(cls.receipts))]
        for path, r in zip(cls.files, cls.receipts):
            with open(path, "w") as f:
                json.dump({"id": r["purchase"], "receipt": r}, f)  # a saved 202 body
        cls.key_path = os.path.join(cls.server.data, "receipt-key.pem")
        cls.log_db = os.path.join(cls.server.data, "catraca.db")
        # A signed head as an auditor would save it from GET /v1/events/{event}/log.
        c = cls.server.client()
        status, head, _ = c.request("GET", "/v1/events/ev-r/log")
        c.close()
        assert status == 200, head
        cls.head_path = os.path.join(cls.dir, "head.json")
        with open(cls.head_path, "w") as f:
            json.dump(head, f)

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def port(self):
        return self.server.port

    def tamper(self, change):
        """Stops the server, changes its log, starts it again (its tree is rebuilt from the log)."""
        assert self.server.stop() == 0
        with open(self.log_db, "rb") as f:
            self.saved = f.read()
        db = sqlite3.connect(self.log_db)
        change(db)
        db.commit()
        db.close()
        self.server.restart()

    def tearDown(self):
        if getattr(self, "saved", None) is not None:
            assert self.server.stop() == 0
            with open(self.log_db, "wb") as f:
                f.write(self.saved)
            for suffix in ("-wal", "-shm"):
                if os.path.exists(self.log_db + suffix):
                    os.remove(self.log_db + suffix)
            self.saved = None
            self.server.restart()

    def audit(self, *indexes, head=False):
        args = ["audit", "--data", self.server.data] + (["--head", self.head_path] if head else [])
        for i in indexes:
            args += ["--receipt", self.files[i]]
        return run(*args)

    @staticmethod
    def receipt_verdicts(out):
        """{receipt index: True when audit named a difference for it}."""
        found = re.findall(r"receipt .*receipt-(\d+)\.json .*: (DIFFERENCE|matches)", out)
        return {int(i): verdict == "DIFFERENCE" for i, verdict in found}

    def seq_of(self, i):
        return int(self.receipts[i]["seq"].split("-")[0])

    def test_every_receipt_verifies_and_audits(self):
        for i in range(len(self.receipts)):
            self.assert_verifies(i)
        code, out = self.audit(*range(len(self.receipts)), head=True)
        self.assertEqual(code, 0, out)
        self.assertIn("checked against the log: CLEAN", out)
        self.assertIn("head.json (event ev-r", out)
        self.assertRegex(out, r"event ev-r: log tree of \d+ entries, root [0-9a-f]{64}")

    def test_published_log_has_no_customer(self):
        c = self.server.client()
        status, head, _ = c.request("GET", "/v1/events/ev-r/log")
        self.assertEqual(status, 200)
        self.assertGreaterEqual(head["tree_size"], len(self.receipts))
        status, key, _ = c.request("GET", "/.well-known/catraca-receipt-key")
        self.assertEqual((status, key["algorithm"]), (200, "Ed25519"))
        r = self.receipts[5]
        status, proof, _ = c.request("GET", f"/v1/events/ev-r/log/inclusion?seq={r['seq']}")
        self.assertEqual((status, proof["leaf_index"]), (200, r["leaf_index"]))
        status, by_leaf, _ = c.request("GET", f"/v1/events/ev-r/log/inclusion?leaf={proof['leaf']}")
        self.assertEqual((status, by_leaf["seq"]), (200, r["seq"]))
        status, cons, _ = c.request("GET", f"/v1/events/ev-r/log/consistency?first={r['tree_size']}")
        self.assertEqual((status, cons["second"]), (200, head["tree_size"]))
        for body in (head, proof, cons):
            self.assertNotIn("r5-", json.dumps(body))
        for bad in ("/v1/events/ev-r/log/inclusion?seq=nope", "/v1/events/ev-r/log/inclusion",
                    f"/v1/events/ev-r/log/inclusion?seq={r['seq']}&tree_size={r['leaf_index']}",
                    "/v1/events/ev-r/log/consistency?first=0",
                    "/v1/events/ev-r/log/consistency?first=1&second=0",
                    f"/v1/events/ev-r/log/inclusion?seq={r['seq']}&tree_size=0",
                    "/v1/events/ev-r/log/consistency?first=3&second=999999"):
            status, answer, _ = c.request("GET", bad)
            self.assertEqual(status, 400, (bad, answer))
        self.assertEqual(c.request("GET", "/v1/events/nope/log")[0], 404)
        self.assertEqual(c.request("GET", "/v1/events/ev-r/log/inclusion?seq=999999-0")[0], 404)
        c.close()

    def test_forged_receipts_are_refused(self):
        self.check_forgeries()
        code, out = self.audit(3)
        self.assertEqual(code, 0, out)
        with open(self.head_path) as f:
            head = json.load(f)
        forged_head = os.path.join(self.dir, "forged-head.json")
        with open(forged_head, "w") as f:
            json.dump(dict(head, tree_size=head["tree_size"] - 1), f)
        code, out = run("audit", "--data", self.server.data, "--head", forged_head)
        self.assertEqual(code, 1, out)
        self.assertIn("forged or altered head", out)
        code, out = run("audit", "--data", self.server.data,
                        "--receipt", os.path.join(self.dir, "fake.json"))
        self.assertEqual(code, 1, out)
        self.assertIn("DIFFERENCE", out)

    def test_a_changed_entry_is_detected(self):
        victim = 6
        seq = self.seq_of(victim)

        def change(db):
            (record,) = db.execute("SELECT record FROM log WHERE seq = ?", (seq,)).fetchone()
            record = bytearray(record)
            record[-1] ^= 1  # the last byte: the quantity or the category's end
            db.execute("UPDATE log SET record = ? WHERE seq = ?", (bytes(record), seq))
        self.tamper(change)
        for i in range(victim):
            self.assert_verifies(i)
        self.assert_fails(victim, "not this purchase")
        self.assert_fails(victim + 3, "not the one the receipt signed|history was rewritten")
        code, out = self.audit(victim - 1, victim, victim + 3)
        self.assertEqual(code, 1, out)
        self.assertEqual(self.receipt_verdicts(out), {victim - 1: False, victim: True,
                                                      victim + 3: True}, out)

    def test_a_deleted_entry_is_detected(self):
        victim = 4
        self.tamper(lambda db: db.execute("DELETE FROM log WHERE seq = ?", (self.seq_of(victim),)))
        self.assert_verifies(victim - 1)
        self.assert_fails(victim, "no entry at the receipt's seq")
        self.assert_fails(victim + 1, "no longer at its place")
        last = len(self.receipts) - 1
        code, out = self.audit(victim - 1, victim, victim + 1, last, head=True)
        self.assertEqual(code, 1, out)
        self.assertRegex(out, r"head .*head.json .*: DIFFERENCE")
        self.assertEqual(self.receipt_verdicts(out), {victim - 1: False, victim: True,
                                                      victim + 1: True, last: True}, out)

    def test_two_reordered_entries_are_detected(self):
        a, b = 2, 8
        sa, sb = self.seq_of(a), self.seq_of(b)

        def change(db):
            ra = db.execute("SELECT time_ms, purchase_id, record FROM log WHERE seq = ?", (sa,)).fetchone()
            rb = db.execute("SELECT time_ms, purchase_id, record FROM log WHERE seq = ?", (sb,)).fetchone()
            db.execute("UPDATE log SET purchase_id = NULL WHERE seq IN (?, ?)", (sa, sb))
            db.execute("UPDATE log SET time_ms = ?, purchase_id = ?, record = ? WHERE seq = ?", rb + (sa,))
            db.execute("UPDATE log SET time_ms = ?, purchase_id = ?, record = ? WHERE seq = ?", ra + (sb,))
        self.tamper(change)
        self.assert_verifies(a - 1)
        for i in (a, a + 1, b, b + 1):
            self.assert_fails(i, "not this purchase|not the one the receipt signed|history was rewritten")
        code, out = self.audit(a - 1, a, b, head=True)
        self.assertEqual(code, 1, out)
        self.assertRegex(out, r"head .*head.json .*: DIFFERENCE")
        self.assertEqual(self.receipt_verdicts(out), {a - 1: False, a: True, b: True}, out)


class HonestLineEntriesTest(unittest.TestCase):
    def test_leaving_the_line_and_paying_late_are_leaves_like_any_entry(self):
        """The honest line's log entries (an unbounded event, a waiting buyer's cancel, a
        confirm after expiry) are in the tree: receipts on both sides of them verify and audit
        CLEAN, and the head counts every entry."""
        server = Server()
        directory = tempfile.mkdtemp(prefix="catraca-receipts-line-")
        try:
            c = server.client()
            create_event(c, "ev-line", (1,), hold_seconds=1, limit=4, line_policy="unbounded")
            answers = {}
            for customer in ("l1", "l2", "l3"):
                status, body, _ = buy(c, "ev-line", customer)
                self.assertEqual(status, 202, body)
                answers[customer] = body
            third = answers["l3"]["id"]
            wait_status(c, third, "l3", lambda s: s == "waiting")
            status, left, _ = c.request("DELETE", f"/v1/purchases/{third}", tok=token("l3"))
            self.assertEqual((status, left["status"]), (200, "cancelled"), left)
            first = answers["l1"]["id"]
            self.assertEqual(wait_status(c, first, "l1", lambda s: s in FINAL)["status"],
                             "expired")
            status, late, _ = c.request("POST", f"/v1/purchases/{first}/confirm",
                                        {"payment_ref": "late"}, PAYMENTS())
            self.assertEqual((status, late["error"]["reason"]), (409, "refund_due"), late)
            status, body, _ = buy(c, "ev-line", "l4")
            self.assertEqual(status, 202, body)
            answers["l4"] = body
            receipts = [answers[k]["receipt"] for k in ("l1", "l2", "l3", "l4")]
            # create, three purchases, the cancel, the late confirm, the fourth purchase
            self.assertGreaterEqual(receipts[-1]["leaf_index"], 6, receipts[-1])
            status, head, _ = c.request("GET", "/v1/events/ev-line/log")
            self.assertEqual(status, 200, head)
            self.assertGreaterEqual(head["tree_size"], receipts[-1]["tree_size"])
            c.close()
            files = []
            for n, r in enumerate(receipts):
                files.append(os.path.join(directory, f"receipt-{n}.json"))
                with open(files[-1], "w") as f:
                    json.dump(r, f)
                code, out = verify(files[-1], server.port)
                self.assertEqual(code, 0, out)
                self.assertIn("VERIFIED", out)
            args = ["audit", "--data", server.data]
            for path in files:
                args += ["--receipt", path]
            code, out = run(*args)
            self.assertEqual(code, 0, out)
            self.assertIn("checked against the log: CLEAN", out)
        finally:
            server.close()
            shutil.rmtree(directory, ignore_errors=True)


class TreeBoundTest(unittest.TestCase):
    def test_past_the_tree_bound_purchases_are_accepted_without_a_receipt(self):
        # --max-purchases-per-event 16: the tree holds 32 log entries (twice that).
        server = Server("--max-purchases-per-event", "16")
        try:
            c = server.client()
            create_event(c, "ev-b", (100,), limit=1)
            receipts = []
            for n in range(40):
                status, body, _ = buy(c, "ev-b", f"b{n}")
                self.assertEqual(status, 202, body)
                receipts.append(body["receipt"])
            signed = [r for r in receipts if r is not None]
            self.assertTrue(receipts[0] is not None and receipts[-1] is None, receipts)
            self.assertEqual(max(r["tree_size"] for r in signed), 32)
            self.assertTrue(all(r is None for r in receipts[len(signed):]))
            status, head, _ = c.request("GET", "/v1/events/ev-b/log")
            self.assertEqual((status, head["tree_size"]), (200, 32))
            self.assertIn("no receipt", server.log())
            c.close()
        finally:
            self.assertEqual(server.close(), 0)


def parse_resp(data, at=0):
    """One RESP reply from data[at:]; returns (value, next offset)."""
    kind, end = data[at:at + 1], data.index(b"\r\n", at)
    head = data[at + 1:end]
    at = end + 2
    if kind in (b"+", b"-"):
        return head, at
    if kind == b":":
        return int(head), at
    if kind == b"$":
        n = int(head)
        return (None, at) if n < 0 else (data[at:at + n], at + n + 2)
    if kind == b"*":
        items = []
        for _ in range(int(head)):
            item, at = parse_resp(data, at)
            items.append(item)
        return items, at
    raise ValueError(data[at - 1:at + 20])


class DistributedReceiptsTest(unittest.TestCase, ReceiptChecks):
    """Two gateways append to one event's Redis stream; each computes the same tree from it."""

    @classmethod
    def setUpClass(cls):
        from cluster import Cluster
        rng = random.Random(seed_from_env("distributed receipts test"))
        cls.dir = tempfile.mkdtemp(prefix="catraca-receipts-")
        cls.key_path = os.path.join(cls.dir, "shared-key.pem")
        cls.cluster = Cluster("--receipt-key", cls.key_path)
        c = cls.cluster.client()  # spreads requests over both gateways
        create_event(c, "ev-d", (40, 40), limit=2)
        cls.receipts = buy_all(c, "ev-d", rng)
        c.close()
        cls.files = [os.path.join(cls.dir, f"receipt-{i}.json") for i in range(len(cls.receipts))]
        for path, r in zip(cls.files, cls.receipts):
            with open(path, "w") as f:
                json.dump(r, f)

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def port(self):
        return self.cluster.gateways[-1].port

    def stream(self):
        entries, _ = parse_resp(self.cluster.redis.command("XRANGE", "catraca:{ev-d}:log", "-", "+"))
        return entries

    def rewrite(self, entries):
        """Stops every process, replaces the stream with entries (same ids), restarts the gateways."""
        for p in self.cluster.gateways + self.cluster.workers:
            p.stop()
        self.cluster.redis.command("DEL", "catraca:{ev-d}:log")
        for entry_id, fields in entries:
            reply = self.cluster.redis.command("XADD", "catraca:{ev-d}:log", entry_id, *fields)
            assert not reply.startswith(b"-"), reply
        for g in self.cluster.gateways:
            g.start()

    def test_1_receipts_verify_on_every_gateway(self):
        indexes = sorted({r["leaf_index"] for r in self.receipts})
        self.assertEqual(len(indexes), len(self.receipts))  # one tree, one place each
        for i in range(len(self.receipts)):
            for g in self.cluster.gateways:
                self.assert_verifies(i, g.port)
        self.check_forgeries()

    def test_2_tampering_is_detected(self):
        original = self.stream()
        place = {e[0].decode(): n for n, e in enumerate(original)}
        at = [place[r["seq"]] for r in self.receipts]
        # A changed record.
        changed = [list(e) for e in original]
        fields = list(changed[at[5]][1])
        fields[fields.index(b"r") + 1] = fields[fields.index(b"r") + 1][:-1] + bytes(
            [fields[fields.index(b"r") + 1][-1] ^ 1])
        changed[at[5]][1] = fields
        self.rewrite(changed)
        self.assert_verifies(4)
        self.assert_fails(5, "not this purchase")
        self.assert_fails(7, "not the one the receipt signed|history was rewritten")
        # A deleted entry.
        self.rewrite([e for n, e in enumerate(original) if n != at[3]])
        self.assert_verifies(2)
        self.assert_fails(3, "no entry at the receipt's seq")
        self.assert_fails(4, "no longer at its place")
        # Two reordered entries (their contents swapped, the ids kept in order).
        swapped = [list(e) for e in original]
        swapped[at[2]][1], swapped[at[6]][1] = original[at[6]][1], original[at[2]][1]
        self.rewrite(swapped)
        self.assert_verifies(1)
        for i in (2, 6, 8):
            self.assert_fails(i, "not this purchase|not the one the receipt signed|history was rewritten")
        self.rewrite(original)
        self.assert_verifies(len(self.receipts) - 1)


if __name__ == "__main__":
    unittest.main()
