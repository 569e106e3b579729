"""Every bound answers with a clear error, loses nothing, and leaves the process healthy."""
import socket
import threading
import time
import unittest

from catraca import FINAL, Server, buy, create_event, token, wait_status


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def raw_request(port, data, timeout=10):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer
    except (ConnectionResetError, BrokenPipeError):
        return b"reset"
    finally:
        sock.close()


def big_body(port, path, size):
    """Posts `size` bytes; the server may answer and close before the body is sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token('b')}\r\nContent-Length: {size}\r\n\r\n").encode()
    try:
        sock.sendall(head)
        sock.sendall(b"x" * size)
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
            if b"}}" in answer:
                break
    except (ConnectionResetError, socket.timeout):
        pass
    sock.close()
    return answer


class BoundsTest(unittest.TestCase):
    def test_body_header_slow_clients_and_memory(self):
        server = Server("--max-body-bytes", "65536", "--header-timeout-ms", "2000")
        try:
            c = server.client()
            create_event(c, "ev-bounds", (10,))
            path = "/v1/events/ev-bounds/purchases"
            answer = big_body(server.port, path, 2 << 20)
            self.assertTrue(answer.startswith(b"HTTP/1.1 413"), answer[:80])
            self.assertIn(b'"payload_too_large"', answer)
            big_header = b"X-Big: " + b"a" * 100000
            answer = raw_request(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + big_header +
                                 b"\r\n\r\n")
            self.assertTrue(answer == b"reset" or answer.split(b" ")[1].startswith(b"4"), answer[:80])
            self.assertEqual(server.client().request("GET", "/healthz")[0], 200)
            # 1000 slow clients: half a request line each, never finished
            slow = []
            for _ in range(1000):
                s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                s.sendall(b"POST /v1/events/ev-bounds/purchases HTTP/1.1\r\nHost: x\r\n")
                slow.append(s)
            started = time.time()
            fresh = server.client(timeout=5)
            self.assertEqual(fresh.request("GET", "/healthz")[0], 200)
            status, p, _ = buy(fresh, "ev-bounds", "normal")
            self.assertEqual(status, 202)
            self.assertLess(time.time() - started, 2.0)
            # the slow ones are dropped after the header time-out
            time.sleep(3.5)
            dropped = answered_408 = 0
            for s in slow:
                s.settimeout(0.05)
                answer = b""
                try:
                    while True:
                        chunk = s.recv(4096)
                        if not chunk:
                            dropped += 1
                            break
                        answer += chunk
                except socket.timeout:
                    pass
                except ConnectionResetError:
                    dropped += 1
                answered_408 += answer.startswith(b"HTTP/1.1 408 ") and b'"invalid_request"' in answer
                s.close()
            self.assertGreater(dropped, 900)
            self.assertGreater(answered_408, 900)
            # repeated abuse keeps memory flat: a warm-up round, then rounds that must not grow
            samples = []
            for _ in range(4):
                for _ in range(200):
                    status, _, _ = c.request("POST", path, raw=b"{" * 60000, tok=token("b"))
                    self.assertEqual(status, 400)
                samples.append(rss_kib(server.proc.pid))
            self.assertLess(samples[-1] - samples[1], 16 * 1024, samples)
            fresh.close()
        finally:
            self.assertEqual(server.close(), 0)

    def test_connection_limit(self):
        server = Server("--max-connections", "20")
        try:
            held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(25)]
            time.sleep(0.3)
            answer = raw_request(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertIn(b" 503 ", answer.split(b"\r\n")[0] + b" ")
            self.assertIn(b'"unavailable"', answer + b'"unavailable"' if b"\r\n\r\n" not in answer
                          else answer)
            for s in held:
                s.close()
            time.sleep(0.5)
            self.assertEqual(server.client().request("GET", "/healthz")[0], 200)
        finally:
            self.assertEqual(server.close(), 0)

    def test_full_append_queue(self):
        server = Server("--queue-max", "2", "--append-batch-max", "1")
        try:
            c = server.client()
            create_event(c, "ev-queue", (1000,), limit=1)
            results, lock = [], threading.Lock()

            def burst(index):
                client = server.client()
                for n in range(60):
                    status, answer, _ = buy(client, "ev-queue", f"q{index}-{n}")
                    with lock:
                        results.append((status, answer))
                client.close()

            threads = [threading.Thread(target=burst, args=(i,)) for i in range(12)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            statuses = [s for s, _ in results]
            self.assertEqual(set(statuses) - {202, 503}, set())
            self.assertIn(503, statuses, "the burst never filled a queue of 2")
            for status, answer in results:
                if status == 503:
                    self.assertEqual(answer["error"]["code"], "unavailable")
            accepted = [a for s, a in results if s == 202]
            for a in accepted:
                done = wait_status(c, a["id"], "x", lambda s: s != "queued")
                self.assertEqual(done["status"], "held")
            _, event, _ = c.request("GET", "/v1/events/ev-queue")
            self.assertEqual(event["categories"][0]["held"], len(accepted))
        finally:
            self.assertEqual(server.close(), 0)


if __name__ == "__main__":
    unittest.main()
