"""Issue 6 — the sandbox backend (SPEC 3, 5, 6, 7) end to end, through the real OpenKruise
agents controller: real kube-apiserver, kube-controller-manager, kube-scheduler, kwok Nodes
running the sandboxes' Pods, real MinIO (SigV4, TLS), the controller under render-rbac RBAC.
The only played part is the in-sandbox agent-runtime (test/cluster/agent_runtime.py), which
performs the mounts from S3: tests read back what each sandbox received.

Failures are produced through the real components: a warm pool whose Pods never become ready
(their template holds them, test/cluster/kwok/pod-stages.yaml) makes claims time out; kwok
drives a sandbox's Pod into CrashLoopBackOff.

The token-refresh scenario (~400 s of waiting) is started by an autouse fixture here and
asserted in test_sandbox_token_refresh.py, so its wait overlaps these tests.
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

import bed
import controller_harness as ch
import sandbox_support as sx
from conftest import drop_namespace, make_namespace, unique

POOL = "e2e-pool"
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
    md_labels = dict(spec.pop("labels_md", None) or {})
    if ch.namespace_controller(ns):
        md_labels.setdefault(ch.CONTROLLER_LABEL, ch.namespace_controller(ns))
    body = {"apiVersion": "hiclaw.io/v1beta1", "kind": "Worker",
            "metadata": {"name": name, "namespace": ns, "labels": md_labels},
            "spec": {"model": "qwen-max", **spec}}
    custom.create_namespaced_custom_object(ch.GROUP, ch.VERSION, ns, ch.PLURAL, body)
    return name


def wait_claim(custom, ns, worker, timeout=30):
    return sx.wait(lambda: sx.get_claim(custom, ns, sx.claim_name(worker)), timeout, f"claim of {worker}")


def bound_worker(api, custom, ns, **spec):
    """A sandbox Worker claimed through OpenKruise and Running."""
    w = make_worker(custom, ns, **spec)
    ch.wait_phase(custom, ns, w, "Running", timeout=60)
    return w


# ---- 1. seed blocker 1: deps exist before the claim; what the sandbox received; the claim's shape --

def test_deps_exist_when_claim_first_seen_and_claim_shape(tb, api, custom, core, namespace, ctl, s3, runtime):
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
    wrec = sx.Recorder(api, custom.list_namespaced_custom_object,
                       {"group": ch.GROUP, "version": ch.VERSION, "namespace": ns, "plural": ch.PLURAL},
                       custom.list_namespaced_custom_object(ch.GROUP, ch.VERSION, ns, ch.PLURAL)["metadata"]["resourceVersion"]
                       ).start()
    try:
        make_worker(custom, ns, w, labels_md={"team": "blue"},
                    labels={"tier": "gold", "hiclaw.io/backend": "pod", "hiclaw.io/worker": "evil"})
        sx.wait(lambda: first_seen, 30, "the first sight of the claim")
        wk = ch.wait_phase(custom, ns, w, "Running", timeout=60)
    finally:
        rec.stop()
        wrec.stop()
    assert first_seen["type"] == "ADDED"
    assert first_seen["heads"] == {"env": True, "token": True, "data": True}, first_seen["heads"]
    # Running only once OpenKruise completed the claim (in-place image, /init, mounts done): the
    # Worker's first Running status comes after the claim's Completed (one etcd, one order)
    completed = [int(o["metadata"]["resourceVersion"]) for _, _, o in rec.events
                 if (o.get("status") or {}).get("phase") == "Completed"]
    running = [int(o["metadata"]["resourceVersion"]) for _, _, o in wrec.events
               if o["metadata"]["name"] == w and (o.get("status") or {}).get("phase") == "Running"]
    failed = [o["status"].get("message") for _, _, o in wrec.events
              if o["metadata"]["name"] == w and (o.get("status") or {}).get("phase") == "Failed"]
    assert completed and running and min(running) > min(completed), (completed, running)
    assert not failed, f"Failed on the way to Running: {failed}"

    # OpenKruise claimed a sandbox, ran /init and mounted the three sub-paths: the sandbox saw
    # the env file and the token with the bytes the controller wrote, at the SPEC's paths
    st = status(wk)
    sname = st["instance"]["name"]
    assert st["instance"]["claimName"] == sx.claim_name(w)
    assert bed.pod_ip_in_bed_range(tb, st["instance"]["podIP"]), st["instance"]
    inc = runtime.wait_mounted(ns, sname)
    assert inc["inits"] and not inc["inits"][0]["skipRefresh"]
    mounts = {m["target_path"]: m for m in inc["mounts"]}
    base = sx.deps_keys(ns, w)["dir"]
    for target, sub, ro in (("/var/run/secrets/hiclaw", "token", True), ("/mnt/hiclaw/env", "env", True),
                            ("/mnt/hiclaw/data", "data", False)):
        m = mounts[target]
        assert m["volume_context"]["path"] == f"/{base}/{sub}", m
        assert m["readonly"] is ro and m["access_mode"] == (2 if ro else 1), m
        assert m["driver"] == tb.WC_DEPS_CSI_DRIVER
    assert runtime.snapshot(ns, sname, "/mnt/hiclaw/env/env") == sx.s3_get(s3, tb.WC_S3_BUCKET, keys["env"])
    token = runtime.snapshot(ns, sname, "/var/run/secrets/hiclaw/token")
    assert token == sx.s3_get(s3, tb.WC_S3_BUCKET, keys["token"])
    assert sx.token_review(api, token.decode(), AUDIENCE)["status"]["authenticated"] is True
    assert runtime.snapshot(ns, sname, "/mnt/hiclaw/data/.keep") == b""
    # every mount happened after the claim existed, and the claim after its deps (above)
    assert runtime.errors() == []

    claim = sx.get_claim(custom, ns, sx.claim_name(w))  # as the API server stored it (real CRD)
    spec, md = claim["spec"], claim["metadata"]
    assert spec["templateName"] == POOL
    assert spec["replicas"] == 1
    assert spec["claimTimeout"] == "90s"
    assert spec["waitReadyTimeout"] == "45s"
    assert spec["ttlAfterCompleted"] == "-1s"
    assert spec["inplaceUpdate"] == {"image": IMAGE}
    assert sorted(spec["dynamicVolumesMount"], key=lambda m: m["mountPath"]) == sorted([
        {"pvName": tb.WC_DEPS_PV, "subPath": f"{base}/token", "mountPath": "/var/run/secrets/hiclaw", "readOnly": True},
        {"pvName": tb.WC_DEPS_PV, "subPath": f"{base}/env", "mountPath": "/mnt/hiclaw/env", "readOnly": True},
        {"pvName": tb.WC_DEPS_PV, "subPath": f"{base}/data", "mountPath": "/mnt/hiclaw/data", "readOnly": False},
    ], key=lambda m: m["mountPath"])
    # the subPaths are exactly the directories of the objects that were there before the claim
    for k in ("token", "env", "data"):
        assert keys[k].rsplit("/", 1)[0] == f"{base}/{k}"
    h = md["annotations"]["hiclaw.io/spec-hash"]
    assert len(h) >= 8
    want_labels = {"app": "hiclaw-worker", "hiclaw.io/worker": w, "hiclaw.io/controller": ctl.name,
                   "hiclaw.io/runtime": "openclaw", "hiclaw.io/backend": "sandbox", "team": "blue", "tier": "gold",
                   "hiclaw.io/spec-hash": h, "hiclaw.io/worker-uid": wk["metadata"]["uid"]}
    assert spec["labels"] == want_labels
    assert md["labels"]["hiclaw.io/controller"] == ctl.name and md["labels"]["hiclaw.io/worker"] == w
    owners = md["ownerReferences"]
    assert owners == [{"apiVersion": "hiclaw.io/v1beta1", "kind": "Worker", "name": w,
                       "uid": wk["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    assert claim["status"]["phase"] == "Completed" and claim["status"]["claimedReplicas"] == 1
    # the Sandbox OpenKruise bound carries the claim's labels, and runs the Worker's image (in place)
    sbx = sx.get_sandbox(custom, ns, sname)
    assert {k: v for k, v in sbx["metadata"]["labels"].items() if k in want_labels} == want_labels
    assert sbx["metadata"]["labels"]["agents.kruise.io/claim-name"] == sx.claim_name(w)
    spod = bed.sandbox_pod(core, ns, sname)
    assert spod.spec.containers[0].image == IMAGE
    # that Pod carries the Worker's labels too — and is not a pod-backend instance
    assert spod.metadata.labels["hiclaw.io/worker"] == w and spod.metadata.labels["hiclaw.io/backend"] == "sandbox"
    assert ch.worker_pods(core, ns, w) == [] and len(ch.worker_pods(core, ns, w, sandbox_pods=True)) == 1
    assert cond(wk, "Synced")["reason"] == "Reconciled"
    # the pool the controller applied at start
    pool = custom.get_namespaced_custom_object(sx.KG, sx.KV, ns, sx.SANDBOXSETS, POOL)
    assert pool["spec"]["replicas"] == 1
    assert [r["name"] for r in pool["spec"]["runtimes"]] == ["csi", "agent-runtime"]
    c0 = pool["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e["value"] for e in c0["env"]} == {"HICLAW_WORKER_ENV_MOUNT_DIR": "/mnt/hiclaw/env",
                                                         "HICLAW_WORKER_ENV_MOUNT_REQUIRED": "1"}
    assert pool["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


# ---- 2. the env file: hostile values, secrets only there ------------------------------------------

def test_env_file_reproduces_hostile_values_and_holds_secrets_only_there(tb, api, custom, core, namespace, ctl, s3,
                                                                        runtime):
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
    wk = ch.wait_phase(custom, ns, w, "Running", timeout=60)

    body = sx.s3_get(s3, tb.WC_S3_BUCKET, sx.deps_keys(ns, w)["env"])
    # what the sandbox received at /mnt/hiclaw/env is exactly that file
    sname = status(wk)["instance"]["name"]
    runtime.wait_mounted(ns, sname)
    assert runtime.snapshot(ns, sname, "/mnt/hiclaw/env/env") == body
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
    spod = api.sanitize_for_serialization(bed.sandbox_pod(core, ns, sname))
    wk = ch.get_worker(custom, ns, w)
    time.sleep(1.0)  # let Events and log lines of the reconcile land
    places = {"claim": json.dumps(claim), "sandbox": json.dumps(sbx), "sandbox's Pod": json.dumps(spod),
              "worker": json.dumps(wk), "events": ch.all_events_text(api, ns), "controller log": ctl.log_text()}
    for name, text in places.items():
        for k, v in secrets.items():
            assert v not in text, f"secret {k} leaked into the {name}"
    assert f"hiclaw-creds-{w}" not in places["claim"]


# ---- 3. the token object: TokenReview ------------------------------------------------------------

def test_token_object_passes_token_review(tb, api, custom, namespace, ctl, s3, runtime):
    ns = namespace
    w = bound_worker(api, custom, ns)
    key = sx.deps_keys(ns, w)["token"]
    head = sx.s3_head(s3, tb.WC_S3_BUCKET, key)
    token = sx.s3_get(s3, tb.WC_S3_BUCKET, key).decode()
    # the sandbox sees that token at the pod's path (SPEC 7)
    sname = status(ch.get_worker(custom, ns, w))["instance"]["name"]
    runtime.wait_mounted(ns, sname)
    assert runtime.file(ns, sname, "/var/run/secrets/hiclaw/token") == token.encode()
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

# ---- 4. status from the real Sandbox and its Pod ---------------------------------------------------

def test_status_follows_the_sandbox_and_its_pod(tb, api, core, custom, namespace, ctl):
    ns = namespace
    w = bound_worker(api, custom, ns)
    wk = ch.get_worker(custom, ns, w)
    st = status(wk)
    sname, cn = st["instance"]["name"], sx.claim_name(w)
    spod = bed.sandbox_pod(core, ns, sname)
    assert st["instance"] == {"kind": "Sandbox", "name": sname, "claimName": cn, "podIP": spod.status.pod_ip}
    assert st["containerState"] == "Running"
    assert cond(wk, "Ready")["status"] == "True" and cond(wk, "Synced")["status"] == "True"
    assert st["backendRuntime"] == "sandbox"
    assert st["observedGeneration"] == wk["metadata"]["generation"]
    suid = sx.get_sandbox(custom, ns, sname)["metadata"]["uid"]

    # the agent crash-loops (kwok, as its kubelet): OpenKruise reports the Sandbox Running but not
    # Ready, with the container's message -> Failed, saying why
    bed.kwok_state(core, ns, sname, "crashloop")
    wk = ch.wait_phase(custom, ns, w, "Failed", timeout=30)
    assert "restarting failed container=worker" in status(wk)["message"], status(wk)
    assert cond(wk, "Ready")["status"] == "False"
    bed.kwok_state(core, ns, sname, "ready")
    ch.wait_phase(custom, ns, w, "Running", timeout=30)

    # someone pauses the Sandbox while the Worker should run: the controller resumes it
    custom.patch_namespaced_custom_object(sx.KG, sx.KV, ns, sx.SANDBOXES, sname, {"spec": {"paused": True}})
    sx.wait(lambda: ch.events_for(api, ns, w, "Resumed"), 30, "a Resumed Event")
    wk = ch.wait_worker(custom, ns, w, lambda o: status(o).get("phase") == "Running"
                        and (sx.get_sandbox(custom, ns, sname) or {}).get("status", {}).get("phase") == "Running",
                        60, "Running again on the same Sandbox")
    assert cond(wk, "Ready")["status"] == "True"
    assert [s["metadata"]["uid"] for s in sx.sandboxes_of(custom, ns, w)] == [suid]


# ---- 5. a pool that cannot fill: the claim times out, is retried with backoff ---------------------

UNFILLABLE_POOL = "unfillable"


@pytest.fixture(scope="module")
def unfillable(tb, core, custom):
    """A namespace whose warm pool the operator manages (not the controller): its template holds
    every Pod (kwok never runs it), so no sandbox ever becomes ready and OpenKruise times claims
    out. HICLAW_SANDBOX_CLAIM_TIMEOUT 4s, wait-ready 2s."""
    ns = make_namespace(core, "sbx-unfillable")
    custom.create_namespaced_custom_object(sx.KG, sx.KV, ns, sx.SANDBOXSETS, {
        "apiVersion": f"{sx.KG}/{sx.KV}", "kind": "SandboxSet",
        "metadata": {"name": UNFILLABLE_POOL, "namespace": ns},
        "spec": {"replicas": 0, "runtimes": [{"name": "csi"}, {"name": "agent-runtime"}],
                 "template": {"metadata": {"labels": dict(bed.HOLD)},
                              "spec": {"automountServiceAccountToken": False,
                                       "containers": [{"name": "worker", "image": "registry.example/agent:e2e"}]}}}})
    c = sx.sandbox_controller(tb, core, ns, {"HICLAW_SANDBOX_MANAGE_POOL": "false",
                                             "HICLAW_SANDBOX_POOL": UNFILLABLE_POOL,
                                             "HICLAW_SANDBOX_CLAIM_TIMEOUT": "4s",
                                             "HICLAW_SANDBOX_WAIT_READY_TIMEOUT": "2s"})
    yield ns
    c.close()
    drop_namespace(core, ns)


def test_claim_timeout_fails_then_retries_with_new_claim(tb, api, core, custom, unfillable):
    ns = unfillable
    w = unique("sw")
    cn = sx.claim_name(w)
    creations, phases = [], []

    def on_claim(etype, obj):
        if obj["metadata"]["name"] == cn and etype == "ADDED":
            creations.append((time.monotonic(), obj["metadata"]["uid"]))

    rec = sx.custom_recorder(api, custom, ns, sx.CLAIMS, on_claim)
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            try:
                o = ch.get_worker(custom, ns, w)
                phases.append((status(o).get("phase"), status(o).get("message", ""), cond(o, "Synced").get("reason"),
                               status(o).get("containerState")))
            except Exception:
                pass
            time.sleep(0.05)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        make_worker(custom, ns, w)
        # while OpenKruise is claiming: Starting, with the claim's own words
        sx.wait(lambda: [p for p in phases if p[0] == "Starting" and p[3] == "Claiming"
                         and p[1].startswith(f"waiting for claim {cn} to ")], 30, "Starting while claiming")
        sx.wait(lambda: any(p[0] == "Failed" and "Timeout" in p[1] and "0/1" in p[1] and p[2] == "ClaimFailed"
                            for p in phases), 60, "phase Failed with the claim's timeout message")
        sx.wait(lambda: len(creations) >= 2, 60, "a new claim")
        assert creations[1][1] != creations[0][1]
        time.sleep(12)  # claims keep timing out: the retries must back off, not spin
    finally:
        stop.set()
        t.join(5)
        rec.stop()
    n = len(creations)
    gaps = [round(b[0] - a[0], 2) for a, b in zip(creations, creations[1:])]
    print(f"claim attempts over the first timeout, its retry and ~12 s more: {n}; gaps: {gaps}")
    evs = ch.events_for(api, ns, w, "ClaimFailed")
    assert evs and evs[0]["type"] == "Warning"
    # The recreate backoff starts at 10 s and doubles: the first claim, its retry and ~12 s of
    # further timeouts make at most 3 claims; a retry loop without backoff makes dozens.
    assert n <= 3, f"{n} claims in ~12 s: the claim timeout is retried without backoff; gaps {gaps}"
    assert all(g >= 9.0 for g in gaps), f"retries came sooner than the 10 s backoff: {gaps}"
    if len(gaps) >= 2:
        assert gaps[-1] > gaps[0], f"retry gaps do not grow: {gaps}"
    # the operator fixes the pool; the Worker converges on the next retry
    custom.patch_namespaced_custom_object(sx.KG, sx.KV, ns, sx.SANDBOXSETS, UNFILLABLE_POOL,
                                          {"spec": {"template": {"metadata": {"labels": {bed.HOLD_LABEL: None}}}}})
    ch.wait_phase(custom, ns, w, "Running", timeout=120)


# ---- 6. pause / resume ---------------------------------------------------------------------------

def test_auto_with_storage_and_openkruise_is_on(tb, api, core, custom):
    """Issue 19 item 6: HICLAW_SANDBOX_ENABLED=auto with worker-deps storage configured, on a
    cluster serving OpenKruise agents: the backend is on (said once) and a sandbox Worker binds
    a claim and runs."""
    ns = make_namespace(core, "sbx-auto")
    c = sx.sandbox_controller(tb, core, ns, {"HICLAW_SANDBOX_ENABLED": "auto"})
    try:
        c.wait_log("sandbox backend on (HICLAW_SANDBOX_ENABLED=auto", timeout=10, since_start=True)
        w = bound_worker(api, custom, ns)
        assert sx.get_claim(custom, ns, sx.claim_name(w)) is not None
        assert ch.wait_phase(custom, ns, w, "Running", timeout=60)["status"]["backendRuntime"] == "sandbox"
        assert "sandbox backend off" not in c.log_text()
    finally:
        c.close()
        drop_namespace(core, ns)


def test_sleeping_with_pause_on_pauses_and_resumes(tb, api, core, custom, s3, runtime):
    ns = make_namespace(core, "sbx-pause")
    c = sx.sandbox_controller(tb, core, ns, {"HICLAW_SANDBOX_PAUSE": "true"})
    try:
        w = bound_worker(api, custom, ns)
        sbx = sx.sandboxes_of(custom, ns, w)[0]
        sname, suid = sbx["metadata"]["name"], sbx["metadata"]["uid"]
        claim_uid = sx.get_claim(custom, ns, sx.claim_name(w))["metadata"]["uid"]
        first = runtime.wait_mounted(ns, sname)
        ch.patch_worker(custom, ns, w, {"spec": {"state": "Sleeping"}})
        sx.wait(lambda: (sx.get_sandbox(custom, ns, sname) or {}).get("spec", {}).get("paused") is True, 20,
                "spec.paused true")
        # OpenKruise stops the agent (its Pod is deleted) and reports Paused -> Sleeping
        wk = ch.wait_phase(custom, ns, w, "Sleeping", timeout=60)
        assert cond(wk, "Ready")["status"] == "False"
        assert sx.get_sandbox(custom, ns, sname)["status"]["phase"] == "Paused"
        assert bed.sandbox_pod(core, ns, sname) is None, "a paused sandbox's agent still runs"
        assert sx.get_sandbox(custom, ns, sname)["metadata"]["uid"] == suid
        assert sx.get_claim(custom, ns, sx.claim_name(w))["metadata"]["uid"] == claim_uid
        ch.patch_worker(custom, ns, w, {"spec": {"state": "Running"}})
        sx.wait(lambda: sx.get_sandbox(custom, ns, sname)["spec"].get("paused") is False, 20, "spec.paused false")
        wk = ch.wait_phase(custom, ns, w, "Running", timeout=60)
        assert cond(wk, "Ready")["status"] == "True"
        assert [s["metadata"]["uid"] for s in sx.sandboxes_of(custom, ns, w)] == [suid]
        assert status(wk)["instance"]["name"] == sname
        # resumed in a new Pod, initialised again (skipRefresh) and every mount made again, with
        # the same env file
        again = runtime.wait_mounted(ns, sname)
        assert again["uid"] != first["uid"]
        assert [i["skipRefresh"] for i in again["inits"]] == [True]
        assert runtime.snapshot(ns, sname, "/mnt/hiclaw/env/env") == \
            sx.s3_get(s3, tb.WC_S3_BUCKET, sx.deps_keys(ns, w)["env"])
    finally:
        c.close()
        drop_namespace(core, ns)


def test_sleeping_with_pause_off_releases_claim_and_sandbox(tb, api, core, custom, namespace, ctl, s3):
    ns = namespace
    w = bound_worker(api, custom, ns)
    ch.patch_worker(custom, ns, w, {"spec": {"state": "Sleeping"}})
    wk = ch.wait_phase(custom, ns, w, "Sleeping", timeout=30)
    assert sx.get_claim(custom, ns, sx.claim_name(w)) is None
    assert sx.sandboxes_of(custom, ns, w) == []
    assert not status(wk).get("instance")
    assert cond(wk, "Ready")["status"] == "False"
    sx.wait(lambda: ch.worker_pods(core, ns, w, sandbox_pods=True) == [], 30, "the sandbox's Pod gone")
    # waking up claims anew
    ch.patch_worker(custom, ns, w, {"spec": {"state": "Running"}})
    ch.wait_phase(custom, ns, w, "Running", timeout=60)


# ---- 7. Stopped and deletion: order, nothing left --------------------------------------------------

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

    ch.patch_worker(custom, ns, w, {"spec": {"state": "Running"}})
    ch.wait_phase(custom, ns, w, "Running", timeout=60)
    assert sx.s3_head(s3, tb.WC_S3_BUCKET, keys["token"]) is not None
    mark = ch.audit_offset(tb)
    cn, sname = sx.claim_name(w), sx.sandboxes_of(custom, ns, w)[0]["metadata"]["name"]

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
    sx.wait(lambda: ch.worker_pods(core, ns, w, sandbox_pods=True) == [], 30, "the sandbox's Pod gone")
    # the controller deleted what it made; nothing waited for the garbage collector
    # (a delete repeated while a finalizer holds the object is answered 200 again: count who, not how often)
    assert set(ch.deleted_by(tb, mark, "sandboxclaims", ns, cn)) == {ctl.username}
    assert set(ch.deleted_by(tb, mark, "sandboxes", ns, sname)) == {ctl.username}
    assert set(ch.deleted_by(tb, mark, "serviceaccounts", ns, sx.sa_name(w))) == {ctl.username}


# ---- 8. two Sandboxes for one Worker ---------------------------------------------------------------

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


# ---- 9. the backend switch guard, both ways ---------------------------------------------------------

def test_switch_guard_both_ways_never_both_instances(tb, api, core, custom, namespace, ctl):
    ns = namespace
    w = bound_worker(api, custom, ns)
    pods, sbxs, both = {}, {}, []
    lock = threading.Lock()

    def track(store, is_instance):
        def on(etype, obj):
            if (obj["metadata"].get("labels") or {}).get("hiclaw.io/worker") != w or not is_instance(obj):
                return
            with lock:
                if etype == "DELETED":
                    store.pop(obj["metadata"]["uid"], None)
                else:
                    store[obj["metadata"]["uid"]] = obj["metadata"]["name"]
                if pods and sbxs:
                    both.append((dict(pods), dict(sbxs)))
        return on

    def pod_instance(obj):  # the sandbox's own Pod is part of the sandbox instance
        return (obj["metadata"].get("labels") or {}).get("hiclaw.io/backend", "pod") == "pod" and not any(
            r.get("controller") and r.get("kind") != "Worker" for r in obj["metadata"].get("ownerReferences") or [])

    with lock:
        for s in sx.sandboxes_of(custom, ns, w):
            sbxs[s["metadata"]["uid"]] = s["metadata"]["name"]
    rp = sx.pod_recorder(api, core, ns, track(pods, pod_instance))
    rs = sx.custom_recorder(api, custom, ns, sx.SANDBOXES, track(sbxs, lambda o: True))
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
                            and status(o).get("backendRuntime") == "pod", 60, "Running on pod")
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
                            and status(o).get("backendRuntime") == "sandbox", 60, "Running on sandbox")
        assert ch.worker_pods(core, ns, w) == []
    finally:
        rp.stop()
        rs.stop()
    assert not both, f"a Pod and a Sandbox of {w} existed at the same time: {both[:3]}"
    assert not rp.errors and not rs.errors, (rp.errors, rs.errors)


# ---- 10. S3 unreachable ---------------------------------------------------------------------------

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
        wk = ch.wait_phase(custom, ns, w, "Running", timeout=120)
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
