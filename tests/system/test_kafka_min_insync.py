"""What a 202 promises over Kafka when brokers die (docs/DEPLOY.md, "Kafka"): with replication
factor 3 and min.insync.replicas 2, a 202 names a record that at least two brokers hold, and
with one replica of the event's partition alive nothing new is answered 202.

Five brokers, so that the controller quorum (every node votes) survives two deaths: the
controller fences both followers of the event's partition and its ISR shrinks to the leader
alone, which is where an acks=all acknowledged below min.insync.replicas (KIP-966, or a
producer retry answered as a duplicate) would show. test_kafka_cluster kills two of three
nodes, which also loses the quorum (the ISR cannot shrink there); this is the other case.

Copies are counted from each broker's own log files (servers.Kafka.log_end_offset), not from
the leader's word. Randomized pause between purchases: the seed is printed, CATRACA_SEED
reproduces it.
"""
import time
import unittest

from catraca import create_event, seed_from_env
from cluster import Cluster
from servers import Kafka
from test_distributed import check_promises, settle
from test_kafka_cluster import EndlessRush, check_exactly_once, kill_both_followers


class MinInsyncTest(unittest.TestCase):
    CAPACITY = 300

    def test_no_202_with_one_replica_in_sync(self):
        seed = seed_from_env("kafka min.insync.replicas")
        started = time.monotonic()
        kafka = Kafka(brokers=5)
        print(f"5 brokers up in {time.monotonic() - started:.1f} s", flush=True)
        cluster = None
        rush = None
        try:
            cluster = Cluster(log="kafka", kafka=kafka, replication=3, min_insync=2, workers=1)
            client = cluster.client()
            create_event(client, "ev-insync", (self.CAPACITY,))
            client.close()
            topic = cluster.event_topic("ev-insync")
            rush = EndlessRush(cluster, "ev-insync", pause_s=0.002 + (seed % 5) / 1000).start()
            rush.wait_for(100)
            broken = kill_both_followers(self, kafka, topic, rush, min_insync=2,
                                         expect_isr_shrink=True)
            rush.wait_for(100)  # the followers are back in the ISR: the sale goes on
            rush.stop()
            print(f"rush answers: {rush.statuses()}", flush=True)
            self.assertEqual(broken, [], "a 202 with fewer than min.insync.replicas copies")
            accepted = rush.accepted()
            decided = settle(cluster, accepted, timeout=120)
            check_promises(self, cluster, "ev-insync", self.CAPACITY, decided, all_known=False)
            check_exactly_once(self, cluster, "ev-insync", accepted, decided)
            self.assertEqual(cluster.stop_processes(), 0, "a gateway or worker did not stop cleanly")
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


if __name__ == "__main__":
    unittest.main()
