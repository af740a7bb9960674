#!/usr/bin/env python3
"""Stand-ins for the parts of a cluster the test bed does not run.

The test bed is etcd + kube-apiserver only: no kubelet, no scheduler, no controller-manager,
no OpenKruise controller. The tests play those parts through the API, exactly where the real
components would write:

* ``Kubelet``    -- writes Pod status through ``pods/status`` (Running/Ready with podIP and
                    containerStatuses, a waiting reason such as CrashLoopBackOff or
                    ImagePullBackOff, Pending, Failed/Succeeded).
* ``OpenKruise`` -- binds SandboxClaims: creates Sandbox objects carrying the claim's
                    ``spec.labels`` plus ``agents.kruise.io/claim-name=<claim>``, writes claim
                    and Sandbox status through ``/status``; can time a claim out instead; follows
                    ``spec.paused`` (Paused / Running); runs a pluggable pre-bind check.
* ``AutoStandins`` -- both of the above as background watchers (a thread in pytest, or
                    ``python3 test/e2e/standins.py --auto`` from a shell).

Deletes: nothing here adds finalizers and unscheduled Pods have no node, so deletes of Pods,
claims and Sandboxes complete immediately; there is no garbage collector, so owner references
never cascade.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import random
import signal
import string
import sys
import threading
import time
import uuid
from typing import Any, Callable, Optional

try:
    from kubernetes import client, config, watch
    from kubernetes.client.rest import ApiException
except ImportError:  # run as a script with a python lacking the pinned deps: use the e2e venv
    if __name__ != "__main__" or os.environ.get("WC_STANDINS_REEXEC"):
        raise
    import subprocess

    _venv = subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), "venv.sh")],
                           check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    os.environ["WC_STANDINS_REEXEC"] = "1"
    _py = os.path.join(_venv, "bin", "python")
    os.execv(_py, [_py, os.path.abspath(__file__), *sys.argv[1:]])

GROUP = "agents.kruise.io"
VERSION = "v1alpha1"
CLAIMS = "sandboxclaims"
SANDBOXES = "sandboxes"
SANDBOXSETS = "sandboxsets"
CLAIM_NAME_LABEL = "agents.kruise.io/claim-name"
SANDBOX_CLAIMED_LABEL = "agents.kruise.io/sandbox-claimed"
# Objects carrying this label (value "true") are left alone by the auto mode.
SKIP_LABEL = "standins.wc.test/skip"

log = logging.getLogger("standins")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _suffix(n: int = 5) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=n))


def _fake_ip() -> str:
    # 10.244.0.0/16, the usual pod CIDR; never the service CIDR (10.0.0.0/24).
    return f"10.244.{random.randint(0, 255)}.{random.randint(2, 254)}"


def api_client_from_env() -> client.ApiClient:
    """An admin ApiClient from $KUBECONFIG (the test bed's env file sets it)."""
    return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))


def _retry_conflict(fn: Callable[[], Any], attempts: int = 10) -> Any:
    for i in range(attempts):
        try:
            return fn()
        except ApiException as e:
            if e.status != 409 or i == attempts - 1:
                raise
            time.sleep(0.05 * (i + 1))


def _condition(ctype: str, status: bool, reason: str, message: str = "", when: Optional[str] = None) -> dict:
    return {
        "type": ctype,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": when or now(),
    }


# --------------------------------------------------------------------------------------------
# kubelet
# --------------------------------------------------------------------------------------------
class Kubelet:
    """Writes Pod status as a kubelet would (via pods/status)."""

    NODE_NAME = "wc-standin-node"
    HOST_IP = "127.0.0.1"

    def __init__(self, api: Optional[client.ApiClient] = None):
        self.api = api or api_client_from_env()
        self.core = client.CoreV1Api(self.api)

    def _write(self, ns: str, name: str, build: Callable[[dict, dict], dict]) -> dict:
        """Read the Pod, let ``build(pod, old_status)`` return a new status, PUT it."""

        def attempt():
            pod = self.api.sanitize_for_serialization(self.core.read_namespaced_pod(name, ns))
            pod["status"] = build(pod, pod.get("status") or {})
            return self.core.replace_namespaced_pod_status(name, ns, pod)

        res = _retry_conflict(attempt)
        return self.api.sanitize_for_serialization(res)

    @staticmethod
    def _containers(pod: dict) -> list[dict]:
        return pod.get("spec", {}).get("containers", [])

    @staticmethod
    def _base(pod: dict, old: dict, phase: str, pod_ip: Optional[str]) -> dict:
        st: dict = {"phase": phase, "startTime": old.get("startTime") or now(), "hostIP": Kubelet.HOST_IP,
                    "hostIPs": [{"ip": Kubelet.HOST_IP}], "qosClass": old.get("qosClass") or "BestEffort"}
        ip = pod_ip or old.get("podIP")
        if phase in ("Running", "Succeeded", "Failed") or ip:
            ip = ip or _fake_ip()
            st["podIP"] = ip
            st["podIPs"] = [{"ip": ip}]
        return st

    @staticmethod
    def _restarts(old: dict, cname: str) -> int:
        for cs in old.get("containerStatuses") or []:
            if cs.get("name") == cname:
                return int(cs.get("restartCount") or 0)
        return 0

    def set_running(self, ns: str, name: str, ready: bool = True, pod_ip: Optional[str] = None) -> dict:
        """Phase Running, every container running (and Ready unless ``ready=False``)."""

        def build(pod, old):
            st = self._base(pod, old, "Running", pod_ip)
            t = now()
            st["conditions"] = [
                _condition("PodScheduled", True, "Scheduled", when=t),
                _condition("Initialized", True, "Initialized", when=t),
                _condition("ContainersReady", ready, "ContainersReady" if ready else "ContainersNotReady", when=t),
                _condition("Ready", ready, "PodReady" if ready else "ContainersNotReady", when=t),
            ]
            st["containerStatuses"] = [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": f"docker-pullable://{c.get('image', '')}@sha256:{'0' * 64}",
                    "containerID": f"containerd://{_suffix(12)}",
                    "ready": ready,
                    "started": True,
                    "restartCount": self._restarts(old, c["name"]),
                    "state": {"running": {"startedAt": t}},
                }
                for c in self._containers(pod)
            ]
            return st

        return self._write(ns, name, build)

    def set_waiting(self, ns: str, name: str, reason: str = "CrashLoopBackOff", message: str = "",
                    container: Optional[str] = None) -> dict:
        """A container stuck waiting with ``reason`` (CrashLoopBackOff, ImagePullBackOff,
        ErrImagePull, CreateContainerConfigError, ...). CrashLoopBackOff keeps the Pod Running
        with a bumped restartCount and a terminated lastState, as a kubelet does; the image
        reasons leave it Pending."""
        crash = reason == "CrashLoopBackOff"
        message = message or (f"back-off restarting failed container" if crash else f"{reason}: image cannot be pulled")

        def build(pod, old):
            st = self._base(pod, old, "Running" if crash else "Pending", None)
            t = now()
            st["conditions"] = [
                _condition("PodScheduled", True, "Scheduled", when=t),
                _condition("Initialized", True, "Initialized", when=t),
                _condition("ContainersReady", False, "ContainersNotReady", when=t),
                _condition("Ready", False, "ContainersNotReady", when=t),
            ]
            css = []
            for c in self._containers(pod):
                hit = container is None or c["name"] == container
                restarts = self._restarts(old, c["name"]) + (1 if hit and crash else 0)
                cs = {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                      "started": False, "restartCount": restarts}
                if hit:
                    cs["state"] = {"waiting": {"reason": reason, "message": message}}
                    if crash:
                        cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": t, "finishedAt": t}}
                else:
                    cs["state"] = {"waiting": {"reason": "ContainerCreating"}}
                css.append(cs)
            st["containerStatuses"] = css
            return st

        return self._write(ns, name, build)

    def set_pending(self, ns: str, name: str, reason: str = "Unschedulable",
                    message: str = "0/0 nodes are available") -> dict:
        """Pending and unscheduled (PodScheduled=False), no container statuses."""

        def build(pod, old):
            return {"phase": "Pending", "qosClass": old.get("qosClass") or "BestEffort",
                    "conditions": [_condition("PodScheduled", False, reason, message)]}

        return self._write(ns, name, build)

    def set_terminated(self, ns: str, name: str, phase: str = "Failed", exit_code: Optional[int] = None,
                       reason: Optional[str] = None, message: str = "") -> dict:
        """Phase Failed or Succeeded; every container terminated."""
        if phase not in ("Failed", "Succeeded"):
            raise ValueError("phase must be Failed or Succeeded")
        code = exit_code if exit_code is not None else (0 if phase == "Succeeded" else 1)
        reason = reason or ("Completed" if phase == "Succeeded" else "Error")

        def build(pod, old):
            st = self._base(pod, old, phase, None)
            t = now()
            st["reason"] = reason if phase == "Failed" else None
            st["message"] = message or None
            st = {k: v for k, v in st.items() if v is not None}
            st["conditions"] = [
                _condition("PodScheduled", True, "Scheduled", when=t),
                _condition("Initialized", True, "Initialized", when=t),
                _condition("ContainersReady", False, "PodCompleted", when=t),
                _condition("Ready", False, "PodCompleted", when=t),
            ]
            st["containerStatuses"] = [
                {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False, "started": False,
                 "restartCount": self._restarts(old, c["name"]),
                 "state": {"terminated": {"exitCode": code, "reason": reason, "message": message,
                                          "startedAt": old.get("startTime") or t, "finishedAt": t}}}
                for c in self._containers(pod)
            ]
            return st

        return self._write(ns, name, build)

    def finish_deletion(self, ns: str, name: str) -> None:
        """A kubelet confirms a graceful delete; here: delete with grace period 0."""
        try:
            self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
        except ApiException as e:
            if e.status != 404:
                raise


# --------------------------------------------------------------------------------------------
# OpenKruise agents controller
# --------------------------------------------------------------------------------------------
PrebindCheck = Callable[[dict], Any]


class OpenKruise:
    """Plays the OpenKruise agents controller for SandboxClaims and Sandboxes.

    ``prebind_check(claim) -> result`` is called before a claim is bound; every call is
    recorded in ``prebind_log`` as ``(namespace, claim name, result)``. If ``block_on_check``
    is set and the result is falsy (or the check raises), the claim is left ``Claiming`` with
    the failure in its message instead of being bound.
    """

    def __init__(self, api: Optional[client.ApiClient] = None, prebind_check: Optional[PrebindCheck] = None,
                 block_on_check: bool = False):
        self.api = api or api_client_from_env()
        self.co = client.CustomObjectsApi(self.api)
        self.prebind_check = prebind_check
        self.block_on_check = block_on_check
        self.prebind_log: list[tuple[str, str, Any]] = []
        self._lock = threading.Lock()

    # -- reads -----------------------------------------------------------------------------
    def get_claim(self, ns: str, name: str) -> dict:
        return self.co.get_namespaced_custom_object(GROUP, VERSION, ns, CLAIMS, name)

    def get_sandbox(self, ns: str, name: str) -> dict:
        return self.co.get_namespaced_custom_object(GROUP, VERSION, ns, SANDBOXES, name)

    def sandboxes_for_claim(self, ns: str, claim: str) -> list[dict]:
        res = self.co.list_namespaced_custom_object(GROUP, VERSION, ns, SANDBOXES,
                                                    label_selector=f"{CLAIM_NAME_LABEL}={claim}")
        return res.get("items", [])

    # -- status writes ---------------------------------------------------------------------
    def _patch_status(self, plural: str, ns: str, name: str, status: dict) -> dict:
        return self.co.patch_namespaced_custom_object_status(GROUP, VERSION, ns, plural, name, {"status": status})

    def set_claim_status(self, ns: str, name: str, phase: str, claimed: int, message: str = "",
                         completed: bool = False) -> dict:
        claim = self.get_claim(ns, name)
        old = claim.get("status") or {}
        st = {"phase": phase, "claimedReplicas": claimed, "message": message,
              "observedGeneration": claim["metadata"].get("generation", 1),
              "claimStartTime": old.get("claimStartTime") or now()}
        if completed:
            st["completionTime"] = now()
        return self._patch_status(CLAIMS, ns, name, st)

    def set_sandbox_status(self, ns: str, name: str, phase: str = "Running", ready: bool = True,
                           ip: Optional[str] = None, message: str = "") -> dict:
        sbx = self.get_sandbox(ns, name)
        old = sbx.get("status") or {}
        ip = ip or old.get("sandboxIp") or _fake_ip()
        info = dict(old.get("podInfo") or {})
        info.setdefault("podUID", str(uuid.uuid4()))
        info.update({"podIP": ip, "nodeName": Kubelet.NODE_NAME})
        st = {
            "phase": phase,
            "message": message,
            "sandboxIp": ip,
            "nodeName": Kubelet.NODE_NAME,
            "podInfo": info,
            "observedGeneration": sbx["metadata"].get("generation", 1),
            "conditions": [_condition("Ready", ready, "SandboxReady" if ready else f"Sandbox{phase}", message)],
        }
        return self._patch_status(SANDBOXES, ns, name, st)

    # -- binding ---------------------------------------------------------------------------
    def _sandbox_template(self, ns: str, claim: dict) -> dict:
        """The pool's (SandboxSet) pod template if it exists, else a minimal one; the claim's
        inplaceUpdate.image replaces the first container's image, as OpenKruise does."""
        spec = claim.get("spec", {})
        tmpl: dict = {"spec": {"containers": [{"name": "worker", "image": "registry.invalid/worker:latest"}]}}
        try:
            sset = self.co.get_namespaced_custom_object(GROUP, VERSION, ns, SANDBOXSETS, spec["templateName"])
            if sset.get("spec", {}).get("template"):
                tmpl = sset["spec"]["template"]
        except ApiException as e:
            if e.status != 404:
                raise
        image = (spec.get("inplaceUpdate") or {}).get("image")
        if image:
            containers = tmpl.setdefault("spec", {}).setdefault("containers", [{"name": "worker"}])
            containers[0]["image"] = image
        return tmpl

    def run_prebind_check(self, ns: str, claim: dict) -> tuple[bool, Any]:
        if self.prebind_check is None:
            return True, None
        try:
            result = self.prebind_check(claim)
        except Exception as e:  # the hook's failure is a result to record, not a crash
            result = e
        with self._lock:
            self.prebind_log.append((ns, claim["metadata"]["name"], result))
        ok = bool(result) and not isinstance(result, Exception)
        return ok, result

    def bind(self, ns: str, claim_name: str, ready: bool = True, sandbox_name: Optional[str] = None,
             ip: Optional[str] = None) -> list[dict]:
        """Bind a claim: Claiming -> create N Sandboxes -> their status -> claim Completed.
        Returns the Sandboxes (with status). Empty list if the pre-bind check blocked it."""
        claim = self.get_claim(ns, claim_name)
        spec = claim.get("spec", {})
        replicas = int(spec.get("replicas") or 1)
        self.set_claim_status(ns, claim_name, "Claiming", 0, "claiming sandboxes")
        ok, result = self.run_prebind_check(ns, claim)
        if not ok and self.block_on_check:
            self.set_claim_status(ns, claim_name, "Claiming", 0, f"pre-bind check failed: {result}")
            return []
        labels = dict(spec.get("labels") or {})
        labels[CLAIM_NAME_LABEL] = claim_name
        labels[SANDBOX_CLAIMED_LABEL] = "true"
        template = self._sandbox_template(ns, claim)
        out = []
        existing = self.sandboxes_for_claim(ns, claim_name)
        for i in range(len(existing), replicas):
            name = sandbox_name if (sandbox_name and replicas == 1) else f"{spec['templateName']}-{_suffix()}"
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Sandbox",
                "metadata": {"name": name, "namespace": ns, "labels": labels,
                             "annotations": dict(spec.get("annotations") or {})},
                "spec": {"paused": False, "template": template},
            }
            if spec.get("runtimes"):
                body["spec"]["runtimes"] = spec["runtimes"]
            self.co.create_namespaced_custom_object(GROUP, VERSION, ns, SANDBOXES, body)
            out.append(self.set_sandbox_status(ns, name, "Running" if ready else "Pending", ready, ip=ip))
        out = existing + out
        self.set_claim_status(ns, claim_name, "Completed", len(out), f"claimed {len(out)} sandbox(es)",
                              completed=True)
        return out

    def time_out(self, ns: str, claim_name: str, message: str = "claim timeout: no sandbox available in pool") -> dict:
        """The claim gives up: Completed with claimedReplicas 0 and a message; no Sandbox."""
        self.set_claim_status(ns, claim_name, "Claiming", 0, "claiming sandboxes")
        return self.set_claim_status(ns, claim_name, "Completed", 0, message, completed=True)

    def sync_pause(self, ns: str, name: str) -> Optional[dict]:
        """Follow spec.paused: Paused (Ready=False) when set, back to Running when cleared.
        Returns the new object if the status changed, None if already in line."""
        sbx = self.get_sandbox(ns, name)
        paused = bool(sbx.get("spec", {}).get("paused"))
        phase = (sbx.get("status") or {}).get("phase")
        if paused and phase != "Paused":
            return self.set_sandbox_status(ns, name, "Paused", False, message="sandbox paused")
        if not paused and phase == "Paused":
            return self.set_sandbox_status(ns, name, "Running", True)
        return None

    def delete_sandbox(self, ns: str, name: str) -> None:
        try:
            self.co.delete_namespaced_custom_object(GROUP, VERSION, ns, SANDBOXES, name)
        except ApiException as e:
            if e.status != 404:
                raise


# --------------------------------------------------------------------------------------------
# auto mode
# --------------------------------------------------------------------------------------------
class AutoStandins:
    """Background watchers that answer promptly:
    * kubelet: a new Pod (no container statuses yet) becomes Running+Ready after
      ``pod_delay`` seconds; a Pod being deleted is finished off (grace 0);
    * openkruise: a claim not yet Completed is bound (or timed out with
      ``timeout_claims``); a Sandbox's ``spec.paused`` is followed.
    Objects labelled ``standins.wc.test/skip=true`` are left alone.
    Use as a context manager or ``start()`` / ``stop()``.
    """

    def __init__(self, api: Optional[client.ApiClient] = None, namespace: Optional[str] = None,
                 kubelet: bool = True, openkruise: bool = True, timeout_claims: bool = False,
                 pod_delay: float = 0.3, prebind_check: Optional[PrebindCheck] = None,
                 block_on_check: bool = False):
        self.api = api or api_client_from_env()
        self.namespace = namespace
        self.kubelet = Kubelet(self.api) if kubelet else None
        self.kruise = OpenKruise(self.api, prebind_check, block_on_check) if openkruise else None
        self.timeout_claims = timeout_claims
        self.pod_delay = pod_delay
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self.errors: list[str] = []
        self.handled: list[tuple[str, str, str]] = []  # (kind, namespace/name, action)

    # watching: list+watch without a resourceVersion replays current objects as ADDED, so a
    # reconnect every few seconds doubles as a resync; handlers are idempotent.
    def _loop(self, name: str, list_fn: Callable, handler: Callable[[dict], None], **kw) -> None:
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                args = dict(kw, timeout_seconds=3, _request_timeout=10)
                for ev in w.stream(list_fn, **args):
                    if self._stop.is_set():
                        break
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        obj = ev["object"]
                        if not isinstance(obj, dict):
                            obj = self.api.sanitize_for_serialization(obj)
                        try:
                            handler(obj)
                        except ApiException as e:
                            if e.status not in (404, 409):
                                self._error(f"{name}: {e.status} {e.reason}: {e.body}")
                        except Exception as e:  # keep the watcher alive; report
                            self._error(f"{name}: {e!r}")
            except Exception as e:
                if not self._stop.is_set():
                    self._error(f"{name} watch: {e!r}")
                    time.sleep(0.5)
            finally:
                w.stop()

    def _error(self, msg: str) -> None:
        log.warning(msg)
        self.errors.append(msg)

    def _once(self, key: str, fn: Callable[[], None], delay: float = 0.0) -> None:
        """Run fn in its own thread unless the same key is in progress."""
        with self._busy_lock:
            if key in self._busy:
                return
            self._busy.add(key)

        def run():
            try:
                if delay and self._stop.wait(delay):
                    return
                fn()
            except ApiException as e:
                if e.status not in (404, 409):
                    self._error(f"{key}: {e.status} {e.reason}: {e.body}")
            except Exception as e:
                self._error(f"{key}: {e!r}")
            finally:
                with self._busy_lock:
                    self._busy.discard(key)

        t = threading.Thread(target=run, name=f"standin-{key}", daemon=True)
        with self._busy_lock:
            self._workers = [w for w in self._workers if w.is_alive()] + [t]
        t.start()

    @staticmethod
    def _skip(obj: dict) -> bool:
        return (obj.get("metadata", {}).get("labels") or {}).get(SKIP_LABEL) == "true"

    def _on_pod(self, pod: dict) -> None:
        md = pod["metadata"]
        if self._skip(pod):
            return
        ns, name = md["namespace"], md["name"]
        if md.get("deletionTimestamp"):
            self._once(f"pod-del/{ns}/{name}", lambda: self.kubelet.finish_deletion(ns, name))
            return
        st = pod.get("status") or {}
        if st.get("phase", "Pending") == "Pending" and not st.get("containerStatuses") and \
                not any(c.get("type") == "PodScheduled" and c.get("status") == "False" for c in st.get("conditions") or []):
            def start():
                # The Pod may have been given a status by a test meanwhile: re-check.
                cur = self.api.sanitize_for_serialization(self.kubelet.core.read_namespaced_pod(name, ns))
                cst = cur.get("status") or {}
                if cst.get("containerStatuses") or cur["metadata"].get("deletionTimestamp") or self._skip(cur):
                    return
                self.kubelet.set_running(ns, name)
                self.handled.append(("Pod", f"{ns}/{name}", "Running"))
            self._once(f"pod/{ns}/{name}", start, self.pod_delay)

    def _on_claim(self, claim: dict) -> None:
        md = claim["metadata"]
        if self._skip(claim) or md.get("deletionTimestamp"):
            return
        if (claim.get("status") or {}).get("phase") == "Completed":
            return
        ns, name = md["namespace"], md["name"]
        uid = md["uid"]

        def act():
            cur = self.kruise.get_claim(ns, name)
            if cur["metadata"]["uid"] != uid or (cur.get("status") or {}).get("phase") == "Completed":
                return
            if self.timeout_claims:
                self.kruise.time_out(ns, name)
                self.handled.append(("SandboxClaim", f"{ns}/{name}", "TimedOut"))
            else:
                bound = self.kruise.bind(ns, name)
                self.handled.append(("SandboxClaim", f"{ns}/{name}", f"Bound:{len(bound)}"))
        self._once(f"claim/{uid}", act)

    def _on_sandbox(self, sbx: dict) -> None:
        md = sbx["metadata"]
        if self._skip(sbx) or md.get("deletionTimestamp"):
            return
        paused = bool(sbx.get("spec", {}).get("paused"))
        phase = (sbx.get("status") or {}).get("phase")
        if (paused and phase != "Paused") or (not paused and phase == "Paused"):
            ns, name = md["namespace"], md["name"]

            def act():
                if self.kruise.sync_pause(ns, name) is not None:
                    self.handled.append(("Sandbox", f"{ns}/{name}", "Paused" if paused else "Resumed"))
            self._once(f"sbx/{md['uid']}", act)

    def start(self) -> "AutoStandins":
        ns = self.namespace
        specs = []
        if self.kubelet:
            core = self.kubelet.core
            if ns:
                specs.append(("pods", core.list_namespaced_pod, self._on_pod, {"namespace": ns}))
            else:
                specs.append(("pods", core.list_pod_for_all_namespaces, self._on_pod, {}))
        if self.kruise:
            co = self.kruise.co
            for plural, h in ((CLAIMS, self._on_claim), (SANDBOXES, self._on_sandbox)):
                if ns:
                    specs.append((plural, co.list_namespaced_custom_object, h,
                                  {"group": GROUP, "version": VERSION, "namespace": ns, "plural": plural}))
                else:
                    specs.append((plural, co.list_cluster_custom_object, h,
                                  {"group": GROUP, "version": VERSION, "plural": plural}))
        for name, fn, h, kw in specs:
            t = threading.Thread(target=self._loop, args=(name, fn, h), kwargs=kw, name=f"standin-watch-{name}",
                                 daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop watching; let actions already under way finish (so ``handled`` is complete)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        with self._busy_lock:
            workers = list(self._workers)
        for t in self._threads + workers:
            t.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> "AutoStandins":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def _load_env_file() -> None:
    """If KUBECONFIG is not set, take it from the test bed's env file."""
    if os.environ.get("KUBECONFIG"):
        return
    bed = os.environ.get("WC_TESTBED") or os.path.join(os.environ.get("TMPDIR", "/tmp"), "worker-controller-testbed")
    path = os.path.join(bed, "kubeconfig")
    if not os.path.exists(path):
        sys.exit(f"standins: KUBECONFIG not set and {path} missing: is the test bed up (test/cluster/up.sh)?")
    os.environ["KUBECONFIG"] = path


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description="kubelet / OpenKruise stand-ins for the worker-controller test bed")
    p.add_argument("--auto", action="store_true", help="watch and answer until SIGINT/SIGTERM")
    p.add_argument("--kubelet", action="store_true", help="play the kubelet (default: both roles)")
    p.add_argument("--openkruise", action="store_true", help="play the OpenKruise controller (default: both)")
    p.add_argument("--namespace", "-n", help="only this namespace (default: all)")
    p.add_argument("--timeout-claims", action="store_true", help="time claims out instead of binding them")
    p.add_argument("--pod-delay", type=float, default=0.5, help="seconds before a new Pod turns Running")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s standins %(levelname)s %(message)s")
    if not a.auto:
        p.error("only --auto is a CLI mode; import the module for the one-shot helpers")
    _load_env_file()
    both = not (a.kubelet or a.openkruise)
    auto = AutoStandins(namespace=a.namespace, kubelet=a.kubelet or both, openkruise=a.openkruise or both,
                        timeout_claims=a.timeout_claims, pod_delay=a.pod_delay)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    auto.start()
    log.info("running (kubelet=%s openkruise=%s namespace=%s timeout_claims=%s)",
             bool(auto.kubelet), bool(auto.kruise), a.namespace or "*", a.timeout_claims)
    seen = 0
    while not done.wait(0.2):
        while seen < len(auto.handled):
            log.info("%s %s -> %s", *auto.handled[seen])
            seen += 1
    auto.stop()
    for entry in auto.handled[seen:]:
        log.info("%s %s -> %s", *entry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
