"""Which client address the per-IP limit sees: --trusted-proxy and X-Forwarded-For, then
deploy/haproxy/catraca.cfg for real (TLS on loopback in front of two gateways).

Loopback has many addresses: buyers connect from 127.0.0.2 and 127.0.0.4, HAProxy reaches
the gateways from 127.0.0.1, the only trusted proxy. A buyer's forged X-Forwarded-For must
never move him into another bucket.
"""
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

from catraca import _RUNNING, Client, Server, create_event, token
from cluster import Cluster, Proc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from servers import free_port  # noqa: E402

HAPROXY_CFG = os.path.join(os.path.dirname(__file__), "../../deploy/haproxy/catraca.cfg")
PURCHASE = {"category": "cat0", "quantity": 1}


class FromAddress:
    """HTTP(S) requests from a chosen loopback source address."""

    def __init__(self, port, source, tls=False):
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the test's throwaway certificate
            self.conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30,
                                                    context=context, source_address=(source, 0))
        else:
            self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                                   source_address=(source, 0))

    def buy(self, event, customer, forwarded=None):
        headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token(customer)}
        if forwarded is not None:
            headers["X-Forwarded-For"] = forwarded
        self.conn.request("POST", f"/v1/events/{event}/purchases", json.dumps(PURCHASE), headers)
        response = self.conn.getresponse()
        body = response.read()
        return response.status, json.loads(body) if body else None

    def close(self):
        self.conn.close()


class TrustedProxyTest(unittest.TestCase):
    def test_forwarded_for_ignored_without_trust(self):
        server = Server("--rate-ip", "1", "--rate-ip-burst", "1")
        buyer = FromAddress(server.port, "127.0.0.1")
        try:
            create_event(Client(server.port), "ev-direct", (100,))
            self.assertEqual(buyer.buy("ev-direct", "a", "198.51.100.1")[0], 202)
            status, answer = buyer.buy("ev-direct", "b", "198.51.100.2")  # same peer: same bucket
            self.assertEqual(status, 429, answer)
        finally:
            buyer.close()
            server.close()

    def test_rightmost_untrusted_hop_behind_a_trusted_proxy(self):
        server = Server("--rate-ip", "1", "--rate-ip-burst", "1", "--trusted-proxy", "127.0.0.1")
        proxy = FromAddress(server.port, "127.0.0.1")   # plays the trusted proxy
        stranger = FromAddress(server.port, "127.0.0.2")  # not trusted: its header is not read
        try:
            create_event(Client(server.port), "ev-proxy", (100,))
            self.assertEqual(proxy.buy("ev-proxy", "a", "198.51.100.1")[0], 202)
            self.assertEqual(proxy.buy("ev-proxy", "b", "198.51.100.2")[0], 202)
            self.assertEqual(proxy.buy("ev-proxy", "c", "198.51.100.1")[0], 429)
            # The buyer wrote "9.9.9.9"; the proxy appended what it saw: that one counts.
            self.assertEqual(proxy.buy("ev-proxy", "d", "9.9.9.9, 198.51.100.3")[0], 202)
            self.assertEqual(proxy.buy("ev-proxy", "e", "8.8.8.8, 198.51.100.3")[0], 429)
            # Without the header the proxy itself is the client.
            self.assertEqual(proxy.buy("ev-proxy", "f")[0], 202)
            self.assertEqual(stranger.buy("ev-proxy", "g", "198.51.100.7")[0], 202)
            self.assertEqual(stranger.buy("ev-proxy", "h", "198.51.100.8")[0], 429)
        finally:
            proxy.close()
            stranger.close()
            server.close()

    def test_a_bad_list_is_refused_at_start(self):
        with self.assertRaises(RuntimeError) as caught:
            Server("--trusted-proxy", "10.0.0.0/33")
        self.assertIn("--trusted-proxy", str(caught.exception))


class HaproxyTest(unittest.TestCase):
    def test_tls_at_haproxy_and_the_limit_sees_each_buyer(self):
        if shutil.which("haproxy") is None:
            self.fail("haproxy is missing: run scripts/install-deps.sh")
        cluster = Cluster(gateways=0)
        directory = tempfile.mkdtemp(prefix="catraca-haproxy-")
        haproxy = None
        try:
            for i in range(2):
                cluster.gateways.append(Proc(
                    "gateway", cluster.gateway_args + ["--rate-ip", "1", "--rate-ip-burst", "2",
                                                       "--trusted-proxy", "127.0.0.1"],
                    cluster.dir, f"behind{i}", rb"listening on http://127\.0\.0\.1:(\d+)"))
            pem = os.path.join(directory, "site.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                            "/CN=localhost", "-keyout", pem + ".key", "-out", pem + ".crt"],
                           check=True, capture_output=True, timeout=60)
            with open(pem, "wb") as out:
                for part in (".crt", ".key"):
                    with open(pem + part, "rb") as f:
                        out.write(f.read())
            port = free_port()
            env = dict(os.environ, CATRACA_LB_MAXCONN="2000", CATRACA_LB_BIND=f"127.0.0.1:{port}", CATRACA_LB_CERT=pem,
                       CATRACA_GATEWAY_1=f"127.0.0.1:{cluster.gateways[0].port}",
                       CATRACA_GATEWAY_2=f"127.0.0.1:{cluster.gateways[1].port}")
            check = subprocess.run(["haproxy", "-c", "-f", HAPROXY_CFG], env=env,
                                   capture_output=True, text=True, timeout=30)
            self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
            log = open(os.path.join(directory, "haproxy.log"), "wb")
            haproxy = subprocess.Popen(["haproxy", "-db", "-f", HAPROXY_CFG], env=env,
                                       stdout=log, stderr=log)
            _RUNNING.append(haproxy)
            create_event(Client(cluster.gateways[0].port), "ev-lb", (100,))
            # Up when it answers through TLS; then both gateways' /readyz checks pass (rise 2
            # at 1 s).
            deadline = time.monotonic() + 30
            while True:
                try:
                    probe = FromAddress(port, "127.0.0.9", tls=True)
                    probe.conn.request("GET", "/healthz")
                    status = probe.conn.getresponse().status
                    probe.close()
                    if status == 200:
                        break
                except (OSError, http.client.HTTPException):
                    pass
                self.assertLess(time.monotonic(), deadline, "HAProxy did not come up")
                time.sleep(0.2)
            time.sleep(2.5)
            first = FromAddress(port, "127.0.0.2", tls=True)
            second = FromAddress(port, "127.0.0.4", tls=True)
            # Burst 2 per buyer address, shared by both gateways (Redis), whatever he forges.
            answers = [first.buy("ev-lb", f"x{i}", f"203.0.113.{i}") for i in range(4)]
            self.assertEqual([a[0] for a in answers[:2]], [202, 202], answers)
            self.assertEqual([a[0] for a in answers[2:]], [429, 429], answers)
            self.assertEqual(answers[2][1]["error"]["code"], "rate_limited")
            # Another buyer behind the same proxy has a bucket of his own.
            self.assertEqual(second.buy("ev-lb", "y0")[0], 202)
            # HAProxy spread the requests over both gateways.
            served = [self.purchase_requests(Client(g.port)) for g in cluster.gateways]
            self.assertTrue(all(n > 0 for n in served), served)
            first.close()
            second.close()
        finally:
            if haproxy is not None:
                haproxy.terminate()
                haproxy.wait(10)
            cluster.close()
            shutil.rmtree(directory, ignore_errors=True)

    @staticmethod
    def purchase_requests(client):
        status, text, _ = client.request("GET", "/metrics")
        total = 0.0
        for line in text.splitlines():
            if line.startswith("catraca_http_requests_total{") and 'route="purchase_create"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total


if __name__ == "__main__":
    unittest.main()
