#!/usr/bin/env python3
"""hostile_server.py — a misbehaving plain-HTTP "API server" for test/unit/test_hostile.c.

Serves on a loopback ephemeral port and prints "READY <port>" when listening; exits as soon as
stdin reaches EOF (the test process closed the pipe or died). The first path segment picks the
misbehaviour, the rest is whatever the Kubernetes client appended (/api/v1/...?watch=1...):

  /ok/...          a valid PodList (resourceVersion 10, pod "a"); ?watch=1: one ADDED event
                   (pod "b"), then the stream ends cleanly
  /truncchunk/...  200, chunked; half a JSON document, then the connection is closed without
                   the terminating chunk
  /trunclen/...    200, Content-Length 5000, 100 bytes, then close
  /badjson/...     list: a complete 200 response whose body is not JSON; ?watch=1: one valid
                   ADDED event (pod "c"), then a line that is not JSON, then the stream idles
  /huge/...        200, Content-Length 100 MiB, zeros streamed until the client hangs up
  /hugechunk/...   the same without Content-Length (chunked)
  /slow/...        200, Content-Length 1 MB, one byte per second until the client hangs up
  /hugeline/...    ?watch=1: 200, chunked, one event line that never ends (bytes without \\n)
  /expired/...     list: 410 Gone ("continue token expired") to the first 50 requests of this
                   mode, then the valid PodList

Every streaming loop is bounded (at most 120 s) so nothing outlives a crashed test for long.
"""
import json
import socket
import socketserver
import sys
import threading
import time

POD = lambda name, rv: {"metadata": {"name": name, "namespace": "ns", "uid": "uid-" + name,
                                     "resourceVersion": rv}}
LIST = json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "10"},
                   "items": [POD("a", "9")]}).encode()
MIB = 1 << 20
EXPIRED = {"answered": 0}


class Handler(socketserver.BaseRequestHandler):
    def send(self, b):
        self.request.sendall(b)

    def chunk(self, b):
        self.send(b"%x\r\n" % len(b) + b + b"\r\n")

    def head(self, extra=b"", length=None):
        h = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        h += (b"Content-Length: %d\r\n" % length) if length is not None else b"Transfer-Encoding: chunked\r\n"
        self.send(h + extra + b"\r\n")

    def handle(self):
        self.request.settimeout(130)
        f = self.request.makefile("rb")
        while True:
            line = f.readline()
            if not line:
                return
            try:
                method, target, _ = line.decode().split(" ", 2)
            except ValueError:
                return
            length = 0
            while True:
                h = f.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode().partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v.strip())
            if length:
                f.read(length)
            mode = target.split("/")[1] if target.count("/") >= 1 else ""
            watch = "watch=1" in target
            try:
                if not self.serve(mode, watch):
                    return
            except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
                return

    def serve(self, mode, watch):
        """Returns True to keep the connection for another request."""
        t_end = time.time() + 120
        if mode == "ok":
            if watch:
                self.head()
                self.chunk((json.dumps({"type": "ADDED", "object": POD("b", "11")}) + "\n").encode())
                self.send(b"0\r\n\r\n")
            else:
                self.head(length=len(LIST))
                self.send(LIST)
            return True
        if mode == "expired":
            EXPIRED["answered"] += 1
            if EXPIRED["answered"] > 50:
                self.head(length=len(LIST))
                self.send(LIST)
                return True
            body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired",
                               "code": 410, "message": "The provided continue parameter is too old"}).encode()
            self.send(b"HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                      % len(body) + body)
            return True
        if mode == "truncchunk":
            self.head()
            self.chunk(LIST[: len(LIST) // 2])
            return False
        if mode == "trunclen":
            self.head(length=5000)
            self.send(LIST[:100])
            return False
        if mode == "badjson":
            if watch:
                self.head()
                self.chunk((json.dumps({"type": "ADDED", "object": POD("c", "12")}) + "\n").encode())
                self.chunk(b'{"type":"MODIFIED","object":{"metadata":{"name":\n')
                while time.time() < t_end:
                    time.sleep(0.5)
                    self.chunk(b" ")  # keep-alive noise; the client should have hung up already
                return False
            body = b'{"kind":"PodList","items":[{"metadata": nope'
            self.head(length=len(body))
            self.send(body)
            return True
        if mode in ("huge", "hugechunk"):
            self.head(length=100 * MIB if mode == "huge" else None)
            block = b"0" * (64 << 10)
            sent = 0
            while sent < 100 * MIB and time.time() < t_end:
                if mode == "huge":
                    self.send(block)
                else:
                    self.chunk(block)
                sent += len(block)
            return False
        if mode == "hang":  # a quiet watch: headers, then nothing until the client goes
            self.head()
            while time.time() < t_end:
                time.sleep(0.2)
            return False
        if mode == "slow":
            self.head(length=MIB)
            while time.time() < t_end:
                self.send(b" ")
                time.sleep(1)
            return False
        if mode == "hugeline":
            self.head()
            self.chunk(b'{"type":"ADDED","object":{"metadata":{"name":"')
            block = b"x" * (64 << 10)
            for _ in range(2048):  # at most 128 MiB
                if time.time() > t_end:
                    break
                self.chunk(block)
            return False
        body = b'{"kind":"Status","status":"Failure","reason":"NotFound","code":404}'
        self.send(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                  % len(body) + body)
        return True


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    print("READY %d" % srv.server_address[1], flush=True)
    sys.stdin.read()  # EOF: the test process is gone
    srv.shutdown()


if __name__ == "__main__":
    main()
