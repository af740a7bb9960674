"""Issue 20 — the agent-sandbox backend (spec.backendRuntime: agent-sandbox) end to end, through
the real kubernetes-sigs agent-sandbox controller (agents.x-k8s.io/v1beta1, started by the bed next
to OpenKruise's): real kube-apiserver, kube-controller-manager, kube-scheduler and kwok Nodes, the
controller under render-rbac RBAC. Nothing writes the agent-sandbox controller's status: Sandboxes
become Ready, suspend and resume because it runs them.

The Sandbox is created directly (a cold start); its spec.podTemplate is the pod backend's Pod spec,
so credentials stay secretKeyRefs. Its Pod is named like the Sandbox, controlled by it, and labelled
hiclaw.io/backend=agent-sandbox: never a pod-backend instance.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

import controller_harness as ch
import sandbox_support as sx
from conftest import unique

AG, AV, AP = "agents.x-k8s.io", "v1beta1", "sandboxes"
IMAGE = "registry.example/hiclaw/worker:asb-1"
IMAGE2 = "registry.example/hiclaw/worker:asb-2"


@pytest.fixture(scope="module")
def ctl(tb, core, namespace):
    # the OpenKruise backend on too (its own warm pool): the switch guard spans all three backends
    c = sx.sandbox_controller(tb, core, namespace, {"HICLAW_SANDBOX_POOL": "asb-pool",
                                                     "HICLAW_SANDBOX_CLAIM_TIMEOUT": "90s",
                                                     "HICLAW_SANDBOX_WAIT_READY_TIMEOUT": "45s"})
    yield c
    c.close()


def status(w):
    return w.get("status") or {}


def cond(w, t):
    return ch.condition(w, t) or {}


def asb_name(w):
    return f"hiclaw-worker-{w}"


def get_asb(custom, ns, name):
    try:
        return custom.get_namespaced_custom_object(AG, AV, ns, AP, name)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def asbs_of(custom, ns, w):
    return custom.list_namespaced_custom_object(AG, AV, ns, AP, label_selector=f"hiclaw.io/worker={w}")["items"]


def get_pod(core, ns, name):
    try:
        return core.read_namespaced_pod(name, ns)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def make_worker(custom, ns, name=None, **spec):
    name = name or unique("aw")
    spec.setdefault("backendRuntime", "agent-sandbox")
    spec.setdefault("image", IMAGE)
    labels = {ch.CONTROLLER_LABEL: ch.namespace_controller(ns)}
    body = {"apiVersion": "hiclaw.io/v1beta1", "kind": "Worker",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"model": "qwen-max", **spec}}
    custom.create_namespaced_custom_object(ch.GROUP, ch.VERSION, ns, ch.PLURAL, body)
    return name


def running_worker(custom, ns, **spec):
    w = make_worker(custom, ns, **spec)
    ch.wait_phase(custom, ns, w, "Running", timeout=60)
    return w


def pod_delete_requested_by(tb, mark, ns, name):
    """Who asked the API server to delete that Pod since ``mark``, whatever the answer: the
    controller deletes a Sandbox's Pod right after the Sandbox, so the garbage collector (which
    acts on the Sandbox's deletion too) sometimes gets there first and the controller's delete is
    answered 404 — it asked all the same, and it keeps its finalizer until the Pod is gone."""
    return {x["user"] for x in ch.audit_writes(tb, mark, "pods", ns) if x["verb"] == "delete" and x["name"] == name}


def worker_gone(custom, ns, w):
    try:
        ch.get_worker(custom, ns, w)
        return False
    except ApiException as e:
        return e.status == 404


# ---- 1. create → Running: the Sandbox's shape, its Pod, status from the Sandbox ---------------------

def test_create_running_sandbox_shape_and_status(tb, api, custom, core, namespace, ctl):
    ns, w = namespace, unique("aw")
    core.create_namespaced_secret(ns, client.V1Secret(metadata=client.V1ObjectMeta(name=f"hiclaw-creds-{w}"),
                                                      string_data={"WORKER_MATRIX_TOKEN": "m-" + w}))
    make_worker(custom, ns, w)
    wk = ch.wait_phase(custom, ns, w, "Running", timeout=60)
    wuid = wk["metadata"]["uid"]
    sbx = get_asb(custom, ns, asb_name(w))
    assert sbx is not None
    md = sbx["metadata"]
    # owned by the Worker (controller), the system labels, the spec hash
    owners = [r for r in md.get("ownerReferences") or [] if r.get("controller")]
    assert [(r["kind"], r["uid"]) for r in owners] == [("Worker", wuid)]
    assert md["labels"]["hiclaw.io/backend"] == "agent-sandbox"
    assert md["labels"]["hiclaw.io/worker"] == w
    assert md["labels"]["hiclaw.io/controller"] == ctl.name
    assert len(md["annotations"]["hiclaw.io/spec-hash"]) == 16
    # the template: the pod backend's Pod spec, labelled for this backend and the Worker object
    tpl = sbx["spec"]["podTemplate"]
    assert tpl["metadata"]["labels"]["hiclaw.io/backend"] == "agent-sandbox"
    assert tpl["metadata"]["labels"]["hiclaw.io/worker-uid"] == wuid
    spec = tpl["spec"]
    assert spec["serviceAccountName"] == asb_name(w) and spec["automountServiceAccountToken"] is False
    c = spec["containers"][0]
    assert c["name"] == "worker" and c["image"] == IMAGE
    env = {e["name"]: e for e in c["env"]}
    assert env["HICLAW_WORKER_MATRIX_TOKEN"]["valueFrom"]["secretKeyRef"] == \
        {"name": f"hiclaw-creds-{w}", "key": "WORKER_MATRIX_TOKEN", "optional": True}
    vol = spec["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]
    assert vol["audience"] == "hiclaw-controller" and vol["path"] == "token"
    assert sbx["spec"].get("operatingMode") == "Running"
    # its Pod: named like the Sandbox, controlled by it, never a pod-backend instance
    pod = get_pod(core, ns, asb_name(w))
    assert pod is not None
    assert [(r.kind, r.uid) for r in pod.metadata.owner_references if r.controller] == [("Sandbox", md["uid"])]
    assert pod.metadata.labels["hiclaw.io/backend"] == "agent-sandbox"
    assert pod.spec.service_account_name == asb_name(w)
    assert ch.worker_pods(core, ns, w) == []
    # status from the Sandbox: Running, its name and podIPs[0]
    sbx = get_asb(custom, ns, asb_name(w))
    st = status(wk)
    assert st["backendRuntime"] == "agent-sandbox"
    assert st["instance"]["kind"] == "Sandbox" and st["instance"]["name"] == asb_name(w)
    ready = [x for x in sbx["status"]["conditions"] if x["type"] == "Ready"][0]
    assert ready["status"] == "True"
    ch.wait_worker(custom, ns, w, lambda o: (status(o).get("instance") or {}).get("podIP") ==
                   (get_asb(custom, ns, asb_name(w))["status"].get("podIPs") or [None])[0], 20, "podIP from the Sandbox")
    assert cond(wk, "Ready")["status"] == "True" and cond(wk, "Synced")["status"] == "True"
    assert asb_name(w) in [s.metadata.name for s in core.list_namespaced_service_account(ns).items]


# ---- 2. Sleeping → Suspended, Running → Running --------------------------------------------------

def test_sleeping_suspends_and_running_resumes_the_same_sandbox(tb, api, custom, core, namespace, ctl):
    ns = namespace
    w = running_worker(custom, ns)
    sbx = get_asb(custom, ns, asb_name(w))
    pod1 = get_pod(core, ns, asb_name(w)).metadata.uid
    ch.patch_worker(custom, ns, w, {"spec": {"state": "Sleeping"}})
    wk = ch.wait_phase(custom, ns, w, "Sleeping", timeout=30)
    now = get_asb(custom, ns, asb_name(w))
    assert now["metadata"]["uid"] == sbx["metadata"]["uid"], "Sleeping must keep the Sandbox"
    assert now["spec"]["operatingMode"] == "Suspended"
    assert [x for x in now["status"]["conditions"] if x["type"] == "Suspended"][0]["status"] == "True"
    assert get_pod(core, ns, asb_name(w)) is None, "a suspended Sandbox has no Pod"
    assert cond(wk, "Ready")["status"] == "False"
    ch.patch_worker(custom, ns, w, {"spec": {"state": "Running"}})
    wk = ch.wait_phase(custom, ns, w, "Running", timeout=30)
    now = get_asb(custom, ns, asb_name(w))
    assert now["metadata"]["uid"] == sbx["metadata"]["uid"]
    assert now["spec"]["operatingMode"] == "Running"
    pod2 = get_pod(core, ns, asb_name(w))
    assert pod2 is not None and pod2.metadata.uid != pod1
    assert cond(wk, "Ready")["status"] == "True"
    reasons = {e["reason"] for e in ch.events_for(api, ns, w)}
    assert {"Suspended", "Resumed"} <= reasons


# ---- 3. a spec change recreates ------------------------------------------------------------------

def test_spec_change_recreates_sandbox_and_pod(tb, api, custom, core, namespace, ctl):
    ns = namespace
    w = running_worker(custom, ns)
    old = get_asb(custom, ns, asb_name(w))
    old_pod = get_pod(core, ns, asb_name(w)).metadata.uid
    ch.patch_worker(custom, ns, w, {"spec": {"image": IMAGE2}})

    def replaced():
        s = get_asb(custom, ns, asb_name(w))
        p = get_pod(core, ns, asb_name(w))
        return s and s["metadata"]["uid"] != old["metadata"]["uid"] and p and p.metadata.uid != old_pod and \
            p.spec.containers[0].image == IMAGE2
    sx.wait(replaced, 60, "a new Sandbox and Pod with the new image")
    wk = ch.wait_worker(custom, ns, w, lambda o: status(o).get("phase") == "Running"
                        and cond(o, "Ready").get("status") == "True", 60, "Running again")
    assert get_asb(custom, ns, asb_name(w))["spec"]["podTemplate"]["spec"]["containers"][0]["image"] == IMAGE2
    assert len(asbs_of(custom, ns, w)) == 1
    assert [e for e in ch.events_for(api, ns, w, "Recreating")]
    assert status(wk)["instance"]["name"] == asb_name(w)


# ---- 4. Stopped and deletion: the controller removes the Sandbox and its Pod ------------------------

def test_stopped_and_deletion_remove_sandbox_and_pod_without_the_gc(tb, api, custom, core, namespace, ctl):
    ns = namespace
    w = running_worker(custom, ns)
    mark = ch.audit_offset(tb)
    ch.patch_worker(custom, ns, w, {"spec": {"state": "Stopped"}})
    wk = ch.wait_phase(custom, ns, w, "Stopped", timeout=30)
    assert not status(wk).get("instance")
    assert asbs_of(custom, ns, w) == [] and get_pod(core, ns, asb_name(w)) is None
    assert set(ch.deleted_by(tb, mark, "sandboxes", ns, asb_name(w))) == {ctl.username}
    assert ctl.username in pod_delete_requested_by(tb, mark, ns, asb_name(w)), \
        "the controller must delete the Sandbox's Pod itself, not wait for the garbage collector"

    ch.patch_worker(custom, ns, w, {"spec": {"state": "Running"}})
    ch.wait_phase(custom, ns, w, "Running", timeout=60)
    mark = ch.audit_offset(tb)
    ch.delete_worker(custom, ns, w)
    sx.wait(lambda: worker_gone(custom, ns, w), 30, "Worker gone (finalizer removed)")
    assert asbs_of(custom, ns, w) == [] and get_pod(core, ns, asb_name(w)) is None
    assert set(ch.deleted_by(tb, mark, "sandboxes", ns, asb_name(w))) == {ctl.username}
    assert ctl.username in pod_delete_requested_by(tb, mark, ns, asb_name(w))
    assert asb_name(w) not in [s.metadata.name for s in core.list_namespaced_service_account(ns).items]


# ---- 5. hostile env bytes, and no secret in the Sandbox or its Pod --------------------------------

def test_hostile_env_and_secrets_only_as_references(tb, api, custom, core, namespace, ctl):
    ns, w = namespace, unique("aw")
    r = unique("x")
    hostile = {
        "E_SPACES": "  two  spaces  and\ttab ",
        "E_QUOTES": "it's \"quoted\" ''",
        "E_SUBST": f"$(touch /tmp/pwned-{r})",
        "E_BACKTICK": f"`touch /tmp/pwned-bt-{r}`",
        "E_NEWLINE": "line1\nline2\n",
        "E_UTF8": "héllo wörld — 日本語 🚀",
        "E_BACKSLASH": "back\\slash \\n",
        "E_DOLLAR": "$HOME ${PATH} $0 $$ $(VAR)",
        "E_EMPTY": "",
    }
    secrets = {"WORKER_MATRIX_TOKEN": f"mtx-{r}-SECRET", "WORKER_GATEWAY_KEY": f"gw-{r}-SECRET",
               "WORKER_MINIO_PASSWORD": f"pw-{r}-SECRET"}
    core.create_namespaced_secret(ns, client.V1Secret(metadata=client.V1ObjectMeta(name=f"hiclaw-creds-{w}"),
                                                      string_data=secrets))
    make_worker(custom, ns, w, env=hostile)
    ch.wait_phase(custom, ns, w, "Running", timeout=60)
    sbx = get_asb(custom, ns, asb_name(w))
    pod = api.sanitize_for_serialization(get_pod(core, ns, asb_name(w)))
    for where, spec in (("Sandbox", sbx["spec"]["podTemplate"]["spec"]), ("Pod", pod["spec"])):
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        for k, v in hostile.items():
            # the kubelet expands $(VAR) and turns $$ into $: every '$' doubled, the bytes exact
            assert env[k].get("value", "") == v.replace("$", "$$"), (where, k, env[k])
        for k in ("HICLAW_WORKER_MATRIX_TOKEN", "HICLAW_WORKER_GATEWAY_KEY", "HICLAW_FS_SECRET_KEY"):
            assert "value" not in env[k] and env[k]["valueFrom"]["secretKeyRef"]["name"] == f"hiclaw-creds-{w}", \
                (where, k, env[k])
    wk = ch.get_worker(custom, ns, w)
    time.sleep(1.0)  # Events and log lines of the reconcile land
    places = {"Sandbox": json.dumps(sbx), "Sandbox's Pod": json.dumps(pod), "Worker": json.dumps(wk),
              "events": ch.all_events_text(api, ns), "controller log": ctl.log_text()}
    for name, text in places.items():
        for k, v in secrets.items():
            assert v not in text, f"secret {k} leaked into the {name}"


# ---- 6. the switch guard across the three backends -------------------------------------------------

def test_switch_guard_across_pod_sandbox_and_agent_sandbox(tb, api, custom, core, namespace, ctl):
    ns = namespace
    w = running_worker(custom, ns)
    live = {"pod": {}, "sandbox": {}, "agent-sandbox": {}}
    both = []
    lock = threading.Lock()

    def track(kind, is_instance):
        def on(etype, obj):
            if (obj["metadata"].get("labels") or {}).get("hiclaw.io/worker") != w or not is_instance(obj):
                return
            with lock:
                if etype == "DELETED":
                    live[kind].pop(obj["metadata"]["uid"], None)
                else:
                    live[kind][obj["metadata"]["uid"]] = obj["metadata"]["name"]
                # an agent-sandbox Pod counts as the agent-sandbox instance (tracked with its Sandbox)
                if sum(1 for v in live.values() if v) > 1:
                    both.append(json.dumps(live))
        return on

    def pod_instance(obj):
        return (obj["metadata"].get("labels") or {}).get("hiclaw.io/backend", "pod") == "pod" and not any(
            r.get("controller") and r.get("kind") != "Worker" for r in obj["metadata"].get("ownerReferences") or [])

    with lock:
        for s in asbs_of(custom, ns, w):
            live["agent-sandbox"][s["metadata"]["uid"]] = s["metadata"]["name"]
    rp = sx.pod_recorder(api, core, ns, track("pod", pod_instance))
    rs = sx.custom_recorder(api, custom, ns, sx.SANDBOXES, track("sandbox", lambda o: True))
    rc = sx.custom_recorder(api, custom, ns, sx.CLAIMS, track("sandbox", lambda o: True))
    rv = custom.list_namespaced_custom_object(AG, AV, ns, AP)["metadata"]["resourceVersion"]
    ra = sx.Recorder(api, custom.list_namespaced_custom_object, {"group": AG, "version": AV, "namespace": ns,
                                                                  "plural": AP}, rv,
                     track("agent-sandbox", lambda o: True)).start()

    def blocked(to, frm):
        ch.patch_worker(custom, ns, w, {"spec": {"backendRuntime": to}})
        msg = f"spec.backendRuntime cannot change from {frm} to {to} until the Worker is Stopped"
        wk = ch.wait_worker(custom, ns, w, lambda o: cond(o, "Synced").get("reason") == "BackendSwitchBlocked"
                            and cond(o, "Synced").get("message") == msg, 20, msg)
        assert status(wk)["backendRuntime"] == frm and status(wk)["phase"] == "Running"

    def restart_as(to):
        ch.patch_worker(custom, ns, w, {"spec": {"state": "Stopped"}})
        ch.wait_phase(custom, ns, w, "Stopped", timeout=60)
        ch.patch_worker(custom, ns, w, {"spec": {"state": "Running"}})
        return ch.wait_worker(custom, ns, w, lambda o: status(o).get("phase") == "Running"
                              and status(o).get("backendRuntime") == to, 90, f"Running on {to}")

    try:
        blocked("pod", "agent-sandbox")
        blocked("sandbox", "agent-sandbox")
        time.sleep(2)
        assert ch.worker_pods(core, ns, w) == [] and sx.claims_of(custom, ns, w) == []
        wk = restart_as("sandbox")
        assert asbs_of(custom, ns, w) == [] and get_pod(core, ns, asb_name(w)) is None
        blocked("agent-sandbox", "sandbox")
        time.sleep(2)
        assert asbs_of(custom, ns, w) == []
        wk = restart_as("agent-sandbox")
        assert sx.claims_of(custom, ns, w) == [] and sx.sandboxes_of(custom, ns, w) == []
        ch.patch_worker(custom, ns, w, {"spec": {"backendRuntime": "pod", "state": "Stopped"}})
        ch.wait_phase(custom, ns, w, "Stopped", timeout=60)
        ch.patch_worker(custom, ns, w, {"spec": {"state": "Running"}})
        wk = ch.wait_worker(custom, ns, w, lambda o: status(o).get("phase") == "Running"
                            and status(o).get("backendRuntime") == "pod", 60, "Running on pod")
        assert status(wk)["instance"]["kind"] == "Pod" and len(ch.worker_pods(core, ns, w)) == 1
        blocked("agent-sandbox", "pod")
        time.sleep(2)
        assert asbs_of(custom, ns, w) == []
        wk = restart_as("agent-sandbox")
        assert ch.worker_pods(core, ns, w) == []
        assert status(wk)["instance"]["kind"] == "Sandbox"
    finally:
        for rec in (rp, rs, rc, ra):
            rec.stop()
    assert not both, f"instances of two backends of {w} existed at the same time: {both[:3]}"
    for rec in (rp, rs, rc, ra):
        assert not rec.errors, rec.errors


# ---- 7. deletion while the controller is down -----------------------------------------------------

def test_deletion_while_the_controller_is_down(tb, api, custom, core, namespace, ctl):
    ns = namespace
    w = running_worker(custom, ns)
    ctl.stop()
    try:
        ch.delete_worker(custom, ns, w)
        time.sleep(2)
        wk = ch.get_worker(custom, ns, w)  # the finalizer holds it
        assert wk["metadata"].get("deletionTimestamp")
        assert get_asb(custom, ns, asb_name(w)) is not None
        mark = ch.audit_offset(tb)
    finally:
        ctl.start(timeout=60)
    sx.wait(lambda: worker_gone(custom, ns, w), 40, "Worker gone after the controller came back")
    assert asbs_of(custom, ns, w) == [] and get_pod(core, ns, asb_name(w)) is None
    assert set(ch.deleted_by(tb, mark, "sandboxes", ns, asb_name(w))) == {ctl.username}
    assert ctl.username in pod_delete_requested_by(tb, mark, ns, asb_name(w))


# ---- 8. render-rbac and check: the agents.x-k8s.io rules follow the configuration ------------------

def _check(tb, ctl, extra_env=None):
    import subprocess
    env = ctl.process_env()
    env.update(extra_env or {})
    argv = [ch.binary(), "check", "--server", tb.WC_APISERVER_URL, "--token-file", ctl.token_path,
            "--ca-file", tb.WC_CA_FILE]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def test_render_rbac_and_check_cover_the_agent_sandbox_rules(tb, api, custom, core, namespace, ctl):
    full = ch.render_rbac(namespace, ctl.name, True)
    assert 'apiGroups: ["agents.x-k8s.io"]\n    resources: ["sandboxes"]\n' \
           '    verbs: ["get", "list", "watch", "create", "patch", "delete"]' in full
    import subprocess
    r = subprocess.run([ch.binary(), "render-rbac", "--namespace", namespace, "--controller-name", ctl.name,
                        "--no-agent-sandbox"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert 'apiGroups: ["agents.x-k8s.io"]\n    resources: ["sandboxes"]\n    verbs: ["get", "list", "watch"]\n' \
        in r.stdout
    # check, under the controller's own identity: the agent-sandbox API served (auto → on), its rules allowed
    res = _check(tb, ctl)
    assert res.returncode == 0, res.stdout + res.stderr
    for verb in ("get", "list", "watch", "create", "patch", "delete"):
        assert f"rbac {verb} sandboxes.agents.x-k8s.io" in res.stdout, res.stdout
    assert "agent-sandbox" in res.stdout and "on (HICLAW_AGENT_SANDBOX_ENABLED=auto" in res.stdout


# ---- 9. disabled: a Sandbox made before is observed, never touched ---------------------------------

def test_disabled_leaves_existing_sandbox_alone_and_makes_none(tb, api, custom, core, namespace, ctl):
    ns = namespace
    w = running_worker(custom, ns)
    sbx_uid = get_asb(custom, ns, asb_name(w))["metadata"]["uid"]
    pod_uid = get_pod(core, ns, asb_name(w)).metadata.uid
    ctl.stop()
    import subprocess
    r = subprocess.run([ch.binary(), "render-rbac", "--namespace", ns, "--controller-name", ctl.name,
                        "--no-agent-sandbox"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    ch.kubectl_apply(tb, r.stdout)  # agents.x-k8s.io sandboxes: get, list, watch only
    ctl.extra_env["HICLAW_AGENT_SANDBOX_ENABLED"] = "false"
    try:
        mark = ch.audit_offset(tb)
        ctl.start(timeout=60)
        ch.patch_worker(custom, ns, w, {"spec": {"state": "Stopped"}})
        wk = ch.wait_condition(custom, ns, w, "Synced", "False", "AgentSandboxDisabled", timeout=30)
        assert "HICLAW_AGENT_SANDBOX_ENABLED=false" in cond(wk, "Synced")["message"]
        w2 = make_worker(custom, ns)
        wk2 = ch.wait_condition(custom, ns, w2, "Synced", "False", "AgentSandboxDisabled", timeout=30)
        assert "agent-sandbox backend is disabled" in cond(wk2, "Synced")["message"]
        time.sleep(3)
        assert get_asb(custom, ns, asb_name(w))["metadata"]["uid"] == sbx_uid
        assert get_pod(core, ns, asb_name(w)).metadata.uid == pod_uid
        assert asbs_of(custom, ns, w2) == [] and ch.worker_pods(core, ns, w2) == []
        assert ch.worker_pods(core, ns, w) == []
        writes = [x for x in ch.audit_writes(tb, mark, namespace=ns) if x["user"] == ctl.username
                  and x["resource"] in ("sandboxes", "pods")]
        assert writes == [], writes
    finally:
        ctl.stop()
        ctl.extra_env.pop("HICLAW_AGENT_SANDBOX_ENABLED", None)
        ch.kubectl_apply(tb, ch.render_rbac(ns, ctl.name, True))
        ctl.start(timeout=60)
    # enabled again: the Stopped Worker's Sandbox and Pod go, the other one runs
    ch.wait_phase(custom, ns, w, "Stopped", timeout=30)
    assert asbs_of(custom, ns, w) == [] and get_pod(core, ns, asb_name(w)) is None
    ch.wait_phase(custom, ns, w2, "Running", timeout=60)


# ---- 10. status from reality: a crash loop, a finished Sandbox ---------------------------------------

def test_crash_loop_is_failed_and_a_finished_sandbox_is_replaced(tb, api, custom, core, namespace, ctl):
    import bed
    ns = namespace
    w = running_worker(custom, ns)
    sbx_uid = get_asb(custom, ns, asb_name(w))["metadata"]["uid"]
    # kwok puts the Pod in CrashLoopBackOff; agent-sandbox only says "Pod is Running but not Ready"
    bed.kwok_state(core, ns, asb_name(w), "crashloop")
    wk = ch.wait_worker(custom, ns, w, lambda o: status(o).get("phase") == "Failed"
                        and cond(o, "Ready").get("reason") == "CrashLoopBackOff", 30, "Failed: CrashLoopBackOff")
    assert cond(wk, "Ready")["message"].startswith("CrashLoopBackOff: back-off")  # the kubelet's, via kwok
    assert get_asb(custom, ns, asb_name(w))["metadata"]["uid"] == sbx_uid  # left as it is
    # the Pod fails: agent-sandbox marks the Sandbox Finished; it is replaced after the backoff
    bed.kwok_state(core, ns, asb_name(w), "failed")
    wk = ch.wait_worker(custom, ns, w, lambda o: cond(o, "Ready").get("reason") == "SandboxFinished", 30,
                        "Failed: SandboxFinished")
    assert status(wk)["phase"] == "Failed"
    sx.wait(lambda: [e for e in ch.events_for(api, ns, w, "SandboxFinished") if e["type"] == "Warning"], 10,
            "Warning Event SandboxFinished")
    wk = ch.wait_worker(custom, ns, w, lambda o: status(o).get("phase") == "Running"
                        and cond(o, "Ready").get("status") == "True", 60, "Running again on a new Sandbox")
    now = get_asb(custom, ns, asb_name(w))
    assert now["metadata"]["uid"] != sbx_uid
    assert len(asbs_of(custom, ns, w)) == 1


# ---- 11. the CRD: agent-sandbox in spec and status, beside pod and sandbox ---------------------------

def test_crd_accepts_agent_sandbox_in_spec_and_status(tb, api, custom, core, namespace, ctl):
    ns, w = namespace, unique("crd")
    body = {"apiVersion": "hiclaw.io/v1beta1", "kind": "Worker",
            "metadata": {"name": w, "labels": {ch.CONTROLLER_LABEL: "nobody"}},  # no controller acts on it
            "spec": {"model": "m", "backendRuntime": "agent-sandbox"}}
    custom.create_namespaced_custom_object(ch.GROUP, ch.VERSION, ns, ch.PLURAL, body)
    status_ = {"phase": "Running", "backendRuntime": "agent-sandbox",
               "instance": {"kind": "Sandbox", "name": f"hiclaw-worker-{w}", "podIP": "127.0.0.1"}}
    out = custom.patch_namespaced_custom_object_status(ch.GROUP, ch.VERSION, ns, ch.PLURAL, w, {"status": status_})
    assert out["spec"]["backendRuntime"] == "agent-sandbox" and out["status"]["backendRuntime"] == "agent-sandbox"
    bad = dict(body, metadata={"name": w + "-bad"}, spec={"model": "m", "backendRuntime": "agent_sandbox"})
    with pytest.raises(ApiException) as e:
        custom.create_namespaced_custom_object(ch.GROUP, ch.VERSION, ns, ch.PLURAL, bad)
    assert e.value.status == 422 and "agent-sandbox" in e.value.body  # the enum names the allowed values
    custom.delete_namespaced_custom_object(ch.GROUP, ch.VERSION, ns, ch.PLURAL, w)
