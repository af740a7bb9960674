"""The real components of the test bed, as tests drive and read them.

Nothing here writes another controller's status. Pods run because kube-scheduler binds them to
a kwok Node and kwok plays their kubelet (test/cluster/kwok/pod-stages.yaml); a test changes
what a Pod does the way a chaos tool would, through the Pod's own metadata that kwok's stages
select on. Sandboxes are made, claimed, paused, resumed and deleted by the real OpenKruise agents
controller; the only played part is the in-sandbox agent-runtime (test/cluster/agent_runtime.py),
read through its control API to see what each sandbox received.

  HOLD                       spec.labels that keep a Worker's Pod Pending (scheduled, not run)
  kwok_state(core, ns, pod, state[, message])
                             crashloop | imagepull | failed | notready | ready
  Runtime(tb)                the played agent-runtime: sandboxes(), calls(), errors(),
                             file(ns, pod, path) (live), snapshot(ns, pod, path) (at mount time)
  sandbox_pod(core, ns, sandbox_name)
                             the Pod OpenKruise made for a Sandbox (named like it)
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional

from kubernetes import client
from kubernetes.client.rest import ApiException

HOLD_LABEL = "e2e.wc.test/kwok-hold"
STATE_ANNOTATION = "e2e.wc.test/kwok-state"
MESSAGE_ANNOTATION = "e2e.wc.test/kwok-message"
HOLD = {HOLD_LABEL: "true"}
KWOK_STATES = ("crashloop", "imagepull", "failed", "notready", "ready")


def kwok_state(core: client.CoreV1Api, ns: str, pod: str, state: str, message: Optional[str] = None) -> None:
    """Drive a Pod into a kubelet state through kwok (annotation on the Pod; kwok's stage does
    the rest): crashloop (Running, waiting CrashLoopBackOff), imagepull (Pending,
    ImagePullBackOff), failed (phase Failed, OOMKilled 137), notready (Running, not Ready),
    ready (Running and Ready, also releases a held Pod)."""
    assert state in KWOK_STATES, state
    ann = {STATE_ANNOTATION: state}
    if message is not None:
        ann[MESSAGE_ANNOTATION] = message
    core.patch_namespaced_pod(pod, ns, {"metadata": {"annotations": ann}})


def pod_ip_in_bed_range(tb, ip: Optional[str]) -> bool:
    import ipaddress
    return bool(ip) and ipaddress.ip_address(ip) in ipaddress.ip_network(tb.WC_POD_CIDR)


def sandbox_pod(core: client.CoreV1Api, ns: str, name: str) -> Optional[client.V1Pod]:
    try:
        return core.read_namespaced_pod(name, ns)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


class Runtime:
    """Client of the played agent-runtime's control API."""

    def __init__(self, tb):
        self.base = tb.WC_RUNTIME_URL

    def _get(self, endpoint: str, **q: str) -> tuple[int, bytes]:
        url = self.base + endpoint + ("?" + urllib.parse.urlencode(q) if q else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def _json(self, path: str) -> Any:
        st, body = self._get(path)
        assert st == 200, (path, st, body)
        return json.loads(body)

    def sandboxes(self) -> dict:
        return self._json("/sandboxes")

    def calls(self) -> list:
        return self._json("/calls")

    def errors(self) -> list:
        return self._json("/errors")

    def incarnations(self, ns: str, pod: str) -> list[dict]:
        """The Pods (by uid, oldest first) that served this sandbox name: one per start/resume."""
        s = self.sandboxes().get(f"{ns}/{pod}")
        return [s["incarnations"][u] for u in s["order"]] if s else []

    def file(self, ns: str, pod: str, path: str) -> Optional[bytes]:
        """What the sandbox's current Pod sees at path now (read through its mount)."""
        st, body = self._get("/file", ns=ns, pod=pod, path=path)
        return body if st == 200 else None

    def snapshot(self, ns: str, pod: str, path: str) -> Optional[bytes]:
        """What it saw at path when the mount was made."""
        st, body = self._get("/snapshot", ns=ns, pod=pod, path=path)
        return body if st == 200 else None

    def wait_mounted(self, ns: str, pod: str, targets: tuple = ("/var/run/secrets/hiclaw", "/mnt/hiclaw/env",
                                                                  "/mnt/hiclaw/data"), timeout: float = 30.0) -> dict:
        """The newest incarnation of the sandbox once every target is mounted."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            incs = self.incarnations(ns, pod)
            if incs:
                last = incs[-1]
                if set(targets) <= {m["target_path"] for m in last["mounts"]}:
                    return last
            time.sleep(0.2)
        raise AssertionError(f"{ns}/{pod}: not everything mounted within {timeout}s: {last}")
