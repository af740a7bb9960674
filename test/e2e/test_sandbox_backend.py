"""Issue 6 — the sandbox backend (SPEC 3, 5, 6, 7) end to end: real kube-apiserver with the
real OpenKruise agents CRDs, real MinIO (SigV4, TLS), the controller under render-rbac RBAC,
OpenKruise played by test/e2e/standins.py.

The token-refresh scenario (~400 s of waiting) is started by an autouse fixture here and
asserted in test_zz_sandbox_token_refresh.py, so its wait overlaps these tests.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import tempfile
import threading
import time

import pytest
from kubernetes import client

import controller_harness as ch
import sandbox_support as sx
import standins
from conftest import unique

POOL = "e2e-pool"
DEPS_PV = "e2e-deps-pv"
IMAGE = "registry.example/hiclaw/worker:e2e-1"
AUDIENCE = "hiclaw-controller"


@pytest.fixture(scope="module", autouse=True)
def _token_refresh_started_early(tb, api):
    """Start the token-refresh scenario now so its ~400 s wait overlaps this module. (Not in
    the sanitizer run, which leaves that test out.)"""
    if not os.environ.get("WC_SANITIZED"):
        sx.refresh_scenario(tb, api)
    yield


@pytest.fixture(scope="module")
def ctl(tb, core, namespace):
    c = sx.sandbox_controller(tb, core, namespace, {
        "HICLAW_SANDBOX_POOL": POOL,
        "HICLAW_SANDBOX_DEPS_PV": DEPS_PV,
        "HICLAW_SANDBOX_CLAIM_TIMEOUT": "90s",
        "HICLAW_SANDBOX_WAIT_READY_TIMEOUT": "45s",
        "HICLAW_SANDBOX_TOKEN_TTL": "3600",
    })
    yield c
    c.close()


def cond(w, t):
    return ch.condition(w, t) or {}


def status(w):
    return w.get("status") or {}


def make_worker(custom, ns, name=None, **spec):
    name = name or unique("sw")
    spec.setdefault("backendRuntime", "sandbox")
    spec.setdefault("image", IMAGE)
    body = {"apiVersion": "hiclaw.io/v1beta1", "kind": "Worker",
            "metadata": {"name": name, "namespace": ns, "labels": spec.pop("labels_md", None) or {}},
            "spec": {"model": "qwen-max", **spec}}
    custom.create_namespaced_custom_object(ch.GROUP, ch.VERSION, ns, ch.PLURAL, body)
    return name


def wait_claim(custom, ns, worker, timeout=30):
    return sx.wait(lambda: sx.get_claim(custom, ns, sx.claim_name(worker)), timeout, f"claim of {worker}")


def bound_worker(api, custom, ns, **spec):
    """A sandbox Worker bound by a one-shot stand-in and Running."""
    w = make_worker(custom, ns, **spec)
    wait_claim(custom, ns, w)
    standins.OpenKruise(api).bind(ns, sx.claim_name(w))
    ch.wait_phase(custom, ns, w, "Running", timeout=30)
    return w


# ---- 1. seed blocker 1: deps exist before the claim, the claim's shape ----------------------------

def test_deps_exist_when_claim_first_seen_and_claim_shape(tb, api, custom, core, namespace, ctl, s3):
    ns, w = namespace, unique("sw")
    keys = sx.deps_keys(ns, w)
    first_seen = {}

    def heads():
        return {k: sx.s3_head(s3, tb.WC_S3_BUCKET, keys[k]) is not None for k in ("env", "token", "data")}

    def on_claim(etype, obj):
        if obj["metadata"]["name"] == sx.claim_name(w) and not first_seen:
            # the very first event about the claim: look at the bucket before anything else
            first_seen.update(type=etype, heads=heads(), claim=obj)

    rec = sx.custom_recorder(api, custom, ns, sx.CLAIMS, on_claim)
    prebind = []

    def check(claim):
        h = heads()
        prebind.append(h)
        return all(h.values())

    try:
        make_worker(custom, ns, w, labels_md={"team": "blue"},
                    labels={"tier": "gold", "hiclaw.io/backend": "pod", "hiclaw.io/worker": "evil"})
        sx.wait(lambda: first_seen, 30, "the stand-in's first sight of the claim")
        kruise = standins.OpenKruise(api, prebind_check=check, block_on_check=True)
        bound = kruise.bind(ns, sx.claim_name(w))
    finally:
        rec.stop()
    assert first_seen["type"] == "ADDED"
    assert first_seen["heads"] == {"env": True, "token": True, "data": True}, first_seen["heads"]
    assert prebind == [{"env": True, "token": True, "data": True}]
    assert len(bound) == 1
    wk = ch.wait_phase(custom, ns, w, "Running", timeout=30)

    claim = sx.get_claim(custom, ns, sx.claim_name(w))  # as the API server stored it (real CRD)
    spec, md = claim["spec"], claim["metadata"]
    assert spec["templateName"] == POOL
    assert spec["replicas"] == 1
    assert spec["claimTimeout"] == "90s"
    assert spec["waitReadyTimeout"] == "45s"
    assert spec["ttlAfterCompleted"] == "-1s"
    assert spec["inplaceUpdate"] == {"image": IMAGE}
    base = f"{sx.deps_prefix(ns)}workers-deps/{w}"
    assert sorted(spec["dynamicVolumesMount"], key=lambda m: m["mountPath"]) == sorted([
        {"pvName": DEPS_PV, "subPath": f"{base}/token", "mountPath": "/var/run/secrets/hiclaw", "readOnly": True},
        {"pvName": DEPS_PV, "subPath": f"{base}/env", "mountPath": "/mnt/hiclaw/env", "readOnly": True},
        {"pvName": DEPS_PV, "subPath": f"{base}/data", "mountPath": "/mnt/hiclaw/data", "readOnly": False},
    ], key=lambda m: m["mountPath"])
    # the subPaths are exactly the directories of the objects that were there before the claim
    for k in ("token", "env", "data"):
        assert keys[k].rsplit("/", 1)[0] == f"{base}/{k}"
    h = md["annotations"]["hiclaw.io/spec-hash"]
    assert len(h) >= 8
    want_labels = {"app": "hiclaw-worker", "hiclaw.io/worker": w, "hiclaw.io/controller": ctl.name,
                   "hiclaw.io/runtime": "openclaw", "hiclaw.io/backend": "sandbox", "team": "blue", "tier": "gold",
                   "hiclaw.io/spec-hash": h}
    assert spec["labels"] == want_labels
    assert md["labels"]["hiclaw.io/controller"] == ctl.name and md["labels"]["hiclaw.io/worker"] == w
    owners = md["ownerReferences"]
    assert owners == [{"apiVersion": "hiclaw.io/v1beta1", "kind": "Worker", "name": w,
                       "uid": wk["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    # the pool the controller applied at start
    pool = custom.get_namespaced_custom_object(sx.KG, sx.KV, ns, sx.SANDBOXSETS, POOL)
    assert pool["spec"]["replicas"] == 1
    assert [r["name"] for r in pool["spec"]["runtimes"]] == ["csi", "agent-runtime"]
    c0 = pool["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e["value"] for e in c0["env"]} == {"HICLAW_WORKER_ENV_MOUNT_DIR": "/mnt/hiclaw/env",
                                                         "HICLAW_WORKER_ENV_MOUNT_REQUIRED": "1"}
    assert pool["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


# ---- 2. the env file: hostile values, secrets only there ------------------------------------------

def test_env_file_reproduces_hostile_values_and_holds_secrets_only_there(tb, api, custom, core, namespace, ctl, s3):
    ns, w = namespace, unique("sw")
    r = unique("x")
    marker1, marker2, marker3 = f"/tmp/pwned-{r}", f"/tmp/pwned-bt-{r}", f"/tmp/pwned-nl-{r}"
    hostile = {
        "E_SPACES": "  two  spaces  and\ttab ",
        "E_SQUOTE": "it's 'quoted'",
        "E_DQUOTE": 'say "hi" ""',
        "E_SUBST": f"$(touch {marker1})",
        "E_BACKTICK": f"`touch {marker2}`",
        "E_NEWLINE": f"line1\nline2\n$(touch {marker3})\n",
        "E_UTF8": "héllo wörld — 日本語 🚀",
        "E_BACKSLASH": "back\\slash \\n \\' \\\\",
        "E_ESCAPE": "'\\''",
        "E_DOLLAR": "$HOME ${PATH} $0 $$",
        "E_SEMI": "a; touch /tmp/never-" + r + " && echo x | cat > /dev/null",
        "E_EMPTY": "",
    }
    secrets = {"WORKER_MATRIX_TOKEN": f"mtx-{r}-SECRET", "WORKER_GATEWAY_KEY": f"gw-{r}-SECRET",
               "WORKER_MINIO_PASSWORD": f"pw-{r}-SECRET"}
    core.create_namespaced_secret(ns, client.V1Secret(metadata=client.V1ObjectMeta(name=f"hiclaw-creds-{w}"),
                                                      string_data=secrets))
    make_worker(custom, ns, w, env=hostile)
    wait_claim(custom, ns, w)
    standins.OpenKruise(api).bind(ns, sx.claim_name(w))
    wk = ch.wait_phase(custom, ns, w, "Running", timeout=30)

    body = sx.s3_get(s3, tb.WC_S3_BUCKET, sx.deps_keys(ns, w)["env"])
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "env")
        with open(path, "wb") as f:
            f.write(body)
        p = subprocess.run(["/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "/bin/sh", "-c", 'set -a; . "$1"; env -0', "sh",
                            path], capture_output=True, cwd=d, timeout=20)
        assert p.returncode == 0, p.stderr
        assert p.stderr == b""
    got = dict(kv.split(b"=", 1) for kv in p.stdout.split(b"\0") if b"=" in kv)
    got = {k.decode(): v.decode("utf-8") for k, v in got.items()}
    for k, v in hostile.items():
        assert got.get(k) == v, (k, got.get(k), v)
    for m in (marker1, marker2, marker3, f"/tmp/never-{r}"):
        assert not os.path.exists(m), f"sourcing the env file executed something: {m}"
    # credentials from the Secret
    assert got["HICLAW_WORKER_MATRIX_TOKEN"] == secrets["WORKER_MATRIX_TOKEN"]
    assert got["HICLAW_WORKER_GATEWAY_KEY"] == secrets["WORKER_GATEWAY_KEY"]
    assert got["HICLAW_FS_SECRET_KEY"] == secrets["WORKER_MINIO_PASSWORD"]
    # system env
    assert got["HICLAW_WORKER_NAME"] == w
    assert got["HICLAW_WORKER_CR_NAME"] == w
    assert got["HICLAW_RUNTIME"] == "k8s"
    assert got["HOME"] == f"/root/hiclaw-fs/agents/{w}"
    assert got["HICLAW_AUTH_TOKEN_FILE"] == "/var/run/secrets/hiclaw/token"
    assert got["HICLAW_FS_ACCESS_KEY"] == w
    assert got["HICLAW_CONSOLE_PORT"] == "8088"
    assert got["OPENCLAW_DISABLE_BONJOUR"] == "1"
    assert got["OPENCLAW_MDNS_HOSTNAME"] == f"hiclaw-w-{w}"
    # the file format of SPEC 6: a comment, then sorted `export KEY='...'` lines
    text = body.decode()
    exports = [ln.split("=", 1)[0] for ln in text.split("\n") if ln.startswith("export ")]
    assert exports == sorted(exports) and len(exports) >= len(hostile) + 3 + 9

    # the Secret's values appear nowhere else
    claim = sx.get_claim(custom, ns, sx.claim_name(w))
    sbx = sx.sandboxes_of(custom, ns, w)
    wk = ch.get_worker(custom, ns, w)
    time.sleep(1.0)  # let Events and log lines of the reconcile land
    places = {"claim": json.dumps(claim), "sandbox": json.dumps(sbx), "worker": json.dumps(wk),
              "events": ch.all_events_text(api, ns), "controller log": ctl.log_text()}
    for name, text in places.items():
        for k, v in secrets.items():
            assert v not in text, f"secret {k} leaked into the {name}"
    assert f"hiclaw-creds-{w}" not in places["claim"]


# ---- 3. the token object: TokenReview ------------------------------------------------------------

def test_token_object_passes_token_review(tb, api, custom, namespace, ctl, s3):
    ns = namespace
    w = bound_worker(api, custom, ns)
    key = sx.deps_keys(ns, w)["token"]
    head = sx.s3_head(s3, tb.WC_S3_BUCKET, key)
    token = sx.s3_get(s3, tb.WC_S3_BUCKET, key).decode()
    rv = sx.token_review(api, token, AUDIENCE)
    assert rv["status"]["authenticated"] is True, rv["status"]
    assert rv["status"]["user"]["username"] == f"system:serviceaccount:{ns}:{sx.sa_name(w)}"
    assert AUDIENCE in rv["status"]["audiences"]
    bad = sx.token_review(api, token, "some-other-audience")
    assert not bad["status"].get("authenticated"), "the token must be bound to the configured audience"
    issued, expires = int(head["Metadata"]["hiclaw-issued"]), int(head["Metadata"]["hiclaw-expires"])
    assert abs(issued - time.time()) < 120
    assert 3600 - 30 <= expires - issued <= 3600 + 30, (issued, expires)
    # the ServiceAccount the token belongs to was created by the controller, owned by the Worker
    sa = client.CoreV1Api(api).read_namespaced_service_account(sx.sa_name(w), ns)
    assert sa.metadata.owner_references[0].name == w
    assert sa.automount_service_account_token is False


# ---- 4. status mapping --------------------------------------------------------------------------

def test_status_mapping_claiming_running_paused(tb, api, custom, namespace, ctl):
    ns = namespace
    w = make_worker(custom, ns)
    cn = sx.claim_name(w)
    wait_claim(custom, ns, w)
    kr = standins.OpenKruise(api)
    kr.set_claim_status(ns, cn, "Claiming", 0, "claiming sandboxes from e2e-pool")
    wk = ch.wait_worker(custom, ns, w, lambda o: status(o).get("phase") == "Starting"
                        and "claiming sandboxes from e2e-pool" in status(o).get("message", ""), 20, "Starting")
    assert status(wk)["containerState"] == "Claiming"
    assert cond(wk, "Ready")["status"] == "False"
    assert status(wk)["backendRuntime"] == "sandbox"
    sbx = kr.bind(ns, cn, ready=True, ip="10.244.7.7")
    sname = sbx[0]["metadata"]["name"]
    wk = ch.wait_phase(custom, ns, w, "Running", timeout=20)
    st = status(wk)
    assert cond(wk, "Ready")["status"] == "True"
    assert cond(wk, "Synced")["status"] == "True"
    assert st["backendRuntime"] == "sandbox"
    assert st["instance"] == {"kind": "Sandbox", "name": sname, "claimName": cn, "podIP": "10.244.7.7"}
    assert st["containerState"] == "Running"
    assert st["observedGeneration"] == wk["metadata"]["generation"]
    # Sandbox Paused (by someone else) -> Sleeping
    kr.set_sandbox_status(ns, sname, "Paused", False, message="paused by operator")
    wk = ch.wait_phase(custom, ns, w, "Sleeping", timeout=20)
    assert cond(wk, "Ready")["status"] == "False"
    assert status(wk)["containerState"] == "Paused"
    # Running + Ready False with a message -> Failed
    kr.set_sandbox_status(ns, sname, "Running", False, message="agent crashed e2e")
    wk = ch.wait_phase(custom, ns, w, "Failed", timeout=20)
    assert "agent crashed e2e" in status(wk)["message"]
    kr.set_sandbox_status(ns, sname, "Running", True)
    ch.wait_phase(custom, ns, w, "Running", timeout=20)
    assert [s["metadata"]["uid"] for s in sx.sandboxes_of(custom, ns, w)] == [sbx[0]["metadata"]["uid"]]


def test_claim_timeout_fails_then_retries_with_new_claim(tb, api, custom, namespace, ctl):
    ns = namespace
    w = make_worker(custom, ns)
    cn = sx.claim_name(w)
    first = wait_claim(custom, ns, w)
    uid1 = first["metadata"]["uid"]
    creations = []

    def on_claim(etype, obj):
        if obj["metadata"]["name"] == cn and etype == "ADDED":
            creations.append((time.monotonic(), obj["metadata"]["uid"]))

    rec = sx.custom_recorder(api, custom, ns, sx.CLAIMS, on_claim)
    phases = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            try:
                o = ch.get_worker(custom, ns, w)
                phases.append((status(o).get("phase"), status(o).get("message", ""), cond(o, "Synced").get("reason")))
            except Exception:
                pass
            time.sleep(0.05)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        standins.OpenKruise(api).time_out(ns, cn, "claim timeout: pool e2e-pool exhausted (e2e)")
        sx.wait(lambda: any(p[0] == "Failed" and "pool e2e-pool exhausted (e2e)" in p[1] and p[2] == "ClaimFailed"
                            for p in phases), 20, "phase Failed with the claim's message")
        new = sx.wait(lambda: [c for c in creations if c[1] != uid1], 60, "a new claim")
        assert new[0][1] != uid1
        # keep timing the claims out for a while: the retries must back off, not spin
        with standins.AutoStandins(api, namespace=ns, kubelet=False, timeout_claims=True):
            time.sleep(12)
    finally:
        stop.set()
        t.join(5)
        rec.stop()
    n = len(creations)
    gaps = [round(b[0] - a[0], 2) for a, b in zip(creations, creations[1:])]
    print(f"claim attempts in ~12 s of timeouts: {n}; gaps: {gaps}")
    # the Worker converges once claims bind again (also ends any retry loop before asserting)
    with standins.AutoStandins(api, namespace=ns, kubelet=False):
        ch.wait_phase(custom, ns, w, "Running", timeout=120)
    evs = ch.events_for(api, ns, w, "ClaimFailed")
    assert evs and evs[0]["type"] == "Warning"
    # The recreate backoff starts at 10 s and doubles: over the first retry plus ~12 s of further
    # timeouts that is at most 3 claims; a retry loop without backoff makes dozens.
    assert n <= 3, f"{n} claims in ~12 s: the claim timeout is retried without backoff; gaps {gaps}"
    assert all(g >= 9.0 for g in gaps), f"retries came sooner than the 10 s backoff: {gaps}"
    if len(gaps) >= 2:
        assert gaps[-1] > gaps[0], f"retry gaps do not grow: {gaps}"


# ---- 5. pause / resume ---------------------------------------------------------------------------

def test_sleeping_with_pause_on_pauses_and_resumes(tb, api, core, custom):
    ns = unique("e2e-sbx-pause")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, labels={"wc-e2e": "true"})))
    c = sx.sandbox_controller(tb, core, ns, {"HICLAW_SANDBOX_PAUSE": "true"})
    try:
        w = bound_worker(api, custom, ns)
        kr = standins.OpenKruise(api)
        sbx = sx.sandboxes_of(custom, ns, w)[0]
        sname, suid = sbx["metadata"]["name"], sbx["metadata"]["uid"]
        claim_uid = sx.get_claim(custom, ns, sx.claim_name(w))["metadata"]["uid"]
        ch.patch_worker(custom, ns, w, {"spec": {"state": "Sleeping"}})
        sx.wait(lambda: (sx.get_sandbox(custom, ns, sname) or {}).get("spec", {}).get("paused") is True, 20,
                "spec.paused true")
        assert status(ch.get_worker(custom, ns, w))["phase"] in ("Stopping", "Running")  # not Sleeping before Paused
        kr.sync_pause(ns, sname)
        wk = ch.wait_phase(custom, ns, w, "Sleeping", timeout=20)
        assert cond(wk, "Ready")["status"] == "False"
        assert sx.get_sandbox(custom, ns, sname)["metadata"]["uid"] == suid
        assert sx.get_claim(custom, ns, sx.claim_name(w))["metadata"]["uid"] == claim_uid
        ch.patch_worker(custom, ns, w, {"spec": {"state": "Running"}})
        sx.wait(lambda: sx.get_sandbox(custom, ns, sname)["spec"].get("paused") is False, 20, "spec.paused false")
        kr.sync_pause(ns, sname)
        wk = ch.wait_phase(custom, ns, w, "Running", timeout=20)
        assert cond(wk, "Ready")["status"] == "True"
        assert [s["metadata"]["uid"] for s in sx.sandboxes_of(custom, ns, w)] == [suid]
        assert status(wk)["instance"]["name"] == sname
    finally:
        c.close()
        try:
            core.delete_namespace(ns)
        except Exception:
            pass


def test_sleeping_with_pause_off_releases_claim_and_sandbox(tb, api, custom, namespace, ctl, s3):
    ns = namespace
    w = bound_worker(api, custom, ns)
    ch.patch_worker(custom, ns, w, {"spec": {"state": "Sleeping"}})
    wk = ch.wait_phase(custom, ns, w, "Sleeping", timeout=20)
    assert sx.get_claim(custom, ns, sx.claim_name(w)) is None
    assert sx.sandboxes_of(custom, ns, w) == []
    assert not status(wk).get("instance")
    assert cond(wk, "Ready")["status"] == "False"
    # waking up claims anew
    with standins.AutoStandins(api, namespace=ns, kubelet=False):
        ch.patch_worker(custom, ns, w, {"spec": {"state": "Running"}})
        ch.wait_phase(custom, ns, w, "Running", timeout=30)


# ---- 6. Stopped and deletion: order, nothing left --------------------------------------------------

def _hold(custom, ns, w):
    cn = sx.claim_name(w)
    sname = sx.sandboxes_of(custom, ns, w)[0]["metadata"]["name"]
    sx.set_finalizers(custom, ns, sx.CLAIMS, cn, [sx.HOLD_FINALIZER])
    sx.set_finalizers(custom, ns, sx.SANDBOXES, sname, [sx.HOLD_FINALIZER])
    return cn, sname


def _teardown_in_order(tb, api, custom, ns, w, s3, trigger, deleting):
    """Holds claim and Sandbox with a test finalizer, triggers the teardown, and releases them
    one by one, checking that each later step waits for the earlier one."""
    keys = sx.deps_keys(ns, w)
    cn, sname = _hold(custom, ns, w)
    marks = {}

    def on(etype, obj):
        name = obj["metadata"]["name"]
        if obj["metadata"].get("deletionTimestamp") and name not in marks:
            marks[name] = int(obj["metadata"]["resourceVersion"])

    rc = sx.custom_recorder(api, custom, ns, sx.CLAIMS, on)
    rs = sx.custom_recorder(api, custom, ns, sx.SANDBOXES, on)
    try:
        trigger()
        sx.wait(lambda: cn in marks and sname in marks, 20, "delete requests for claim and Sandbox")
        assert marks[cn] < marks[sname], f"Sandbox deleted before its claim: {marks}"
        for _ in range(15):  # 3 s: both held, the token must stay
            assert sx.s3_head(s3, tb.WC_S3_BUCKET, keys["token"]) is not None, "token deleted before the Sandbox was gone"
            time.sleep(0.2)
        sx.set_finalizers(custom, ns, sx.CLAIMS, cn, [])
        sx.wait(lambda: sx.get_claim(custom, ns, cn) is None, 10, "claim gone")
        for _ in range(15):  # claim gone, Sandbox still held: the token must stay
            assert sx.s3_head(s3, tb.WC_S3_BUCKET, keys["token"]) is not None, "token deleted while the Sandbox exists"
            if deleting:
                assert FINALIZER_OF(custom, ns, w), "finalizer removed while a Sandbox exists"
            time.sleep(0.2)
        t_release = time.monotonic()
        sx.set_finalizers(custom, ns, sx.SANDBOXES, sname, [])
        sx.wait(lambda: sx.get_sandbox(custom, ns, sname) is None, 10, "Sandbox gone")
        sx.wait(lambda: sx.s3_head(s3, tb.WC_S3_BUCKET, keys["token"]) is None, 20, "token object deleted")
        return time.monotonic() - t_release
    finally:
        rc.stop()
        rs.stop()


def FINALIZER_OF(custom, ns, w):
    try:
        return ch.FINALIZER in (ch.get_worker(custom, ns, w)["metadata"].get("finalizers") or [])
    except Exception:
        return False


def test_stopped_then_deleted_removes_everything_in_order(tb, api, core, custom, namespace, ctl, s3):
    ns = namespace
    w = bound_worker(api, custom, ns)
    keys = sx.deps_keys(ns, w)
    took = _teardown_in_order(tb, api, custom, ns, w, s3,
                              lambda: ch.patch_worker(custom, ns, w, {"spec": {"state": "Stopped"}}), False)
    wk = ch.wait_phase(custom, ns, w, "Stopped", timeout=20)
    assert not status(wk).get("instance")
    assert sx.s3_head(s3, tb.WC_S3_BUCKET, keys["env"]) is not None, "Stopped must keep env"
    assert sx.s3_head(s3, tb.WC_S3_BUCKET, keys["data"]) is not None, "Stopped must keep data"
    print(f"Stopped: token deleted {took:.2f}s after the Sandbox was released")

    with standins.AutoStandins(api, namespace=ns, kubelet=False):
        ch.patch_worker(custom, ns, w, {"spec": {"state": "Running"}})
        ch.wait_phase(custom, ns, w, "Running", timeout=30)
    assert sx.s3_head(s3, tb.WC_S3_BUCKET, keys["token"]) is not None

    def delete():
        ch.delete_worker(custom, ns, w)

    _teardown_in_order(tb, api, custom, ns, w, s3, delete, True)
    sx.wait(lambda: sx.s3_head(s3, tb.WC_S3_BUCKET, keys["env"]) is None and
            sx.s3_head(s3, tb.WC_S3_BUCKET, keys["data"]) is None, 20, "env and data deleted")

    def gone():
        try:
            ch.get_worker(custom, ns, w)
            return False
        except client.rest.ApiException as e:
            return e.status == 404
    sx.wait(gone, 20, "Worker gone (finalizer removed)")
    assert sx.claims_of(custom, ns, w) == [] and sx.sandboxes_of(custom, ns, w) == []
    assert ch.worker_pods(core, ns, w) == []
    assert sx.s3_list(s3, tb.WC_S3_BUCKET, keys["dir"] + "/") == []
    sa = [s.metadata.name for s in core.list_namespaced_service_account(ns).items]
    assert sx.sa_name(w) not in sa


# ---- 7. two Sandboxes for one Worker ---------------------------------------------------------------

def test_two_sandboxes_multiple_sandboxes_nothing_deleted(tb, api, custom, namespace, ctl):
    ns = namespace
    w = bound_worker(api, custom, ns)
    first = sx.sandboxes_of(custom, ns, w)[0]
    extra = {"apiVersion": f"{sx.KG}/{sx.KV}", "kind": "Sandbox",
             "metadata": {"name": unique("extra-sbx"), "namespace": ns, "labels": dict(first["metadata"]["labels"])},
             "spec": {"paused": False, "template": first["spec"]["template"]}}
    extra_uid = custom.create_namespaced_custom_object(sx.KG, sx.KV, ns, sx.SANDBOXES, extra)["metadata"]["uid"]
    wk = ch.wait_condition(custom, ns, w, "Synced", "False", "MultipleSandboxes", timeout=20)
    assert "2 Sandboxes" in cond(wk, "Synced")["message"]
    assert status(wk)["phase"] == "Running"  # phase kept
    sx.wait(lambda: [e for e in ch.events_for(api, ns, w, "MultipleSandboxes") if e["type"] == "Warning"], 10,
            "Warning Event MultipleSandboxes")
    time.sleep(3)
    now = sx.sandboxes_of(custom, ns, w)
    assert sorted(s["metadata"]["uid"] for s in now) == sorted([first["metadata"]["uid"], extra_uid])
    assert len(now) == 2 and not any(s["metadata"].get("deletionTimestamp") for s in now)
    assert sx.get_claim(custom, ns, sx.claim_name(w)) is not None
    custom.delete_namespaced_custom_object(sx.KG, sx.KV, ns, sx.SANDBOXES, extra["metadata"]["name"])
    ch.wait_condition(custom, ns, w, "Synced", "True", timeout=20)


# ---- 8. the backend switch guard, both ways ---------------------------------------------------------

def test_switch_guard_both_ways_never_both_instances(tb, api, core, custom, namespace, ctl):
    ns = namespace
    w = bound_worker(api, custom, ns)
    pods, sbxs, both = {}, {}, []
    lock = threading.Lock()

    def track(store):
        def on(etype, obj):
            if (obj["metadata"].get("labels") or {}).get("hiclaw.io/worker") != w:
                return
            with lock:
                if etype == "DELETED":
                    store.pop(obj["metadata"]["uid"], None)
                else:
                    store[obj["metadata"]["uid"]] = obj["metadata"]["name"]
                if pods and sbxs:
                    both.append((dict(pods), dict(sbxs)))
        return on

    with lock:
        for s in sx.sandboxes_of(custom, ns, w):
            sbxs[s["metadata"]["uid"]] = s["metadata"]["name"]
    rp = sx.pod_recorder(api, core, ns, track(pods))
    rs = sx.custom_recorder(api, custom, ns, sx.SANDBOXES, track(sbxs))
    auto = standins.AutoStandins(api, namespace=ns).start()
    try:
        ch.patch_worker(custom, ns, w, {"spec": {"backendRuntime": "pod"}})
        wk = ch.wait_condition(custom, ns, w, "Synced", "False", "BackendSwitchBlocked", timeout=20)
        assert cond(wk, "Synced")["message"] == \
            "spec.backendRuntime cannot change from sandbox to pod until the Worker is Stopped"
        time.sleep(3)
        assert ch.worker_pods(core, ns, w) == []
        wk = ch.get_worker(custom, ns, w)
        assert status(wk)["backendRuntime"] == "sandbox" and status(wk)["phase"] == "Running"
        assert [e for e in ch.events_for(api, ns, w, "BackendSwitchBlocked") if e["type"] == "Warning"]
        ch.patch_worker(custom, ns, w, {"spec": {"state": "Stopped"}})
        ch.wait_phase(custom, ns, w, "Stopped", timeout=30)
        assert sx.sandboxes_of(custom, ns, w) == [] and sx.claims_of(custom, ns, w) == []
        ch.patch_worker(custom, ns, w, {"spec": {"state": "Running"}})
        wk = ch.wait_worker(custom, ns, w, lambda o: status(o).get("phase") == "Running"
                            and status(o).get("backendRuntime") == "pod", 30, "Running on pod")
        assert status(wk)["instance"]["kind"] == "Pod"
        assert len(ch.worker_pods(core, ns, w)) == 1

        # and back: pod -> sandbox is blocked while Running
        ch.patch_worker(custom, ns, w, {"spec": {"backendRuntime": "sandbox"}})
        wk = ch.wait_condition(custom, ns, w, "Synced", "False", "BackendSwitchBlocked", timeout=20)
        assert cond(wk, "Synced")["message"] == \
            "spec.backendRuntime cannot change from pod to sandbox until the Worker is Stopped"
        time.sleep(3)
        assert sx.claims_of(custom, ns, w) == [] and sx.sandboxes_of(custom, ns, w) == []
        ch.patch_worker(custom, ns, w, {"spec": {"state": "Stopped"}})
        ch.wait_phase(custom, ns, w, "Stopped", timeout=30)
        ch.patch_worker(custom, ns, w, {"spec": {"state": "Running"}})
        wk = ch.wait_worker(custom, ns, w, lambda o: status(o).get("phase") == "Running"
                            and status(o).get("backendRuntime") == "sandbox", 30, "Running on sandbox")
        assert ch.worker_pods(core, ns, w) == []
    finally:
        auto.stop()
        rp.stop()
        rs.stop()
    assert not both, f"a Pod and a Sandbox of {w} existed at the same time: {both[:3]}"
    assert not rp.errors and not rs.errors, (rp.errors, rs.errors)


# ---- 9. S3 unreachable ---------------------------------------------------------------------------

def test_s3_down_no_claim_then_converges(tb, api, custom, namespace, ctl, s3):
    ns = namespace
    w = unique("sw")
    seen = []
    rec = sx.custom_recorder(api, custom, ns, sx.CLAIMS,
                             lambda t, o: seen.append((time.monotonic(), t)) if o["metadata"]["name"] == sx.claim_name(w) else None)
    mc = sx.MinioControl(tb)
    mc.stop()
    restarted = False
    try:
        make_worker(custom, ns, w)
        wk = ch.wait_condition(custom, ns, w, "Synced", "False", "WorkerDepsFailed", timeout=30)
        assert status(wk)["phase"] in ("Pending", None)
        assert sx.get_claim(custom, ns, sx.claim_name(w)) is None
        time.sleep(5)
        assert sx.get_claim(custom, ns, sx.claim_name(w)) is None and not seen
        assert ch.events_for(api, ns, w, "WorkerDepsFailed"), "no Warning Event for WorkerDepsFailed"
        t0 = time.monotonic()
        mc.start()
        restarted = True
        with standins.AutoStandins(api, namespace=ns, kubelet=False):
            wk = ch.wait_phase(custom, ns, w, "Running", timeout=90)
        print(f"converged {time.monotonic() - t0:.1f}s after S3 came back")
        assert cond(wk, "Synced")["status"] == "True"
        assert seen and seen[0][0] > t0, "claim created while S3 was down"
        keys = sx.deps_keys(ns, w)
        for k in ("token", "env", "data"):
            assert sx.s3_head(s3, tb.WC_S3_BUCKET, keys[k]) is not None
    finally:
        if not restarted:
            mc.start()
        rec.stop()
