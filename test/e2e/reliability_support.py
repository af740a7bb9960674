"""Helpers for the reliability tests (issue 9): restarting the bed's kube-apiserver, watching
Pods for duplicates throughout a test, and scanning artifacts for planted secrets.

Everything is bounded: every wait has a timeout, every loop a count.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from typing import Iterable, Optional

from kubernetes import client, watch

from conftest import argv_port, wait_for, wait_port_free

_RESTARTED: dict = {}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False


def kill_apiserver(tb) -> tuple[list, dict]:
    """SIGKILLs the bed's kube-apiserver; returns (argv, env) to start it again."""
    pidfile = os.path.join(tb.WC_TESTBED, "kube-apiserver.pid")
    with open(pidfile) as f:
        pid = int(f.read().split()[0])
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0") if a]
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(a.decode().split("=", 1) for a in f.read().split(b"\0") if b"=" in a)
    os.kill(pid, signal.SIGKILL)
    if pid in _RESTARTED:
        _RESTARTED.pop(pid).wait(timeout=30)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "kube-apiserver did not exit"
    wait_port_free(argv_port(argv, "--secure-port"))
    return argv, env


def start_apiserver(tb, argv: list, env: dict) -> None:
    pidfile = os.path.join(tb.WC_TESTBED, "kube-apiserver.pid")
    logpath = os.path.join(tb.WC_TESTBED, "logs", "kube-apiserver.log")
    with open(logpath, "ab") as log:
        p = subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True)
    _RESTARTED[p.pid] = p
    with open(pidfile) as f:
        old = f.read().split()
    with open(pidfile, "w") as f:
        f.write(" ".join([str(p.pid)] + old[1:]) + "\n")
    kubectl = os.path.join(tb.WC_TESTBIN, "kubectl")

    def ready_or_dead():
        if p.poll() is not None:  # it exited: say why instead of waiting out the timeout
            with open(logpath, "rb") as f:
                tail = f.read()[-3000:].decode(errors="replace")
            raise AssertionError(f"the restarted kube-apiserver exited ({p.returncode}):\n{tail}")
        try:
            r = subprocess.run([kubectl, "--kubeconfig", tb.KUBECONFIG, "get", "--raw", "/readyz"],
                               capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:  # still starting (etcd reconnect): not ready yet
            return False
        return r.returncode == 0 and r.stdout.strip() == "ok"

    # A loaded 2-core machine can take a while to bring the API server back: be generous.
    wait_for(ready_or_dead, 180, interval=0.5, what="kube-apiserver ready after restart")


def restart_apiserver(tb) -> None:
    """SIGKILL the bed's kube-apiserver (a crash: no graceful drain keeping its watches alive)
    and start it again with the same command line and environment."""
    argv, env = kill_apiserver(tb)
    start_apiserver(tb, argv, env)


def etcd_compact(tb) -> int:
    """Compact etcd at its current revision: every older resourceVersion is gone (410)."""
    import base64
    import requests
    rev = int(requests.post(f"{tb.WC_ETCD_URL}/v3/kv/range", json={"key": base64.b64encode(b"/").decode()},
                            timeout=5).json()["header"]["revision"])
    r = requests.post(f"{tb.WC_ETCD_URL}/v3/kv/compaction", json={"revision": str(rev), "physical": True}, timeout=30)
    assert r.status_code == 200, r.text
    return rev


class PodWatcher:
    """Watches the namespace's Pods in a thread for the whole test and records, per Worker
    (label hiclaw.io/worker), the set of Pod UIDs that exist at the same time. A Worker
    ever having two live Pods is a duplicate. Reconnects (relisting) across API server
    restarts; the relist reconciles the live set with the server's truth."""

    def __init__(self, api: client.ApiClient, namespace: str):
        self.core = client.CoreV1Api(api)
        self.ns = namespace
        self.live: dict[str, set] = {}
        self.duplicates: list = []
        self.errors: list = []
        self.reconnects = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(15)

    def _note(self, pod, deleted: bool):
        w = (pod.metadata.labels or {}).get("hiclaw.io/worker")
        if not w:
            return
        with self._lock:
            s = self.live.setdefault(w, set())
            if deleted:
                s.discard(pod.metadata.uid)
            else:
                s.add(pod.metadata.uid)
                if len(s) > 1:
                    self.duplicates.append((w, sorted(s)))

    def _run(self):
        rv = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    lst = self.core.list_namespaced_pod(self.ns, label_selector="hiclaw.io/worker")
                    with self._lock:
                        truth: dict[str, set] = {}
                        for p in lst.items:
                            truth.setdefault(p.metadata.labels["hiclaw.io/worker"], set()).add(p.metadata.uid)
                        self.live = truth
                        for w, s in truth.items():
                            if len(s) > 1:
                                self.duplicates.append((w, sorted(s)))
                    rv = lst.metadata.resource_version
                for ev in watch.Watch().stream(self.core.list_namespaced_pod, self.ns,
                                               label_selector="hiclaw.io/worker", resource_version=rv,
                                               timeout_seconds=5, _request_timeout=10):
                    obj = ev["object"]
                    rv = obj.metadata.resource_version
                    self._note(obj, ev["type"] == "DELETED")
                    if self._stop.is_set():
                        return
            except Exception as e:  # apiserver down, 410, timeouts: relist after a pause
                self.errors.append(repr(e)[:200])
                self.reconnects += 1
                rv = None
                self._stop.wait(0.5)


def scan_for_secrets(texts: Iterable[tuple[str, str]], secrets: Iterable[str]) -> list[tuple[str, str]]:
    """Returns (artifact name, secret) for every planted value found in any artifact."""
    found = []
    secrets = [s for s in secrets if s]
    for name, text in texts:
        for s in secrets:
            if s in text:
                found.append((name, s))
    return found


def dump(obj) -> str:
    if isinstance(obj, (dict, list)):
        return json.dumps(obj)
    try:
        return json.dumps(client.ApiClient().sanitize_for_serialization(obj))
    except Exception:
        return str(obj)
