"""The played in-sandbox agent-runtime: the one part of the test bed that cannot be real.

The real OpenKruise agents controller, after it claims a sandbox, calls the agent-runtime that
runs inside the sandbox's Pod at http://<pod IP>:49983:

  * POST /init                     JSON {"envVars":{...},"accessToken":"<uuid>"[,"skipRefresh":true]}
  * POST /process.Process/Start    gRPC (not Connect) over HTTP/1.1, one call per
                                   dynamicVolumesMount entry: start the process
                                   `/mnt/envd/sandbox-runtime-storage mount --driver D --config B64`
                                   where B64 is a protobuf CSI NodePublishVolumeRequest.

kwok "runs" the Pods, so nothing listens at a pod IP. This program does, for every Pod the
OpenKruise controller made (label agents.kruise.io/created-by=sandbox) that has a pod IP in the
bed's loopback range: it binds <pod IP>:49983 when the Pod gets its IP and closes it when the
Pod goes. It *performs* the mount the way a CSI driver over the bed's S3 bucket would: it reads
the objects under volume_context.path from S3 and records what the sandbox sees at target_path
(a snapshot on disk, and a live view read through the mount at query time), so tests assert the
bytes a sandbox really receives.

Control API (127.0.0.1:<control port>, JSON unless noted) for tests:
  GET /healthz                       "ok"
  GET /sandboxes                     every Pod served: its incarnations (uid), /init calls, mounts
  GET /calls                         every call in arrival order (kind, pod, time, outcome)
  GET /file?ns=N&pod=P&path=/abs     bytes the current incarnation of P sees at path now (live)
  GET /snapshot?ns=N&pod=P&path=/abs bytes it saw there when the mount was made
  GET /errors                        protocol violations observed (must stay empty)

Wire formats (from the controller's source, verified with its client library): the gRPC request
is one frame 0x00 + u32 length + process.StartRequest{process(1): ProcessConfig{cmd(1),
args(2), envs(3) map, cwd(4)}}; the reply is frames of StartResponse{event(1): ProcessEvent{
start(1){pid(1)}, data(2){stdout(1),stderr(2)}, end(3){exit_code(1) sint32, exited(2),
status(3), error(4)}}} in a chunked body, then the trailer Grpc-Status: 0.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import ipaddress
import json
import os
import signal
import sys
import threading
import time
import traceback
import urllib.parse
from typing import Any, Optional

RUNTIME_PORT = 49983
MOUNT_COMMAND = "/mnt/envd/sandbox-runtime-storage"
SANDBOX_POD_SELECTOR = "agents.kruise.io/created-by=sandbox"


def log(msg: str, **kv: Any) -> None:
    extra = " ".join(f"{k}={v}" for k, v in kv.items())
    print(f"{time.strftime('%H:%M:%S')} agent-runtime: {msg} {extra}".rstrip(), flush=True)


# ---- protobuf, the few wire types these messages use ----------------------------------------------

def pb_varint(b: bytes, i: int) -> tuple[int, int]:
    shift = val = 0
    while True:
        if i >= len(b):
            raise ValueError("truncated varint")
        c = b[i]
        i += 1
        val |= (c & 0x7F) << shift
        if not c & 0x80:
            return val, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def pb_fields(b: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value): varints as int, length-delimited as bytes."""
    out, i = [], 0
    while i < len(b):
        key, i = pb_varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = pb_varint(b, i)
        elif wt == 2:
            n, i = pb_varint(b, i)
            if i + n > len(b):
                raise ValueError("truncated field")
            v, i = b[i:i + n], i + n
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        out.append((num, wt, v))
    return out


def pb_map(entries: list[bytes]) -> dict[str, str]:
    m = {}
    for e in entries:
        k = v = ""
        for num, _, val in pb_fields(e):
            if num == 1:
                k = val.decode()
            elif num == 2:
                v = val.decode()
        m[k] = v
    return m


def pb_enc_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        c = v & 0x7F
        v >>= 7
        if v:
            out.append(c | 0x80)
        else:
            out.append(c)
            return bytes(out)


def pb_len(num: int, payload: bytes) -> bytes:
    return pb_enc_varint(num << 3 | 2) + pb_enc_varint(len(payload)) + payload


def pb_int(num: int, v: int) -> bytes:
    return pb_enc_varint(num << 3) + pb_enc_varint(v)


def decode_start_request(body: bytes) -> dict:
    """process.StartRequest → {cmd, args, envs, cwd}."""
    cfg: dict = {"cmd": "", "args": [], "envs": {}, "cwd": None}
    for num, _, v in pb_fields(body):
        if num != 1:
            continue
        envs = []
        for n2, _, v2 in pb_fields(v):
            if n2 == 1:
                cfg["cmd"] = v2.decode()
            elif n2 == 2:
                cfg["args"].append(v2.decode())
            elif n2 == 3:
                envs.append(v2)
            elif n2 == 4:
                cfg["cwd"] = v2.decode()
        cfg["envs"] = pb_map(envs)
    return cfg


def decode_publish_request(raw: bytes) -> dict:
    """csi.v1.NodePublishVolumeRequest, the fields a mount needs."""
    r: dict = {"volume_id": "", "target_path": "", "readonly": False, "access_mode": 0, "volume_context": {},
               "secrets": {}, "access_type": None}
    ctx, sec = [], []
    for num, _, v in pb_fields(raw):
        if num == 1:
            r["volume_id"] = v.decode()
        elif num == 4:
            r["target_path"] = v.decode()
        elif num == 5:
            for n2, _, v2 in pb_fields(v):
                if n2 == 1:
                    r["access_type"] = "block"
                elif n2 == 2:
                    r["access_type"] = "mount"
                elif n2 == 3:
                    for n3, _, v3 in pb_fields(v2):
                        if n3 == 1:
                            r["access_mode"] = v3
        elif num == 6:
            r["readonly"] = bool(v)
        elif num == 7:
            sec.append(v)
        elif num == 8:
            ctx.append(v)
    r["volume_context"] = pb_map(ctx)
    r["secrets"] = sorted(pb_map(sec))  # names only: never keep secret values
    return r


def grpc_frame(msg: bytes) -> bytes:
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


def event_start(pid: int) -> bytes:
    return grpc_frame(pb_len(1, pb_len(1, pb_int(1, pid))))


def event_stderr(data: bytes) -> bytes:
    return grpc_frame(pb_len(1, pb_len(2, pb_len(2, data))))


def event_end(exit_code: int, status: str) -> bytes:
    zigzag = (exit_code << 1) ^ (exit_code >> 31)
    end = (pb_int(1, zigzag) if exit_code else b"") + pb_int(2, 1) + pb_len(3, status.encode())
    return grpc_frame(pb_len(1, pb_len(3, end)))


# ---- S3 (the bed's MinIO, SigV4 by botocore) ----------------------------------------------------

class Storage:
    def __init__(self, endpoint: str, region: str, ca_file: str):
        import boto3
        from botocore.config import Config

        self.client = boto3.client(
            "s3", endpoint_url=endpoint, region_name=region,
            aws_access_key_id=os.environ["WC_RUNTIME_S3_ACCESS_KEY"],
            aws_secret_access_key=os.environ["WC_RUNTIME_S3_SECRET_KEY"],
            verify=ca_file,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                          retries={"max_attempts": 2}, connect_timeout=5, read_timeout=10))

    def read_tree(self, bucket: str, prefix: str) -> dict[str, bytes]:
        """Every object under prefix (a directory), keyed by its path relative to prefix."""
        out: dict[str, bytes] = {}
        token = None
        while True:
            kw = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            page = self.client.list_objects_v2(**kw)
            for o in page.get("Contents", []):
                rel = o["Key"][len(prefix):]
                out[rel] = self.client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            if not page.get("IsTruncated"):
                return out
            token = page.get("NextContinuationToken")


def s3_location(volume_context: dict) -> tuple[str, str]:
    """The bucket and key prefix a mount's volume_context names: the bed's PV carries
    volumeAttributes {bucket, path}; the controller joins path with the claim's subPath."""
    bucket = volume_context.get("bucket", "")
    path = volume_context.get("path", "/").strip("/")
    return bucket, (path + "/") if path else ""


# ---- state --------------------------------------------------------------------------------------

class State:
    """Everything served, guarded by one lock; persisted to state.json for post-mortems."""

    def __init__(self, state_dir: str, save_interval: float = 0.0):
        self.dir = state_dir
        self.lock = threading.Lock()
        self.pods_by_ip: dict[str, dict] = {}      # current Pod at each served IP
        self.sandboxes: dict[str, dict] = {}       # "ns/name" → {"incarnations": {uid: {...}}}
        self.calls: list[dict] = []
        self.errors: list[str] = []
        # 0: state.json rewritten after every call. > 0 (the benchmarks' bed, WC_BED_FAST=1): at
        # most every save_interval seconds, from a thread of its own — the whole state is
        # rewritten each time, and at a thousand sandboxes doing it on every call, on the event
        # loop, made this played runtime the slowest part of a claim.
        self.save_interval = save_interval
        self.dirty = threading.Event()
        if save_interval > 0:
            threading.Thread(target=self._saver, daemon=True).start()

    def incarnation(self, pod: dict) -> dict:
        key = f"{pod['ns']}/{pod['name']}"
        s = self.sandboxes.setdefault(key, {"incarnations": {}, "order": []})
        inc = s["incarnations"].get(pod["uid"])
        if inc is None:
            inc = {"uid": pod["uid"], "ip": pod["ip"], "inits": [], "mounts": []}
            s["incarnations"][pod["uid"]] = inc
            s["order"].append(pod["uid"])
        return inc

    def error(self, msg: str) -> None:
        log("PROTOCOL ERROR", error=msg)
        with self.lock:
            self.errors.append(msg)

    def save(self, now: bool = False) -> None:
        if self.save_interval > 0 and not now:
            self.dirty.set()
            return
        self._write()

    def _saver(self) -> None:
        while True:
            self.dirty.wait()
            time.sleep(self.save_interval)
            self.dirty.clear()
            self._write()

    def _write(self) -> None:
        with self.lock:
            data = json.dumps({"sandboxes": self.sandboxes, "calls": self.calls, "errors": self.errors}, indent=1)
        tmp = os.path.join(self.dir, "state.json.tmp")
        with open(tmp, "w") as f:
            f.write(data)
        os.replace(tmp, os.path.join(self.dir, "state.json"))


def safe_rel(path: str) -> str:
    """A target path as a relative directory under the snapshot root."""
    parts = [p for p in path.split("/") if p not in ("", ".", "..")]
    return os.path.join(*parts) if parts else "_root"


# ---- HTTP/1.1 ----------------------------------------------------------------------------------

async def read_request(reader: asyncio.StreamReader) -> Optional[tuple[str, str, dict, bytes]]:
    line = await reader.readline()
    if not line:
        return None
    method, target, _ = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        h = (await reader.readline()).decode("latin-1").rstrip("\r\n")
        if not h:
            break
        k, _, v = h.partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += await reader.readexactly(size)
            await reader.readline()
    return method, target, headers, body


def http_response(status: int, reason: str, body: bytes = b"", ctype: str = "text/plain") -> bytes:
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def grpc_stream_response(frames: list[bytes]) -> bytes:
    head = ("HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nTransfer-Encoding: chunked\r\n"
            "Trailer: Grpc-Status, Grpc-Message\r\n\r\n").encode()
    body = b"".join(b"%x\r\n%s\r\n" % (len(f), f) for f in frames)
    return head + body + b"0\r\nGrpc-Status: 0\r\nGrpc-Message: \r\n\r\n"


# ---- the runtime ---------------------------------------------------------------------------------

class Runtime:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cidr = ipaddress.ip_network(args.cidr)
        self.state = State(args.state_dir, args.save_interval)
        self.storage = Storage(args.s3_endpoint, args.s3_region, args.ca_file)
        self.loop: asyncio.AbstractEventLoop
        self.servers: dict[str, asyncio.base_events.Server] = {}
        self.binding: set[str] = set()  # IPs whose listener is being started
        self.pid = 1000
        self.stop = threading.Event()

    # -- serving pod IPs --
    async def ensure_listener(self, ip: str) -> None:
        # Two events of one Pod in a row (its IP set, then its status) each ask for the listener;
        # start_server yields while it binds, so the second must see the first under way, or it
        # binds the address again and fails with "address already in use" (seen in CI).
        if ip in self.servers or ip in self.binding:
            return
        self.binding.add(ip)
        try:
            srv = await asyncio.start_server(lambda r, w: self.serve_runtime(ip, r, w), ip, RUNTIME_PORT,
                                             reuse_address=True)
        except OSError as e:
            self.state.error(f"cannot listen on {ip}:{RUNTIME_PORT}: {e}")
            return
        finally:
            self.binding.discard(ip)
        self.servers[ip] = srv
        log("listening", addr=f"{ip}:{RUNTIME_PORT}")

    async def drop_listener(self, ip: str) -> None:
        srv = self.servers.pop(ip, None)
        if srv:
            srv.close()
            log("closed", addr=f"{ip}:{RUNTIME_PORT}")

    def pod_event(self, etype: str, pod: Any) -> None:
        """From the watch thread: track which Pod owns which IP; bind or unbind."""
        md, st = pod.metadata, pod.status
        ip = st.pod_ip if st else None
        info = {"ns": md.namespace, "name": md.name, "uid": md.uid, "ip": ip}
        with self.state.lock:
            for k, v in list(self.state.pods_by_ip.items()):
                if v["uid"] == md.uid and (etype == "DELETED" or k != ip):
                    del self.state.pods_by_ip[k]
                    asyncio.run_coroutine_threadsafe(self.maybe_drop(k), self.loop)
            if etype != "DELETED" and ip and ipaddress.ip_address(ip) in self.cidr:
                self.state.pods_by_ip[ip] = info
                asyncio.run_coroutine_threadsafe(self.ensure_listener(ip), self.loop)

    async def maybe_drop(self, ip: str) -> None:
        with self.state.lock:
            still = ip in self.state.pods_by_ip
        if not still:
            await self.drop_listener(ip)

    def watch_pods(self) -> None:
        from kubernetes import client, config, watch

        api = config.new_client_from_config(config_file=self.args.kubeconfig)
        core = client.CoreV1Api(api)
        while not self.stop.is_set():
            try:
                lst = core.list_pod_for_all_namespaces(label_selector=SANDBOX_POD_SELECTOR)
                seen = set()
                for p in lst.items:
                    seen.add(p.metadata.uid)
                    self.pod_event("ADDED", p)
                with self.state.lock:
                    gone = [v for v in self.state.pods_by_ip.values() if v["uid"] not in seen]
                for v in gone:
                    self.pod_event("DELETED", _StalePod(v))
                w = watch.Watch()
                for ev in w.stream(core.list_pod_for_all_namespaces, label_selector=SANDBOX_POD_SELECTOR,
                                   resource_version=lst.metadata.resource_version, timeout_seconds=300,
                                   allow_watch_bookmarks=True):
                    if self.stop.is_set():
                        break
                    if ev["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self.pod_event(ev["type"], ev["object"])
            except Exception as e:  # relist after any trouble (410, API server restart)
                if not self.stop.is_set():
                    log("pod watch restarting", error=type(e).__name__)
                    time.sleep(0.5)

    def pod_at(self, ip: str) -> Optional[dict]:
        with self.state.lock:
            p = self.state.pods_by_ip.get(ip)
            return dict(p) if p else None

    async def serve_runtime(self, ip: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                req = await read_request(reader)
                if req is None:
                    break
                method, target, headers, body = req
                path = target.split("?", 1)[0]
                if method == "POST" and path == "/init":
                    resp = self.handle_init(ip, headers, body)
                elif method == "POST" and path == "/process.Process/Start":
                    resp = await self.handle_start(ip, headers, body)
                else:
                    self.state.error(f"{ip}: unexpected {method} {path}")
                    resp = http_response(404, "Not Found", b"not found\n")
                writer.write(resp)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            self.state.error(f"{ip}: handler crashed: {traceback.format_exc(limit=3)}")
        finally:
            writer.close()

    def record_call(self, kind: str, pod: Optional[dict], **kv: Any) -> None:
        entry = {"kind": kind, "time": time.time(), "pod": f"{pod['ns']}/{pod['name']}" if pod else None,
                 "uid": pod["uid"] if pod else None, **kv}
        with self.state.lock:
            self.state.calls.append(entry)

    def handle_init(self, ip: str, headers: dict, body: bytes) -> bytes:
        pod = self.pod_at(ip)
        if pod is None:
            self.state.error(f"/init at {ip}: no sandbox Pod known there")
            self.record_call("init", None, ip=ip, ok=False)
            return http_response(503, "Service Unavailable", b"unknown pod\n")
        try:
            req = json.loads(body)
        except ValueError:
            self.state.error(f"/init at {ip}: body is not JSON")
            return http_response(400, "Bad Request")
        if headers.get("content-type", "").split(";")[0] != "application/json":
            self.state.error(f"/init at {ip}: content-type {headers.get('content-type')!r}")
        token = req.get("accessToken", "")
        if not token or headers.get("x-access-token") != token:
            self.state.error(f"/init at {ip}: X-Access-Token does not match the body's accessToken")
        with self.state.lock:
            inc = self.state.incarnation(pod)
            inc["access_token_sha"] = hashlib.sha256(token.encode()).hexdigest()[:16]
            inc["inits"].append({"time": time.time(), "skipRefresh": bool(req.get("skipRefresh")),
                                 "envVars": sorted((req.get("envVars") or {}).keys())})
        self.record_call("init", pod, skipRefresh=bool(req.get("skipRefresh")))
        self.state.save()
        log("init", pod=f"{pod['ns']}/{pod['name']}", skipRefresh=bool(req.get("skipRefresh")))
        return b"HTTP/1.1 204 No Content\r\n\r\n"

    async def handle_start(self, ip: str, headers: dict, body: bytes) -> bytes:
        pod = self.pod_at(ip)
        problems = []
        if headers.get("content-type") not in ("application/grpc", "application/grpc+proto"):
            problems.append(f"content-type {headers.get('content-type')!r}")
        if headers.get("te") != "trailers":
            problems.append("no 'Te: trailers'")
        if len(body) < 5 or body[0] != 0 or int.from_bytes(body[1:5], "big") != len(body) - 5:
            problems.append("not one uncompressed gRPC frame")
        if problems or pod is None:
            self.state.error(f"Start at {ip}: {'; '.join(problems) or 'no sandbox Pod known there'}")
            return grpc_stream_response([event_start(0), event_stderr(b"bad request\n"), event_end(2, "exit status 2")])
        cfg = decode_start_request(body[5:])
        args = cfg["args"]
        try:
            assert cfg["cmd"] == MOUNT_COMMAND, f"command {cfg['cmd']!r}"
            assert args[:1] == ["mount"] and "--driver" in args and "--config" in args, f"args {args!r}"
            driver = args[args.index("--driver") + 1]
            raw = base64.b64decode(args[args.index("--config") + 1], validate=True)
            req = decode_publish_request(raw)
        except Exception as e:
            self.state.error(f"Start at {ip}: cannot decode the mount request: {e}")
            return grpc_stream_response([event_start(0), event_stderr(str(e).encode()), event_end(2, "exit status 2")])
        if driver != self.args.driver:
            self.state.error(f"Start at {ip}: driver {driver!r}")
        if cfg["envs"].get("POD_UID") != pod["uid"]:
            self.state.error(f"Start at {ip}: POD_UID {cfg['envs'].get('POD_UID')!r} is not the Pod's uid {pod['uid']}")
        with self.state.lock:
            token_sha = self.state.incarnation(pod).get("access_token_sha")
        if not token_sha or hashlib.sha256(headers.get("x-access-token", "").encode()).hexdigest()[:16] != token_sha:
            self.state.error(f"Start at {ip}: X-Access-Token is not the one /init received")
        bucket, prefix = s3_location(req["volume_context"])
        self.pid += 1
        try:
            files = await asyncio.get_running_loop().run_in_executor(None, self.storage.read_tree, bucket, prefix)
        except Exception as e:
            msg = f"mount {req['target_path']}: reading s3://{bucket}/{prefix}: {type(e).__name__}: {e}"
            self.record_call("mount", pod, target=req["target_path"], ok=False, error=msg)
            log("mount failed", pod=f"{pod['ns']}/{pod['name']}", target=req["target_path"])
            return grpc_stream_response([event_start(self.pid), event_stderr(msg.encode()), event_end(1, "exit status 1")])
        root = os.path.join(self.args.state_dir, "mounts", pod["ns"], pod["name"], pod["uid"],
                            safe_rel(req["target_path"]))
        os.makedirs(root, exist_ok=True)
        for rel, data in files.items():
            dst = os.path.join(root, safe_rel(rel))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, "wb") as f:
                f.write(data)
        mount = {"time": time.time(), "target_path": req["target_path"], "volume_id": req["volume_id"],
                 "readonly": req["readonly"], "access_mode": req["access_mode"], "access_type": req["access_type"],
                 "driver": driver, "bucket": bucket, "prefix": prefix, "volume_context": req["volume_context"],
                 "files": {k: {"size": len(v), "sha256": hashlib.sha256(v).hexdigest()} for k, v in files.items()}}
        with self.state.lock:
            self.state.incarnation(pod)["mounts"].append(mount)
        self.record_call("mount", pod, target=req["target_path"], ok=True, prefix=prefix, files=sorted(files))
        self.state.save()
        log("mounted", pod=f"{pod['ns']}/{pod['name']}", target=req["target_path"], prefix=prefix, files=len(files))
        return grpc_stream_response([event_start(self.pid), event_end(0, "exit status 0")])

    # -- control API --
    def current_mount(self, ns: str, name: str, path: str) -> tuple[Optional[dict], Optional[dict], str]:
        with self.state.lock:
            s = self.state.sandboxes.get(f"{ns}/{name}")
            if not s or not s["order"]:
                return None, None, ""
            inc = s["incarnations"][s["order"][-1]]
            best, rel = None, ""
            for m in inc["mounts"]:
                t = m["target_path"].rstrip("/")
                if (path == t or path.startswith(t + "/")) and (best is None or len(t) > len(best["target_path"])):
                    best, rel = m, path[len(t):].lstrip("/")
            return inc, best, rel

    async def serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            req = await read_request(reader)
            if req is None:
                return
            method, target, _, _ = req
            u = urllib.parse.urlsplit(target)
            q = dict(urllib.parse.parse_qsl(u.query))
            if u.path == "/healthz":
                resp = http_response(200, "OK", b"ok\n")
            elif u.path in ("/sandboxes", "/calls", "/errors"):
                with self.state.lock:
                    data = {"/sandboxes": self.state.sandboxes, "/calls": self.state.calls,
                            "/errors": self.state.errors}[u.path]
                    body = json.dumps(data).encode()
                resp = http_response(200, "OK", body, "application/json")
            elif u.path in ("/file", "/snapshot"):
                inc, m, rel = self.current_mount(q.get("ns", ""), q.get("pod", ""), q.get("path", ""))
                if m is None:
                    resp = http_response(404, "Not Found", b"nothing mounted there\n")
                elif u.path == "/snapshot":
                    f = os.path.join(self.args.state_dir, "mounts", q["ns"], q["pod"], inc["uid"],
                                     safe_rel(m["target_path"]), safe_rel(rel))
                    try:
                        with open(f, "rb") as fh:
                            resp = http_response(200, "OK", fh.read(), "application/octet-stream")
                    except OSError:
                        resp = http_response(404, "Not Found", b"no such file in the snapshot\n")
                else:
                    key = m["prefix"] + rel
                    try:
                        data = await asyncio.get_running_loop().run_in_executor(
                            None, lambda: self.storage.client.get_object(Bucket=m["bucket"], Key=key)["Body"].read())
                        resp = http_response(200, "OK", data, "application/octet-stream")
                    except Exception:
                        resp = http_response(404, "Not Found", b"no such file behind the mount\n")
            else:
                resp = http_response(404, "Not Found", b"not found\n")
            writer.write(resp)
            await writer.drain()
        except Exception:
            self.state.error(f"control handler crashed: {traceback.format_exc(limit=3)}")
        finally:
            writer.close()

    async def main(self) -> None:
        self.loop = asyncio.get_running_loop()
        ctl = await asyncio.start_server(self.serve_control, "127.0.0.1", self.args.control_port)
        threading.Thread(target=self.watch_pods, daemon=True).start()
        log("ready", control=f"127.0.0.1:{self.args.control_port}", cidr=str(self.cidr))
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, done.set)
        await done.wait()
        self.stop.set()
        ctl.close()
        for ip in list(self.servers):
            await self.drop_listener(ip)
        self.state.save(now=True)
        log("stopped")


class _StalePod:
    """A Pod the relist no longer returned, shaped like a watch object for pod_event."""

    def __init__(self, v: dict):
        self.metadata = type("M", (), {"namespace": v["ns"], "name": v["name"], "uid": v["uid"]})()
        self.status = type("S", (), {"pod_ip": v["ip"]})()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--cidr", default="127.1.0.0/16")
    ap.add_argument("--driver", required=True, help="the CSI driver name of the worker-deps PV")
    ap.add_argument("--s3-endpoint", required=True)
    ap.add_argument("--s3-region", default="us-east-1")
    ap.add_argument("--ca-file", required=True)
    ap.add_argument("--save-interval", type=float, default=0.0,
                    help="write state.json at most every S seconds (default 0: after every call)")
    args = ap.parse_args()
    if not ipaddress.ip_network(args.cidr).is_loopback:
        print("agent-runtime: --cidr must be a loopback range", file=sys.stderr)
        return 2
    os.makedirs(args.state_dir, mode=0o700, exist_ok=True)
    asyncio.run(Runtime(args).main())
    return 0


if __name__ == "__main__":
    sys.exit(main())
