"""Running `worker-controller run` against the test bed, under the identity `render-rbac` prints.

``ControllerProcess`` (use ``controller_for(...)`` as a context manager, or the ``controller``
fixture factory in a test module):

* installs the Worker CRD (``worker-controller install-crds``, admin kubeconfig; idempotent);
* applies ``render-rbac --namespace NS --controller-name ctl-<unique> [--no-sandbox]`` with admin;
* requests a 1 h token for that ServiceAccount (TokenRequest API) and writes it to a file;
* starts ``worker-controller run --server … --token-file … --ca-file …`` with configuration
  from environment variables (watch NS, sandbox off by default, leader election off, JSON
  logs) and a *scrubbed* environment: no KUBECONFIG, HOME pointing at an empty directory, so
  the only credential the process can use is the ServiceAccount token;
* ``stop()`` (SIGTERM, exit 0 within 30 s), ``kill()`` (SIGKILL), ``restart()``, ``log_text()``.

Helpers: Worker bodies and CRUD, waiting for a phase or condition, the Worker's Pod, the Events
about a Worker, and write-request counting (audit log when ``WC_AUDIT_LOG`` is set, else the
API server's ``apiserver_request_total`` metric).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any, Callable, Optional

from kubernetes import client
from kubernetes.client.rest import ApiException

E2E_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(E2E_DIR, "..", ".."))

GROUP, VERSION, PLURAL = "hiclaw.io", "v1beta1", "workers"
FINALIZER = "hiclaw.io/cleanup"
KRUISE = ("agents.kruise.io", "v1alpha1")


def binary() -> str:
    b = os.environ.get("WC_BINARY") or os.path.join(REPO_ROOT, "worker-controller")
    if not os.access(b, os.X_OK):
        raise RuntimeError(f"worker-controller binary not found at {b}: build it (./build.sh) or set WC_BINARY")
    return b


def failpoint_binary() -> str:
    """The product built with -DWC_FAILPOINTS (build.sh builds it next to the product; under
    test-asan it is the sanitized binary)."""
    b = os.environ.get("WC_FAILPOINT_BINARY") or os.path.join(REPO_ROOT, "build", "worker-controller-failpoints")
    if not os.access(b, os.X_OK):
        raise RuntimeError(f"failpoint binary not found at {b}: ./build.sh e2e builds it, or set WC_FAILPOINT_BINARY")
    return b


def _kubectl(tb) -> str:
    return os.path.join(tb.WC_TESTBIN, "kubectl")


def admin_env(tb) -> dict:
    env = {k: v for k, v in os.environ.items()}
    env["KUBECONFIG"] = tb.KUBECONFIG
    return env


def install_crds(tb) -> None:
    """Server-side applies the embedded Worker CRD and waits for Established (idempotent)."""
    r = subprocess.run([binary(), "install-crds"], env=admin_env(tb), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"install-crds failed rc={r.returncode}: {r.stderr}"


def render_rbac(namespace: str, controller_name: str, sandbox: bool) -> str:
    args = [binary(), "render-rbac", "--namespace", namespace, "--controller-name", controller_name]
    if not sandbox:
        args.append("--no-sandbox")
    r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"render-rbac failed: {r.stderr}"
    return r.stdout


def kubectl_apply(tb, yaml_text: str) -> None:
    r = subprocess.run([_kubectl(tb), "apply", "-f", "-"], input=yaml_text, env=admin_env(tb),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"kubectl apply failed: {r.stderr}"


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request_token(core: client.CoreV1Api, namespace: str, sa: str, seconds: int = 3600) -> str:
    # No audience: the API server's own (--api-audiences), which is what it authenticates.
    body = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds))
    res = core.create_namespaced_service_account_token(sa, namespace, body)
    return res.status.token


# Work directories made here (logs, the ServiceAccount token, HOME): removed when the whole
# session passed (conftest's pytest_sessionfinish); kept after a failure, for the logs.
_WORKDIRS: list = []

# A controller handles the Workers labelled hiclaw.io/controller=<its name> (SPEC 3). Tests run
# one controller per namespace, so the Workers they create carry the label of the controller
# last set up in their namespace unless they say otherwise (worker_body(controller=...)).
CONTROLLER_LABEL = "hiclaw.io/controller"
_NAMESPACE_CONTROLLER: dict = {}


def namespace_controller(ns: str) -> Optional[str]:
    return _NAMESPACE_CONTROLLER.get(ns)


def set_namespace_controller(ns: str, name: str) -> None:
    """For controllers not started through ControllerProcess (the chart's, in test_ops)."""
    _NAMESPACE_CONTROLLER[ns] = name


def remove_workdirs() -> None:
    while _WORKDIRS:
        shutil.rmtree(_WORKDIRS.pop(), ignore_errors=True)


class ControllerProcess:
    """One `worker-controller run` subprocess under the ServiceAccount render-rbac created."""

    def __init__(self, tb, core: client.CoreV1Api, namespace: str, name: str, sandbox: bool = False,
                 env: Optional[dict] = None, workdir: Optional[str] = None, binary_path: Optional[str] = None):
        self.tb, self.core, self.namespace, self.name, self.sandbox = tb, core, namespace, name, sandbox
        self.binary_path = binary_path  # None: the product binary (WC_BINARY); may be switched between starts
        self.server_url: Optional[str] = None  # None: the bed's API server; e.g. a proxy in front of it
        self.extra_env = dict(env or {})
        self.dir = workdir
        if not self.dir:
            self.dir = tempfile.mkdtemp(prefix=f"wc-ctl-{name}-")
            _WORKDIRS.append(self.dir)
        self.home = os.path.join(self.dir, "home")
        os.makedirs(self.home, exist_ok=True)
        self.log_path = os.path.join(self.dir, "controller.log")
        self.token_path = os.path.join(self.dir, "token")
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0
        self.token = ""
        self.sa_name: Optional[str] = None  # None: the ServiceAccount named like the controller

    # -- identity -------------------------------------------------------------------------
    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.sa_name or self.name}"

    def setup_replica_identity(self, sa_name: str) -> None:
        """Run as a ServiceAccount of its own bound to the same Role (render-rbac's, applied by
        another ControllerProcess of this controller name): a second replica whose API requests
        the audit log tells apart from the first's."""
        self.sa_name = sa_name
        self.core.create_namespaced_service_account(self.namespace, client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name=sa_name)))
        client.RbacAuthorizationV1Api(self.core.api_client).create_namespaced_role_binding(
            self.namespace, client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name=sa_name),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=self.name),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name=sa_name, namespace=self.namespace)]))
        self.token = request_token(self.core, self.namespace, sa_name, 3600)
        fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token)

    def rotate_token(self) -> None:
        """What the kubelet does to a projected token before it expires: a new one for the same
        ServiceAccount, swapped in whole (the controller re-reads the file when it changes)."""
        token = request_token(self.core, self.namespace, self.sa_name or self.name, 3600)
        tmp = self.token_path + ".new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        os.replace(tmp, self.token_path)
        self.token = token

    def setup_identity(self) -> None:
        _NAMESPACE_CONTROLLER[self.namespace] = self.name
        install_crds(self.tb)
        kubectl_apply(self.tb, render_rbac(self.namespace, self.name, self.sandbox))
        self.token = request_token(self.core, self.namespace, self.name, 3600)
        fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token)

    # -- process --------------------------------------------------------------------------
    def process_env(self) -> dict:
        """A scrubbed environment: nothing of the admin's (no KUBECONFIG, no HOME with a
        ~/.kube/config, no KUBERNETES_SERVICE_HOST), only the controller's settings."""
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": self.home,
            "HICLAW_K8S_NAMESPACE": self.namespace,
            "HICLAW_CONTROLLER_NAME": self.name,
            "HICLAW_SANDBOX_ENABLED": "true" if self.sandbox else "false",
            "HICLAW_LEADER_ELECT": "false",
            "HICLAW_LOG_FORMAT": "json",
            # free loopback ports (other controllers may run on this host)
            "HICLAW_METRICS_ADDR": f"127.0.0.1:{free_port()}",
            "HICLAW_HEALTH_ADDR": f"127.0.0.1:{free_port()}",
        }
        if self.sandbox:
            env.update({
                "HICLAW_WORKER_DEPS_ENDPOINT": self.tb.WC_S3_ENDPOINT,
                "HICLAW_WORKER_DEPS_BUCKET": self.tb.WC_S3_BUCKET,
                "HICLAW_WORKER_DEPS_ACCESS_KEY_ID": self.tb.WC_S3_ACCESS_KEY,
                "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY": self.tb.WC_S3_SECRET_KEY,
                "HICLAW_WORKER_DEPS_CA_FILE": self.tb.WC_CA_FILE,
                "HICLAW_WORKER_DEPS_REGION": self.tb.WC_S3_REGION,
                "HICLAW_WORKER_DEPS_PREFIX": f"e2e/{self.namespace}/",
                "HICLAW_SANDBOX_DEPS_PV": self.tb.WC_DEPS_PV,
            })
        env.update(self.extra_env)
        return env

    def argv(self) -> list[str]:
        return [self.binary_path or binary(), "run", "--server", self.server_url or self.tb.WC_APISERVER_URL, "--token-file", self.token_path,
                "--ca-file", self.tb.WC_CA_FILE]

    def start(self, wait_synced: bool = True, timeout: float = 30.0) -> "ControllerProcess":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self._log_mark = self._log_size()
        logf = open(self.log_path, "ab")
        logf.write(f"--- start #{self.starts} ---\n".encode())
        logf.flush()
        self.proc = subprocess.Popen(self.argv(), env=self.process_env(), stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=logf, cwd=self.dir, close_fds=True)
        logf.close()
        if wait_synced:
            self.wait_log("caches synced", timeout=timeout, since_start=True)
        return self

    def _log_size(self) -> int:
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def wait_log(self, needle: str, timeout: float = 30.0, since_start: bool = False) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()
            if since_start:
                text = text[self._log_mark:]
            if needle in text:
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"controller exited rc={self.proc.returncode} before logging {needle!r}:\n"
                                     f"{self.log_tail()}")
            time.sleep(0.1)
        raise AssertionError(f"controller did not log {needle!r} within {timeout}s:\n{self.log_tail()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0, expect_rc: Optional[int] = 0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds). Asserts exit within ``timeout`` and rc."""
        assert self.proc is not None
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"controller did not exit within {timeout}s of SIGTERM:\n{self.log_tail()}")
        took = time.monotonic() - t0
        if expect_rc is not None:
            assert rc == expect_rc, f"controller exit code {rc} (want {expect_rc}):\n{self.log_tail()}"
        return rc, took

    def kill(self) -> None:
        """SIGKILL: no cleanup, no lease release — a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, wait_synced: bool = True) -> "ControllerProcess":
        if self.running():
            self.stop()
        return self.start(wait_synced=wait_synced)

    def log_text(self) -> str:
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def log_records(self) -> list[dict]:
        out = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def close(self) -> None:
        if self.running():
            try:
                self.stop(expect_rc=None)
            except AssertionError:
                pass


class controller_for:
    """Context manager: identity + started controller; stopped (SIGTERM) on exit."""

    def __init__(self, tb, core, namespace: str, name: str, sandbox: bool = False, env: Optional[dict] = None,
                 start: bool = True):
        self.ctl = ControllerProcess(tb, core, namespace, name, sandbox, env)
        self._start = start

    def __enter__(self) -> ControllerProcess:
        self.ctl.setup_identity()
        if self._start:
            self.ctl.start()
        return self.ctl

    def __exit__(self, *exc) -> None:
        self.ctl.close()


def unique_suffix(n: int = 6) -> str:
    import random
    import string
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=n))


def unique_name(prefix: str) -> str:
    return f"{prefix}-{unique_suffix()}"


def wait_for_value(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll fn until it returns something truthy; return it. Bounded."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# ---- Workers --------------------------------------------------------------------------------

def worker_body(name: str, model: str = "qwen-max", meta_labels: Optional[dict] = None,
                finalizers: Optional[list] = None, controller: Optional[str] = None, **spec: Any) -> dict:
    """A Worker; ``meta_labels`` go to metadata.labels, every other keyword to spec.
    ``controller``: the hiclaw.io/controller label ("" for none; default: set by create_worker)."""
    md: dict = {"name": name, "labels": dict(meta_labels or {})}
    if controller:
        md["labels"].setdefault(CONTROLLER_LABEL, controller)
    if finalizers:
        md["finalizers"] = finalizers
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Worker", "metadata": md, "spec": {"model": model, **spec}}


def create_worker(custom, ns: str, name: str, **kw) -> dict:
    """Creates a Worker labelled for the namespace's controller (unless ``controller`` says
    otherwise; ``controller=""`` creates one that no controller handles)."""
    kw.setdefault("controller", namespace_controller(ns))
    body = worker_body(name, **kw)
    body["metadata"]["namespace"] = ns
    return custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)


def get_worker(custom, ns: str, name: str) -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


def patch_worker(custom, ns: str, name: str, patch: dict) -> dict:
    return custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, patch)


def patch_worker_status(custom, ns: str, name: str, status: dict) -> dict:
    return custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, name, {"status": status})


def list_workers(custom, ns: str) -> list[dict]:
    return custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL).get("items", [])


def condition(w: dict, ctype: str) -> Optional[dict]:
    for c in (w.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def wait_worker(custom, ns: str, name: str, pred: Callable[[dict], bool], timeout: float = 20.0,
                what: str = "worker state") -> dict:
    """Poll the Worker until pred(worker) holds; returns it. Bounded."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = get_worker(custom, ns, name)
            if pred(last):
                return last
        except ApiException as e:
            if e.status != 404:
                raise
            last = None
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {ns}/{name}: {what}; last status: "
                         f"{json.dumps((last or {}).get('status'), indent=1)}")


def wait_phase(custom, ns: str, name: str, phase: str, timeout: float = 20.0) -> dict:
    return wait_worker(custom, ns, name, lambda w: (w.get("status") or {}).get("phase") == phase, timeout,
                       f"phase {phase}")


def wait_condition(custom, ns: str, name: str, ctype: str, status: str, reason: Optional[str] = None,
                   timeout: float = 20.0) -> dict:
    def ok(w):
        c = condition(w, ctype)
        return c is not None and c.get("status") == status and (reason is None or c.get("reason") == reason)
    return wait_worker(custom, ns, name, ok, timeout, f"condition {ctype}={status} {reason or ''}")


def pod_name(worker: str, prefix: str = "hiclaw-") -> str:
    return f"{prefix}worker-{worker}"


def get_pod(core, ns: str, worker: str) -> Optional[client.V1Pod]:
    try:
        return core.read_namespaced_pod(pod_name(worker), ns)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def get_pod_dict(api, core, ns: str, worker: str) -> Optional[dict]:
    p = get_pod(core, ns, worker)
    return api.sanitize_for_serialization(p) if p is not None else None


def wait_pod(core, ns: str, worker: str, pred: Callable[[Optional[client.V1Pod]], bool] = lambda p: p is not None,
             timeout: float = 20.0, what: str = "pod") -> Optional[client.V1Pod]:
    deadline = time.monotonic() + timeout
    p = None
    while time.monotonic() < deadline:
        p = get_pod(core, ns, worker)
        if pred(p):
            return p
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for Pod of {ns}/{worker}: {what} (last: "
                         f"{p.metadata.uid if p else None})")


def is_pod_instance(pod: client.V1Pod) -> bool:
    """A pod-backend instance, not the Pod a sandbox controller runs a Sandbox in (which carries
    the Worker's labels too, with hiclaw.io/backend=sandbox, and is controlled by the Sandbox)."""
    labels = pod.metadata.labels or {}
    if labels.get("hiclaw.io/backend", "pod") != "pod":
        return False
    return not any(r.controller and r.kind != "Worker" for r in pod.metadata.owner_references or [])


def worker_pods(core, ns: str, worker: Optional[str] = None, sandbox_pods: bool = False) -> list[client.V1Pod]:
    """The Pods labelled for a Worker (or for any): pod-backend instances only, unless
    ``sandbox_pods`` (then also the Pods of its Sandboxes)."""
    sel = f"hiclaw.io/worker={worker}" if worker else "hiclaw.io/worker"
    pods = core.list_namespaced_pod(ns, label_selector=sel).items
    return pods if sandbox_pods else [p for p in pods if is_pod_instance(p)]


def events_for(api, ns: str, worker: Optional[str] = None, reason: Optional[str] = None) -> list[dict]:
    """events.k8s.io/v1 Events in ns about the Worker (regarding.kind Worker, name)."""
    items = list_events_raw(api, ns)
    out = []
    for e in items:
        reg = e.get("regarding") or {}
        if worker is not None and (reg.get("kind") != "Worker" or reg.get("name") != worker):
            continue
        if reason is not None and e.get("reason") != reason:
            continue
        out.append(e)
    return out


def list_events_raw(api, ns: str, core_api: bool = False) -> list[dict]:
    """Events as the API server sends them. Raw JSON: the Python client's models refuse
    events.k8s.io Events without eventTime, which core/v1 Events from kwok and
    kube-controller-manager are when read through events.k8s.io."""
    if core_api:
        resp = client.CoreV1Api(api).list_namespaced_event(ns, _preload_content=False)
    else:
        resp = client.EventsV1Api(api).list_namespaced_event(ns, _preload_content=False)
    return json.loads(resp.data).get("items") or []


def all_events_text(api, ns: str) -> str:
    """Every Event in the namespace (both APIs) serialized, for secret greps."""
    return json.dumps(list_events_raw(api, ns)) + json.dumps(list_events_raw(api, ns, core_api=True))


def env_map(pod: dict) -> dict:
    """name → the env entry (dict) of the `worker` container."""
    c = [c for c in pod["spec"]["containers"] if c["name"] == "worker"][0]
    return {e["name"]: e for e in c.get("env") or []}


def delete_worker(custom, ns: str, name: str) -> None:
    try:
        custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    except ApiException as e:
        if e.status != 404:
            raise


def remove_finalizers(custom, ns: str, name: str) -> None:
    try:
        patch_worker(custom, ns, name, {"metadata": {"finalizers": None}})
    except ApiException as e:
        if e.status != 404:
            raise


# ---- write accounting ---------------------------------------------------------------------

WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
METRIC_VERBS = ("POST", "PUT", "PATCH", "DELETE")
METRIC_RESOURCES = ("workers", "pods", "serviceaccounts", "events")

_METRIC_RE = re.compile(r'^apiserver_request_total\{([^}]*)\}\s+([0-9.e+]+)$')


def apiserver_write_counts(tb) -> dict:
    """(verb, resource, subresource) → count from the API server's /metrics, for the write
    verbs on the resources the controller writes."""
    r = subprocess.run([_kubectl(tb), "get", "--raw", "/metrics"], env=admin_env(tb), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out: dict = {}
    for line in r.stdout.splitlines():
        m = _METRIC_RE.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("verb") in METRIC_VERBS and labels.get("resource") in METRIC_RESOURCES:
            key = (labels["verb"], labels["resource"], labels.get("subresource", ""))
            out[key] = out.get(key, 0) + float(m.group(2))
    return out


def metric_delta(before: dict, after: dict) -> dict:
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)
            if after.get(k, 0) - before.get(k, 0) > 0}


class WriteCounter:
    """Counts write requests over a window. With WC_AUDIT_LOG (the API server's JSON audit log):
    writes by the controller's user; without it: apiserver_request_total deltas (all users —
    the caller must make no writes itself during the window)."""

    def __init__(self, tb, username: Optional[str]):
        """username None: every user's writes (audit mode); the metric mode is always all users."""
        self.tb, self.username = tb, username
        self.audit = os.environ.get("WC_AUDIT_LOG") or getattr(tb, "WC_AUDIT_LOG", None)
        self.method = "audit-log" if self.audit else "apiserver_request_total"

    def __enter__(self) -> "WriteCounter":
        if self.audit:
            self._offset = os.path.getsize(self.audit) if os.path.exists(self.audit) else 0
        else:
            self._before = apiserver_write_counts(self.tb)
        return self

    def __exit__(self, *exc) -> None:
        if self.audit:
            self.writes = []
            with open(self.audit, "r", errors="replace") as f:
                f.seek(self._offset)
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if (self.username is None or (rec.get("user") or {}).get("username") == self.username) \
                            and rec.get("verb") in WRITE_VERBS \
                            and rec.get("stage", "ResponseComplete") == "ResponseComplete":
                        ref = rec.get("objectRef") or {}
                        self.writes.append((rec.get("verb"), ref.get("resource"), ref.get("subresource", ""),
                                            ref.get("name")))
            self.count = len(self.writes)
        else:
            self.delta = metric_delta(self._before, apiserver_write_counts(self.tb))
            self.writes = sorted(self.delta.items())
            self.count = int(sum(self.delta.values()))


# ---- the API server's audit log (writes only; see test/cluster/up.sh) ---------------------------

def audit_offset(tb) -> int:
    """Where the audit log ends now: pass to audit_writes to see what was written after."""
    path = tb.WC_AUDIT_LOG
    return os.path.getsize(path) if os.path.exists(path) else 0


def audit_writes(tb, offset: int, resource: Optional[str] = None, namespace: Optional[str] = None) -> list[dict]:
    """Completed write requests recorded since ``offset``: {user, verb, resource, subresource,
    namespace, name, code}, in order."""
    out = []
    with open(tb.WC_AUDIT_LOG, "r", errors="replace") as f:
        f.seek(offset)
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("stage") != "ResponseComplete" or rec.get("verb") not in WRITE_VERBS:
                continue
            ref = rec.get("objectRef") or {}
            if resource and ref.get("resource") != resource:
                continue
            if namespace and ref.get("namespace") != namespace:
                continue
            out.append({"user": (rec.get("user") or {}).get("username"), "verb": rec.get("verb"),
                        "resource": ref.get("resource"), "subresource": ref.get("subresource", ""),
                        "namespace": ref.get("namespace"), "name": ref.get("name"),
                        "code": (rec.get("responseStatus") or {}).get("code")})
    return out


def deleted_by(tb, offset: int, resource: str, namespace: str, name: str) -> list[str]:
    """Who issued a successful DELETE of that object since ``offset`` (to tell the controller's
    own cleanup from kube-controller-manager's garbage collector)."""
    return [w["user"] for w in audit_writes(tb, offset, resource, namespace)
            if w["verb"] == "delete" and w["name"] == name and w["code"] in (200, 202)]
