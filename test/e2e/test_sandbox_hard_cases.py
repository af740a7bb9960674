"""Issue 15 on the real bed, sandbox side: the hard cases, through the real OpenKruise agents
controller and the real MinIO.

- A running sandbox Worker whose Sandbox is deleted reports the loss, drops its claim and claims
  again with the recreate backoff (item 4); a claim whose Sandbox the cache has not seen is never
  dropped on the cache's word (failpoint freeze-cache-sandboxes).
- worker-deps objects are namespaced and owned: a second Worker with the same workerName, or an
  object owned by another install, is a conflict, nothing written, no claim; an unowned object is
  adopted; two namespaces never share keys (item 5).
- A lost or altered env file is rewritten in place (sandbox untouched); the token goes on Stopped
  after a sandbox→pod switch; a workerName change removes the old env file and token (item 9).
- A blocked switch keeps describing the sandbox that runs, Sleeping included (item 9).
- The sandbox backend disabled with a sandbox Worker present: observed read-only, no Pod beside
  it, deletion waits for the sandbox (item 6).
- The managed SandboxSet is applied by the leader only (item 3).
"""

from __future__ import annotations

import time

import pytest
from kubernetes.client.rest import ApiException

import controller_harness as ch
import sandbox_support as sx
from conftest import drop_namespace, make_namespace, unique

IMAGE = "registry.example/hiclaw/worker:hard-1"


@pytest.fixture(scope="module")
def ctl(tb, core, namespace):
    c = sx.sandbox_controller(tb, core, namespace, {"HICLAW_SANDBOX_PREWARM_SIZE": "2"})
    yield c
    c.close()


def status(w):
    return w.get("status") or {}


def sandbox_worker(custom, ns, name=None, **spec):
    name = name or unique("hw")
    spec.setdefault("backendRuntime", "sandbox")
    spec.setdefault("image", IMAGE)
    ch.create_worker(custom, ns, name, **spec)
    return name


def running(custom, ns, name, timeout=60):
    return ch.wait_phase(custom, ns, name, "Running", timeout=timeout)


def _gone(fn) -> bool:
    try:
        fn()
        return False
    except ApiException as e:
        return e.status == 404


def poke(custom, ns, name):
    """A change that reconciles the Worker now (an annotation: nothing that shapes the instance)."""
    ch.patch_worker(custom, ns, name, {"metadata": {"annotations": {"e2e/poke": str(time.monotonic())}}})


# ---- item 4: the Sandbox of a completed claim is lost ------------------------------------------------

def test_a_deleted_sandbox_is_reported_and_claimed_again(tb, api, core, custom, namespace, ctl, runtime):
    ns = namespace
    w = sandbox_worker(custom, ns)
    wk = running(custom, ns, w)
    sname = status(wk)["instance"]["name"]
    cuid = sx.get_claim(custom, ns, sx.claim_name(w))["metadata"]["uid"]
    # an operator, or a node lost with it
    custom.delete_namespaced_custom_object(sx.KG, sx.KV, ns, sx.SANDBOXES, sname)
    wk = ch.wait_condition(custom, ns, w, "Synced", "False", "SandboxLost", timeout=30)
    assert sx.claim_name(w) in ch.condition(wk, "Synced")["message"]
    assert [e for e in ch.events_for(api, ns, w, "SandboxLost") if e["type"] == "Warning"]
    wk = ch.wait_worker(custom, ns, w, lambda o: status(o).get("phase") == "Running"
                        and status(o)["instance"]["name"] != sname, 90, "Running on a new sandbox")
    assert sx.get_claim(custom, ns, sx.claim_name(w))["metadata"]["uid"] != cuid
    runtime.wait_mounted(ns, status(wk)["instance"]["name"])


def test_a_claim_is_never_dropped_because_the_cache_has_not_seen_its_sandbox(tb, api, core, custom):
    """The Sandbox cache stops following the API server after its first list (failpoint build):
    OpenKruise completes the claim, the cache never shows its Sandbox. The controller asks the
    API server, finds the Sandbox, and keeps the claim."""
    ns = make_namespace(core, "sbx-cache-lag")
    c = sx.sandbox_controller(tb, core, ns, {})
    c.stop()
    c.binary_path = ch.failpoint_binary()
    c.extra_env["WC_FAILPOINT"] = "freeze-cache-sandboxes"
    try:
        c.start(timeout=60)
        w = sandbox_worker(custom, ns)
        claim = sx.wait(lambda: (lambda cl: cl if (cl or {}).get("status", {}).get("phase") == "Completed" else None)(
            sx.get_claim(custom, ns, sx.claim_name(w))), 60, "claim Completed")
        mark = ch.audit_offset(tb)
        wk = ch.wait_worker(custom, ns, w, lambda o: "waiting for its Sandbox" in status(o).get("message", ""), 30,
                            "waiting for its Sandbox")
        assert status(wk)["phase"] == "Starting"
        time.sleep(6)
        assert sx.get_claim(custom, ns, sx.claim_name(w))["metadata"]["uid"] == claim["metadata"]["uid"]
        assert not [x for x in ch.audit_writes(tb, mark, namespace=ns) if x["user"] == c.username
                    and x["verb"] == "delete"], "deleted on the cache's word"
        assert len(sx.sandboxes_of(custom, ns, w)) == 1
    finally:
        c.close()
        drop_namespace(core, ns)


# ---- item 5: worker-deps are namespaced and owned ---------------------------------------------------

def _meta(s3, tb, key):
    h = sx.s3_head(s3, tb.WC_S3_BUCKET, key)
    return h and h["Metadata"], h and h["ETag"]


def test_worker_deps_are_namespaced_owned_and_never_shared(tb, api, core, custom, s3, namespace, ctl, runtime):
    ns = namespace
    a = sandbox_worker(custom, ns)
    wa = running(custom, ns, a)
    keys = sx.deps_keys(ns, a)
    assert keys["dir"].endswith(f"workers-deps/{ns}/{a}")
    etags = {}
    for k in ("env", "token", "data"):
        meta, etags[k] = _meta(s3, tb, keys[k])
        assert meta["hiclaw-owner-uid"] == wa["metadata"]["uid"] and meta["hiclaw-owner-namespace"] == ns, meta
        assert meta["hiclaw-owner-name"] == a
    env_meta, _ = _meta(s3, tb, keys["env"])
    assert len(env_meta["hiclaw-env-hash"]) == 16
    assert status(wa)["workerDepsPath"] == keys["dir"] + "/"

    # a second Worker with the same workerName in this namespace: a conflict, nothing written
    b = sandbox_worker(custom, ns, workerName=a)
    wb = ch.wait_condition(custom, ns, b, "Synced", "False", "WorkerDepsConflict", timeout=30)
    msg = ch.condition(wb, "Synced")["message"]
    assert f"{ns}/{a}" in msg and wa["metadata"]["uid"] in msg, msg
    time.sleep(2)
    assert sx.get_claim(custom, ns, sx.claim_name(b)) is None
    assert {k: _meta(s3, tb, keys[k])[1] for k in etags} == etags, "b wrote a's objects"
    ch.delete_worker(custom, ns, b)
    sx.wait(lambda: _gone(lambda: ch.get_worker(custom, ns, b)), 30, "b deleted")
    assert {k: _meta(s3, tb, keys[k])[1] for k in etags} == etags, "b's deletion touched a's objects"
    assert status(ch.get_worker(custom, ns, a))["phase"] == "Running"

    # an object another install owns (same bucket, prefix, namespace name): a conflict
    c = unique("hw")
    ck = sx.deps_keys(ns, c)
    s3.put_object(Bucket=tb.WC_S3_BUCKET, Key=ck["env"], Body=b"export X='other install'\n",
                  Metadata={"hiclaw-owner-uid": "uid-of-another-install", "hiclaw-owner-namespace": ns,
                            "hiclaw-owner-name": c})
    sandbox_worker(custom, ns, c)
    wc = ch.wait_condition(custom, ns, c, "Synced", "False", "WorkerDepsConflict", timeout=30)
    assert "uid-of-another-install" in ch.condition(wc, "Synced")["message"]
    time.sleep(2)
    assert sx.get_claim(custom, ns, sx.claim_name(c)) is None
    assert sx.s3_get(s3, tb.WC_S3_BUCKET, ck["env"]) == b"export X='other install'\n"
    ch.delete_worker(custom, ns, c)
    sx.wait(lambda: _gone(lambda: ch.get_worker(custom, ns, c)), 30, "c deleted (the finalizer is not held)")
    assert sx.s3_get(s3, tb.WC_S3_BUCKET, ck["env"]) == b"export X='other install'\n", "another install's object deleted"

    # an object with no owner (written by an older version) is adopted by the Worker whose key it is
    d = unique("hw")
    dk = sx.deps_keys(ns, d)
    s3.put_object(Bucket=tb.WC_S3_BUCKET, Key=dk["env"], Body=b"export OLD=1\n")
    wd = running(custom, ns, sandbox_worker(custom, ns, d))
    meta, _ = _meta(s3, tb, dk["env"])
    assert meta["hiclaw-owner-uid"] == wd["metadata"]["uid"], meta

    # the same workerName in another namespace: its own keys, its own bytes in its sandbox
    ns2 = make_namespace(core, "deps-ns2")
    c2 = sx.sandbox_controller(tb, core, ns2, {"HICLAW_WORKER_DEPS_PREFIX": sx.deps_prefix(ns)})  # same prefix
    try:
        twin = running(custom, ns2, sandbox_worker(custom, ns2, unique("tw"), workerName=a))
        k2 = f"{sx.deps_prefix(ns)}workers-deps/{ns2}/{a}"
        assert status(twin)["workerDepsPath"] == k2 + "/"
        meta2, _ = _meta(s3, tb, k2 + "/env/env")
        assert meta2["hiclaw-owner-uid"] == twin["metadata"]["uid"]
        assert {k: _meta(s3, tb, keys[k])[1] for k in etags} == etags, "the twin wrote a's objects"
        s_a, s_t = status(wa)["instance"]["name"], status(twin)["instance"]["name"]
        runtime.wait_mounted(ns2, s_t)
        assert runtime.snapshot(ns, s_a, "/mnt/hiclaw/env/env") == sx.s3_get(s3, tb.WC_S3_BUCKET, keys["env"])
        assert runtime.snapshot(ns2, s_t, "/mnt/hiclaw/env/env") == sx.s3_get(s3, tb.WC_S3_BUCKET, k2 + "/env/env")
        assert b"HICLAW_WORKER_CR_NAME='" + twin["metadata"]["name"].encode() in \
            runtime.snapshot(ns2, s_t, "/mnt/hiclaw/env/env")
    finally:
        c2.close()
        drop_namespace(core, ns2)


# ---- item 9: the env file, the token after a switch, a workerName change ------------------------------

def test_a_lost_or_altered_env_file_is_rewritten_in_place(tb, api, core, custom, s3, namespace, ctl, runtime):
    ns = namespace
    e = sandbox_worker(custom, ns)
    we = running(custom, ns, e)
    keys = sx.deps_keys(ns, e)
    good = sx.s3_get(s3, tb.WC_S3_BUCKET, keys["env"])
    sname, cuid = status(we)["instance"]["name"], sx.get_claim(custom, ns, sx.claim_name(e))["metadata"]["uid"]
    s3.delete_object(Bucket=tb.WC_S3_BUCKET, Key=keys["env"])
    poke(custom, ns, e)
    sx.wait(lambda: sx.s3_head(s3, tb.WC_S3_BUCKET, keys["env"]), 30, "env file written again")
    assert sx.s3_get(s3, tb.WC_S3_BUCKET, keys["env"]) == good
    assert runtime.file(ns, sname, "/mnt/hiclaw/env/env") == good, "the running sandbox reads it again"
    meta, _ = _meta(s3, tb, keys["env"])
    owner = {k: v for k, v in meta.items() if k.startswith("hiclaw-owner-")}  # the owner kept, the content not ours
    s3.put_object(Bucket=tb.WC_S3_BUCKET, Key=keys["env"], Body=b"export TAMPERED=1\n", Metadata=owner)
    poke(custom, ns, e)
    sx.wait(lambda: sx.s3_get(s3, tb.WC_S3_BUCKET, keys["env"]) == good, 30, "altered env file rewritten")
    # the sandbox and its claim were never touched for it
    assert [s["metadata"]["name"] for s in sx.sandboxes_of(custom, ns, e)] == [sname]
    assert sx.get_claim(custom, ns, sx.claim_name(e))["metadata"]["uid"] == cuid


def test_stopped_after_a_switch_removes_the_token_and_a_workername_change_moves_the_deps(tb, api, core, custom, s3,
                                                                                       namespace, ctl):
    ns = namespace
    e = sandbox_worker(custom, ns)
    running(custom, ns, e)
    keys = sx.deps_keys(ns, e)
    # sandbox -> pod, through Stopped: the sandbox's token goes with it; env and data stay
    ch.patch_worker(custom, ns, e, {"spec": {"state": "Stopped", "backendRuntime": "pod"}})
    ch.wait_phase(custom, ns, e, "Stopped", timeout=60)
    sx.wait(lambda: sx.s3_head(s3, tb.WC_S3_BUCKET, keys["token"]) is None, 30, "token deleted")
    assert sx.s3_head(s3, tb.WC_S3_BUCKET, keys["env"]) and sx.s3_head(s3, tb.WC_S3_BUCKET, keys["data"])
    ch.patch_worker(custom, ns, e, {"spec": {"state": "Running"}})
    wk = ch.wait_worker(custom, ns, e, lambda o: status(o).get("phase") == "Running"
                        and status(o).get("backendRuntime") == "pod", 60, "Running as a Pod")
    assert status(wk)["instance"]["kind"] == "Pod"

    # a workerName change: the sandbox is replaced, the old token, env file and data marker go
    f = sandbox_worker(custom, ns)
    wf = running(custom, ns, f)
    old = sx.deps_keys(ns, f)
    ch.patch_worker(custom, ns, f, {"spec": {"workerName": f + "-2"}})
    new = sx.deps_keys(ns, f + "-2")
    wf2 = ch.wait_worker(custom, ns, f, lambda o: status(o).get("phase") == "Running"
                         and status(o).get("workerDepsPath") == new["dir"] + "/", 90, "Running on the new deps")
    assert status(wf2)["instance"]["name"] != status(wf)["instance"]["name"]
    # (found by the chaos soak: a data marker left at an old path outlived the Worker)
    for k in ("token", "env", "data"):
        assert sx.s3_head(s3, tb.WC_S3_BUCKET, old[k]) is None, f"old {k} left at the previous path"
    for k in ("env", "token", "data"):
        assert sx.s3_head(s3, tb.WC_S3_BUCKET, new[k]) is not None


def test_a_blocked_switch_describes_the_sandbox_that_runs(tb, api, core, custom, namespace, ctl):
    ns = namespace
    w = sandbox_worker(custom, ns)
    wk = running(custom, ns, w)
    inst = status(wk)["instance"]
    ch.patch_worker(custom, ns, w, {"spec": {"backendRuntime": "pod", "state": "Sleeping"}})
    wk = ch.wait_condition(custom, ns, w, "Synced", "False", "BackendSwitchBlocked", timeout=30)
    time.sleep(2)
    wk = ch.get_worker(custom, ns, w)
    # the sandbox keeps running (nothing pauses or deletes it) and status says so
    assert status(wk)["phase"] == "Running" and status(wk)["instance"] == inst, status(wk)
    assert ch.condition(wk, "Ready")["status"] == "True"
    sb = sx.get_sandbox(custom, ns, inst["name"])
    assert not sb["spec"].get("paused") and not sb["metadata"].get("deletionTimestamp")
    assert ch.worker_pods(core, ns, w) == []


# ---- the chaos soak's orphan: a Sandbox made for a claim already deleted ----------------------------------

def _late_sandbox(custom, ns, like: dict, worker_uid: str) -> str:
    """A Sandbox as OpenKruise's claim controller makes one when the pool is empty (createOnNoStock):
    the pool's template, the claim's labels, no ownerReference — here for a Worker object that is
    gone. The soak saw the real one created 46 s after its claim (and Worker) were deleted."""
    pool = _pool(custom, ns)
    labels = {k: v for k, v in like["metadata"]["labels"].items()
              if k.startswith("hiclaw.io/") or k == "agents.kruise.io/claim-name"}
    labels["hiclaw.io/worker-uid"] = worker_uid
    name = unique("late")
    spec = {"template": pool["spec"]["template"]}
    if pool["spec"].get("runtimes"):
        spec["runtimes"] = pool["spec"]["runtimes"]
    custom.create_namespaced_custom_object(sx.KG, sx.KV, ns, sx.SANDBOXES, {
        "apiVersion": f"{sx.KG}/{sx.KV}", "kind": "Sandbox",
        "metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": spec})
    return name


def test_a_sandbox_left_for_a_deleted_worker_is_removed(tb, api, core, custom, namespace, ctl, runtime):
    ns = namespace
    w = sandbox_worker(custom, ns)
    wk = running(custom, ns, w)
    old_uid, sname = wk["metadata"]["uid"], status(wk)["instance"]["name"]
    like = sx.get_sandbox(custom, ns, sname)
    ch.delete_worker(custom, ns, w)
    sx.wait(lambda: _gone(lambda: ch.get_worker(custom, ns, w)), 60, "Worker gone")
    # (a) no Worker of that name: the late Sandbox goes, and the Pod OpenKruise gave it with it
    late = _late_sandbox(custom, ns, like, old_uid)
    sx.wait(lambda: sx.get_sandbox(custom, ns, late) is None, 30, "the late Sandbox deleted")
    assert "deleted a Sandbox of a Worker that no longer exists" in ctl.log_text()
    sx.wait(lambda: _gone(lambda: core.read_namespaced_pod(late, ns)), 60, "its Pod gone")
    # (b) a newer Worker of the same name runs (as a Pod): the late Sandbox of the old one goes,
    # the new Worker and its Pod untouched
    ch.create_worker(custom, ns, w, image=IMAGE)
    wk = running(custom, ns, w)
    pod_uid = ch.worker_pods(core, ns, w)[0].metadata.uid
    late = _late_sandbox(custom, ns, like, old_uid)
    sx.wait(lambda: sx.get_sandbox(custom, ns, late) is None, 30, "the old Worker's late Sandbox deleted")
    wk = ch.get_worker(custom, ns, w)
    assert status(wk)["phase"] == "Running"
    assert [p.metadata.uid for p in ch.worker_pods(core, ns, w)] == [pod_uid]
    ch.delete_worker(custom, ns, w)


# ---- item 6: the sandbox backend disabled with a sandbox Worker present ---------------------------------

def test_sandbox_backend_disabled_keeps_watching_and_never_doubles_or_orphans(tb, api, core, custom, s3):
    ns = make_namespace(core, "sbx-disabled")
    c = sx.sandbox_controller(tb, core, ns, {})
    name = c.name
    try:
        w = sandbox_worker(custom, ns)
        wk = running(custom, ns, w)
        sname = status(wk)["instance"]["name"]
        c.close()
        # the same controller, the sandbox backend off, under the RBAC render-rbac --no-sandbox prints
        off = ch.ControllerProcess(tb, core, ns, name, sandbox=False, env={
            "HICLAW_WORKER_DEPS_ENDPOINT": tb.WC_S3_ENDPOINT, "HICLAW_WORKER_DEPS_BUCKET": tb.WC_S3_BUCKET,
            "HICLAW_WORKER_DEPS_ACCESS_KEY_ID": tb.WC_S3_ACCESS_KEY,
            "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY": tb.WC_S3_SECRET_KEY, "HICLAW_WORKER_DEPS_CA_FILE": tb.WC_CA_FILE,
            "HICLAW_WORKER_DEPS_REGION": tb.WC_S3_REGION, "HICLAW_WORKER_DEPS_PREFIX": sx.deps_prefix(ns)})
        off.setup_identity()
        off.start()
        c = off
        assert "watching SandboxClaims and Sandboxes read-only" in off.log_text()
        mark = ch.audit_offset(tb)
        ch.patch_worker(custom, ns, w, {"spec": {"backendRuntime": "pod"}})
        wk = ch.wait_condition(custom, ns, w, "Synced", "False", "SandboxDisabled", timeout=30)
        assert sx.claim_name(w) in ch.condition(wk, "Synced")["message"]
        time.sleep(5)
        assert ch.worker_pods(core, ns, w) == [], "a Pod beside a running sandbox"
        assert status(ch.get_worker(custom, ns, w))["instance"]["name"] == sname
        ch.delete_worker(custom, ns, w)
        time.sleep(5)
        wk = ch.get_worker(custom, ns, w)
        assert ch.FINALIZER in wk["metadata"]["finalizers"], "the finalizer went while the sandbox runs"
        assert "SandboxClaim" in ch.condition(wk, "Synced")["message"]
        assert not [x for x in ch.audit_writes(tb, mark, namespace=ns) if x["user"] == off.username
                    and x["resource"] in ("sandboxclaims", "sandboxes")], "wrote to OpenKruise objects while disabled"
        # the operator removes the sandbox by hand: the Worker goes, its deps with it
        custom.delete_namespaced_custom_object(sx.KG, sx.KV, ns, sx.CLAIMS, sx.claim_name(w))
        custom.delete_namespaced_custom_object(sx.KG, sx.KV, ns, sx.SANDBOXES, sname)
        sx.wait(lambda: _gone(lambda: ch.get_worker(custom, ns, w)), 60, "Worker gone")
        assert sx.s3_list(s3, tb.WC_S3_BUCKET, sx.deps_keys(ns, w)["dir"] + "/") == []
    finally:
        c.close()
        drop_namespace(core, ns)


# ---- item 3: the managed SandboxSet, by the leader only -------------------------------------------------

def test_the_warm_pool_is_applied_by_the_leader_only(tb, api, core, custom):
    ns = make_namespace(core, "sbx-leader-pool")
    name = unique("ctl")
    a = ch.ControllerProcess(tb, core, ns, name, sandbox=True, env={"HICLAW_LEADER_ELECT": "true",
                                                                    "HICLAW_SANDBOX_PREWARM_SIZE": "1"})
    b = ch.ControllerProcess(tb, core, ns, name, sandbox=True, env={"HICLAW_LEADER_ELECT": "true",
                                                                    "HICLAW_SANDBOX_PREWARM_SIZE": "3"})
    try:
        a.setup_identity()
        a.start()
        a.wait_log("became leader", timeout=30)
        pool = sx.wait(lambda: (lambda p: p)(_pool(custom, ns)), 30, "the SandboxSet")
        assert pool["spec"]["replicas"] == 1
        rv = pool["metadata"]["resourceVersion"]
        b.token_path, b.token = a.token_path, a.token  # the same ServiceAccount: a second replica
        b.start(wait_synced=False)  # a follower syncs its caches only once it leads
        b.wait_log("waiting to become leader", timeout=30)
        time.sleep(6)
        pool = _pool(custom, ns)
        assert pool["spec"]["replicas"] == 1, "a follower applied the SandboxSet"
        assert [m for m in pool["metadata"]["managedFields"] if m.get("manager") == "worker-controller"]
        a.stop()  # releases the lease
        b.wait_log("became leader", timeout=30)
        sx.wait(lambda: _pool(custom, ns)["spec"]["replicas"] == 3, 30, "the new leader's SandboxSet")
        assert _pool(custom, ns)["metadata"]["resourceVersion"] != rv
    finally:
        b.close()
        a.close()
        drop_namespace(core, ns)


def _pool(custom, ns):
    try:
        return custom.get_namespaced_custom_object(sx.KG, sx.KV, ns, sx.SANDBOXSETS, "hiclaw-worker-pool")
    except ApiException as e:
        if e.status == 404:
            return None
        raise
