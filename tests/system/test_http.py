"""The HTTP layer as a hostile client meets it: framing (RFC 9112), bounds, deadlines, streams.

Raw sockets, so that what the server sends is seen byte for byte: one response per request,
a JSON error body on every error, the connection closed when framing is not trusted.
"""
import json
import os
import socket
import time
import unittest

from catraca import PAYMENTS, Server, buy, create_event, token, wait_status


def exchange(port, data, wait=2.0, until_close=True):
    """Sends data, reads until the server closes (or `wait` seconds); returns (bytes, closed)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(data)
    answer, closed, deadline = b"", False, time.time() + wait
    try:
        while time.time() < deadline:
            sock.settimeout(max(0.05, deadline - time.time()))
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            answer += chunk
            if not until_close and b"\r\n\r\n" in answer:
                break
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    finally:
        sock.close()
    return answer, closed


def read_until_closed(sock, seconds):
    """What the server sends until it closes the connection, or for at most `seconds`."""
    answer = b""
    try:
        sock.settimeout(seconds)
        while chunk := sock.recv(4096):
            answer += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    sock.close()
    return answer


def responses(data):
    """Splits a byte stream into (status, headers, body) with Content-Length framing."""
    out = []
    while data.startswith(b"HTTP/1.1 "):
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode()
        length = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:length]))
        data = rest[length:]
    return out


class HttpLayerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--header-timeout-ms", "1000", "--body-timeout-ms", "1000",
                            "--max-header-bytes", "4096", "--max-body-bytes", "4096")
        create_event(cls.server.client(), "ev-http", (50,))

    @classmethod
    def tearDownClass(cls):
        assert cls.server.close() == 0

    def assert_one_json_error(self, data, status, closed):
        answers = responses(data)
        self.assertEqual(len(answers), 1, data[:400])
        got_status, headers, body = answers[0]
        self.assertEqual(got_status, status, data[:400])
        self.assertEqual(headers.get("content-type"), "application/json")
        error = json.loads(body)["error"]
        self.assertTrue(error["code"] and error["message"], error)
        self.assertTrue(closed, "the connection must be closed after a framing error")
        return error

    def test_smuggling_te_and_cl_is_refused_and_closes(self):
        smuggled = (b"POST /v1/events/ev-http/purchases HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                    b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data, closed = exchange(self.server.port, smuggled)
        self.assert_one_json_error(data, 400, closed)
        self.assertNotIn(b"catraca_", data)  # the hidden request was never served

    def test_invalid_content_length_gets_one_400(self):
        for value in (b"-1", b"abc", b"1, 2", b"99999999999999999999999"):
            data, closed = exchange(
                self.server.port,
                b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + b"\r\n\r\n")
            self.assert_one_json_error(data, 400, closed)

    def test_two_content_lengths_are_refused(self):
        data, closed = exchange(self.server.port, b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}")
        self.assert_one_json_error(data, 400, closed)

    def test_http11_needs_exactly_one_host(self):
        data, closed = exchange(self.server.port, b"GET /healthz HTTP/1.1\r\n\r\n")
        self.assert_one_json_error(data, 400, closed)
        data, closed = exchange(self.server.port,
                                b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        self.assert_one_json_error(data, 400, closed)
        data, _ = exchange(self.server.port, b"GET /healthz HTTP/1.0\r\n\r\n")
        self.assertEqual(responses(data)[0][0], 200)  # HTTP/1.0 has no Host requirement

    def test_long_target_414_long_headers_431_as_json(self):
        data, closed = exchange(self.server.port,
                                b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assert_one_json_error(data, 414, closed)
        data, closed = exchange(self.server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                b"b" * 5000 + b"\r\n\r\n")
        self.assert_one_json_error(data, 431, closed)
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(100))
        data, closed = exchange(self.server.port,
                                b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        self.assert_one_json_error(data, 431, closed)

    def test_body_too_large_413_as_json(self):
        data, closed = exchange(self.server.port, b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n")
        error = self.assert_one_json_error(data, 413, closed)
        self.assertEqual(error["code"], "payload_too_large")
        chunk = b"%x\r\n" % 3000 + b"x" * 3000 + b"\r\n"
        data, closed = exchange(self.server.port, b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
                                b"Transfer-Encoding: chunked\r\n\r\n" + chunk + chunk + b"0\r\n\r\n")
        self.assert_one_json_error(data, 413, closed)

    def test_malformed_request_line_is_one_json_400(self):
        for junk in (b"GET\r\n\r\n", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
                     b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                     b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n"):
            data, closed = exchange(self.server.port, junk)
            answers = responses(data)
            self.assertEqual(len(answers), 1, (junk, data))
            self.assertGreaterEqual(answers[0][0], 400, (junk, data))
            self.assertEqual(answers[0][1].get("content-type"), "application/json")
            self.assertTrue(closed, junk)

    def test_header_deadline_is_total_not_idle(self):
        """One header byte every 0.2 s never stalls long, yet the whole head must arrive in 1 s."""
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=5)
        started = time.time()
        try:
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 40:
                sock.sendall(bytes([byte]))
                time.sleep(0.2)
                if time.time() - started > 4:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_until_closed(sock, 2)
        elapsed = time.time() - started
        self.assertLess(elapsed, 4.5, "the slow client was not cut off")
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer[:100])

    def test_body_deadline_is_total(self):
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=5)
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{")
        started = time.time()
        try:
            for _ in range(30):
                sock.sendall(b" ")
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_until_closed(sock, 2)
        self.assertLess(time.time() - started, 4.0)
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer[:100])

    def test_raw_control_bytes_in_the_target_are_refused(self):
        for target in (b"/healthz\x0c", b"/he\talthz", b"/h\xe8althz"):
            data, closed = exchange(self.server.port,
                                    b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assert_one_json_error(data, 400, closed)

    def test_query_arguments_without_a_value(self):
        """A query name without '=' once wrote into a string literal (found by fuzz_http)."""
        for target in (b"/healthz?x", b"/healthz?x&y=&=z", b"/readyz?&&"):
            data, _ = exchange(self.server.port, b"GET " + target +
                               b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            self.assertEqual(responses(data)[0][0], 200, data)
        data, closed = exchange(self.server.port,
                                b"GET /healthz?x=%00 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assert_one_json_error(data, 400, closed)

    def test_pipelined_requests_are_answered_in_order(self):
        data, closed = exchange(self.server.port,
                                b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                                b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
                                b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertEqual([a[0] for a in responses(data)], [200, 404, 200])
        self.assertTrue(closed)

    def test_head_has_headers_and_no_body(self):
        data, _ = exchange(self.server.port,
                           b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), data)
        self.assertIn(b"Content-Length: 15", head)
        self.assertEqual(body, b"")

    def test_date_header_and_keep_alive(self):
        data, closed = exchange(self.server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                                wait=0.5)
        status, headers, _ = responses(data)[0]
        self.assertEqual(status, 200)
        self.assertIn("GMT", headers["date"])
        self.assertFalse(closed, "an HTTP/1.1 connection stays open")


class Ipv6Test(unittest.TestCase):
    def test_listens_on_ipv6(self):
        import os, re, subprocess, tempfile
        from catraca import BIN, SECRET
        if not socket.has_ipv6:
            self.skipTest("no IPv6 in this Python")
        data = tempfile.mkdtemp(prefix="catraca-ipv6-")
        err = open(os.path.join(data, "stderr.log"), "w+")
        proc = subprocess.Popen([BIN, "serve", "--listen", "[::1]:0", "--data", data,
                                 "--jwt-secret", SECRET], stdout=subprocess.DEVNULL, stderr=err,
                                env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
        try:
            port = None
            for _ in range(300):
                m = re.search(r"listening on http://\[::1\]:(\d+)", open(err.name).read())
                if m:
                    port = int(m.group(1))
                    break
                time.sleep(0.05)
            self.assertIsNotNone(port, open(err.name).read())
            sock = socket.create_connection(("::1", port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n")
            answer = read_until_closed(sock, 5)
            self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer)
        finally:
            proc.terminate()
            self.assertEqual(proc.wait(timeout=30), 0)


class TlsTest(unittest.TestCase):
    """--tls-cert and --tls-key: HTTPS with ALPN http/1.1, keep-alive, and curl --http2."""

    def test_https(self):
        import os, re, shutil, ssl, subprocess, tempfile
        from catraca import BIN, SECRET
        data = tempfile.mkdtemp(prefix="catraca-tls-")
        cert, key = os.path.join(data, "cert.pem"), os.path.join(data, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", cert, "-days", "2", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        err = open(os.path.join(data, "stderr.log"), "w+")
        proc = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--data", data,
                                 "--jwt-secret", SECRET, "--tls-cert", cert, "--tls-key", key],
                                stdout=subprocess.DEVNULL, stderr=err,
                                env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
        try:
            port = None
            for _ in range(300):
                m = re.search(r"listening on https://127\.0\.0\.1:(\d+)", open(err.name).read())
                if m:
                    port = int(m.group(1))
                    break
                time.sleep(0.05)
            self.assertIsNotNone(port, open(err.name).read())
            context = ssl.create_default_context(cafile=cert)
            context.set_alpn_protocols(["h2", "http/1.1"])
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
            self.assertEqual(tls.selected_alpn_protocol(), "http/1.1")
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = read_until_closed(tls, 5)
            self.assertEqual([a[0] for a in responses(answer)], [200, 200], answer)
            # Plain HTTP on the HTTPS port gets no answer, and the server stays up.
            data_plain, _ = exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", wait=1)
            self.assertFalse(data_plain.startswith(b"HTTP/1.1 200"), data_plain)
            if shutil.which("curl"):
                out = subprocess.run(["curl", "-s", "--http2", "--cacert", cert, "-w",
                                      " %{http_version} %{http_code}",
                                      f"https://127.0.0.1:{port}/healthz"],
                                     capture_output=True, text=True, timeout=30).stdout
                self.assertEqual(out, '{"status":"ok"} 1.1 200')
        finally:
            proc.terminate()
            self.assertEqual(proc.wait(timeout=30), 0, open(err.name).read()[-3000:])
            shutil.rmtree(data, ignore_errors=True)

    def test_half_a_tls_pair_is_refused(self):
        import subprocess, tempfile
        from catraca import BIN, SECRET
        data = tempfile.mkdtemp(prefix="catraca-tls-")
        run = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--data", data,
                              "--jwt-secret", SECRET, "--tls-cert", "/nonexistent.pem"],
                             capture_output=True, text=True, timeout=30,
                             env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("--tls-cert and --tls-key go together", run.stderr)


class StreamLimitTest(unittest.TestCase):
    def test_clients_that_leave_streams_free_their_connections(self):
        """20 SSE clients that leave after 0.5 s must not keep a 20-connection server busy."""
        server = Server("--max-connections", "20")
        try:
            c = server.client()
            create_event(c, "ev-sse", (5,))
            status, p, _ = buy(c, "ev-sse", "alice")
            self.assertEqual(status, 202)
            wait_status(c, p["id"], "alice", lambda s: s == "held")
            status, _, _ = c.request("POST", f"/v1/purchases/{p['id']}/confirm",
                                     {"payment_ref": "psp-1"}, PAYMENTS())
            self.assertEqual(status, 200)
            c.close()
            request = (f"GET /v1/purchases/{p['id']}/events HTTP/1.1\r\nHost: x\r\n"
                       f"Authorization: Bearer {token('alice')}\r\n\r\n").encode()
            for _ in range(2):
                streams = []
                for _ in range(20):
                    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                    s.sendall(request)
                    streams.append(s)
                time.sleep(0.5)
                for s in streams:
                    s.close()
            time.sleep(0.5)
            fresh = server.client(timeout=5)
            self.assertEqual(fresh.request("GET", "/healthz")[0], 200)
            # A stream on a final purchase sends it once and ends.
            data, closed = exchange(server.port, request, wait=3)
            self.assertIn(b"text/event-stream", data)
            self.assertIn(b'"status":"confirmed"', data)
            self.assertTrue(data.endswith(b"0\r\n\r\n"), data[-80:])
            fresh.close()
        finally:
            self.assertEqual(server.close(), 0)

    def test_clients_that_leave_long_polls_free_their_waiter_slots(self):
        """--max-waiters 4: four long-polls left by their clients must not refuse the fifth."""
        server = Server("--max-waiters", "4")
        try:
            c = server.client()
            create_event(c, "ev-poll", (5,))
            status, p, _ = buy(c, "ev-poll", "alice")
            self.assertEqual(status, 202)
            held = wait_status(c, p["id"], "alice", lambda s: s == "held")
            request = (f"GET /v1/purchases/{p['id']}?wait=30&status=held HTTP/1.1\r\nHost: x\r\n"
                       f"Authorization: Bearer {token('alice')}\r\n\r\n").encode()
            for _ in range(3):
                polls = []
                for _ in range(4):
                    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                    s.sendall(request)
                    polls.append(s)
                time.sleep(0.3)
                for s in polls:
                    s.close()
                time.sleep(0.3)
            time.sleep(1.0)  # margin for a loaded machine: the responder finishes the abandoned
            started = time.time()
            status, answer, _ = c.request("GET", f"/v1/purchases/{p['id']}?wait=1&status=held",
                                          tok=token("alice"))
            self.assertEqual(status, 200, answer)  # parked, not 503: the slots came back
            self.assertGreaterEqual(time.time() - started, 0.9)
            self.assertEqual(answer["status"], held["status"])
        finally:
            self.assertEqual(server.close(), 0)


if __name__ == "__main__":
    unittest.main()
