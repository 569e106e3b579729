"""The Kafka test harness keeps its promises: when Apache Kafka cannot be fetched from Maven
Central, scripts/kafka-fetch.sh and servers.Kafka fail and say why; no Kafka test is skipped. A
command that outlives servers.py --timeout is killed after its stacks are printed.
(tests/kafka_selftest.py checks start, kill -9, restart and leader_of by hand.)"""
import os
import shutil
import subprocess
import sys
import time
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


class TimeoutTest(unittest.TestCase):
    def test_a_stuck_command_says_where_it_was(self):
        """A test that hangs under servers.py --timeout ends with where it waited (every thread's
        stack), not with nothing as under ctest's own TIMEOUT."""
        started = time.monotonic()
        run = subprocess.run([sys.executable, os.path.join(servers.ROOT, "tests", "servers.py"),
                              "--timeout", "20", "sleep", "300"],
                             capture_output=True, text=True, timeout=200)
        took = time.monotonic() - started
        self.assertEqual(run.returncode, 124, run.stderr)
        self.assertIn("servers.py: --timeout 20 s passed while running sleep 300", run.stderr)
        # gdb's backtrace, or (without gdb) each thread's wait channel
        self.assertTrue("nanosleep" in run.stderr or "waiting in" in run.stderr, run.stderr)
        self.assertLess(took, 150)


if __name__ == "__main__":
    unittest.main()
