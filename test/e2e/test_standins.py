"""The kubelet and OpenKruise stand-ins, one-shot and in auto mode (thread and CLI)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

import standins
from conftest import E2E_DIR, unique, wait_for
from standins import CLAIM_NAME_LABEL, CLAIMS, GROUP, SANDBOXES, SKIP_LABEL, VERSION


def make_pod(core, ns, name=None, containers=("worker", "sidecar"), labels=None):
    name = name or unique("pod")
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {}),
        spec=client.V1PodSpec(containers=[client.V1Container(name=c, image=f"registry.invalid/{c}:1")
                                          for c in containers]))
    core.create_namespaced_pod(ns, pod)
    return name


def make_claim(custom, ns, name=None, labels=None, template="hiclaw-worker-pool", extra_labels=None, **spec):
    name = name or unique("claim")
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SandboxClaim",
            "metadata": {"name": name, "labels": extra_labels or {}},
            "spec": {"templateName": template, "labels": labels or {"hiclaw.io/worker": name}, **spec}}
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, CLAIMS, body)
    return name


def cond(obj_conds, ctype):
    for c in obj_conds or []:
        if c["type"] == ctype:
            return c["status"]
    return None


# ---- kubelet ---------------------------------------------------------------------------------
def test_kubelet_running_ready(core, namespace, kubelet):
    name = make_pod(core, namespace)
    kubelet.set_running(namespace, name, pod_ip="10.244.7.9")
    pod = core.read_namespaced_pod(name, namespace)
    assert pod.status.phase == "Running"
    assert pod.status.pod_ip == "10.244.7.9"
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
    assert sorted(cs.name for cs in pod.status.container_statuses) == ["sidecar", "worker"]
    assert all(cs.ready and cs.state.running for cs in pod.status.container_statuses)


def test_kubelet_not_ready_then_crashloop(core, namespace, kubelet):
    name = make_pod(core, namespace)
    kubelet.set_running(namespace, name, ready=False)
    pod = core.read_namespaced_pod(name, namespace)
    assert pod.status.phase == "Running"
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "False"

    kubelet.set_waiting(namespace, name, "CrashLoopBackOff", "back-off 10s restarting failed container", "worker")
    kubelet.set_waiting(namespace, name, "CrashLoopBackOff", "back-off 20s restarting failed container", "worker")
    pod = core.read_namespaced_pod(name, namespace)
    by = {cs.name: cs for cs in pod.status.container_statuses}
    assert by["worker"].state.waiting.reason == "CrashLoopBackOff"
    assert by["worker"].state.waiting.message == "back-off 20s restarting failed container"
    assert by["worker"].restart_count == 2
    assert by["worker"].last_state.terminated.exit_code == 1
    assert by["sidecar"].state.waiting.reason == "ContainerCreating"
    assert by["sidecar"].restart_count == 0


def test_kubelet_image_pull_backoff_pending(core, namespace, kubelet):
    name = make_pod(core, namespace, containers=("worker",))
    kubelet.set_waiting(namespace, name, "ImagePullBackOff", 'Back-off pulling image "registry.invalid/worker:1"')
    pod = core.read_namespaced_pod(name, namespace)
    assert pod.status.phase == "Pending"
    w = pod.status.container_statuses[0].state.waiting
    assert (w.reason, w.message) == ("ImagePullBackOff", 'Back-off pulling image "registry.invalid/worker:1"')


def test_kubelet_pending_failed_succeeded(core, namespace, kubelet):
    name = make_pod(core, namespace, containers=("worker",))
    kubelet.set_pending(namespace, name)
    pod = core.read_namespaced_pod(name, namespace)
    assert pod.status.phase == "Pending"
    assert {c.type: c.status for c in pod.status.conditions}["PodScheduled"] == "False"

    kubelet.set_terminated(namespace, name, "Failed", exit_code=137, reason="OOMKilled", message="out of memory")
    pod = core.read_namespaced_pod(name, namespace)
    assert pod.status.phase == "Failed"
    t = pod.status.container_statuses[0].state.terminated
    assert (t.exit_code, t.reason) == (137, "OOMKilled")

    other = make_pod(core, namespace, containers=("worker",))
    kubelet.set_terminated(namespace, other, "Succeeded")
    pod = core.read_namespaced_pod(other, namespace)
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    with pytest.raises(ValueError):
        kubelet.set_terminated(namespace, other, "Running")


def test_pod_delete_is_immediate(core, namespace):
    name = make_pod(core, namespace)
    core.delete_namespaced_pod(name, namespace)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod(name, namespace)
    assert e.value.status == 404


# ---- OpenKruise ------------------------------------------------------------------------------
def test_bind_creates_labelled_sandbox_and_completes_claim(custom, namespace, openkruise):
    labels = {"hiclaw.io/worker": "alice", "hiclaw.io/controller": "wc", "hiclaw.io/backend": "sandbox"}
    name = make_claim(custom, namespace, labels=labels, inplaceUpdate={"image": "registry.invalid/worker:2"},
                      annotations={"hiclaw.io/spec-hash": "abc"})
    sbxs = openkruise.bind(namespace, name)
    assert len(sbxs) == 1
    sbx = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, SANDBOXES, sbxs[0]["metadata"]["name"])
    for k, v in labels.items():
        assert sbx["metadata"]["labels"][k] == v
    assert sbx["metadata"]["labels"][CLAIM_NAME_LABEL] == name
    assert sbx["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.invalid/worker:2"
    assert sbx["status"]["phase"] == "Running"
    assert cond(sbx["status"]["conditions"], "Ready") == "True"
    assert sbx["status"]["podInfo"]["podIP"] == sbx["status"]["sandboxIp"]
    assert not sbx["metadata"].get("ownerReferences")  # deleting the claim must not take the sandbox

    claim = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, CLAIMS, name)
    assert claim["status"]["phase"] == "Completed"
    assert claim["status"]["claimedReplicas"] == 1
    assert claim["status"]["message"]
    # found by labels, as the controller will look it up
    found = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, SANDBOXES,
                                                 label_selector="hiclaw.io/worker=alice,hiclaw.io/controller=wc")
    assert [s["metadata"]["name"] for s in found["items"]] == [sbx["metadata"]["name"]]
    # bind is idempotent: a second call does not create another sandbox
    assert len(openkruise.bind(namespace, name)) == 1
    assert len(openkruise.sandboxes_for_claim(namespace, name)) == 1


def test_bind_uses_sandboxset_template(custom, namespace, openkruise):
    pool = unique("pool")
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "sandboxsets", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SandboxSet", "metadata": {"name": pool},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "worker", "image": "registry.invalid/pool:1",
             "env": [{"name": "HICLAW_WORKER_ENV_MOUNT_DIR", "value": "/mnt/hiclaw/env"}]}]}}}})
    name = make_claim(custom, namespace, template=pool)
    sbx = openkruise.bind(namespace, name)[0]
    c = sbx["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry.invalid/pool:1"
    assert c["env"][0]["name"] == "HICLAW_WORKER_ENV_MOUNT_DIR"


def test_timeout_mode(custom, namespace, openkruise):
    name = make_claim(custom, namespace)
    openkruise.time_out(namespace, name, "claim timeout: pool empty")
    claim = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, CLAIMS, name)
    assert claim["status"]["phase"] == "Completed"
    assert claim["status"]["claimedReplicas"] == 0
    assert claim["status"]["message"] == "claim timeout: pool empty"
    assert openkruise.sandboxes_for_claim(namespace, name) == []


def test_pause_and_resume(custom, namespace, openkruise):
    name = make_claim(custom, namespace)
    sbx = openkruise.bind(namespace, name)[0]["metadata"]["name"]
    assert openkruise.sync_pause(namespace, sbx) is None  # not paused, Running: nothing to do
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, SANDBOXES, sbx, {"spec": {"paused": True}})
    st = openkruise.sync_pause(namespace, sbx)["status"]
    assert st["phase"] == "Paused" and cond(st["conditions"], "Ready") == "False"
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, SANDBOXES, sbx, {"spec": {"paused": False}})
    st = openkruise.sync_pause(namespace, sbx)["status"]
    assert st["phase"] == "Running" and cond(st["conditions"], "Ready") == "True"


def test_prebind_check_recorded_and_blocking(api, custom, namespace):
    seen = []

    def check(claim):
        seen.append(claim["metadata"]["name"])
        return claim["spec"]["labels"].get("ok") == "yes"

    ok = standins.OpenKruise(api, prebind_check=check, block_on_check=True)
    good = make_claim(custom, namespace, labels={"ok": "yes"})
    bad = make_claim(custom, namespace, labels={"ok": "no"})
    assert len(ok.bind(namespace, good)) == 1
    assert ok.bind(namespace, bad) == []
    assert ok.prebind_log == [(namespace, good, True), (namespace, bad, False)]
    assert seen == [good, bad]
    st = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, CLAIMS, bad)["status"]
    assert st["phase"] == "Claiming" and "pre-bind check failed" in st["message"]
    assert ok.sandboxes_for_claim(namespace, bad) == []

    # Non-blocking: the result is recorded (an exception counts as a failed result) and binding goes on.
    def boom(claim):
        raise RuntimeError("object missing in S3")

    lax = standins.OpenKruise(api, prebind_check=boom)
    other = make_claim(custom, namespace)
    assert len(lax.bind(namespace, other)) == 1
    (ns, cname, result), = lax.prebind_log
    assert (ns, cname) == (namespace, other) and isinstance(result, RuntimeError)


def test_claim_and_sandbox_delete_are_immediate(custom, namespace, openkruise):
    name = make_claim(custom, namespace)
    sbx = openkruise.bind(namespace, name)[0]["metadata"]["name"]
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, CLAIMS, name)
    # the claim is gone, its sandbox stays (no ownerReference, no GC)
    with pytest.raises(ApiException):
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, CLAIMS, name)
    assert openkruise.get_sandbox(namespace, sbx)
    openkruise.delete_sandbox(namespace, sbx)
    with pytest.raises(ApiException) as e:
        openkruise.get_sandbox(namespace, sbx)
    assert e.value.status == 404
    openkruise.delete_sandbox(namespace, sbx)  # idempotent


# ---- auto mode -------------------------------------------------------------------------------
def test_auto_mode_thread(api, core, custom, namespace):
    with standins.AutoStandins(api, namespace=namespace, pod_delay=0.2) as auto:
        pod = make_pod(core, namespace)
        skipped = make_pod(core, namespace, labels={SKIP_LABEL: "true"})
        claim = make_claim(custom, namespace, labels={"hiclaw.io/worker": "auto"})

        wait_for(lambda: core.read_namespaced_pod(pod, namespace).status.phase == "Running", 15, what="pod Running")
        p = core.read_namespaced_pod(pod, namespace)
        assert {c.type: c.status for c in p.status.conditions}["Ready"] == "True" and p.status.pod_ip

        def bound():
            c = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, CLAIMS, claim)
            return (c.get("status") or {}).get("phase") == "Completed" and c
        c = wait_for(bound, 15, what="claim bound")
        assert c["status"]["claimedReplicas"] == 1
        sbx = wait_for(lambda: standins.OpenKruise(api).sandboxes_for_claim(namespace, claim), 5)[0]
        assert sbx["metadata"]["labels"]["hiclaw.io/worker"] == "auto"
        sname = sbx["metadata"]["name"]

        def phase():
            return (custom.get_namespaced_custom_object(GROUP, VERSION, namespace, SANDBOXES, sname)
                    .get("status") or {}).get("phase")
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, SANDBOXES, sname, {"spec": {"paused": True}})
        wait_for(lambda: phase() == "Paused", 15, what="sandbox Paused")
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, SANDBOXES, sname, {"spec": {"paused": False}})
        wait_for(lambda: phase() == "Running", 15, what="sandbox Running again")

        # deleting a bound pod goes through; the skipped pod was never touched
        core.delete_namespaced_pod(pod, namespace)
        wait_for(lambda: not any(x.metadata.name == pod for x in core.list_namespaced_pod(namespace).items), 10)
        s = core.read_namespaced_pod(skipped, namespace)
        assert not s.status.container_statuses and s.status.phase == "Pending"
        assert auto.errors == []
    # exactly one sandbox for the claim despite many watch replays
    assert len(standins.OpenKruise(api).sandboxes_for_claim(namespace, claim)) == 1


def test_auto_mode_timeout_claims(api, custom, namespace):
    with standins.AutoStandins(api, namespace=namespace, kubelet=False, timeout_claims=True) as auto:
        claim = make_claim(custom, namespace)

        def done():
            c = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, CLAIMS, claim)
            return (c.get("status") or {}).get("phase") == "Completed" and c
        c = wait_for(done, 15, what="claim timed out")
        assert c["status"]["claimedReplicas"] == 0 and "timeout" in c["status"]["message"]
        assert standins.OpenKruise(api).sandboxes_for_claim(namespace, claim) == []
        assert auto.errors == []


def test_cli_auto_mode(tb, api, core, custom, namespace):
    """The CLI the demo script runs in the background: answers, then exits 0 on SIGTERM."""
    proc = subprocess.Popen([sys.executable, os.path.join(E2E_DIR, "standins.py"), "--auto", "--namespace", namespace,
                             "--pod-delay", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pod = make_pod(core, namespace)
        claim = make_claim(custom, namespace)
        wait_for(lambda: core.read_namespaced_pod(pod, namespace).status.phase == "Running", 20, what="pod Running")
        wait_for(lambda: (custom.get_namespaced_custom_object(GROUP, VERSION, namespace, CLAIMS, claim)
                          .get("status") or {}).get("phase") == "Completed", 20, what="claim bound")
        assert len(standins.OpenKruise(api).sandboxes_for_claim(namespace, claim)) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert f"{namespace}/{claim} -> Bound:1" in out
