"""Issue 19 item 1 — `worker-controller explain NAMESPACE/NAME` on the real bed.

One sandbox-enabled controller runs the namespace (under render-rbac's identity), its warm pool
one the operator manages and that cannot fill (its template holds every Pod: no sandbox ever
becomes ready, so a claim stays Claiming). explain runs with the controller's own configuration
(the same environment and flags as run) but as a ServiceAccount whose Role grants get and list
only, and for each case the test asserts the reason in the text output and in --output json:

- a Running pod Worker: nothing to do, its Pod Running and ready;
- a blocked switch: a pod Worker whose Pod is held Pending switched to sandbox
  (BackendSwitchBlocked); then a stray SandboxClaim labelled for it beside the Pod, instances of
  both backends (BackendSwitchBlocked, naming both);
- a sandbox Worker waiting for its claim (Starting, the claim Claiming), its worker-deps present
  and owned by it;
- a worker-deps conflict: another install's env file at the Worker's key (WorkerDepsConflict,
  naming the owner).

explain writes nothing, checked from outside: the API server's audit log holds no write request
(allowed or denied) by explain's identity, and every worker-deps object keeps its ETag and
LastModified. A Worker that does not exist is exit 1; a bad argument exit 2.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from kubernetes import client

import bed
import controller_harness as ch
import sandbox_support as sx
from conftest import unique

POOL = "explain-unfillable"
RO_SA = "explain-readonly"


@pytest.fixture(scope="module")
def ctl(tb, core, custom, namespace):
    ns = namespace
    custom.create_namespaced_custom_object(sx.KG, sx.KV, ns, sx.SANDBOXSETS, {
        "apiVersion": f"{sx.KG}/{sx.KV}", "kind": "SandboxSet",
        "metadata": {"name": POOL, "namespace": ns},
        "spec": {"replicas": 0, "runtimes": [{"name": "csi"}, {"name": "agent-runtime"}],
                 "template": {"metadata": {"labels": dict(bed.HOLD)},
                              "spec": {"automountServiceAccountToken": False,
                                       "containers": [{"name": "worker", "image": "registry.example/agent:e2e"}]}}}})
    c = sx.sandbox_controller(tb, core, ns, {"HICLAW_SANDBOX_MANAGE_POOL": "false", "HICLAW_SANDBOX_POOL": POOL,
                                             "HICLAW_SANDBOX_CLAIM_TIMEOUT": "600s"})
    yield c
    c.close()


@pytest.fixture(scope="module")
def ro_token(tb, core, ctl, namespace):
    """A ServiceAccount whose Role grants get and list only, on everything explain reads."""
    ns = namespace
    rbac = client.RbacAuthorizationV1Api(core.api_client)
    core.create_namespaced_service_account(ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=RO_SA)))
    rules = [client.V1PolicyRule(api_groups=[g], resources=r, verbs=["get", "list"]) for g, r in (
        ("hiclaw.io", ["workers"]), ("", ["pods", "secrets", "serviceaccounts"]),
        ("agents.kruise.io", ["sandboxclaims", "sandboxes", "sandboxsets"]), ("agents.x-k8s.io", ["sandboxes"]))]
    rbac.create_namespaced_role(ns, client.V1Role(metadata=client.V1ObjectMeta(name=RO_SA), rules=rules))
    rbac.create_namespaced_role_binding(ns, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name=RO_SA),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=RO_SA),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name=RO_SA, namespace=ns)]))
    path = f"{ctl.dir}/explain-token"
    with open(path, "w") as f:
        f.write(ch.request_token(core, ns, RO_SA, 3600))
    return path


def explain(tb, ctl, token_path, target, *extra):
    """explain with run's configuration (the controller's environment, scrubbed) as the
    read-only identity. Returns (rc, stdout, stderr)."""
    argv = [ch.binary(), "explain", target, *extra, "--server", tb.WC_APISERVER_URL, "--token-file", token_path,
            "--ca-file", tb.WC_CA_FILE]
    r = subprocess.run(argv, env=ctl.process_env(), capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout, r.stderr


class NoWrites:
    """Around explain: no write request by its identity reaches the API server (the audit log
    records denied writes too), and no worker-deps object of the namespace changes."""

    def __init__(self, tb, s3, ns):
        self.tb, self.s3, self.ns = tb, s3, ns
        self.user = f"system:serviceaccount:{ns}:{RO_SA}"

    def objects(self):
        out = {}
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.tb.WC_S3_BUCKET,
                                                                  Prefix=sx.deps_prefix(self.ns))
        for page in pages:
            for o in page.get("Contents") or []:
                out[o["Key"]] = (o["ETag"], o["LastModified"])
        return out

    def __enter__(self):
        self.mark = ch.audit_offset(self.tb)
        self.before = self.objects()
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            return
        writes = [w for w in ch.audit_writes(self.tb, self.mark) if w["user"] == self.user]
        assert writes == [], f"explain made write requests: {writes}"
        assert self.objects() == self.before, "a worker-deps object changed while explain ran"


def both(tb, s3, ctl, tok, ns, name):
    """explain's text and JSON outputs for one Worker (exit 0 each), with no writes."""
    with NoWrites(tb, s3, ns):
        rc, text, err = explain(tb, ctl, tok, f"{ns}/{name}")
        assert rc == 0, err
        rc, js, err = explain(tb, ctl, tok, f"{ns}/{name}", "--output", "json")
        assert rc == 0, err
    return text, json.loads(js)


def status(w):
    return w.get("status") or {}


def test_a_running_pod_worker(tb, core, custom, s3, namespace, ctl, ro_token):
    ns, name = namespace, unique("run")
    ch.create_worker(custom, ns, name)
    ch.wait_condition(custom, ns, name, "Ready", "True", timeout=60)
    text, out = both(tb, s3, ctl, ro_token, ns, name)
    nxt = out["next"]
    assert nxt["handled"] is True and nxt["reason"] == "Running", nxt
    assert nxt["summary"] == "nothing: the Worker runs as its spec asks" and nxt["actions"] == []
    assert nxt["status"]["phase"] == "Running" and nxt["status"]["ready"]["status"] == "True"
    pods = [i for i in out["instances"] if i["backend"] == "pod"]
    assert [(p["kind"], p["name"], p["state"].get("phase"), p["state"].get("ready")) for p in pods] == \
        [("Pod", ch.pod_name(name), "Running", True)]
    assert out["spec"]["backendRuntime"] == "pod" and out["worker"]["controller"] == ctl.name
    assert out["backoff"]["visible"] is False
    assert "reason:  Running" in text
    assert "does:    nothing: the Worker runs as its spec asks" in text
    assert f"Pod {ch.pod_name(name)}: phase=Running" in text
    assert "held in the running controller's memory, not visible here" in text


def test_a_blocked_switch(tb, api, core, custom, s3, namespace, ctl, ro_token):
    ns, name = namespace, unique("sw")
    ch.create_worker(custom, ns, name, labels=dict(bed.HOLD))  # its Pod stays Pending
    ch.wait_pod(core, ns, name, timeout=30, what="held Pod")
    ch.wait_phase(custom, ns, name, "Starting", timeout=30)
    ch.patch_worker(custom, ns, name, {"spec": {"backendRuntime": "sandbox"}})
    ch.wait_condition(custom, ns, name, "Synced", "False", "BackendSwitchBlocked", timeout=30)
    text, out = both(tb, s3, ctl, ro_token, ns, name)
    nxt = out["next"]
    assert nxt["reason"] == "BackendSwitchBlocked", nxt
    assert nxt["message"] == "spec.backendRuntime cannot change from pod to sandbox until the Worker is Stopped"
    assert nxt["actions"] == []
    assert [i["name"] for i in out["instances"] if i["backend"] == "pod"] == [ch.pod_name(name)]
    assert "reason:  BackendSwitchBlocked" in text
    assert "why:     spec.backendRuntime cannot change from pod to sandbox until the Worker is Stopped" in text

    # a claim someone else made for it beside the Pod: instances of both backends, none touched
    cn = sx.claim_name(name)
    custom.create_namespaced_custom_object(sx.KG, sx.KV, ns, sx.CLAIMS, {
        "apiVersion": f"{sx.KG}/{sx.KV}", "kind": "SandboxClaim",
        "metadata": {"name": cn, "namespace": ns,
                     "labels": {"hiclaw.io/worker": name, "hiclaw.io/controller": ctl.name,
                                "hiclaw.io/backend": "sandbox"}},
        "spec": {"templateName": POOL, "replicas": 1, "claimTimeout": "600s"}})
    ch.wait_worker(custom, ns, name, lambda w: "both backends" in (ch.condition(w, "Synced") or {}).get("message", ""),
                   30, "both backends named")
    text, out = both(tb, s3, ctl, ro_token, ns, name)
    nxt = out["next"]
    assert nxt["reason"] == "BackendSwitchBlocked", nxt
    assert "instances of both backends (Pod and sandbox) exist" in nxt["message"], nxt["message"]
    assert nxt["actions"] == []
    kinds = sorted((i["backend"], i["kind"], i["name"]) for i in out["instances"])
    assert kinds == [("pod", "Pod", ch.pod_name(name)), ("sandbox", "SandboxClaim", cn)], kinds
    assert "reason:  BackendSwitchBlocked" in text
    assert f"sandbox  SandboxClaim {cn}" in text and f"pod      Pod {ch.pod_name(name)}" in text
    custom.delete_namespaced_custom_object(sx.KG, sx.KV, ns, sx.CLAIMS, cn)


def test_a_sandbox_worker_waiting_for_its_claim(tb, core, custom, s3, namespace, ctl, ro_token):
    ns, name = namespace, unique("wait")
    w = ch.create_worker(custom, ns, name, backendRuntime="sandbox")
    cn = sx.claim_name(name)
    # OpenKruise binds a Sandbox of the pool to the claim, whose Pod the pool's template holds:
    # the claim never completes (it carries no phase while claiming)
    ch.wait_worker(custom, ns, name, lambda o: status(o).get("message", "").startswith(f"waiting for claim {cn} to "), 60,
                   "Starting while claiming")
    assert sx.get_claim(custom, ns, cn) is not None
    text, out = both(tb, s3, ctl, ro_token, ns, name)
    nxt = out["next"]
    assert nxt["reason"] == "Starting", nxt
    assert nxt["message"].startswith(f"waiting for claim {cn} to "), nxt["message"]
    assert nxt["status"]["containerState"] == "Claiming" and nxt["status"]["instance"]["claimName"] == cn
    assert nxt["actions"] == []
    claims = [i for i in out["instances"] if i["kind"] == "SandboxClaim"]
    assert [c["name"] for c in claims] == [cn], claims
    assert claims[0]["state"].get("phase") in (None, "", "Claiming") and claims[0]["state"]["claimedReplicas"] == 0
    for sb in [i for i in out["instances"] if i["kind"] == "Sandbox"]:  # the one being bound, if any
        assert f"Sandbox {sb['name']}" in nxt["message"], (sb["name"], nxt["message"])
    deps = out["beside"]["workerDeps"]
    assert deps["configured"] is True and deps["path"] == sx.deps_keys(ns, name)["dir"] + "/"
    objs = {o["name"]: o for o in deps["objects"]}
    for k in ("token", "env", "data"):
        assert objs[k]["present"] is True and objs[k]["owner"]["uid"] == w["metadata"]["uid"], objs[k]
        assert "conflict" not in objs[k]
    assert objs["token"]["expires"] and objs["token"]["refreshInSeconds"] > 0
    assert "reason:  Starting" in text and f"why:     waiting for claim {cn} to " in text
    assert f"sandbox  SandboxClaim {cn}:" in text


def test_a_worker_deps_conflict(tb, core, custom, s3, namespace, ctl, ro_token):
    ns, name = namespace, unique("dc")
    key = sx.deps_keys(ns, name)["env"]
    s3.put_object(Bucket=tb.WC_S3_BUCKET, Key=key, Body=b"export X='other install'\n",
                  Metadata={"hiclaw-owner-uid": "uid-of-another-install", "hiclaw-owner-namespace": ns,
                            "hiclaw-owner-name": name})
    ch.create_worker(custom, ns, name, backendRuntime="sandbox")
    ch.wait_condition(custom, ns, name, "Synced", "False", "WorkerDepsConflict", timeout=30)
    text, out = both(tb, s3, ctl, ro_token, ns, name)
    nxt = out["next"]
    assert nxt["reason"] == "WorkerDepsConflict", nxt
    assert "uid-of-another-install" in nxt["message"] and nxt["actions"] == []
    env = [o for o in out["beside"]["workerDeps"]["objects"] if o["name"] == "env"][0]
    assert env["present"] is True and env["owner"]["uid"] == "uid-of-another-install"
    assert "belongs to Worker" in env["conflict"]
    assert "reason:  WorkerDepsConflict" in text
    assert "uid-of-another-install" in text
    assert sx.s3_get(s3, tb.WC_S3_BUCKET, key) == b"export X='other install'\n"


def test_not_found_and_bad_usage(tb, core, custom, namespace, ctl, ro_token):
    rc, out, err = explain(tb, ctl, ro_token, f"{namespace}/no-such-worker")
    assert rc == 1 and out == "" and f"Worker {namespace}/no-such-worker not found" in err, (rc, out, err)
    rc, out, err = explain(tb, ctl, ro_token, f"{namespace}/x", "--output", "yaml")
    assert rc == 2 and "--output takes text or json" in err, (rc, err)
    rc, out, err = explain(tb, ctl, ro_token, "a/b/c")
    assert rc == 2, (rc, err)


def test_the_no_writes_check_can_say_no(tb, s3, namespace, ctl, ro_token):
    """Calibration: the same check around a command that writes as the same identity (`check`
    creates SelfSubjectAccessReviews) fails — so its silence around explain means something."""
    argv = [ch.binary(), "check", "--server", tb.WC_APISERVER_URL, "--token-file", ro_token, "--ca-file", tb.WC_CA_FILE]
    with pytest.raises(AssertionError, match="explain made write requests"):
        with NoWrites(tb, s3, namespace):
            subprocess.run(argv, env=ctl.process_env(), capture_output=True, text=True, timeout=120)
