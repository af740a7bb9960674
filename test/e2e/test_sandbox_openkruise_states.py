"""Issue 19 item 4 on the real bed: OpenKruise agents as it is now, states it reaches by itself.

- Auto-pause: OpenKruise pauses a Sandbox itself when its ``spec.pauseTime`` is reached (it sets
  ``spec.paused=true`` and never resumes). A Worker whose state is Running has its Sandbox
  resumed and the pauseTime cleared in the same patch, once — before the fix the controller
  resumed with ``paused=false`` alone and OpenKruise paused it again at once, a loop. A Warning
  Event ``SandboxAutoPaused`` says what happened, once.
- PodCreateFailed: OpenKruise cannot create a resumed sandbox's Pod (a ValidatingAdmissionPolicy
  denies it): the Worker says so (Ready=False ``SandboxPodCreateFailed`` with OpenKruise's error),
  one Warning Event; once the policy is gone and OpenKruise retries, it runs again.
- Sleeping while the claim still binds: no pause (it would make the claim fail); the wait is said.
- A failed Sandbox: the Worker's message carries OpenKruise's status.message.

Only inputs are written to OpenKruise's objects (``spec.pauseTime``, an annotation), never its
status; the admission policy is the cluster's own.
"""

from __future__ import annotations

import datetime
import time

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

import bed
import controller_harness as ch
import sandbox_support as sx
from conftest import drop_namespace, make_namespace, unique

IMAGE = "registry.example/hiclaw/worker:states-1"


@pytest.fixture(scope="module")
def ctl(tb, core, namespace):
    c = sx.sandbox_controller(tb, core, namespace, {"HICLAW_SANDBOX_PAUSE": "true"})
    yield c
    c.close()


def status(w):
    return w.get("status") or {}


def running_worker(custom, ns, timeout=90):
    name = unique("ow")
    ch.create_worker(custom, ns, name, backendRuntime="sandbox", image=IMAGE)
    wk = ch.wait_worker(custom, ns, name, lambda o: status(o).get("phase") == "Running"
                        and (ch.condition(o, "Ready") or {}).get("status") == "True", timeout, "Running and Ready")
    return name, status(wk)["instance"]["name"]


def sandbox_writes(tb, mark, ns, sname, user=None):
    """Writes to the Sandbox object itself (not its status) since mark, by user if given."""
    return [x for x in ch.audit_writes(tb, mark, resource=sx.SANDBOXES, namespace=ns)
            if x["name"] == sname and x["subresource"] == "" and (user is None or x["user"] == user)]


def test_auto_pause_by_openkruise_is_resumed_once_and_pause_time_cleared(tb, api, core, custom, namespace, ctl):
    ns = namespace
    w, sname = running_worker(custom, ns)
    paused_seen = []
    rec = sx.custom_recorder(api, custom, ns, sx.SANDBOXES, on_event=lambda t, o: paused_seen.append(
        (time.monotonic(), o["metadata"]["name"], (o.get("spec") or {}).get("paused"),
         (o.get("spec") or {}).get("pauseTime"), o["metadata"]["resourceVersion"])))
    try:
        mark = ch.audit_offset(tb)
        past = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        # what a user or a tool (sandbox-manager's E2B API) sets: an input, not OpenKruise's status
        custom.patch_namespaced_custom_object(sx.KG, sx.KV, ns, sx.SANDBOXES, sname, {"spec": {"pauseTime": past}})

        # OpenKruise paused it (spec.paused true, written by OpenKruise, not by the controller)
        sx.wait(lambda: [e for e in paused_seen if e[1] == sname and e[2] is True], 30, "OpenKruise pausing it")
        # the controller resumed it and cleared the pauseTime in one patch
        sx.wait(lambda: (lambda s: s if s and s["spec"].get("paused") is False and "pauseTime" not in s["spec"]
                               and s.get("status", {}).get("phase") == "Running" else None)(
            sx.get_sandbox(custom, ns, sname)), 60, "resumed, pauseTime cleared, Running")
        wk = ch.wait_worker(custom, ns, w, lambda o: status(o).get("phase") == "Running"
                            and (ch.condition(o, "Ready") or {}).get("status") == "True", 60, "Running again")
        assert status(wk)["instance"]["name"] == sname  # the same sandbox, resumed: not replaced

        # no loop: nothing writes the Sandbox any more, and it was paused once and resumed once
        time.sleep(3)  # OpenKruise's last status writes after the resume (/init, Ready)
        settled = sx.get_sandbox(custom, ns, sname)["metadata"]["resourceVersion"]
        time.sleep(15)
        after = sx.get_sandbox(custom, ns, sname)
        assert after["spec"].get("paused") is False and "pauseTime" not in after["spec"], after["spec"]
        assert after["metadata"]["resourceVersion"] == settled, "the Sandbox kept changing after the resume"
        pauses = [e for e in paused_seen if e[1] == sname and e[2] is True]
        first_pause_rvs = {e[4] for e in pauses}
        flips = 0
        prev = None
        for e in (e for e in paused_seen if e[1] == sname):
            if prev is not True and e[2] is True:
                flips += 1
            prev = e[2]
        assert flips == 1, f"paused {flips} times (a pause/resume loop): {[(e[2], e[3]) for e in paused_seen]}"
        ours = [x for x in sandbox_writes(tb, mark, ns, sname, ctl.username) if x["verb"] == "patch"]
        assert len(ours) == 1, f"the controller patched the Sandbox {len(ours)} times: {ours}"
        assert first_pause_rvs

        # said once, as a Warning naming the Sandbox and its pauseTime
        evs = ch.events_for(api, ns, w, "SandboxAutoPaused")
        assert len(evs) == 1, evs
        ev = evs[0]
        assert ev["type"] == "Warning"
        assert sname in ev["note"] and past in ev["note"] and "Running" in ev["note"], ev["note"]
        assert ((ev.get("series") or {}).get("count") or 1) == 1, ev
        assert ch.events_for(api, ns, w, "Resumed"), "no Resumed Event"
    finally:
        rec.stop()


# ---- PodCreateFailed through a ValidatingAdmissionPolicy --------------------------------------------

def _deny_pods_of(ns, worker):
    name = unique("deny-wk")
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                    "operations": ["CREATE"], "resources": ["pods"]}]},
            "validations": [{
                "expression": "!has(object.metadata.labels) || !('hiclaw.io/worker' in object.metadata.labels) || "
                              f"object.metadata.labels['hiclaw.io/worker'] != '{worker}'",
                "message": f"e2e denies the Pods of Worker {worker}"}],
        }}
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}}
    return name, policy, binding


def _probe_denied(core, ns, worker) -> bool:
    """A dry-run create of a Pod labelled for the Worker: is it denied now (the policy in force)?"""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": unique("probe"), "labels": {"hiclaw.io/worker": worker}},
           "spec": {"containers": [{"name": "c", "image": "registry.example/probe:1"}]}}
    try:
        core.create_namespaced_pod(ns, pod, dry_run="All")
        return False
    except ApiException as e:
        if e.status in (400, 403, 422) and "denied" in (e.body or ""):
            return True
        raise


def test_pod_create_failed_is_named_once_and_recovers(tb, api, core, custom, namespace, ctl):
    ns = namespace
    adm = client.AdmissionregistrationV1Api(api)
    w, sname = running_worker(custom, ns)
    # Sleeping: OpenKruise pauses the Sandbox and deletes its Pod
    ch.patch_worker(custom, ns, w, {"spec": {"state": "Sleeping"}})
    ch.wait_phase(custom, ns, w, "Sleeping", timeout=60)
    sx.wait(lambda: (sx.get_sandbox(custom, ns, sname) or {}).get("status", {}).get("phase") == "Paused", 30,
            "Sandbox Paused")
    sx.wait(lambda: not [p for p in core.list_namespaced_pod(ns, label_selector=f"hiclaw.io/worker={w}").items],
            60, "the paused sandbox's Pod gone")

    name, policy, binding = _deny_pods_of(ns, w)
    adm.create_validating_admission_policy(policy)
    adm.create_validating_admission_policy_binding(binding)
    try:
        sx.wait(lambda: _probe_denied(core, ns, w), 30, "the admission policy in force", interval=0.5)
        # Running: the controller resumes, OpenKruise makes a new Pod, admission denies it
        ch.patch_worker(custom, ns, w, {"spec": {"state": "Running"}})
        wk = ch.wait_condition(custom, ns, w, "Ready", "False", "SandboxPodCreateFailed", timeout=60)
        sbx = sx.get_sandbox(custom, ns, sname)
        ready = [c for c in sbx["status"].get("conditions", []) if c["type"] == "Ready"][0]
        assert ready["reason"] == "PodCreateFailed", ready
        msg = ch.condition(wk, "Ready")["message"]
        assert msg.startswith(f"OpenKruise cannot create the Pod of Sandbox {sname}: "), msg
        assert f"e2e denies the Pods of Worker {w}" in msg and name in msg, msg
        assert status(wk)["phase"] == "Failed" and status(wk)["message"] == msg
        assert sx.get_sandbox(custom, ns, sname)["metadata"]["uid"] == sbx["metadata"]["uid"]  # not replaced
        # one Warning while it lasts, however often OpenKruise retries
        time.sleep(8)
        evs = ch.events_for(api, ns, w, "SandboxPodCreateFailed")
        assert len(evs) == 1 and evs[0]["type"] == "Warning", evs
        assert ((evs[0].get("series") or {}).get("count") or 1) == 1, evs[0]
        assert ch.condition(ch.get_worker(custom, ns, w), "Ready")["reason"] == "SandboxPodCreateFailed"
    finally:
        for fn, n in ((adm.delete_validating_admission_policy_binding, name),
                      (adm.delete_validating_admission_policy, name)):
            try:
                fn(n)
            except ApiException as e:
                if e.status != 404:
                    raise
    sx.wait(lambda: not _probe_denied(core, ns, w), 30, "the admission policy gone", interval=0.5)
    # OpenKruise's backoff may be minutes by now: an annotation on the Sandbox (an input) requeues it
    custom.patch_namespaced_custom_object(sx.KG, sx.KV, ns, sx.SANDBOXES, sname,
                                          {"metadata": {"annotations": {"e2e/requeue": str(time.time())}}})
    wk = ch.wait_worker(custom, ns, w, lambda o: status(o).get("phase") == "Running"
                        and (ch.condition(o, "Ready") or {}).get("status") == "True", 90, "Running again")
    assert status(wk)["instance"]["name"] == sname


# ---- Sleeping while the claim still binds ----------------------------------------------------------

def test_sleeping_never_pauses_a_sandbox_whose_claim_still_binds(tb, api, core, custom):
    """A warm pool that cannot fill (its template holds every Pod): the claim stays Claiming and
    OpenKruise makes a Sandbox of its own for it (createOnNoStock), which never gets ready. Set
    Sleeping (pause on) then: pausing that Sandbox would make OpenKruise's claim wait out
    waitReadyTimeout on a paused sandbox — the controller waits for the claim to finish instead,
    and once it completed without a sandbox, removes it and sleeps."""
    ns = make_namespace(core, "sbx-binding-pause")
    pool = "held"
    custom.create_namespaced_custom_object(sx.KG, sx.KV, ns, sx.SANDBOXSETS, {
        "apiVersion": f"{sx.KG}/{sx.KV}", "kind": "SandboxSet", "metadata": {"name": pool, "namespace": ns},
        "spec": {"replicas": 0, "runtimes": [{"name": "csi"}, {"name": "agent-runtime"}],
                 "template": {"metadata": {"labels": dict(bed.HOLD)},
                              "spec": {"automountServiceAccountToken": False,
                                       "containers": [{"name": "worker", "image": "registry.example/agent:e2e"}]}}}})
    c = sx.sandbox_controller(tb, core, ns, {"HICLAW_SANDBOX_PAUSE": "true", "HICLAW_SANDBOX_MANAGE_POOL": "false",
                                             "HICLAW_SANDBOX_POOL": pool, "HICLAW_SANDBOX_CLAIM_TIMEOUT": "25s",
                                             "HICLAW_SANDBOX_WAIT_READY_TIMEOUT": "20s"})
    try:
        w = unique("bw")
        cn = sx.claim_name(w)
        ch.create_worker(custom, ns, w, backendRuntime="sandbox", image=IMAGE)
        # the claim binds a Sandbox OpenKruise made for it, held Pending
        sname = sx.wait(lambda: [s["metadata"]["name"] for s in sx.sandboxes_of(custom, ns, w)], 30,
                        "the claim's own Sandbox")[0]
        assert (sx.get_claim(custom, ns, cn) or {}).get("status", {}).get("phase") != "Completed"
        mark = ch.audit_offset(tb)
        ch.patch_worker(custom, ns, w, {"spec": {"state": "Sleeping"}})
        time.sleep(8)
        patched = [x for x in ch.audit_writes(tb, mark, resource=sx.SANDBOXES, namespace=ns)
                   if x["user"] == c.username and x["verb"] == "patch"]
        assert not patched, f"a Sandbox of a claim still binding was patched (paused): {patched} ({sname})"
        wk = ch.get_worker(custom, ns, w)
        assert f"waiting for claim {cn} to finish before pausing" in status(wk).get("message", ""), status(wk)
        assert status(wk)["phase"] == "Starting"
        # the claim times out (0/1): nothing to pause; it goes and the Worker sleeps
        wk = ch.wait_worker(custom, ns, w, lambda o: status(o).get("phase") == "Sleeping", 90, "Sleeping")
        assert sx.get_claim(custom, ns, cn) is None
        deleted = [x for x in ch.audit_writes(tb, mark, resource=sx.CLAIMS, namespace=ns)
                   if x["user"] == c.username and x["verb"] == "delete" and x["name"] == cn]
        assert deleted, "the timed-out claim was not removed by the controller"
        assert not [x for x in ch.audit_writes(tb, mark, resource=sx.CLAIMS, namespace=ns)
                    if x["user"] == c.username and x["verb"] == "create"], "a claim was made while Sleeping"
    finally:
        c.close()
        drop_namespace(core, ns)


# ---- a failed Sandbox says why, in OpenKruise's words ------------------------------------------------

def test_a_failed_sandbox_says_openkruises_reason_and_is_replaced(tb, api, core, custom, namespace, ctl):
    """The sandbox's Pod fails (kwok, as its kubelet: phase Failed): OpenKruise marks the Sandbox
    Failed with status.message "Pod status phase is Failed"; the Worker's message carries it (a
    vanished Pod reads "Pod Not Found" instead), and the sandbox is replaced."""
    ns = namespace
    w, sname = running_worker(custom, ns)
    failed = []  # OpenKruise's Failed Sandbox, as the watch saw it (the controller replaces it at once)
    rec = sx.custom_recorder(api, custom, ns, sx.SANDBOXES, on_event=lambda t, o: failed.append(o) if (
        o["metadata"]["name"] == sname and (o.get("status") or {}).get("phase") == "Failed") else None)
    try:
        bed.kwok_state(core, ns, sname, "failed")
        wk = ch.wait_worker(custom, ns, w, lambda o: status(o).get("message", "").startswith(f"Sandbox {sname} failed"),
                            30, "the Worker saying the Sandbox failed")
        why = sx.wait(lambda: failed and failed[0]["status"].get("message"), 10, "OpenKruise's status.message")
        assert status(wk)["message"] == f"Sandbox {sname} failed: {why}; replacing it with backoff" or \
            status(wk)["message"].startswith(f"Sandbox {sname} failed: {why}; replacing it in "), status(wk)["message"]
        assert status(wk)["phase"] == "Failed" and ch.condition(wk, "Ready")["reason"] == "SandboxFailed"
        evs = [e for e in ch.events_for(api, ns, w, "SandboxFailed") if e["type"] == "Warning"]
        assert evs and why in evs[0]["note"], evs
    finally:
        rec.stop()
    ch.wait_worker(custom, ns, w, lambda o: status(o).get("phase") == "Running"
                   and status(o)["instance"]["name"] != sname, 120, "Running on a new sandbox")
