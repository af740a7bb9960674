"""The test bed itself: a real, RBAC-enforcing kube-apiserver with the real OpenKruise CRDs,
and a real SigV4-verifying S3 server."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from botocore.exceptions import ClientError
from kubernetes import client
from kubernetes.client.rest import ApiException

from conftest import unique
from standins import CLAIMS, GROUP, VERSION


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


def test_crds_established(api):
    ext = client.ApiextensionsV1Api(api)
    for plural in ("sandboxes", "sandboxclaims", "sandboxsets", "sandboxtemplates"):
        crd = ext.read_custom_resource_definition(f"{plural}.{GROUP}")
        conds = {c.type: c.status for c in crd.status.conditions}
        assert conds.get("Established") == "True", plural


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
