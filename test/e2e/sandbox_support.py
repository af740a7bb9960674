"""Helpers for the sandbox-backend end-to-end tests (issue 6): claim/Sandbox access, watch
recorders, worker-deps objects in S3, stopping and restarting the bed's MinIO, and the
background token-refresh scenario that overlaps the rest of the suite.

The controller itself runs through ``controller_harness.ControllerProcess`` (render-rbac
identity, scrubbed environment). Everything here is bounded: every wait has a deadline.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import threading
import time
from typing import Any, Callable, Optional

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

import controller_harness as ch
from conftest import make_namespace, unique, wait_port_free

KG, KV = "agents.kruise.io", "v1alpha1"
CLAIMS, SANDBOXES, SANDBOXSETS = "sandboxclaims", "sandboxes", "sandboxsets"
HOLD_FINALIZER = "e2e.wc.test/hold"


def claim_name(worker: str) -> str:
    return f"hiclaw-worker-{worker}"


def sa_name(worker: str) -> str:
    return f"hiclaw-worker-{worker}"


def deps_prefix(ns: str) -> str:
    # what ControllerProcess sets as HICLAW_WORKER_DEPS_PREFIX for sandbox controllers
    return f"e2e/{ns}/"


def deps_keys(ns: str, worker: str) -> dict:
    # <prefix>workers-deps/<namespace>/<workerName>/ (issue 15: namespaces never share keys)
    base = f"{deps_prefix(ns)}workers-deps/{ns}/{worker}"
    return {"token": f"{base}/token/token", "env": f"{base}/env/env", "data": f"{base}/data/.keep", "dir": base}


def sandbox_controller(tb, core, ns: str, extra: Optional[dict] = None) -> ch.ControllerProcess:
    """A started sandbox-enabled controller for ``ns`` under its render-rbac identity."""
    ctl = ch.ControllerProcess(tb, core, ns, unique("sbxctl"), sandbox=True, env=extra or {})
    ctl.setup_identity()
    ctl.start(timeout=60)
    return ctl


# ---- API objects ------------------------------------------------------------------------------

def get_claim(custom, ns: str, name: str) -> Optional[dict]:
    try:
        return custom.get_namespaced_custom_object(KG, KV, ns, CLAIMS, name)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def get_sandbox(custom, ns: str, name: str) -> Optional[dict]:
    try:
        return custom.get_namespaced_custom_object(KG, KV, ns, SANDBOXES, name)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def list_kind(custom, ns: str, plural: str, worker: Optional[str] = None) -> list[dict]:
    """Objects of a kind in ns; worker="": those labelled for any Worker (not the warm pool's
    unclaimed sandboxes); worker=NAME: that Worker's."""
    sel = f"hiclaw.io/worker={worker}" if worker else "hiclaw.io/worker" if worker == "" else None
    kw = {"label_selector": sel} if sel else {}
    return custom.list_namespaced_custom_object(KG, KV, ns, plural, **kw).get("items", [])


def sandboxes_of(custom, ns: str, worker: str) -> list[dict]:
    return list_kind(custom, ns, SANDBOXES, worker)


def claims_of(custom, ns: str, worker: str) -> list[dict]:
    return list_kind(custom, ns, CLAIMS, worker)


def set_finalizers(custom, ns: str, plural: str, name: str, finalizers: list) -> None:
    custom.patch_namespaced_custom_object(KG, KV, ns, plural, name, {"metadata": {"finalizers": finalizers or None}})


def wait(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# ---- S3 -----------------------------------------------------------------------------------------

def s3_head(s3, bucket: str, key: str) -> Optional[dict]:
    from botocore.exceptions import ClientError
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def s3_get(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def s3_list(s3, bucket: str, prefix: str) -> list[str]:
    res = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in res.get("Contents") or []]


def token_review(api, token: str, audience: str) -> dict:
    auth = client.AuthenticationV1Api(api)
    body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=[audience]))
    return api.sanitize_for_serialization(auth.create_token_review(body))


# ---- watch recorder ---------------------------------------------------------------------------

class Recorder:
    """Watches one resource list (from a given resourceVersion) in a thread and records every
    event as (monotonic time, type, object dict). Reconnects on the 3 s timeout, resuming from
    the last seen resourceVersion, so no event is lost. ``on_event`` is called in the thread."""

    def __init__(self, api, list_fn: Callable, kw: dict, rv: str, on_event: Optional[Callable] = None):
        self.api, self.list_fn, self.kw, self.rv = api, list_fn, kw, rv
        self.events: list[tuple[float, str, dict]] = []
        self.errors: list[str] = []
        self.on_event = on_event
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Recorder":
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(self.list_fn, resource_version=self.rv, timeout_seconds=3, _request_timeout=10,
                                   allow_watch_bookmarks=False, **self.kw):
                    obj = ev["object"]
                    if not isinstance(obj, dict):
                        obj = self.api.sanitize_for_serialization(obj)
                    if ev["type"] == "ERROR":
                        self.errors.append(json.dumps(obj))
                        continue
                    self.rv = obj["metadata"]["resourceVersion"]
                    self.events.append((time.monotonic(), ev["type"], obj))
                    if self.on_event:
                        try:
                            self.on_event(ev["type"], obj)
                        except Exception as e:  # record, keep watching
                            self.errors.append(repr(e))
                    if self._stop.is_set():
                        break
            except Exception as e:
                if not self._stop.is_set():
                    self.errors.append(repr(e))
                    time.sleep(0.2)
            finally:
                w.stop()

    def stop(self) -> None:
        self._stop.set()
        self._t.join(15)


def list_rv(custom, ns: str, plural: str) -> str:
    return custom.list_namespaced_custom_object(KG, KV, ns, plural)["metadata"]["resourceVersion"]


def custom_recorder(api, custom, ns: str, plural: str, on_event=None) -> Recorder:
    return Recorder(api, custom.list_namespaced_custom_object,
                    {"group": KG, "version": KV, "namespace": ns, "plural": plural}, list_rv(custom, ns, plural),
                    on_event).start()


def pod_recorder(api, core, ns: str, on_event=None) -> Recorder:
    rv = core.list_namespaced_pod(ns).metadata.resource_version
    return Recorder(api, core.list_namespaced_pod, {"namespace": ns}, rv, on_event).start()


# ---- MinIO control -----------------------------------------------------------------------------

class MinioControl:
    """Stops the bed's MinIO (SIGTERM, the process the bed started) and starts it again exactly
    as up.sh did: same argv, same environment, own session, log appended, PID file rewritten."""

    def __init__(self, tb):
        self.tb = tb
        self.pidfile = os.path.join(tb.WC_TESTBED, "minio.pid")
        self.logfile = os.path.join(tb.WC_TESTBED, "logs", "minio.log")
        self.saved = None

    def pid(self) -> int:
        with open(self.pidfile) as f:
            return int(f.read().split()[0])

    def stop(self) -> None:
        pid = self.pid()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(kv.decode().split("=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        exe = os.readlink(f"/proc/{pid}/exe")
        assert self.tb.WC_TESTBED + "/" in " ".join(argv), f"pid {pid} is not this bed's minio: {argv}"
        self.saved = (exe, argv, env)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().split()[2] == "Z":
                        break
            except FileNotFoundError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)

    def start(self, s3=None, timeout: float = 60) -> None:
        assert self.saved, "stop() first"
        exe, argv, env = self.saved
        wait_port_free(int(self.tb.WC_S3_PORT))
        with open(self.logfile, "ab") as log:
            p = subprocess.Popen([exe] + argv[1:], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True, close_fds=True)
        with open(self.pidfile, "w") as f:
            f.write(f"{p.pid}\n")
        url = self.tb.WC_S3_ENDPOINT + "/minio/health/ready"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = subprocess.run(["curl", "-fsS", "--max-time", "3", "--cacert", self.tb.WC_CA_FILE, url],
                               capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.3)
        raise AssertionError("minio did not come back")


# ---- the background token-refresh scenario ----------------------------------------------------

class RefreshScenario:
    """A sandbox Worker under a controller with HICLAW_SANDBOX_TOKEN_TTL=600 (the API server's
    minimum), claimed through OpenKruise, then switched to the pod backend (blocked while it
    runs), watched for the whole window. Started early (by an
    autouse fixture of test_sandbox_backend.py, or by the refresh test itself) so the ~400 s
    until the first refresh overlaps the other tests; the assertion runs last."""

    TTL = 600

    def __init__(self, tb, api):
        self.tb, self.api = tb, api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.started = time.monotonic()
        self.ns = unique("e2e-sbx-refresh")
        self.worker = unique("rw")
        self.error: Optional[str] = None
        self.ctl = None
        self.recorders: list[Recorder] = []
        self.initial: dict = {}
        self.ready = threading.Event()
        threading.Thread(target=self._setup, daemon=True).start()

    def _setup(self) -> None:
        try:
            import boto3
            from botocore.config import Config
            self.s3 = boto3.client("s3", endpoint_url=self.tb.WC_S3_ENDPOINT, region_name=self.tb.WC_S3_REGION,
                                   aws_access_key_id=self.tb.WC_S3_ACCESS_KEY,
                                   aws_secret_access_key=self.tb.WC_S3_SECRET_KEY, verify=self.tb.WC_CA_FILE,
                                   config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                                 retries={"max_attempts": 3}))
            self.ns = make_namespace(self.core, "sbx-refresh")
            self.ctl = sandbox_controller(self.tb, self.core, self.ns, {"HICLAW_SANDBOX_TOKEN_TTL": str(self.TTL)})
            self.recorders = [custom_recorder(self.api, self.custom, self.ns, CLAIMS),
                              custom_recorder(self.api, self.custom, self.ns, SANDBOXES)]
            self.custom.create_namespaced_custom_object("hiclaw.io", "v1beta1", self.ns, "workers", {
                "apiVersion": "hiclaw.io/v1beta1", "kind": "Worker",
                "metadata": {"name": self.worker, "labels": {ch.CONTROLLER_LABEL: self.ctl.name}},
                "spec": {"model": "qwen-max", "backendRuntime": "sandbox", "image": "registry.example/w:1"}})
            ch.wait_phase(self.custom, self.ns, self.worker, "Running", timeout=60)
            keys = deps_keys(self.ns, self.worker)
            head = s3_head(self.s3, self.tb.WC_S3_BUCKET, keys["token"])
            assert head is not None, "token object missing after Running"
            sbx = sandboxes_of(self.custom, self.ns, self.worker)
            claim = get_claim(self.custom, self.ns, claim_name(self.worker))
            assert len(sbx) == 1 and claim is not None
            self.initial = {
                "token": s3_get(self.s3, self.tb.WC_S3_BUCKET, keys["token"]).decode(),
                "meta": head["Metadata"], "etag": head["ETag"],
                "sandbox_uid": sbx[0]["metadata"]["uid"], "sandbox_name": sbx[0]["metadata"]["name"],
                "claim_uid": claim["metadata"]["uid"], "audit_offset": ch.audit_offset(self.tb),
                "at": time.monotonic(), "wall": time.time(),
            }
            # The Worker is then switched to the pod backend while Running: the switch is
            # blocked, and the guard must keep the sandbox it protects supplied with a fresh
            # token (issue 15 item 7) — the refresh below happens under the blocked switch.
            self.custom.patch_namespaced_custom_object("hiclaw.io", "v1beta1", self.ns, "workers", self.worker,
                                                       {"spec": {"backendRuntime": "pod"}})
            ch.wait_condition(self.custom, self.ns, self.worker, "Synced", "False", "BackendSwitchBlocked", timeout=30)
        except BaseException as e:  # reported by the refresh test
            self.error = f"refresh scenario setup failed: {e!r}"
        finally:
            self.ready.set()

    def close(self) -> None:
        for r in self.recorders:
            r.stop()
        if self.ctl:
            self.ctl.close()
        try:
            self.core.delete_namespace(self.ns)
        except Exception:
            pass


_scenario: Optional[RefreshScenario] = None
_scenario_lock = threading.Lock()


def refresh_scenario(tb, api) -> RefreshScenario:
    """The one RefreshScenario of this pytest process (started on first call)."""
    global _scenario
    with _scenario_lock:
        if _scenario is None:
            _scenario = RefreshScenario(tb, api)
            atexit.register(_scenario.close)
        return _scenario
