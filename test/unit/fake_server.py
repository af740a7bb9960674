#!/usr/bin/env python3
"""fake_server.py — an in-memory Kubernetes API + S3 stand-in for the reconciler shell's unit
tests (test/unit/test_shell.c).

The shell's pure parts (decide(), projections) are tested without any server; what this serves
is the I/O the shell does itself: live lists that must not trust the cache, 409 handling, S3
object metadata (ownership, env hash). It is a plain-HTTP server on a loopback ephemeral port;
it prints "READY <port>" when listening and exits when stdin reaches EOF.

Kubernetes (any /api/... or /apis/... path, no validation, no watch):
  GET    collection      list, labelSelector (=, ==, !=, in, notin, key, !key), limit with
                         continue, and metadata.remainingItemCount unless a selector was given
  GET    object          the object or 404 NotFound
  POST   collection      create (409 AlreadyExists when the name exists); uid/resourceVersion added
  POST   .../serviceaccounts/<sa>/token   a TokenRequest answer
  DELETE object          404 when absent; 409 Conflict when preconditions.uid differs
  PATCH  object          JSON merge patch; 404 when absent
S3 (paths /s3/<bucket>/<key>): PUT stores body + x-amz-meta-* headers; HEAD/GET return them;
  DELETE removes (204 either way).
Control:
  POST /__slow           body {"method": "GET", "contains": "labelSelector", "ms": 300, "times": N}:
                         the next N matching requests (the path with its query contains the
                         text) wait ms before they are served
  POST /__reset          empty the store and the log
  POST /__seed           body {"path": <collection path>, "object": {...}}: store without logging
  POST /__s3seed         body {"key": "<bucket>/<key>", "body": "...", "meta": {...}}
  GET  /__log            the requests seen since the last reset, one "METHOD path" per line
  GET  /__s3/<bucket>/<key>  {"body":..., "meta": {...}} or 404
  POST /__fail           body {"method": "PATCH", "suffix": "/status", "times": N}: the next N
                         matching requests (logged) answer 500 — a write lost to a failing server;
                         "times": 0 ends every such failure; "status": 404 answers NotFound
                         instead (a resource the server does not serve)
"""
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STORE = {}   # collection path -> {name: object}
S3 = {}      # "bucket/key" -> (body bytes, {meta-name: value})
LOG = []
COUNTER = [100]
FAILS = []   # [method, path suffix, times left, status]
SLOW = []    # [method, text in path?query, ms, times left]


def split_path(path):
    """'/api/v1/namespaces/ns/pods/x' -> (collection, name, sub). Collections end at the plural."""
    parts = path.strip("/").split("/")
    # /api/v1[/namespaces/ns]/plural[/name[/sub]] ; /apis/g/v[/namespaces/ns]/plural[/name[/sub]]
    i = 2 if parts[0] == "api" else 3
    if len(parts) > i + 1 and parts[i] == "namespaces":
        i += 2
    coll = "/" + "/".join(parts[: i + 1])
    name = parts[i + 1] if len(parts) > i + 1 else None
    sub = parts[i + 2] if len(parts) > i + 2 else None
    return coll, name, sub


def selector_terms(sel):
    terms, depth, cur = [], 0, ""
    for ch in sel:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        terms.append(cur.strip())
    return terms


def matches(labels, sel):
    for t in selector_terms(sel or ""):
        m = re.match(r"^([^\s!=]+)\s+(notin|in)\s+\((.*)\)$", t)
        if m:
            vals = [v.strip() for v in m.group(3).split(",")]
            has = m.group(1) in labels and labels[m.group(1)] in vals
            if (m.group(2) == "in") != has:
                return False
            continue
        if t.startswith("!"):
            if t[1:] in labels:
                return False
        elif "!=" in t:
            k, v = t.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in t:
            k, v = t.split("==", 1) if "==" in t else t.split("=", 1)
            if labels.get(k) != v:
                return False
        elif t not in labels:
            return False
    return True


def merge(dst, patch):
    for k, v in patch.items():
        if v is None:
            dst.pop(k, None)
        elif isinstance(v, dict):
            if not isinstance(dst.get(k), dict):
                dst[k] = {}
            merge(dst[k], v)
        else:
            dst[k] = v


def status(code, reason, msg):
    return code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                  "message": msg, "code": code}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def reply(self, code, obj=None, raw=None, headers=None, head=False):
        data = raw if raw is not None else (json.dumps(obj).encode() if obj is not None else b"")
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if obj is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def route(self, method):
        path, _, query = self.path.partition("?")
        q = {}
        for kv in query.split("&") if query else []:
            k, _, v = kv.partition("=")
            from urllib.parse import unquote
            q[k] = unquote(v)
        body = self.body() if method in ("POST", "PUT", "PATCH", "DELETE") else b""
        if path == "/__reset":
            with LOCK:
                STORE.clear(); S3.clear(); LOG.clear(); FAILS.clear(); SLOW.clear()
            return self.reply(200, {})
        if path == "/__slow":
            d = json.loads(body)
            with LOCK:
                SLOW.append([d["method"], d.get("contains", ""), int(d["ms"]), int(d.get("times", 1))])
            return self.reply(200, {})
        if path == "/__seed":
            d = json.loads(body)
            with LOCK:
                obj = d["object"]
                md = obj.setdefault("metadata", {})
                md.setdefault("uid", "uid-" + md["name"])
                md.setdefault("resourceVersion", "1")
                STORE.setdefault(d["path"], {})[md["name"]] = obj
            return self.reply(200, {})
        if path == "/__s3seed":
            d = json.loads(body)
            with LOCK:
                S3[d["key"]] = (d.get("body", "").encode(), dict(d.get("meta", {})))
            return self.reply(200, {})
        if path == "/__fail":
            d = json.loads(body)
            with LOCK:
                if int(d.get("times", 1)) == 0:
                    FAILS.clear()
                else:
                    FAILS.append([d["method"], d["suffix"], int(d.get("times", 1)), int(d.get("status", 500))])
            return self.reply(200, {})
        if path == "/__log":
            with LOCK:
                return self.reply(200, raw=("\n".join(LOG) + "\n").encode())
        if path.startswith("/__s3/"):
            with LOCK:
                o = S3.get(path[len("/__s3/"):])
            if not o:
                return self.reply(404, {})
            return self.reply(200, {"body": o[0].decode(), "meta": o[1]})
        with LOCK:
            LOG.append(f"{method} {path}" + (f"?{query}" if method == "GET" and query else ""))
            failing = next((f for f in FAILS if f[0] == method and path.endswith(f[1]) and f[2] > 0), None)
            if failing:
                failing[2] -= 1
            slow = next((x for x in SLOW if x[0] == method and x[1] in self.path and x[3] > 0), None)
            if slow:
                slow[3] -= 1
        if slow:
            import time
            time.sleep(slow[2] / 1000)
        if failing and failing[3] == 404:
            return self.reply(*status(404, "NotFound", "the server could not find the requested resource"))
        if failing:
            return self.reply(*status(500, "InternalError", "injected by the test"))
        if path.startswith("/s3/"):
            return self.s3(method, path[len("/s3/"):], body)
        return self.kube(method, path, q, body)

    def s3(self, method, key, body):
        with LOCK:
            if method == "PUT":
                meta = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-amz-meta-")}
                S3[key] = (body, meta)
                return self.reply(200, raw=b"")
            if method == "DELETE":
                S3.pop(key, None)
                return self.reply(204, raw=b"")
            o = S3.get(key)
            if not o:
                if method == "HEAD":
                    return self.reply(404, raw=b"", head=True)
                return self.reply(404, raw=b"<Error><Code>NoSuchKey</Code><Message>absent</Message></Error>")
            hdrs = dict(o[1])
            if method == "HEAD":
                self.send_response(200)
                for k, v in hdrs.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(o[0])))
                self.end_headers()
                return
            return self.reply(200, raw=o[0], headers=hdrs)

    def kube(self, method, path, q, body):
        coll, name, sub = split_path(path)
        with LOCK:
            objs = STORE.setdefault(coll, {})
            if method == "GET" and name is None:
                items = [o for o in objs.values()
                         if matches(o.get("metadata", {}).get("labels") or {}, q.get("labelSelector"))]
                md = {"resourceVersion": str(COUNTER[0])}
                lim = int(q.get("limit") or 0)
                if lim and len(items) > lim:
                    # like the real API server: no remainingItemCount when a selector was given
                    if not q.get("labelSelector") and not q.get("fieldSelector"):
                        md["remainingItemCount"] = len(items) - lim
                    md["continue"] = "more"
                    items = items[:lim]
                return self.reply(200, {"kind": "List", "apiVersion": "v1", "metadata": md, "items": items})
            if method == "POST" and sub == "token":
                COUNTER[0] += 1
                return self.reply(201, {"kind": "TokenRequest", "status": {
                    "token": f"fake-token-{COUNTER[0]}", "expirationTimestamp": "2099-01-01T00:00:00Z"}})
            if method == "POST":
                obj = json.loads(body)
                md = obj.setdefault("metadata", {})
                if md.get("name") in objs:
                    return self.reply(*status(409, "AlreadyExists", f'{coll} "{md.get("name")}" already exists'))
                COUNTER[0] += 1
                md["uid"] = f"uid-{COUNTER[0]}"
                md["resourceVersion"] = str(COUNTER[0])
                objs[md["name"]] = obj
                return self.reply(201, obj)
            obj = objs.get(name)
            if obj is None:
                return self.reply(*status(404, "NotFound", f'{coll} "{name}" not found'))
            if method == "GET":
                return self.reply(200, obj)
            if method == "DELETE":
                pre = (json.loads(body) if body else {}).get("preconditions") or {}
                if pre.get("uid") and pre["uid"] != obj["metadata"].get("uid"):
                    return self.reply(*status(409, "Conflict", "Precondition failed: UID in precondition"))
                del objs[name]
                return self.reply(200, obj)
            if method == "PATCH":
                merge(obj, json.loads(body))
                COUNTER[0] += 1
                obj["metadata"]["resourceVersion"] = str(COUNTER[0])
                return self.reply(200, obj)
        return self.reply(*status(405, "MethodNotAllowed", method))

    def do_GET(self): self.route("GET")
    def do_HEAD(self): self.route("HEAD")
    def do_POST(self): self.route("POST")
    def do_PUT(self): self.route("PUT")
    def do_PATCH(self): self.route("PATCH")
    def do_DELETE(self): self.route("DELETE")


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    print(f"READY {srv.server_address[1]}", flush=True)
    sys.stdin.read()  # returns at EOF: the test process closed the pipe or died
    srv.shutdown()


if __name__ == "__main__":
    main()
