"""A check of tests/servers.py's Kafka harness by hand (it runs no catraca): starts 1 and
3 brokers, creates a replicated topic, kills its leader with kill -9, sees a new leader,
restarts the killed node and waits until it is back in sync. Prints the timings.

usage: python3 tests/kafka_selftest.py
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servers import Kafka  # noqa: E402


def timed(what, fn):
    started = time.monotonic()
    value = fn()
    print(f"{what}: {time.monotonic() - started:.1f} s", flush=True)
    return value


def main():
    with timed("1 broker start", Kafka) as kafka:
        kafka.create_topic("selftest.one", replication=1)
        assert timed("leader_of (1 broker)", lambda: kafka.leader_of("selftest.one")) == 0
        kafka.kill9(0)
        assert not kafka.running(0)
        timed("1 broker restart", lambda: kafka.start_broker(0))
        assert kafka.leader_of("selftest.one") == 0, "the topic did not survive the restart"
    with timed("3 brokers start", lambda: Kafka(brokers=3)) as kafka:
        print("bootstrap", kafka.bootstrap)
        kafka.create_topic("selftest.three", replication=3, configs={"min.insync.replicas": 2})
        state = kafka.wait_isr("selftest.three", 3)
        print("partition 0:", state)
        leader = kafka.leader_of("selftest.three")
        timed(f"kill -9 leader node{leader}", lambda: kafka.kill9(leader))
        new_leader = timed("new leader elected", lambda: kafka.leader_of("selftest.three"))
        assert new_leader != leader, (new_leader, leader)
        print("new leader node", new_leader, kafka.partition("selftest.three"))
        timed(f"restart node{leader}", lambda: kafka.start_broker(leader))
        timed("ISR back to 3", lambda: kafka.wait_isr("selftest.three", 3))
        other = next(i for i in range(3) if i not in (leader, new_leader))
        kafka.kill9(other)
        kafka.kill9(new_leader)
        # one node of three: no controller quorum; a restart of one brings the quorum back
        timed("restart two nodes", lambda: (kafka.start_broker(other), kafka.start_broker(new_leader)))
        print("after all restarts:", kafka.wait_isr("selftest.three", 3))
    print("kafka harness self-test: OK")


if __name__ == "__main__":
    main()
