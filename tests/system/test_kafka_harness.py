"""The Kafka test harness keeps its promise: when Apache Kafka cannot be fetched from Maven
Central, scripts/kafka-fetch.sh and servers.Kafka fail and say why; no Kafka test is skipped.
(tests/kafka_selftest.py checks start, kill -9, restart and leader_of by hand.)"""
import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import servers  # noqa: E402

# A version that no cache holds, fetched through a proxy that refuses every connection: what a
# machine without Maven Central sees, in a few seconds and without touching the real cache.
UNREACHABLE = {"CATRACA_KAFKA_VERSION": "0.0.0-catraca-unreachable",
               "MAVEN_OPTS": "-Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=9 "
                             "-Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort=9"}


class FetchFailureTest(unittest.TestCase):
    def tearDown(self):
        version = UNREACHABLE["CATRACA_KAFKA_VERSION"]
        shutil.rmtree(os.path.join(servers.ROOT, "build", "kafka", version), ignore_errors=True)
        shutil.rmtree(os.path.join(servers.ROOT, "build", "m2", "org", "apache", "kafka",
                                   "kafka_2.13", version), ignore_errors=True)

    def test_a_kafka_test_fails_rather_than_skips(self):
        saved = {k: os.environ.get(k) for k in UNREACHABLE}
        os.environ.update(UNREACHABLE)
        try:
            with self.assertRaises(RuntimeError) as raised:
                servers.Kafka()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        # scripts/kafka-fetch.sh's own words reach the test's failure message
        self.assertIn("Maven Central could not be reached", str(raised.exception))
        self.assertIn("Connection refused", str(raised.exception))
        self.assertIn("nothing is skipped", str(raised.exception))


if __name__ == "__main__":
    unittest.main()
