"""The distributed mode on real Apache Kafka brokers, under failure (issue 17, DESIGN.md promises
1, 2 and 4): every purchase answered 202 ends with exactly one decision, nothing is oversold,
arrival order is kept, and `catraca audit` of the log and the store is clean.

- BrokerKillTest: a 3-broker cluster (replication factor 3, min.insync.replicas 2); mid-rush
  one broker (a follower of the sale's event topic) is killed with kill -9, then, once it is
  back in sync, the partition's leader. acks=all with 2 in-sync replicas means no
  acknowledged append lives on the dead leader alone. Last, both followers at once (two
  brokers of three): nothing sent then is answered 202, every 202 answered meanwhile names a
  record two brokers hold, and the sale resumes when they are back (kill_both_followers).
- ProcessCrashTest: 1 broker; a gateway and the worker owning the sale are killed with kill -9
  mid-rush.
Randomized buyers: the seed is printed, CATRACA_SEED reproduces it.
"""
import os
import subprocess
import threading
import time
import unittest

from catraca import BIN, Client, create_event, seed_from_env, token
from cluster import Cluster
from servers import Kafka
from test_distributed import check_promises, settle


class EndlessRush:
    """Buyers b<first>, b<first+1>... each buy one ticket (Idempotency-Key k<n>) from `threads`
    threads spread over the gateways, until stop() or `limit` buyers in all."""

    def __init__(self, cluster, event, threads=6, limit=20000, pause_s=0.002, first=0):
        self.cluster, self.event, self.pause_s = cluster, event, pause_s
        self.answers = {}  # buyer -> (status, answer, sent_at, received_at)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.next, self.limit = first, first + limit
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(threads)]

    def take(self):
        with self.lock:
            if self.stopping.is_set() or self.next >= self.limit:
                return None
            self.next += 1
            return self.next - 1

    def run(self, i):
        ports = [g.port for g in self.cluster.gateways]
        client = Client(ports[i % len(ports)], timeout=20)
        while (b := self.take()) is not None:
            sent = time.monotonic()
            try:
                status, answer, _ = client.request(
                    "POST", f"/v1/events/{self.event}/purchases",
                    {"category": "cat0", "quantity": 1}, token(f"b{b}"),
                    {"Idempotency-Key": f"k{b}"})
            except OSError as e:
                status, answer = 0, str(e)
                time.sleep(0.05)  # a dead gateway: do not spin
            with self.lock:
                self.answers[b] = (status, answer, sent, time.monotonic())
            time.sleep(self.pause_s)
        client.close()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self, timeout=60):
        self.stopping.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "rush did not stop in time"
        return self

    def count(self, status=202):
        with self.lock:
            return sum(1 for a in self.answers.values() if a[0] == status)

    def statuses(self):
        with self.lock:
            counts = {}
            for a in self.answers.values():
                counts[a[0]] = counts.get(a[0], 0) + 1
            return counts

    def accepted(self):
        with self.lock:
            return {b: a[1] for b, a in self.answers.items() if a[0] in (200, 202)}

    def wait_for(self, accepted, timeout=60):
        """Until `accepted` more purchases than now were answered 202 (the sale is moving)."""
        target = self.count() + accepted
        deadline = time.monotonic() + timeout
        while self.count() < target:
            assert time.monotonic() < deadline, \
                f"the rush did not get {accepted} more 202s in {timeout} s: {self.statuses()}"
            time.sleep(0.05)


def wait_until(what, condition, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def check_exactly_once(test, cluster, event, accepted, decided):
    """Straight from PostgreSQL: every purchase answered 202 is stored exactly once, at the
    place in the log its 202 named (its seq), and one purchase id never named two buyers."""
    def seq_key(text):
        major, minor = text.split("-")
        return int(major), int(minor)

    # Over Kafka a 503 may hide an append that did land (a broker that stalled writes it after
    # the time-out; log_kafka.h, DURABILITY). The buyer's retry then appends a second copy with
    # the same purchase id, answered 202 with the copy's seq, while the engine decides the FIRST
    # copy (the copy is REPEATED): the purchase keeps the earlier, better place. Allowed here,
    # and only that: same id, and the 202 names a LATER place than the one decided.
    later_copies = {b for b, p in decided.items()
                    if p["id"] == accepted[b]["id"]
                    and seq_key(accepted[b]["seq"]) > seq_key(p["seq"])}
    if later_copies:
        print(f"{len(later_copies)} retried purchases' 202 named a later copy of their entry",
              flush=True)
    moved = {b: (accepted[b]["seq"], p["seq"]) for b, p in decided.items()
             if b not in later_copies
             and (p["seq"] != accepted[b]["seq"] or p["id"] != accepted[b]["id"])}
    test.assertFalse(moved, "a purchase is not where its 202 said")
    ids = [p["id"] for p in decided.values()]
    test.assertEqual(len(ids), len(set(ids)), "one purchase id answered to two buyers")
    rows = cluster.sql(f"SELECT seq_major || '-' || seq_minor, count(*) FROM purchases "
                       f"WHERE event = '{event}' GROUP BY 1")
    stored = dict(line.rsplit("|", 1) for line in rows.splitlines())
    missing = [p["seq"] for p in decided.values() if p["seq"] not in stored]
    test.assertFalse(missing, f"{len(missing)} purchases answered 202 are not in the store, "
                              f"e.g. seq {missing[:5]}")
    twice = {seq: n for seq, n in stored.items() if n != "1"}
    test.assertFalse(twice, f"one place in the log stored as several purchases: {twice}")


def seq_offset(answer):
    """The Kafka offset a 202's seq names (seq = offset + 1), or None without a seq."""
    if not isinstance(answer, dict) or "seq" not in answer:
        return None
    return int(answer["seq"].split("-")[0]) - 1


def kill_both_followers(test, kafka, topic, rush, min_insync, expect_isr_shrink,
                        hold_s=8.0, answers_after=3, limit_s=90):
    """kill -9 both followers of `topic`'s partition mid-rush, keep them down, then start them
    again. Returns the broken promises found (a list of lines; empty: none), having printed
    the evidence. What it checks, while only the leader is alive:

    1. No purchase SENT after both kills returned is answered 200/202 before the restart: its
       entry can only be on the leader (one copy < min.insync.replicas).
    2. Every 200/202 answered meanwhile (sent before or during the kills) names an offset
       that at least `min_insync` brokers hold, counted from each broker's own log files
       (Kafka.log_end_offset, read before the restart): a record the second follower fetched
       before it died may be acknowledged seconds later, once the controller drops the first
       from the ISR (seen with 5 brokers: 2.8 s), and that is a kept promise.

    The brokers stay down `hold_s` at least (past the broker session time-out, 3 s, and the
    log time-out, 2 s), until `answers_after` purchases sent after the kills were answered,
    and, with expect_isr_shrink (a controller quorum that survives the kills), until the
    partition's ISR is the leader alone: the state where an acks=all below
    min.insync.replicas would show. Bounded by limit_s; the time-line is printed."""
    state = kafka.wait_isr(topic, 3)
    leader = kafka.leader_of(topic)
    followers = [i for i in state["replicas"] if i != leader]
    error, high = kafka.high_watermark(topic, leader)
    test.assertEqual(error, 0, f"node{leader}, named the leader, does not lead {topic}")
    kill_started = time.monotonic()
    for i in followers:
        kafka.kill9(i)
    killed = time.monotonic()
    test.assertFalse([i for i in followers if kafka.running(i)], "a killed broker still runs")
    print(f"killed followers node{followers[0]} and node{followers[1]} in "
          f"{killed - kill_started:.2f} s; node{leader} leads alone (high watermark {high})",
          flush=True)
    timeline = [(0.0, high, state["isr"])]
    shrunk_at = None
    while True:
        now = time.monotonic()
        try:
            _, high = kafka.high_watermark(topic, leader, timeout=2.0)
            isr = kafka.partition(topic)["isr"]
        except (OSError, TypeError):
            high, isr = None, None
        if (high, isr) != timeline[-1][1:]:
            timeline.append((round(now - killed, 2), high, isr))
        if isr == [leader] and shrunk_at is None:
            shrunk_at = now
        since = shrunk_at if expect_isr_shrink and shrunk_at is not None else killed
        with rush.lock:
            later = sum(1 for a in rush.answers.values() if a[2] > since)
        if now - killed >= hold_s and later >= answers_after and \
                (shrunk_at is not None or not expect_isr_shrink):
            break
        test.assertLess(now - killed, limit_s,
                        f"followers down {limit_s} s: {later} answers to purchases sent since "
                        f"the kill or the ISR shrink, ISR shrink seen: {shrunk_at is not None}; "
                        f"(s after kill, high watermark, ISR): {timeline}")
        time.sleep(0.25)
    # Before the restart: a restarted follower truncates its copy to the leader's.
    ends = {i: kafka.log_end_offset(i, topic) for i in state["replicas"]}
    restarting = time.monotonic()
    with rush.lock:
        during = {b: a for b, a in rush.answers.items() if killed < a[3] < restarting}
        in_flight = [a for a in rush.answers.values() if a[2] <= killed < a[3]]
    for i in followers:
        kafka.start_broker(i)
    # For the record: how soon after the restart began appends made during the outage were
    # answered 202 (legitimately: a restarted follower back in the ISR holds them). The phase
    # this replaces counted answers up to 2 s into the restart as "while they were down".
    def first_accepted_since_restart():
        with rush.lock:
            return min((a for a in rush.answers.values()
                        if a[0] in (200, 202) and a[3] > restarting),
                       key=lambda a: a[3], default=None)
    first = wait_until("a 202 after the restart", first_accepted_since_restart, timeout=60)
    print(f"first 202 after the restart began: {first[3] - restarting:+.2f} s after it "
          f"(restarting both took {time.monotonic() - restarting:.1f} s), to a purchase "
          f"sent {first[2] - killed:+.2f} s after the kills", flush=True)
    broken = []
    for b, a in sorted(during.items(), key=lambda item: item[1][3]):
        if a[0] not in (200, 202):
            continue
        offset = seq_offset(a[1])
        holders = [i for i, end in ends.items() if end is not None and offset is not None
                   and end > offset]
        line = (f"b{b}: {a[0]} seq {a[1].get('seq') if isinstance(a[1], dict) else a[1]}, "
                f"sent {a[2] - killed:+.3f} s, answered {a[3] - killed:+.3f} s after the kills; "
                f"held by nodes {holders}")
        print("  " + line, flush=True)
        if a[2] > killed:
            broken.append("sent after both followers were killed, yet answered: " + line)
        elif len(holders) < min_insync:
            broken.append(f"fewer than {min_insync} brokers hold it: " + line)
    statuses = {}
    for a in during.values():
        statuses[a[0]] = statuses.get(a[0], 0) + 1
    print(f"while node{leader} was alone ({restarting - killed:.1f} s): {len(during)} answers "
          f"{statuses}, {sum(1 for a in during.values() if a[2] > killed)} of them to purchases "
          f"sent after the kills; {len(in_flight)} in flight at the kills; log ends {ends}; "
          f"(s after kill, high watermark, ISR): {timeline}", flush=True)
    for line in broken:
        print("BROKEN PROMISE " + line, flush=True)
    return broken


AUDIT_NOT_BUILT = "auditing a distributed sale is not in it yet"


def audit_distributed(test, cluster):
    """`catraca audit` of the sale: its Kafka log against its PostgreSQL store."""
    run = subprocess.run([BIN, "audit"] + cluster.log_args() +
                         ["--postgres", cluster.postgres.conninfo],
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
    out = run.stdout + run.stderr
    if run.returncode == 2 and AUDIT_NOT_BUILT in out:
        # TODO(audit-distributed): `catraca audit --kafka ... --postgres ...` comes with the
        # audit branch (issue 17, part 5); until it is merged, check_exactly_once above checks
        # the store straight in SQL. Said out loud, never skipped in silence.
        print("TODO(audit-distributed): AUDIT NOT RUN: " + out.strip(), flush=True)
        return
    print(out.strip().splitlines()[-1] if out.strip() else "(audit printed nothing)")
    test.assertEqual(run.returncode, 0, out)


class BrokerKillTest(unittest.TestCase):
    CAPACITY = 400

    def test_kill9_a_broker_then_the_partition_leader_mid_rush(self):
        seed = seed_from_env("kafka broker kill")
        started = time.monotonic()
        kafka = Kafka(brokers=3)
        print(f"3 brokers up in {time.monotonic() - started:.1f} s", flush=True)
        cluster = None
        rush = None
        try:
            cluster = Cluster(log="kafka", kafka=kafka, replication=3, min_insync=2)
            c = cluster.client()
            create_event(c, "ev-kafka", (self.CAPACITY,))
            topic = cluster.event_topic("ev-kafka")
            rush = EndlessRush(cluster, "ev-kafka", pause_s=0.002 + (seed % 5) / 1000).start()
            rush.wait_for(100)
            state = kafka.wait_isr(topic, 3)
            self.assertEqual(sorted(state["replicas"]), [0, 1, 2], state)
            leader = kafka.leader_of(topic)

            follower = [i for i in range(3) if i != leader][seed % 2]
            kafka.kill9(follower)
            print(f"killed follower node{follower} at {rush.count()} accepted", flush=True)
            rush.wait_for(100)  # 2 in-sync replicas of 3: acks=all still answers
            kafka.start_broker(follower)
            kafka.wait_isr(topic, 3)

            leader = kafka.leader_of(topic)
            kafka.kill9(leader)
            killed_at = rush.count()
            print(f"killed leader node{leader} at {killed_at} accepted", flush=True)
            new_leader = kafka.leader_of(topic)
            self.assertNotEqual(new_leader, leader)
            rush.wait_for(100)  # the sale goes on behind the new leader
            kafka.start_broker(leader)
            kafka.wait_isr(topic, 3)

            # Two of three brokers down (both followers of the event's partition): one copy
            # cannot make min.insync.replicas 2, so nothing sent now is answered 202, and a
            # 202 answered meanwhile names a record two brokers hold (kill_both_followers).
            # Three nodes that are also the controller quorum lose it with two: the ISR cannot
            # shrink either (test_kafka_min_insync has a quorum that survives).
            broken = kill_both_followers(self, kafka, topic, rush, min_insync=2,
                                         expect_isr_shrink=False)
            rush.wait_for(100)  # and the sale recovers when they are back
            rush.stop()
            print(f"rush answers: {rush.statuses()}", flush=True)

            accepted = rush.accepted()
            self.assertGreater(len(accepted), 300)
            decided = settle(cluster, accepted, timeout=120)
            # A 503 may still have reached the log (the acknowledgement was lost, not the
            # append): the store may hold purchases the rush saw refused.
            check_promises(self, cluster, "ev-kafka", self.CAPACITY, decided, all_known=False)
            check_exactly_once(self, cluster, "ev-kafka", accepted, decided)
            self.assertEqual(broken, [], "a 202 with fewer than min.insync.replicas copies")
            self.assertEqual(cluster.stop_processes(), 0, "a gateway or worker did not stop cleanly")
            audit_distributed(self, cluster)
        except BaseException:
            if cluster:
                print(cluster.logs())
            print(kafka.logs())
            raise
        finally:
            if rush:
                rush.stop()
            if cluster:
                cluster.close()
            kafka.stop()


class ProcessCrashTest(unittest.TestCase):
    CAPACITY = 300

    def test_kill9_a_gateway_and_the_owning_worker_mid_sale(self):
        seed = seed_from_env("kafka process crash")
        cluster = Cluster(log="kafka", lease_ms=1500)
        rush = None
        try:
            c = cluster.client()
            create_event(c, "ev-kcrash", (self.CAPACITY,))
            rush = EndlessRush(cluster, "ev-kcrash", limit=3000,
                               pause_s=0.002 + (seed % 5) / 1000).start()
            rush.wait_for(150)
            owner, epoch = wait_until("a worker owns the sale",
                                      lambda: cluster.owner_of("ev-kcrash")[0] and
                                      cluster.owner_of("ev-kcrash"))
            victim = cluster.worker_by_id(owner)
            self.assertIsNotNone(victim, f"no live owner found ({owner})")
            gateway = cluster.gateways[seed % 2]
            gateway.kill9()
            victim.kill9()
            print(f"killed {gateway.name} and {victim.name} (owner, epoch {epoch}) at "
                  f"{rush.count()} accepted", flush=True)
            rush.wait_for(150)  # the other gateway takes purchases, the other worker decides
            gateway.start()  # a new port: the rush keeps to the gateways it knew
            cluster.workers[cluster.workers.index(victim)] = \
                cluster.start_worker(cluster.workers.index(victim))
            rush.stop()
            print(f"rush answers: {rush.statuses()}", flush=True)
            accepted = rush.accepted()
            self.assertGreater(len(accepted), 300)
            decided = settle(cluster, accepted, timeout=120)
            check_promises(self, cluster, "ev-kcrash", self.CAPACITY, decided, all_known=False)
            check_exactly_once(self, cluster, "ev-kcrash", accepted, decided)
            new_owner, new_epoch = cluster.owner_of("ev-kcrash")
            self.assertNotEqual(new_owner, owner)
            self.assertGreater(new_epoch, epoch)
            self.assertEqual(cluster.stop_processes(), 0, "a gateway or worker did not stop cleanly")
            audit_distributed(self, cluster)
        except BaseException:
            if cluster:
                print(cluster.logs())
            raise
        finally:
            if rush:
                rush.stop()
            if cluster:
                cluster.close()


if __name__ == "__main__":
    unittest.main()
