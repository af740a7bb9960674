"""Issue 5: the Worker reconciler with the pod backend, `run` and `render-rbac`, end to end.

One controller per module, started under the ServiceAccount + Role that `render-rbac
--no-sandbox` prints (never the admin identity), watching this module's namespace. Pods are
scheduled by kube-scheduler onto kwok Nodes, which run them; a test holds a Pod (bed.HOLD) or
drives it into a failure through kwok (bed.kwok_state). Test numbers refer to issue 5's "Done
when" list.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import subprocess
import time

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

import bed
import controller_harness as h

CONTROLLER_ENV = {
    # pass-throughs and endpoints (SPEC 6); HICLAW_STORAGE_PREFIX and HICLAW_MATRIX_DEBUG are
    # set empty on purpose: empty values must be omitted from the Pod.
    "HICLAW_CONTROLLER_URL": "http://hiclaw-controller.e2e.svc:8090",
    "HICLAW_MATRIX_URL": "http://matrix.e2e.svc:6167",
    "HICLAW_MATRIX_DOMAIN": "matrix.e2e.test",
    "HICLAW_AI_GATEWAY_URL": "http://aigw.e2e.svc:8080",
    "HICLAW_FS_ENDPOINT": "http://minio.e2e.svc:9000",
    "HICLAW_FS_BUCKET": "hiclaw-e2e",
    "HICLAW_STORAGE_PREFIX": "",
    "HICLAW_REGION": "cn-e2e-1",
    "HICLAW_YOLO": "1",
    "HICLAW_MATRIX_DEBUG": "",
    "HICLAW_CONCURRENCY": "4",
}


@pytest.fixture(scope="module")
def ctl(tb, core, namespace):
    name = f"ctl-{h.unique_suffix()}"
    with h.controller_for(tb, core, namespace, name, sandbox=False, env=CONTROLLER_ENV) as c:
        yield c
        # Whatever ran under the rendered Role never hit a 403 (issue 5, test 13).
        assert "403" not in "".join(l for l in c.log_text().splitlines() if "forbidden" in l.lower()), c.log_tail()


def _expected_system_env(worker_name: str, cr_name: str) -> dict:
    return {
        "HICLAW_WORKER_NAME": worker_name,
        "HICLAW_WORKER_CR_NAME": cr_name,
        "HICLAW_RUNTIME": "k8s",
        "HICLAW_CONTROLLER_URL": CONTROLLER_ENV["HICLAW_CONTROLLER_URL"],
        "HICLAW_MATRIX_URL": CONTROLLER_ENV["HICLAW_MATRIX_URL"],
        "HICLAW_MATRIX_DOMAIN": CONTROLLER_ENV["HICLAW_MATRIX_DOMAIN"],
        "HICLAW_AI_GATEWAY_URL": CONTROLLER_ENV["HICLAW_AI_GATEWAY_URL"],
        "HICLAW_FS_ENDPOINT": CONTROLLER_ENV["HICLAW_FS_ENDPOINT"],
        "HICLAW_FS_BUCKET": CONTROLLER_ENV["HICLAW_FS_BUCKET"],
        "HICLAW_FS_ACCESS_KEY": worker_name,
        "HICLAW_AUTH_TOKEN_FILE": "/var/run/secrets/hiclaw/token",
        "HICLAW_CONSOLE_PORT": "8088",
        "HOME": f"/root/hiclaw-fs/agents/{worker_name}",
        "OPENCLAW_DISABLE_BONJOUR": "1",
        "OPENCLAW_MDNS_HOSTNAME": f"hiclaw-w-{worker_name}",
        "HICLAW_REGION": "cn-e2e-1",
        "HICLAW_YOLO": "1",
    }


SECRET_ENV = {"HICLAW_WORKER_MATRIX_TOKEN": "WORKER_MATRIX_TOKEN", "HICLAW_WORKER_GATEWAY_KEY": "WORKER_GATEWAY_KEY",
              "HICLAW_FS_SECRET_KEY": "WORKER_MINIO_PASSWORD"}


def _check_owner(obj_md: dict, worker: dict) -> None:
    refs = obj_md.get("ownerReferences") or []
    assert len(refs) == 1, refs
    r = refs[0]
    assert (r["apiVersion"], r["kind"], r["name"], r["uid"]) == \
        ("hiclaw.io/v1beta1", "Worker", worker["metadata"]["name"], worker["metadata"]["uid"])
    assert r.get("controller") is True and r.get("blockOwnerDeletion") is True, r


# --------------------------------------------------------------------------------------------
# 1. shape of the ServiceAccount and the Pod; status from what kwok reports
# --------------------------------------------------------------------------------------------
def test_pod_shape_and_status(ctl, tb, api, core, custom, namespace):
    ns, name = namespace, h.unique_name("alpha")
    w = h.create_worker(custom, ns, name, meta_labels={"team": "t1", "app": "user-app", "tier": "meta"},
                        labels={"tier": "gold", "hiclaw.io/worker": "spoofed", "owner": "qa", **bed.HOLD},
                        env={"MY_SETTING": "on", "EMPTY_OK": ""})
    pod = h.wait_pod(core, ns, name, timeout=20, what="created")
    p = api.sanitize_for_serialization(pod)
    w = h.get_worker(custom, ns, name)
    pn = f"hiclaw-worker-{name}"

    # ServiceAccount
    sa = api.sanitize_for_serialization(core.read_namespaced_service_account(pn, ns))
    assert sa["automountServiceAccountToken"] is False
    assert sa["metadata"]["labels"]["hiclaw.io/worker"] == name
    assert sa["metadata"]["labels"]["hiclaw.io/controller"] == ctl.name
    assert sa["metadata"]["labels"]["app"] == "hiclaw-worker"
    _check_owner(sa["metadata"], w)

    # Pod metadata
    md = p["metadata"]
    assert md["name"] == pn
    assert md["labels"] == {
        "app": "hiclaw-worker", "hiclaw.io/worker": name, "hiclaw.io/controller": ctl.name,
        "hiclaw.io/runtime": "openclaw", "hiclaw.io/backend": "pod",
        "team": "t1", "tier": "gold", "owner": "qa", h.CONTROLLER_LABEL: ctl.name, **bed.HOLD,
    }, md["labels"]
    spec_hash = md["annotations"]["hiclaw.io/spec-hash"]
    assert spec_hash and len(spec_hash) >= 8
    _check_owner(md, w)

    # Pod spec
    s = p["spec"]
    assert s["serviceAccountName"] == pn
    assert s["automountServiceAccountToken"] is False
    assert s["restartPolicy"] == "Always"
    assert [c["name"] for c in s["containers"]] == ["worker"]
    c = s["containers"][0]
    assert c["image"] == "hiclaw/worker-openclaw:latest"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["workingDir"] == f"/root/hiclaw-fs/agents/{name}"
    assert not c.get("command") and not c.get("args")
    env = h.env_map(p)
    # the API server drops `value: ""` when serializing: an absent value is the empty string
    plain = {k: e.get("value", "") for k, e in env.items() if "valueFrom" not in e}
    want = _expected_system_env(name, name)
    want.update({"MY_SETTING": "on", "EMPTY_OK": ""})
    assert plain == want, json.dumps({"extra": sorted(set(plain) - set(want)), "missing": sorted(set(want) - set(plain)),
                                      "diff": {k: (plain.get(k), want.get(k)) for k in want if plain.get(k) != want.get(k)}})
    for k in ("HICLAW_STORAGE_PREFIX", "HICLAW_MATRIX_DEBUG"):
        assert k not in env, f"empty setting {k} must be omitted"
    # no Secret exists: references, if any, are optional secretKeyRefs
    for k, e in env.items():
        if "valueFrom" in e:
            assert k in SECRET_ENV, k
            assert e["valueFrom"]["secretKeyRef"] == {"name": f"hiclaw-creds-{name}", "key": SECRET_ENV[k],
                                                      "optional": True}
    assert c["resources"] == {"limits": {"cpu": "1", "memory": "2Gi"}, "requests": {"cpu": "100m", "memory": "256Mi"}}
    assert c["volumeMounts"] == [{"name": "hiclaw-token", "mountPath": "/var/run/secrets/hiclaw", "readOnly": True}]
    vols = s["volumes"]
    assert len(vols) == 1 and vols[0]["name"] == "hiclaw-token"
    assert vols[0]["projected"]["sources"] == [{"serviceAccountToken": {"audience": "hiclaw-controller",
                                                                        "expirationSeconds": 3600, "path": "token"}}]

    # status from what kwok reports: held Pending (scheduled) → Starting
    pod = h.wait_pod(core, ns, name, lambda p: p is not None and p.spec.node_name, what="scheduled")
    assert pod.status.phase == "Pending"
    w = h.wait_phase(custom, ns, name, "Starting")
    assert h.condition(w, "Ready")["status"] == "False"
    bed.kwok_state(core, ns, pn, "notready")  # Running, not ready: still Starting
    h.wait_pod(core, ns, name, lambda p: p.status.phase == "Running", what="Running, not ready")
    time.sleep(0.5)
    assert h.get_worker(custom, ns, name)["status"]["phase"] == "Starting"
    bed.kwok_state(core, ns, pn, "ready")
    w = h.wait_phase(custom, ns, name, "Running")
    st = w["status"]
    ip = h.get_pod(core, ns, name).status.pod_ip
    assert bed.pod_ip_in_bed_range(tb, ip), ip
    assert h.condition(w, "Ready")["status"] == "True"
    assert h.condition(w, "Synced")["status"] == "True"
    assert st["instance"] == {"kind": "Pod", "name": pn, "podIP": ip}, st["instance"]
    assert st["backendRuntime"] == "pod"
    assert st["observedGeneration"] == w["metadata"]["generation"]
    for cnd in st["conditions"]:
        assert set(cnd) >= {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}, cnd

    bed.kwok_state(core, ns, pn, "crashloop")
    w = h.wait_phase(custom, ns, name, "Failed")
    msg = w["status"]["message"]
    assert "CrashLoopBackOff" in msg and "restarting failed container=worker" in msg and pn in msg, w["status"]
    assert h.condition(w, "Ready")["status"] == "False"
    # the crashing Pod is not replaced (its kubelet restarts the container)
    assert h.get_pod(core, ns, name).metadata.uid == pod.metadata.uid


def test_pod_shape_copaw_with_resources_and_image(ctl, api, core, custom, namespace):
    ns, name = namespace, h.unique_name("copaw")
    h.create_worker(custom, ns, name, runtime="copaw", workerName="agent-" + name, image="registry.e2e/copaw:1.2.3",
                    resources={"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "3Gi"}})
    p = api.sanitize_for_serialization(h.wait_pod(core, ns, name))
    c = p["spec"]["containers"][0]
    assert c["image"] == "registry.e2e/copaw:1.2.3"
    assert c["workingDir"] == "/root/.copaw-worker"
    assert c["resources"] == {"limits": {"cpu": "2", "memory": "3Gi"}, "requests": {"cpu": "250m", "memory": "512Mi"}}
    assert p["metadata"]["labels"]["hiclaw.io/runtime"] == "copaw"
    env = {k: e.get("value") for k, e in h.env_map(p).items() if "valueFrom" not in e}
    assert env == _expected_system_env("agent-" + name, name)


# --------------------------------------------------------------------------------------------
# 2. Sleeping / Running / Stopped
# --------------------------------------------------------------------------------------------
def test_sleep_wake_stop(ctl, core, custom, namespace):
    ns, name = namespace, h.unique_name("sleepy")
    pn = f"hiclaw-worker-{name}"
    h.create_worker(custom, ns, name)
    pod1 = h.wait_pod(core, ns, name)
    h.wait_phase(custom, ns, name, "Running")
    sa_uid = core.read_namespaced_service_account(pn, ns).metadata.uid

    h.patch_worker(custom, ns, name, {"spec": {"state": "Sleeping"}})
    h.wait_pod(core, ns, name, lambda p: p is None, what="deleted")
    w = h.wait_phase(custom, ns, name, "Sleeping")
    assert h.condition(w, "Ready")["status"] == "False"
    assert not w["status"].get("instance"), w["status"]
    assert core.read_namespaced_service_account(pn, ns).metadata.uid == sa_uid, "SA must be kept while Sleeping"

    h.patch_worker(custom, ns, name, {"spec": {"state": "Running"}})
    pod2 = h.wait_pod(core, ns, name)
    assert pod2.metadata.uid != pod1.metadata.uid
    h.wait_phase(custom, ns, name, "Running")

    h.patch_worker(custom, ns, name, {"spec": {"state": "Stopped"}})
    h.wait_pod(core, ns, name, lambda p: p is None, what="deleted")
    w = h.wait_phase(custom, ns, name, "Stopped")
    assert h.condition(w, "Synced")["status"] == "True"
    time.sleep(1.0)
    assert h.get_pod(core, ns, name) is None, "no Pod may come back while Stopped"


# --------------------------------------------------------------------------------------------
# 3. what recreates the Pod and what does not
# --------------------------------------------------------------------------------------------
def _wait_observed(custom, ns, name, timeout=15):
    return h.wait_worker(custom, ns, name, lambda w: (w.get("status") or {}).get("observedGeneration")
                         == w["metadata"]["generation"], timeout, "observedGeneration == generation")


def test_spec_changes_recreate_or_not(ctl, core, custom, namespace):
    ns, name = namespace, h.unique_name("hashy")
    pn = f"hiclaw-worker-{name}"
    h.create_worker(custom, ns, name, env={"A": "1"}, soul="be kind")
    p0 = h.wait_pod(core, ns, name)
    h.wait_phase(custom, ns, name, "Running")

    def recreated_after(patch, old):
        h.patch_worker(custom, ns, name, patch)
        new = h.wait_pod(core, ns, name, lambda p: p is not None and p.metadata.uid != old.metadata.uid
                         and p.metadata.deletion_timestamp is None, what="recreated")
        assert new.metadata.annotations["hiclaw.io/spec-hash"] != old.metadata.annotations["hiclaw.io/spec-hash"]
        h.wait_phase(custom, ns, name, "Running")
        return h.get_pod(core, ns, name)

    p1 = recreated_after({"spec": {"env": {"A": "2"}}}, p0)
    assert {e.name: e.value for e in p1.spec.containers[0].env}["A"] == "2"
    p2 = recreated_after({"spec": {"image": "registry.e2e/openclaw:9.9"}}, p1)
    assert p2.spec.containers[0].image == "registry.e2e/openclaw:9.9"

    for patch in ({"spec": {"model": "claude-sonnet-4-6"}}, {"spec": {"soul": "be very kind"}},
                  {"spec": {"skills": ["search"]}}):
        before = h.get_pod(core, ns, name)
        h.patch_worker(custom, ns, name, patch)
        _wait_observed(custom, ns, name)
        time.sleep(0.5)
        after = h.get_pod(core, ns, name)
        assert after is not None and after.metadata.uid == before.metadata.uid, patch
        assert after.metadata.resource_version == before.metadata.resource_version, f"Pod touched by {patch}"
    assert h.get_worker(custom, ns, name)["status"]["phase"] == "Running"


# --------------------------------------------------------------------------------------------
# 4. credentials: secretKeyRefs only; never a value anywhere; rotation recreates
# --------------------------------------------------------------------------------------------
def _creds(core, ns, name, vals):
    body = client.V1Secret(metadata=client.V1ObjectMeta(name=f"hiclaw-creds-{name}"), string_data=vals)
    try:
        core.create_namespaced_secret(ns, body)
    except ApiException as e:
        if e.status != 409:
            raise
        core.patch_namespaced_secret(f"hiclaw-creds-{name}", ns, {"stringData": vals})


def _assert_nowhere(api, core, custom, ctl, ns, name, values):
    pod = api.sanitize_for_serialization(h.get_pod(core, ns, name))
    texts = {
        "pod": json.dumps(pod),
        "events": h.all_events_text(api, ns),
        "worker": json.dumps(h.get_worker(custom, ns, name)),
        "controller log": ctl.log_text(),
    }
    assert ctl.token not in texts["controller log"], "the controller's own token reached its log"
    for where, t in texts.items():
        for v in values:
            assert v not in t, f"secret value leaked into the {where}"
            assert base64.b64encode(v.encode()).decode() not in t, f"base64 secret value leaked into the {where}"


def test_credentials_are_secret_refs_and_never_leak(ctl, api, core, custom, namespace):
    ns, name = namespace, h.unique_name("creds")
    pn = f"hiclaw-worker-{name}"
    vals = {k: f"e2e-{k.lower()}-{secrets.token_hex(12)}" for k in SECRET_ENV.values()}
    _creds(core, ns, name, vals)
    h.create_worker(custom, ns, name)
    p0 = h.wait_pod(core, ns, name)
    env = h.env_map(api.sanitize_for_serialization(p0))
    for envname, key in SECRET_ENV.items():
        assert env[envname] == {"name": envname, "valueFrom": {"secretKeyRef": {
            "name": f"hiclaw-creds-{name}", "key": key, "optional": True}}}, env[envname]
    h.wait_phase(custom, ns, name, "Running")
    _assert_nowhere(api, core, custom, ctl, ns, name, vals.values())

    # rotation changes the spec hash -> the Pod is recreated (SPEC 3.6). The controller has
    # only `get` on Secrets (no watch): the next reconcile of the Worker must notice it; an
    # unrelated metadata change on the Worker is that reconcile here. (Noticing a rotation
    # with no other event is test_secret_rotation_noticed_without_other_events.)
    new = dict(vals, WORKER_GATEWAY_KEY=f"e2e-rotated-{secrets.token_hex(12)}")
    _creds(core, ns, name, {"WORKER_GATEWAY_KEY": new["WORKER_GATEWAY_KEY"]})
    h.patch_worker(custom, ns, name, {"metadata": {"annotations": {"e2e/poke": "1"}}})
    p1 = h.wait_pod(core, ns, name, lambda p: p is not None and p.metadata.uid != p0.metadata.uid
                    and p.metadata.deletion_timestamp is None, timeout=20, what="recreated after rotation")
    assert p1.metadata.annotations["hiclaw.io/spec-hash"] != p0.metadata.annotations["hiclaw.io/spec-hash"]
    h.wait_phase(custom, ns, name, "Running")
    _assert_nowhere(api, core, custom, ctl, ns, name, list(vals.values()) + [new["WORKER_GATEWAY_KEY"]])


@pytest.mark.xfail(strict=True, reason="controller bug (issue-5 report): Secret rotation is only noticed when "
                   "something else reconciles the Worker — no Secret watch, no periodic resync")
def test_secret_rotation_noticed_without_other_events(ctl, api, core, custom, namespace):
    ns, name = namespace, h.unique_name("rotate")
    pn = f"hiclaw-worker-{name}"
    _creds(core, ns, name, {"WORKER_MATRIX_TOKEN": f"e2e-{secrets.token_hex(8)}"})
    h.create_worker(custom, ns, name)
    p0 = h.wait_pod(core, ns, name)
    h.wait_phase(custom, ns, name, "Running")
    _creds(core, ns, name, {"WORKER_MATRIX_TOKEN": f"e2e-{secrets.token_hex(8)}"})
    h.wait_pod(core, ns, name, lambda p: p is not None and p.metadata.uid != p0.metadata.uid, timeout=10,
               what="recreated after rotation alone")


# --------------------------------------------------------------------------------------------
# 5. reserved spec.env keys
# --------------------------------------------------------------------------------------------
def test_reserved_env_ignored_with_warning(ctl, api, core, custom, namespace):
    ns, name = namespace, h.unique_name("reserved")
    h.create_worker(custom, ns, name, env={"HICLAW_WORKER_NAME": "impostor", "HOME": "/tmp/evil", "USER_OK": "yes"})
    p = api.sanitize_for_serialization(h.wait_pod(core, ns, name))
    env = {k: e.get("value") for k, e in h.env_map(p).items() if "valueFrom" not in e}
    assert env["HICLAW_WORKER_NAME"] == name
    assert env["HOME"] == f"/root/hiclaw-fs/agents/{name}"
    assert env["USER_OK"] == "yes"
    names = [e["name"] for e in p["spec"]["containers"][0]["env"]]
    assert len(names) == len(set(names)), f"duplicate env names: {names}"
    evs = h.wait_for_value(lambda: h.events_for(api, ns, name, "ReservedEnvIgnored"), 10, "ReservedEnvIgnored Event")
    assert len(evs) == 1, evs
    e = evs[0]
    assert e["type"] == "Warning"
    assert "HICLAW_WORKER_NAME" in e["note"] and "HOME" in e["note"] and "USER_OK" not in e["note"], e["note"]


# --------------------------------------------------------------------------------------------
# 6. fields owned by other HiClaw components survive every status write
# --------------------------------------------------------------------------------------------
def test_foreign_status_fields_survive(ctl, core, custom, namespace):
    ns, name = namespace, h.unique_name("foreign")
    pn = f"hiclaw-worker-{name}"
    h.create_worker(custom, ns, name, labels=bed.HOLD)
    h.wait_pod(core, ns, name)
    h.wait_phase(custom, ns, name, "Starting")
    foreign = {"matrixUserID": f"@{name}:matrix.e2e.test", "roomID": "!r00m:matrix.e2e.test",
               "lastHeartbeat": "2026-07-04T08:33:01Z",
               "exposedPorts": [{"port": 8080, "domain": f"{name}.e2e.test"}]}
    h.patch_worker_status(custom, ns, name, foreign)

    def check(w):
        for k, v in foreign.items():
            assert w["status"].get(k) == v, (k, w["status"].get(k))

    bed.kwok_state(core, ns, pn, "ready")
    check(h.wait_phase(custom, ns, name, "Running"))
    bed.kwok_state(core, ns, pn, "crashloop")
    check(h.wait_phase(custom, ns, name, "Failed"))
    h.patch_worker(custom, ns, name, {"spec": {"state": "Sleeping"}})
    check(h.wait_phase(custom, ns, name, "Sleeping"))
    h.patch_worker(custom, ns, name, {"spec": {"state": "Running", "env": {"X": "y"}}})
    h.wait_pod(core, ns, name)
    check(h.wait_phase(custom, ns, name, "Starting"))
    bed.kwok_state(core, ns, pn, "ready")
    check(h.wait_phase(custom, ns, name, "Running"))
    h.patch_worker(custom, ns, name, {"spec": {"state": "Stopped"}})
    check(h.wait_phase(custom, ns, name, "Stopped"))


# --------------------------------------------------------------------------------------------
# 8. deletion: the controller removes what it made (not the garbage collector), then the finalizer
# --------------------------------------------------------------------------------------------
def test_delete_removes_pod_sa_and_finalizer(ctl, tb, core, custom, namespace):
    ns, name = namespace, h.unique_name("doomed")
    pn = f"hiclaw-worker-{name}"
    h.create_worker(custom, ns, name)
    h.wait_pod(core, ns, name)
    w = h.wait_phase(custom, ns, name, "Running")
    assert h.FINALIZER in w["metadata"]["finalizers"]
    mark = h.audit_offset(tb)
    h.delete_worker(custom, ns, name)
    deadline = time.monotonic() + 20
    gone = False
    while time.monotonic() < deadline and not gone:
        try:
            h.get_worker(custom, ns, name)
            time.sleep(0.1)
        except ApiException as e:
            assert e.status == 404
            gone = True
    assert gone, "Worker not removed (finalizer kept)"
    assert h.get_pod(core, ns, name) is None
    with pytest.raises(ApiException) as ei:
        core.read_namespaced_service_account(pn, ns)
    assert ei.value.status == 404
    # the controller deleted both itself: a cleanup that waited for kube-controller-manager's
    # garbage collector would show its identity here, and only after the Worker was gone
    # (kwok, as the Pod's kubelet, then finishes the graceful delete the controller began)
    assert h.deleted_by(tb, mark, "pods", ns, pn)[0] == ctl.username
    assert "wc-bed:kube-controller-manager" not in h.deleted_by(tb, mark, "pods", ns, pn)
    assert h.deleted_by(tb, mark, "serviceaccounts", ns, pn) == [ctl.username]


# --------------------------------------------------------------------------------------------
# 11. invalid input
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad,needle", [
    ({"resources": {"limits": {"cpu": "lots"}}}, "lots"),
    ({"image": "registry.e2e/bad image:1"}, "bad image"),
])
def test_invalid_spec(ctl, api, core, custom, namespace, bad, needle):
    ns, name = namespace, h.unique_name("invalid")
    h.create_worker(custom, ns, name, **bad)
    w = h.wait_condition(custom, ns, name, "Synced", "False", "InvalidSpec")
    msg = h.condition(w, "Synced")["message"]
    assert needle in msg, msg
    evs = h.wait_for_value(lambda: h.events_for(api, ns, name, "InvalidSpec"), 10, "InvalidSpec Event")
    assert evs[0]["type"] == "Warning" and needle in evs[0]["note"]
    time.sleep(1.0)
    assert h.get_pod(core, ns, name) is None
    assert ctl.running()
    # others still converge
    ok = h.unique_name("valid")
    h.create_worker(custom, ns, ok)
    h.wait_pod(core, ns, ok)
    h.wait_phase(custom, ns, ok, "Running")
    # fixing the spec makes it converge too
    fix = {"resources": {"limits": {"cpu": "1"}}} if "resources" in bad else {"image": "registry.e2e/good:1"}
    h.patch_worker(custom, ns, name, {"spec": fix})
    h.wait_pod(core, ns, name)
    h.wait_condition(custom, ns, name, "Synced", "True")


# --------------------------------------------------------------------------------------------
# 12. graceful stop; invalid configuration
# --------------------------------------------------------------------------------------------
def test_sigterm_graceful_stop_and_restart(ctl, core, custom, namespace):
    ns = namespace
    names = [h.unique_name("inflight") for _ in range(5)]
    for n in names:
        h.create_worker(custom, ns, n)
    time.sleep(0.2)  # reconciles under way
    rc, took = ctl.stop(timeout=30)
    assert rc == 0 and took < 30
    text = ctl.log_text()
    recs = ctl.log_records()
    assert any("shutting down" in (r.get("msg") or r.get("message") or "") for r in recs), ctl.log_tail()
    assert "shutting down" in text
    ctl.start()
    for n in names:
        h.wait_pod(core, ns, n)


def test_invalid_setting_exits_2_before_touching_cluster(tb, tmp_path):
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    lsock.setblocking(False)
    port = lsock.getsockname()[1]
    tok = tmp_path / "token"
    tok.write_text("not-a-real-token")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HICLAW_CONCURRENCY": "0", "HICLAW_SANDBOX_ENABLED": "false",
           "HICLAW_LEADER_ELECT": "false", "HICLAW_K8S_NAMESPACE": "default"}
    try:
        r = subprocess.run([h.binary(), "run", "--server", f"https://localhost:{port}", "--token-file", str(tok),
                            "--ca-file", tb.WC_CA_FILE], env=env, capture_output=True, text=True, timeout=20)
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert "HICLAW_CONCURRENCY" in r.stderr, r.stderr
        with pytest.raises(BlockingIOError):
            lsock.accept()  # nobody connected: the cluster was never touched
    finally:
        lsock.close()


# --------------------------------------------------------------------------------------------
# 13. RBAC: the controller identity is confined
# --------------------------------------------------------------------------------------------
def test_rbac_negative(ctl, tb, user_api, namespace):
    capi = user_api(token=ctl.token)
    ccore = client.CoreV1Api(capi)
    with pytest.raises(ApiException) as ei:
        ccore.list_secret_for_all_namespaces()
    assert ei.value.status == 403
    with pytest.raises(ApiException) as ei:
        ccore.list_namespaced_secret(namespace)
    assert ei.value.status == 403, "the Role grants secrets get only, not list"
    other = tb.WC_TEST_NAMESPACE
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="rbac-probe"),
                       spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]))
    with pytest.raises(ApiException) as ei:
        ccore.create_namespaced_pod(other, pod)
    assert ei.value.status == 403
    # and it really is that identity the controller runs as
    rev = client.AuthenticationV1Api(capi).create_self_subject_review(client.V1SelfSubjectReview())
    assert rev.status.user_info.username == ctl.username
    assert "KUBECONFIG" not in ctl.process_env()
    with open(f"/proc/{ctl.proc.pid}/environ", "rb") as f:
        penv = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
    assert b"KUBECONFIG" not in penv and b"KUBERNETES_SERVICE_HOST" not in penv


# --------------------------------------------------------------------------------------------
# extras around 2 and 8: the instance is kept to exactly one, whatever happens to it
# --------------------------------------------------------------------------------------------
def test_externally_deleted_or_failed_pod_is_replaced(ctl, api, core, custom, namespace):
    ns, name = namespace, h.unique_name("phoenix")
    pn = f"hiclaw-worker-{name}"
    h.create_worker(custom, ns, name)
    p0 = h.wait_pod(core, ns, name)
    h.wait_phase(custom, ns, name, "Running")
    core.delete_namespaced_pod(pn, ns)  # an eviction, a node drain, a human
    p1 = h.wait_pod(core, ns, name, lambda p: p is not None and p.metadata.uid != p0.metadata.uid, what="replaced")
    h.wait_phase(custom, ns, name, "Running")
    # Pod phase Failed: status Failed (SPEC 3.7), a Warning Event, then a replacement. The
    # Failed phase is only visible for milliseconds (see the issue-5 report: the delete event
    # re-enqueues the key without the backoff), so the Event is what is asserted here.
    t0 = time.monotonic()
    bed.kwok_state(core, ns, pn, "failed", "e2e-oom")
    p2 = h.wait_pod(core, ns, name, lambda p: p is not None and p.metadata.uid != p1.metadata.uid, timeout=20,
                    what="failed Pod replaced")
    print(f"failed Pod replaced after {time.monotonic() - t0:.2f}s")
    evs = h.wait_for_value(lambda: h.events_for(api, ns, name, "PodFailed"), 10, "PodFailed Event")
    assert evs[0]["type"] == "Warning" and "OOMKilled" in evs[0]["note"], evs[0]
    assert len(h.worker_pods(core, ns, name)) == 1
    w = h.wait_phase(custom, ns, name, "Running")
    assert w["status"]["instance"]["name"] == pn and p2.metadata.uid == h.get_pod(core, ns, name).metadata.uid


def test_delete_sleeping_worker(ctl, core, custom, namespace):
    ns, name = namespace, h.unique_name("asleep")
    h.create_worker(custom, ns, name, state="Sleeping")
    w = h.wait_phase(custom, ns, name, "Sleeping")
    assert h.get_pod(core, ns, name) is None
    assert h.FINALIZER in w["metadata"]["finalizers"]
    h.delete_worker(custom, ns, name)

    def gone():
        try:
            h.get_worker(custom, ns, name)
            return False
        except ApiException as e:
            return e.status == 404
    h.wait_for_value(gone, 20, "Sleeping Worker deleted")
    with pytest.raises(ApiException) as ei:
        core.read_namespaced_service_account(f"hiclaw-worker-{name}", ns)
    assert ei.value.status == 404
