"""Issue 5 test 7 — the seed's second review blocker (pr-988): a legacy Worker (empty
status.backendRuntime) whose Pod is running must not get a sandbox when spec.backendRuntime
is switched to sandbox while Running.

The Worker and its Pod are created the way a v1.1 install left them, with no controller
running; then the controller starts with the sandbox backend ENABLED (bed S3 as worker-deps
storage, RBAC from `render-rbac` without --no-sandbox). A watch on SandboxClaims runs for the
whole test: not a single claim may ever be created.
"""

from __future__ import annotations

import threading
import time

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

import controller_harness as h

BLOCK_MSG = "spec.backendRuntime cannot change from pod to sandbox until the Worker is Stopped"


class ClaimWatch:
    """Records every SandboxClaim event in the namespace (bounded reconnect loop)."""

    def __init__(self, api, ns):
        self.co = client.CustomObjectsApi(api)
        self.ns = ns
        self.seen: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self.started = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                lst = self.co.list_namespaced_custom_object(*h.KRUISE, self.ns, "sandboxclaims")
                for it in lst.get("items", []):
                    self.seen.append(("LISTED", it["metadata"]["name"]))
                self.started.set()
                for ev in w.stream(self.co.list_namespaced_custom_object, *h.KRUISE, self.ns, "sandboxclaims",
                                   resource_version=lst["metadata"]["resourceVersion"], timeout_seconds=5):
                    self.seen.append((ev["type"], ev["object"]["metadata"]["name"]))
                    if self._stop.is_set():
                        break
            except Exception as e:  # keep watching; record
                self.seen.append(("ERROR", repr(e)))
                time.sleep(0.2)
            finally:
                w.stop()

    def __enter__(self):
        self._t.start()
        assert self.started.wait(10), "claim watch did not start"
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(10)

    def claims(self):
        return [s for s in self.seen if s[0] != "ERROR"]


def test_legacy_pod_worker_switch_to_sandbox_is_blocked(tb, api, core, custom, namespace):
    ns, name = namespace, h.unique_name("legacy")
    pn = f"hiclaw-worker-{name}"
    ctl = h.ControllerProcess(tb, core, ns, f"ctl-{h.unique_suffix()}", sandbox=True)
    ctl.setup_identity()  # CRD + render-rbac (sandbox rules) + token; NOT started yet
    try:
        with ClaimWatch(api, ns) as claims:
            # --- a v1.1 install's leftovers, no controller running ---
            w = h.create_worker(custom, ns, name, finalizers=[h.FINALIZER], state="Running")
            h.patch_worker_status(custom, ns, name, {"phase": "Running"})  # no backendRuntime: legacy
            owner = [client.V1OwnerReference(api_version="hiclaw.io/v1beta1", kind="Worker", name=name,
                                             uid=w["metadata"]["uid"], controller=True, block_owner_deletion=True)]
            labels = {"app": "hiclaw-worker", "hiclaw.io/worker": name, "hiclaw.io/controller": ctl.name}
            core.create_namespaced_service_account(ns, client.V1ServiceAccount(
                metadata=client.V1ObjectMeta(name=pn, labels=labels, owner_references=owner),
                automount_service_account_token=False))
            core.create_namespaced_pod(ns, client.V1Pod(
                metadata=client.V1ObjectMeta(name=pn, labels=labels, owner_references=owner),
                spec=client.V1PodSpec(service_account_name=pn, automount_service_account_token=False,
                                      containers=[client.V1Container(name="worker", image="hiclaw/worker-openclaw:v1.1")])))
            # scheduled and run by kwok, like the Pod v1.1's controller left running
            h.wait_pod(core, ns, name, lambda p: p is not None and p.status.phase == "Running"
                       and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []),
                       timeout=30, what="legacy Pod running")
            h.patch_worker(custom, ns, name, {"spec": {"backendRuntime": "sandbox"}})
            w = h.get_worker(custom, ns, name)
            assert not (w.get("status") or {}).get("backendRuntime")
            pod0 = core.read_namespaced_pod(pn, ns)

            # --- the controller, sandbox backend enabled ---
            ctl.start()
            w = h.wait_condition(custom, ns, name, "Synced", "False", "BackendSwitchBlocked", timeout=20)
            syn = h.condition(w, "Synced")
            assert syn["message"] == BLOCK_MSG, syn["message"]
            # status keeps telling the truth about the Pod that runs
            st = w["status"]
            assert st.get("backendRuntime") in (None, "", "pod"), st
            assert st["phase"] == "Running", st
            assert h.condition(w, "Ready")["status"] == "True", st
            assert (st.get("instance") or {}).get("name") == pn, st

            def blocked_events():
                return h.events_for(api, ns, name, "BackendSwitchBlocked")

            evs = h.wait_for_value(blocked_events, 10, "BackendSwitchBlocked Event")
            # unrelated reconciles: metadata label changes (no new generation)
            for i in range(3):
                h.patch_worker(custom, ns, name, {"metadata": {"labels": {"e2e/poke": str(i)}}})
                time.sleep(1.0)
            time.sleep(2.0)
            evs = blocked_events()
            assert len(evs) == 1, [(e["metadata"]["name"], e.get("series")) for e in evs]
            e = evs[0]
            assert e["type"] == "Warning" and e["note"] == BLOCK_MSG, e
            assert (e.get("series") or {}).get("count", 1) == 1, e.get("series")
            assert (e.get("deprecatedCount") or 1) == 1, e

            pod1 = core.read_namespaced_pod(pn, ns)
            assert pod1.metadata.uid == pod0.metadata.uid
            assert pod1.metadata.resource_version == pod0.metadata.resource_version, "the legacy Pod was touched"
            assert claims.claims() == [], claims.seen
            assert h.condition(h.get_worker(custom, ns, name), "Synced")["reason"] == "BackendSwitchBlocked"

            # --- Stopped: the Pod goes, still no claim ---
            h.patch_worker(custom, ns, name, {"spec": {"state": "Stopped"}})
            h.wait_pod(core, ns, name, lambda p: p is None, timeout=20, what="legacy Pod deleted")
            w = h.wait_phase(custom, ns, name, "Stopped")
            time.sleep(2.0)
            assert claims.claims() == [], claims.seen
            lst = custom.list_namespaced_custom_object(*h.KRUISE, ns, "sandboxclaims")["items"]
            assert lst == []
            assert h.get_pod(core, ns, name) is None
        assert ctl.running()
        ctl.stop()
        log = ctl.log_text()
        assert tb.WC_S3_SECRET_KEY not in log and ctl.token not in log, "a credential reached the log"
    finally:
        ctl.close()
