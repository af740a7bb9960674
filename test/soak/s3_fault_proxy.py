"""An S3 that fails writes for a while: a TLS-terminating HTTP proxy in front of the bed's MinIO.

The controller's worker-deps client speaks HTTPS and verifies the certificate; this proxy
presents one for `localhost` signed by the bed's test CA (it has the CA key), so the controller
trusts it as it trusts MinIO. Every request is forwarded to MinIO unchanged — method, path,
headers (Host included: the SigV4 signature covers it), body — and MinIO's answer is returned
unchanged, except while ``fail_writes`` is set: then PUT and DELETE get the 503 SlowDown an
overloaded S3 answers, without reaching MinIO. Reads (HEAD, GET) keep working, as on a real
S3 whose write path is degraded.

Loopback only; threads are daemons; ``close()`` stops it.
"""

from __future__ import annotations

import http.client
import http.server
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b'<Message>Please reduce your request rate. (chaos: writes failing)</Message></Error>')


def _leaf_cert(pki_dir: str, out_dir: str) -> tuple[str, str]:
    """A serving certificate for localhost signed by the bed's CA."""
    key, csr, crt, ext = (os.path.join(out_dir, n) for n in ("p.key", "p.csr", "p.crt", "p.ext"))
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
        "/CN=localhost", "-keyout", key, "-out", csr)
    run("openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(pki_dir, "ca.crt"), "-CAkey",
        os.path.join(pki_dir, "ca.key"), "-CAcreateserial", "-days", "2", "-sha256", "-extfile", ext, "-out", crt)
    return crt, key


class S3FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, ca_file: str, pki_dir: str):
        self.upstream = (upstream_host, upstream_port)
        self.upstream_ctx = ssl.create_default_context(cafile=ca_file)
        self.fail_writes = False
        self.forwarded = 0
        self.failed = 0
        self._dir = tempfile.mkdtemp(prefix="wc-s3proxy-")
        crt, key = _leaf_cert(pki_dir, self._dir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                if proxy.fail_writes and self.command in ("PUT", "DELETE", "POST"):
                    proxy.failed += 1
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOWDOWN)))
                    self.end_headers()
                    self.wfile.write(SLOWDOWN)
                    return
                conn = http.client.HTTPSConnection(*proxy.upstream, context=proxy.upstream_ctx, timeout=15)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                    conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for k, v in headers.items():
                        conn.putheader(k, v)
                    conn.endheaders(body or None)
                    r = conn.getresponse()
                    data = r.read()
                    self.send_response(r.status, r.reason)
                    for k, v in r.getheaders():
                        if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(k, v)
                    # a HEAD's Content-Length is the object's size (the controller verifies it)
                    length = r.getheader("Content-Length") if self.command == "HEAD" else None
                    self.send_header("Content-Length", length if length is not None else str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                    proxy.forwarded += 1
                except OSError:
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                finally:
                    conn.close()

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _any

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = super().get_request()
                return ctx.wrap_socket(sock, server_side=True), addr

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
