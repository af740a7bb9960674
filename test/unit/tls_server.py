#!/usr/bin/env python3
"""tls_server.py — the HTTPS peer for test/unit/test_http.c.

Generates a throw-away PKI with the openssl CLI in a fresh temp dir, then serves HTTPS on three
loopback ephemeral ports: one without client authentication (the client's cipher order decides,
as with a Go server and an AES-NI client; /cipher names the suite in use), one that requires a
client certificate signed by the client CA, and one that offers only a CBC suite. Prints one
line to stdout when ready:

    READY <plain_port> <mtls_port> <cbc_only_port> <pki_dir>

and exits (removing the PKI dir) as soon as stdin reaches EOF, i.e. when the test process
closes its end of the pipe or dies: no leftover server even if the tests crash.

PKI (all in <pki_dir>):
    ca.pem            test CA                   server.pem/server.key  CN/SAN wc-test.local
    wrong-ca.pem      an unrelated CA           client-ca.pem          signs the client certs
    client-rsa.pem/.key   RSA 2048, key in PKCS#8 ("PRIVATE KEY"), CN wc-client-rsa
    client-ec.pem/.key    EC P-256, key in SEC1 ("EC PRIVATE KEY"),  CN wc-client-ec
"""
import http.server
import itertools
import os
import random
import shutil
import signal
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_pki(d):
    def ca(name, cn):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key",
                "-out", name + ".pem", "-days", "2", "-subj", "/CN=" + cn,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)

    def sign(name, ca_name, ext):
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write(ext)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", ca_name + ".pem", "-CAkey",
                ca_name + ".key", "-CAcreateserial", "-out", name + ".pem", "-days", "2",
                "-extfile", name + ".ext", cwd=d)

    ca("ca", "wc-test-ca")
    ca("wrong-ca", "wc-wrong-ca")
    ca("client-ca", "wc-client-ca")
    # Server: RSA, DNS name only (BearSSL cannot check IP SANs anyway).
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=wc-test.local", cwd=d)
    sign("server", "ca", "subjectAltName=DNS:wc-test.local\nextendedKeyUsage=serverAuth\n")
    # Client RSA, PKCS#8 key (openssl 3 writes "BEGIN PRIVATE KEY" by default).
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
            "-out", "client-rsa.key", cwd=d)
    openssl("req", "-new", "-key", "client-rsa.key", "-out", "client-rsa.csr",
            "-subj", "/CN=wc-client-rsa", cwd=d)
    sign("client-rsa", "client-ca", "extendedKeyUsage=clientAuth\n")
    # Client EC P-256, SEC1 key ("BEGIN EC PRIVATE KEY"; -param_enc named_curve is the default).
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "client-ec.key", cwd=d)
    openssl("req", "-new", "-key", "client-ec.key", "-out", "client-ec.csr",
            "-subj", "/CN=wc-client-ec", cwd=d)
    sign("client-ec", "client-ca", "extendedKeyUsage=clientAuth\n")
    with open(os.path.join(d, "client-ec.key")) as f:
        assert "BEGIN EC PRIVATE KEY" in f.read()
    with open(os.path.join(d, "client-rsa.key")) as f:
        assert "BEGIN PRIVATE KEY" in f.read()


def stream_payload():
    """Deterministic body for /stream: newline-delimited JSON-ish lines with multi-byte UTF-8
    (2-, 3- and 4-byte sequences) so chunk boundaries can fall inside characters and lines."""
    out = []
    for i in range(400):
        out.append('{"n":%d,"text":"h\u00e9llo \u20ac\U0001F600 %s"}\n' % (i, "x" * (i % 37)))
    return "".join(out).encode("utf-8")


def stream_chunks(data):
    """Chunk boundaries chosen to be awkward: 1-byte chunks, a split inside a multi-byte UTF-8
    character, a split inside a line, then sizes 7..1000."""
    chunks, pos = [], 0
    for _ in range(20):                      # 20 one-byte chunks
        chunks.append(data[pos:pos + 1]); pos += 1
    euro = data.index("\u20ac".encode(), pos)  # split the 3-byte euro sign after its first byte
    chunks.append(data[pos:euro + 1]); pos = euro + 1
    emoji = data.index("\U0001F600".encode(), pos)  # split the 4-byte emoji after 2 bytes
    chunks.append(data[pos:emoji + 2]); pos = emoji + 2
    nl = data.index(b"\n", pos + 10)         # end a chunk 5 bytes before a newline
    chunks.append(data[pos:nl - 5]); pos = nl - 5
    rnd = random.Random(42)
    while pos < len(data):
        n = rnd.randint(7, 1000)
        chunks.append(data[pos:pos + n]); pos += n
    assert all(chunks) and b"".join(chunks) == data
    return chunks


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        # The TLS handshake runs here, in the connection's own thread, so a client that stalls
        # or fails its handshake never blocks the accept loop.
        self.request = self.server.ctx.wrap_socket(self.request, server_side=True)
        self.server.count_connection(self)
        super().setup()

    def log_message(self, *a):
        pass

    def send(self, status, body, ctype="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def chunk(self, b):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))

    def start_chunked(self, ctype="application/octet-stream"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def route(self):
        u = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        p = u.path
        if p == "/hello":
            return self.send(200, b"hello world", "text/plain; charset=utf-8")
        if p == "/echo":
            data = self.body()
            return self.send(200, data, self.headers.get("Content-Type", "application/octet-stream"),
                             [("X-Method", self.command)])
        if p == "/method":
            data = self.body()
            return self.send(200, b"%s %d" % (self.command.encode(), len(data)))
        if p == "/headers":
            self.body()
            text = "".join("%s: %s\n" % (k, v) for k, v in self.headers.items())
            return self.send(200, text.encode())
        if p == "/retry":
            return self.send(503, b'{"reason":"busy"}', "application/json", [("Retry-After", "7")])
        if p == "/retry-date":
            when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
            return self.send(429, b"slow down", extra=[("Retry-After", when)])
        if p == "/cipher":
            return self.send(200, self.request.cipher()[0].encode())
        if p == "/conn":
            return self.send(200, str(self.conn_id).encode())
        if p == "/whoami":
            cert = self.request.getpeercert()
            cn = "none"
            if cert:
                for rdn in cert.get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName":
                            cn = v
            return self.send(200, cn.encode())
        if p == "/big":
            return self.send(200, b"b" * int(q["n"]))
        if p == "/bigchunked":
            self.start_chunked()
            left = int(q["n"])
            while left > 0:
                n = min(left, 8192)
                self.chunk(b"c" * n)
                left -= n
            self.chunk(b"")
            return
        if p == "/stream":
            data = stream_payload()
            if q.get("plain"):
                return self.send(200, data, "application/json")
            self.start_chunked("application/json")
            for i, c in enumerate(stream_chunks(data)):
                self.chunk(c)
                if i % 4 == 0:
                    time.sleep(0.002)
            self.chunk(b"")
            return
        if p == "/hang":
            # Headers and a first chunk, then nothing: the client's timeout must end it.
            self.start_chunked()
            self.chunk(b"partial")
            time.sleep(float(q.get("s", "30")))
            return
        if p == "/trickle":
            # A long stream: one small chunk every 50 ms for up to a minute.
            self.start_chunked()
            for _ in range(1200):
                self.chunk(b"tick\n")
                time.sleep(0.05)
            self.chunk(b"")
            return
        return self.send(404, b"not found")

    def do_GET(self):
        self.route()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, ctx):
        super().__init__(("127.0.0.1", 0), Handler)
        self.ctx = ctx
        self.ids = itertools.count(1)
        self.lock = threading.Lock()

    def count_connection(self, handler):
        with self.lock:
            handler.conn_id = next(self.ids)

    def handle_error(self, request, client_address):
        pass  # failed handshakes are part of the tests


def main():
    # SIGTERM (the test's PR_SET_PDEATHSIG) unwinds through the cleanup below like EOF does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    d = tempfile.mkdtemp(prefix="wc-tls-test.")
    code = 1
    try:
        make_pki(d)
        j = lambda n: os.path.join(d, n)
        plain = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        plain.minimum_version = ssl.TLSVersion.TLSv1_2
        plain.load_cert_chain(j("server.pem"), j("server.key"))
        plain.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        mtls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        mtls.minimum_version = ssl.TLSVersion.TLSv1_2
        mtls.load_cert_chain(j("server.pem"), j("server.key"))
        mtls.verify_mode = ssl.CERT_REQUIRED
        mtls.load_verify_locations(j("client-ca.pem"))
        cbc = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cbc.minimum_version = cbc.maximum_version = ssl.TLSVersion.TLSv1_2
        cbc.load_cert_chain(j("server.pem"), j("server.key"))
        cbc.set_ciphers("ECDHE-RSA-AES128-SHA")
        servers = [Server(plain), Server(mtls), Server(cbc)]
        for s in servers:
            threading.Thread(target=s.serve_forever, daemon=True).start()
        print("READY %d %d %d %s" % (servers[0].server_address[1], servers[1].server_address[1],
                                     servers[2].server_address[1], d), flush=True)
        sys.stdin.read()  # returns at EOF: the test process is done (or dead)
        code = 0
    except SystemExit:
        code = 0
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        shutil.rmtree(d, ignore_errors=True)
        sys.stdout.flush()
        os._exit(code)


if __name__ == "__main__":
    main()
