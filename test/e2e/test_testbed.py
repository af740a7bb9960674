"""The test bed itself: a real, RBAC-enforcing kube-apiserver, kube-controller-manager,
kube-scheduler, kwok Nodes that run Pods, the real OpenKruise agents controller with its CRDs, the
played agent-runtime, and a real SigV4-verifying S3 server. Everything listens on loopback."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from botocore.exceptions import ClientError
from kubernetes import client
from kubernetes.client.rest import ApiException

from conftest import unique
from sandbox_support import CLAIMS, KG as GROUP, KV as VERSION


def kubectl(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", *args], capture_output=True, text=True, check=check, timeout=60,
                          env=env or os.environ)


# ---- control plane ---------------------------------------------------------------------------
def test_readyz_via_kubectl(tb):
    out = kubectl("get", "--raw", "/readyz")
    assert out.stdout.strip() == "ok"


def test_versions_are_stamped(tb):
    v = json.loads(kubectl("version", "-o", "json").stdout)
    versions = dict(line.split() for line in open(os.path.join(tb.WC_TESTBIN, "VERSIONS")))
    assert v["serverVersion"]["gitVersion"] == versions["kubernetes"]
    assert v["clientVersion"]["gitVersion"] == versions["kubernetes"]
    assert int(v["serverVersion"]["minor"]) >= 34


def test_unprivileged_identity_is_denied_pod_list(tb, user_api, namespace):
    alice = client.CoreV1Api(user_api(tb.WC_TEST_USER1_TOKEN))
    with pytest.raises(ApiException) as e:
        alice.list_namespaced_pod(namespace)
    assert e.value.status == 403
    assert tb.WC_TEST_USER1 in e.value.body
    # The same identity is authenticated (not 401) and RBAC is what decides: grant, then allowed.
    review = client.AuthenticationV1Api(user_api(tb.WC_TEST_USER1_TOKEN)).create_self_subject_review(
        client.V1SelfSubjectReview())
    assert review.status.user_info.username == tb.WC_TEST_USER1


def test_rbac_grant_allows_then_other_user_still_denied(tb, api, user_api, namespace):
    rbac = client.RbacAuthorizationV1Api(api)
    role = unique("pod-reader")
    rbac.create_namespaced_role(namespace, client.V1Role(
        metadata=client.V1ObjectMeta(name=role),
        rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["list"])]))
    rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name=role),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=role),
        subjects=[client.RbacV1Subject(kind="User", name=tb.WC_TEST_USER2, api_group="rbac.authorization.k8s.io")]))
    bob = client.CoreV1Api(user_api(tb.WC_TEST_USER2_TOKEN))
    assert bob.list_namespaced_pod(namespace).items == []
    carol = client.CoreV1Api(user_api(tb.WC_TEST_USER3_TOKEN))
    with pytest.raises(ApiException) as e:
        carol.list_namespaced_pod(namespace)
    assert e.value.status == 403


def test_bad_token_is_unauthorized(tb, user_api):
    with pytest.raises(ApiException) as e:
        client.CoreV1Api(user_api("not-a-valid-token")).list_namespace()
    assert e.value.status == 401


def test_client_certificate_identity(tb, user_api, tmp_path):
    key, csr, crt = tmp_path / "u.key", tmp_path / "u.csr", tmp_path / "u.crt"
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-subj", "/O=wc:testers/CN=wc-cert-user", "-keyout", str(key), "-out", str(csr)],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", tb.WC_CLIENT_CA_CERT, "-CAkey",
                    tb.WC_CLIENT_CA_KEY, "-CAcreateserial", "-days", "1", "-out", str(crt)],
                   check=True, capture_output=True, cwd=tmp_path)
    review = client.AuthenticationV1Api(user_api(cert=str(crt), key=str(key))).create_self_subject_review(
        client.V1SelfSubjectReview())
    assert review.status.user_info.username == "wc-cert-user"
    assert "wc:testers" in review.status.user_info.groups


def test_token_request_and_review(tb, api, core, user_api, namespace):
    sa = unique("sa")
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=sa)))
    audience = "hiclaw-e2e-audience"
    tr = core.create_namespaced_service_account_token(sa, namespace, client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[audience], expiration_seconds=3600)))
    token = tr.status.token
    assert token and tr.status.expiration_timestamp

    authn = client.AuthenticationV1Api(api)
    ok = authn.create_token_review(client.V1TokenReview(
        spec=client.V1TokenReviewSpec(token=token, audiences=[audience])))
    assert ok.status.authenticated is True
    assert ok.status.user.username == f"system:serviceaccount:{namespace}:{sa}"
    assert audience in ok.status.audiences

    wrong = authn.create_token_review(client.V1TokenReview(
        spec=client.V1TokenReviewSpec(token=token, audiences=["some-other-audience"])))
    assert not wrong.status.authenticated

    # A token for the default audience (the issuer) authenticates against the API itself.
    default = core.create_namespaced_service_account_token(sa, namespace, client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[])))
    who = client.AuthenticationV1Api(user_api(default.status.token)).create_self_subject_review(
        client.V1SelfSubjectReview())
    assert who.status.user_info.username == f"system:serviceaccount:{namespace}:{sa}"
    # ... and the audience-specific one does not (wrong audience for the apiserver).
    with pytest.raises(ApiException) as e:
        client.CoreV1Api(user_api(token)).list_namespace()
    assert e.value.status == 401


# ---- the real OpenKruise schema --------------------------------------------------------------
def claim_body(name: str, **spec) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SandboxClaim",
            "metadata": {"name": name}, "spec": {"templateName": "pool", **spec}}


@pytest.mark.parametrize("field,value,message", [
    ("claimTimeout", "0s", "claimTimeout must be at least 1 second"),
    ("waitReadyTimeout", "500ms", "waitReadyTimeout must be at least 1 second"),
    ("replicas", 0, "should be greater than or equal to 1"),
])
def test_claim_schema_rejects(custom, namespace, field, value, message):
    with pytest.raises(ApiException) as e:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, CLAIMS,
                                               claim_body(unique("bad"), **{field: value}))
    assert e.value.status == 422
    assert message in e.value.body


def test_claim_schema_defaults_and_immutable_replicas(custom, namespace):
    name = unique("good")
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, CLAIMS,
                                                     claim_body(name, labels={"hiclaw.io/worker": "alice"}))
    spec = created["spec"]
    assert spec["replicas"] == 1
    assert spec["claimTimeout"] == "1m"
    assert spec["waitReadyTimeout"] == "30s"
    assert spec["ttlAfterCompleted"] == "60m"
    assert spec["createOnNoStock"] is True
    assert spec["skipInitRuntime"] is False
    with pytest.raises(ApiException) as e:
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, CLAIMS, name, {"spec": {"replicas": 2}})
    assert e.value.status == 422
    assert "replicas is immutable" in e.value.body
    # A mutable field still patches fine.
    patched = custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, CLAIMS, name,
                                                    {"spec": {"claimTimeout": "5m"}})
    assert patched["spec"]["claimTimeout"] == "5m"


def test_crds_established(api, tb):
    """Every CRD of the OpenKruise agents release the controller binary was built from."""
    ext = client.ApiextensionsV1Api(api)
    files = sorted(f for f in os.listdir(tb.WC_CRDS_DIR) if f.endswith(".yaml"))
    assert len(files) >= 11, files
    for f in files:
        crd = ext.read_custom_resource_definition(f[len(GROUP) + 1:-len(".yaml")] + "." + GROUP)
        conds = {c.type: c.status for c in crd.status.conditions}
        assert conds.get("Established") == "True", f


# ---- the real parts around the API server ------------------------------------------------------
def _bed_pids(tb) -> dict:
    out = {}
    for f in os.listdir(tb.WC_TESTBED):
        if f.endswith(".pid"):
            with open(os.path.join(tb.WC_TESTBED, f)) as fh:
                out[f[:-4]] = int(fh.read().split()[0])
    return out


def test_every_bed_process_listens_on_loopback_only(tb):
    """No server of the bed (the Go components with their default listeners included) is
    reachable from outside this host: every listening socket of every bed process is on 127/8 or
    ::1."""
    import socket
    import struct

    pids = _bed_pids(tb)
    assert set(pids) >= {"etcd", "kube-apiserver", "minio", "kube-controller-manager", "kube-scheduler", "kwok",
                         "openkruise", "agent-sandbox", "agent-runtime"}, pids
    inodes = {}
    for name, pid in pids.items():
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes[link[8:-1]] = name
    listening = []
    for proto, fam in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        with open(f"/proc/net/{proto}") as f:
            next(f)
            for line in f:
                parts = line.split()
                local, state, inode = parts[1], parts[3], parts[9]
                if state != "0A" or inode not in inodes:  # 0A = LISTEN
                    continue
                hexip, port = local.split(":")
                raw = bytes.fromhex(hexip)
                if fam == socket.AF_INET:
                    ip = socket.inet_ntop(fam, raw[::-1])
                else:
                    ip = socket.inet_ntop(fam, b"".join(struct.pack("<I", *struct.unpack(">I", raw[i:i + 4]))
                                                        for i in range(0, 16, 4)))
                listening.append((inodes[inode], ip, int(port, 16)))
    assert listening, "found no listening sockets at all"
    outside = [(n, ip, p) for n, ip, p in listening if not (ip.startswith("127.") or ip == "::1")]
    assert not outside, f"listening beyond loopback: {outside}"
    names = {n for n, _, _ in listening}
    assert {"kube-apiserver", "etcd", "minio", "openkruise", "agent-runtime"} <= names, listening


def test_kwok_nodes_run_scheduled_pods(tb, core, namespace):
    """kube-controller-manager took the not-ready taint off the kwok Nodes; kube-scheduler binds
    a Pod; kwok runs it with a loopback pod IP and an imageID; its deletion completes."""
    import bed
    from conftest import wait_for

    nodes = core.list_node(label_selector="type=kwok").items
    assert sorted(n.metadata.name for n in nodes) == sorted(tb.WC_KWOK_NODES.split())
    for n in nodes:
        assert {c.type: c.status for c in n.status.conditions}["Ready"] == "True"
        assert not n.spec.taints and not n.spec.pod_cidr
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="runs"), spec=client.V1PodSpec(
        automount_service_account_token=False, containers=[client.V1Container(name="c", image="img/x:1")]))
    core.create_namespaced_pod(namespace, pod)
    p = wait_for(lambda: (lambda q: q if q.status.phase == "Running" else None)(
        core.read_namespaced_pod("runs", namespace)), 30, what="Running")
    assert p.spec.node_name in tb.WC_KWOK_NODES.split()
    assert {c.type: c.status for c in p.status.conditions}["Ready"] == "True"
    assert bed.pod_ip_in_bed_range(tb, p.status.pod_ip), p.status.pod_ip
    assert p.status.container_statuses[0].image_id.startswith("img/x:1@sha256:")
    core.delete_namespaced_pod("runs", namespace)  # graceful: kwok finishes it
    wait_for(lambda: not core.list_namespaced_pod(namespace, field_selector="metadata.name=runs").items, 30,
             what="Pod gone")


def test_kwok_stages_drive_failures_and_in_place_updates(tb, core, namespace):
    """The bed's own stages: a held Pod stays Pending; annotations drive it into the states a
    test needs; a changed image gets a new imageID (what OpenKruise waits for)."""
    import bed
    from conftest import wait_for

    core.create_namespaced_pod(namespace, client.V1Pod(
        metadata=client.V1ObjectMeta(name="driven", labels=bed.HOLD),
        spec=client.V1PodSpec(automount_service_account_token=False,
                              containers=[client.V1Container(name="worker", image="img/a:1")])))

    def pod():
        return core.read_namespaced_pod("driven", namespace)

    wait_for(lambda: pod().spec.node_name, 30, what="scheduled")
    import time
    time.sleep(1)
    assert pod().status.phase == "Pending" and not pod().status.pod_ip, "a held Pod ran"

    def state(s, check, message=None):
        bed.kwok_state(core, namespace, "driven", s, message)
        return wait_for(lambda: (lambda p: p if check(p) else None)(pod()), 30, what=s)

    def ready(p):
        return {c.type: c.status for c in p.status.conditions or []}.get("Ready")

    p = state("imagepull", lambda p: p.status.container_statuses and
              (p.status.container_statuses[0].state.waiting or client.V1ContainerStateWaiting()).reason == "ImagePullBackOff")
    assert p.status.phase == "Pending"
    p = state("ready", lambda p: p.status.phase == "Running" and ready(p) == "True")
    ip = p.status.pod_ip
    assert bed.pod_ip_in_bed_range(tb, ip)
    p = state("notready", lambda p: ready(p) == "False")
    assert p.status.phase == "Running" and p.status.container_statuses[0].state.running
    p = state("crashloop", lambda p: (p.status.container_statuses[0].state.waiting or
                                      client.V1ContainerStateWaiting()).reason == "CrashLoopBackOff")
    assert p.status.phase == "Running" and p.status.container_statuses[0].restart_count >= 1
    assert "restarting failed container=worker" in p.status.container_statuses[0].state.waiting.message
    p = state("ready", lambda p: ready(p) == "True")
    old_id = p.status.container_statuses[0].image_id
    core.patch_namespaced_pod("driven", namespace, {"spec": {"containers": [{"name": "worker", "image": "img/b:2"}]}})
    p = wait_for(lambda: (lambda p: p if p.status.container_statuses[0].image == "img/b:2" else None)(pod()), 30,
                 what="in-place image update")
    assert p.status.container_statuses[0].image_id != old_id and ready(p) == "True"
    assert p.status.pod_ip == ip, "an in-place update keeps the Pod and its IP"
    p = state("failed", lambda p: p.status.phase == "Failed", "e2e-oom")
    t = p.status.container_statuses[0].state.terminated
    assert (t.reason, t.exit_code, t.message) == ("OOMKilled", 137, "e2e-oom")


def test_kube_controller_manager_serviceaccounts_and_garbage_collection(core, namespace):
    """Every namespace gets its default ServiceAccount; an owned object goes with its owner."""
    from conftest import wait_for

    assert core.read_namespaced_service_account("default", namespace)
    owner = core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(
        name="owned", owner_references=[client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner",
                                                                uid=owner.metadata.uid)])))
    core.delete_namespaced_config_map("owner", namespace)
    wait_for(lambda: not core.list_namespaced_config_map(namespace, field_selector="metadata.name=owned").items, 60,
             what="the garbage collector deleting the dependent")


def test_openkruise_claims_a_sandbox_and_the_played_runtime_mounts_from_s3(tb, api, core, custom, s3, namespace,
                                                                          runtime):
    """The real OpenKruise agents controller fills a warm pool, binds a claim to one of its
    sandboxes (in-place image update through kwok), calls /init and one mount per
    dynamicVolumesMount entry at the sandbox's pod IP; the played runtime performs the mount
    from the bucket behind the CSI PersistentVolume."""
    import bed
    from conftest import wait_for

    prefix = f"e2e/{unique('bedclaim')}"
    s3.put_object(Bucket=tb.WC_S3_BUCKET, Key=f"{prefix}/cfg/settings", Body=b"k=v\n")
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "sandboxsets", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SandboxSet", "metadata": {"name": "bedpool"},
        "spec": {"replicas": 1, "runtimes": [{"name": "csi"}, {"name": "agent-runtime"}],
                 "template": {"spec": {"automountServiceAccountToken": False,
                                       "containers": [{"name": "main", "image": "img/agent:1"}]}}}})
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, CLAIMS, claim_body(
        "bedclaim", templateName="bedpool", labels={"e2e/claimed-by": "bed-test"}, ttlAfterCompleted="-1s",
        inplaceUpdate={"image": "img/agent:2"},
        dynamicVolumesMount=[{"pvName": tb.WC_DEPS_PV, "subPath": f"{prefix}/cfg", "mountPath": "/etc/cfg",
                              "readOnly": True}]))
    claim = wait_for(lambda: (lambda c: c if (c.get("status") or {}).get("phase") == "Completed" else None)(
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, CLAIMS, "bedclaim")), 60, what="claim Completed")
    assert claim["status"]["claimedReplicas"] == 1, claim["status"]
    sbx = [s for s in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "sandboxes")["items"]
           if (s["metadata"].get("labels") or {}).get("agents.kruise.io/claim-name") == "bedclaim"]
    assert len(sbx) == 1
    name = sbx[0]["metadata"]["name"]
    assert sbx[0]["metadata"]["labels"]["e2e/claimed-by"] == "bed-test"
    spod = bed.sandbox_pod(core, namespace, name)
    assert spod.spec.containers[0].image == "img/agent:2"
    assert spod.metadata.owner_references[0].kind == "Sandbox"
    inc = runtime.wait_mounted(namespace, name, ("/etc/cfg",))
    assert inc["uid"] == spod.metadata.uid and inc["ip"] == spod.status.pod_ip
    assert inc["inits"] and inc["mounts"][0]["readonly"] is True
    assert inc["mounts"][0]["volume_context"]["path"] == f"/{prefix}/cfg"
    assert runtime.snapshot(namespace, name, "/etc/cfg/settings") == b"k=v\n"
    s3.put_object(Bucket=tb.WC_S3_BUCKET, Key=f"{prefix}/cfg/settings", Body=b"k=w\n")
    assert runtime.file(namespace, name, "/etc/cfg/settings") == b"k=w\n", "the live view reads through the mount"
    assert runtime.errors() == []


# ---- S3 ---------------------------------------------------------------------------------------
def test_s3_signed_put_get_head_delete(tb, s3):
    key = f"e2e/{unique('obj')}/token"
    body = b"secret-token-\x00\xff"
    s3.put_object(Bucket=tb.WC_S3_BUCKET, Key=key, Body=body)
    head = s3.head_object(Bucket=tb.WC_S3_BUCKET, Key=key)
    assert head["ContentLength"] == len(body)
    assert s3.get_object(Bucket=tb.WC_S3_BUCKET, Key=key)["Body"].read() == body
    s3.delete_object(Bucket=tb.WC_S3_BUCKET, Key=key)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=tb.WC_S3_BUCKET, Key=key)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_s3_rejects_wrong_signature(tb, s3):
    import boto3
    from botocore.config import Config

    bad = boto3.client("s3", endpoint_url=tb.WC_S3_ENDPOINT, region_name=tb.WC_S3_REGION,
                       aws_access_key_id=tb.WC_S3_ACCESS_KEY, aws_secret_access_key=tb.WC_S3_SECRET_KEY + "x",
                       verify=tb.WC_CA_FILE,
                       config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                     retries={"max_attempts": 1}))
    key = f"e2e/{unique('forged')}"
    with pytest.raises(ClientError) as e:
        bad.put_object(Bucket=tb.WC_S3_BUCKET, Key=key, Body=b"x")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    # nothing was written
    with pytest.raises(ClientError):
        s3.head_object(Bucket=tb.WC_S3_BUCKET, Key=key)


def test_s3_rejects_unsigned_and_tampered(tb):
    """Raw HTTP: no signature -> 403; a valid signature over a different payload -> 403."""
    base = f"{tb.WC_S3_ENDPOINT}/{tb.WC_S3_BUCKET}/e2e/{unique('raw')}"
    unsigned = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", tb.WC_CA_FILE,
                               "-X", "PUT", "--data-binary", "x", base], capture_output=True, text=True, check=True)
    assert unsigned.stdout == "403"
    # curl signs with the payload hash header set to the hash of "x"; we then send "y".
    import hashlib
    tampered = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", "--cacert", tb.WC_CA_FILE,
         "--aws-sigv4", f"aws:amz:{tb.WC_S3_REGION}:s3", "--user", f"{tb.WC_S3_ACCESS_KEY}:{tb.WC_S3_SECRET_KEY}",
         "-H", f"x-amz-content-sha256: {hashlib.sha256(b'x').hexdigest()}",
         "-X", "PUT", "--data-binary", "y", base], capture_output=True, text=True, check=True)
    assert tampered.stdout.rsplit("\n", 1)[-1] in ("400", "403")
    assert "XAmzContentSHA256Mismatch" in tampered.stdout or "SignatureDoesNotMatch" in tampered.stdout
    # and the same request correctly signed goes through
    good = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", tb.WC_CA_FILE,
         "--aws-sigv4", f"aws:amz:{tb.WC_S3_REGION}:s3", "--user", f"{tb.WC_S3_ACCESS_KEY}:{tb.WC_S3_SECRET_KEY}",
         "-H", f"x-amz-content-sha256: {hashlib.sha256(b'y').hexdigest()}",
         "-X", "PUT", "--data-binary", "y", base], capture_output=True, text=True, check=True)
    assert good.stdout == "200"


def test_s3_tls_is_signed_by_test_ca(tb):
    """Verification against the system trust store fails; against WC_CA_FILE it succeeds."""
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "--max-time", "5", "--capath", "/nonexistent",
                        "--cacert", "/dev/null", f"{tb.WC_S3_ENDPOINT}/minio/health/live"],
                       capture_output=True, text=True)
    assert r.returncode != 0
    r = subprocess.run(["curl", "-fsS", "-o", "/dev/null", "--max-time", "5", "--cacert", tb.WC_CA_FILE,
                        f"{tb.WC_S3_ENDPOINT}/minio/health/live"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_agent_sandbox_runs_suspends_and_resumes_a_sandbox(tb, core, custom, namespace):
    """The real kubernetes-sigs agent-sandbox controller: a Sandbox created directly gets a Pod
    named like it, owned by it, run by kwok; operatingMode Suspended deletes the Pod, Running
    makes a new one."""
    from conftest import wait_for
    import bed

    g, v = "agents.x-k8s.io", "v1beta1"
    custom.create_namespaced_custom_object(g, v, namespace, "sandboxes", {
        "apiVersion": f"{g}/{v}", "kind": "Sandbox", "metadata": {"name": "as"},
        "spec": {"podTemplate": {"metadata": {"labels": {"e2e": "as"}}, "spec": {
            "automountServiceAccountToken": False, "containers": [{"name": "worker", "image": "img/as:1"}]}}}})

    def cond(t):
        sb = custom.get_namespaced_custom_object(g, v, namespace, "sandboxes", "as")
        return {c["type"]: c for c in (sb.get("status") or {}).get("conditions") or []}.get(t, {})

    wait_for(lambda: cond("Ready").get("status") == "True", 30, what="Sandbox Ready")
    pod = core.read_namespaced_pod("as", namespace)
    assert pod.metadata.owner_references[0].kind == "Sandbox" and pod.metadata.labels["e2e"] == "as"
    assert bed.pod_ip_in_bed_range(tb, pod.status.pod_ip)
    uid = pod.metadata.uid
    custom.patch_namespaced_custom_object(g, v, namespace, "sandboxes", "as", {"spec": {"operatingMode": "Suspended"}})
    wait_for(lambda: cond("Suspended").get("status") == "True", 30, what="Suspended")
    wait_for(lambda: not core.list_namespaced_pod(namespace, field_selector="metadata.name=as").items, 30,
             what="its Pod deleted")
    custom.patch_namespaced_custom_object(g, v, namespace, "sandboxes", "as", {"spec": {"operatingMode": "Running"}})
    wait_for(lambda: cond("Ready").get("status") == "True", 30, what="Ready again")
    assert core.read_namespaced_pod("as", namespace).metadata.uid != uid
