"""A TCP proxy on loopback that makes one upstream slow, for the slow-API-server tests.

Why not `tc netem`: it needs CAP_NET_ADMIN and acts on the whole loopback device, i.e. on every
other test bed and controller on this machine. The proxy slows only the connections made
through it. It forwards raw bytes (TLS passes through untouched; certificates for "localhost"
still verify), with two knobs:

* ``delay``: seconds added before each chunk is forwarded, in both directions — every request
  and every response pays it (a round trip pays it at least twice);
* ``hold_requests``: client→server bytes are held (not dropped) while set; server→client bytes
  keep flowing. Watches already open keep delivering events, while every new request hangs
  until the client's own timeout — an API server that accepts connections and never answers.
  Held bytes are forwarded when it is cleared, so a connection whose client gave up meanwhile
  simply closes.

Threads: one acceptor, two pumps per connection; everything is a daemon and ``close()`` shuts
all sockets. Bounded: at most ``max_conns`` connections at once (more are refused).
"""

from __future__ import annotations

import socket
import threading
import time


class LatencyProxy:
    def __init__(self, upstream_host: str, upstream_port: int, delay: float = 0.0, max_conns: int = 256):
        self.upstream = (upstream_host, upstream_port)
        self.delay = delay
        self.max_conns = max_conns
        self._hold = threading.Event()   # set: client→server bytes are held
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self.connections = 0             # accepted so far
        self.held_chunks = 0             # client→server chunks that waited for a hold to end
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, name="latency-proxy-accept", daemon=True).start()

    # -- knobs ---------------------------------------------------------------------------
    @property
    def hold_requests(self) -> bool:
        return self._hold.is_set()

    @hold_requests.setter
    def hold_requests(self, on: bool) -> None:
        (self._hold.set if on else self._hold.clear)()

    def url(self) -> str:
        return f"https://localhost:{self.port}"

    # -- plumbing ------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if len(self._socks) >= 2 * self.max_conns:
                    client.close()
                    continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks.update((client, upstream))
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, to_server: bool) -> None:
        try:
            while not self._closed.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if to_server and self._hold.is_set():
                    with self._lock:
                        self.held_chunks += 1
                    while self._hold.is_set() and not self._closed.is_set():
                        time.sleep(0.05)
                if self.delay > 0:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass
                with self._lock:
                    self._socks.discard(s)

    def close(self) -> None:
        self._closed.set()
        self._hold.clear()
        try:
            self.listener.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def __enter__(self) -> "LatencyProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
