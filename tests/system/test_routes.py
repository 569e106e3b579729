"""The route table and the API layer's strictness: 404, 405 + Allow, HEAD, 415, ids in paths,
Idempotency-Key, the event limit, and answers when every waiter slot is taken."""
import json
import socket
import threading
import time
import unittest

from catraca import ADMIN, Server, buy, create_event, token


def raw_request(port, data, timeout=10):
    """Sends raw bytes on a fresh connection; returns (status, headers, body) of the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(data)
        answer = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    finally:
        sock.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def request_bytes(method, path, headers=(), body=b""):
    """One HTTP/1.1 request that closes its connection; path and header values are raw bytes."""
    lines = [method.encode() + b" " + path + b" HTTP/1.1", b"Host: x", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers]
    if body:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def assert_error(test, status, answer, want_status, want_code):
    test.assertEqual(status, want_status, answer)
    test.assertIsInstance(answer, dict, answer)
    test.assertEqual(set(answer["error"]), {"code", "message"})
    test.assertEqual(answer["error"]["code"], want_code)


def wait_held(client, purchase_id, customer, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, row, _ = client.request("GET", f"/v1/purchases/{purchase_id}", tok=token(customer))
        if status == 200 and row["status"] == "held":
            return row
        time.sleep(0.05)
    raise AssertionError(f"{purchase_id} not held after {timeout} s")


class WaitersFullTest(unittest.TestCase):
    def test_long_poll_beyond_max_waiters_is_a_clean_503(self):
        """The answer used to copy 79 bytes out of a 74-byte string: garbage after the JSON."""
        server = Server("--max-waiters", "1")
        try:
            c = server.client()
            create_event(c, "ev-waiters", (5,))
            _, p, _ = buy(c, "ev-waiters", "w1")
            wait_held(c, p["id"], "w1")
            path = f"/v1/purchases/{p['id']}?wait=3&status=held"
            first = threading.Thread(
                target=lambda: server.client().request("GET", path, tok=token("w1")))
            first.start()
            time.sleep(0.5)  # the first long-poll holds the only waiter slot
            status, answer, _ = server.client().request("GET", path, tok=token("w1"))
            assert_error(self, status, answer, 503, "unavailable")
            first.join(timeout=10)
        finally:
            self.assertEqual(server.close(), 0)


if __name__ == "__main__":
    unittest.main()
