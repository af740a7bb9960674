"""The Worker CRD and `worker-controller install-crds` against the real API server.

- install-crds is idempotent (server-side apply; the second run changes nothing) and waits for
  Established; --print needs no cluster; --dry-run=server persists nothing.
- The CRD is a superset of HiClaw v1.1's: sample Workers using every v1.1 field round-trip
  unchanged, and exactly as they do through the v1.1 CRD itself (installed side by side under
  a test group), spec and status.
- What the schema must refuse (backendRuntime: vm, state: Paused) is refused by the server.
"""

from __future__ import annotations

import copy
import glob
import os
import subprocess

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from conftest import REPO_ROOT, wait_for

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "workers")
V11_CRD = os.path.join(REPO_ROOT, "..", "shared", "fixtures", "crds", "hiclaw", "workers.hiclaw.io.yaml")
V11_GROUP = "v11.hiclaw.test"


def binary() -> str:
    path = os.environ.get("WC_BINARY", os.path.join(REPO_ROOT, "worker-controller"))
    assert os.access(path, os.X_OK), f"worker-controller binary not built at {path}"
    return path


def run(*args, env=None, timeout=120):
    e = dict(os.environ)
    if env is not None:
        e = env
    return subprocess.run([binary(), *args], capture_output=True, text=True, env=e, timeout=timeout)


def crd_rv(api) -> str:
    ext = client.ApiextensionsV1Api(api)
    return ext.read_custom_resource_definition("workers.hiclaw.io").metadata.resource_version


def load_samples():
    out = []
    for path in sorted(glob.glob(os.path.join(FIXTURES, "*.yaml"))):
        with open(path) as f:
            out.append((os.path.basename(path), yaml.safe_load(f)))
    return out


@pytest.fixture(scope="module")
def installed(tb):
    r = run("install-crds", "--timeout", "60s")
    assert r.returncode == 0, r.stderr
    return r


def test_install_crds_applies_and_waits_for_established(installed, api, tb):
    assert "workers.hiclaw.io applied" in installed.stdout
    assert "workers.hiclaw.io established" in installed.stdout
    out = subprocess.run(
        ["kubectl", "get", "crd", "workers.hiclaw.io", "-o",
         "jsonpath={.status.conditions[?(@.type==\"Established\")].status}"],
        capture_output=True, text=True, check=True)
    assert out.stdout == "True"


def test_install_crds_twice_is_a_noop(installed, api):
    before = crd_rv(api)
    r = run("install-crds")
    assert r.returncode == 0, r.stderr
    r2 = run("install-crds")
    assert r2.returncode == 0, r2.stderr
    assert crd_rv(api) == before, "a repeated server-side apply must not change the CRD"


def test_install_crds_print_needs_no_cluster(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    r = run("install-crds", "--print", env=env)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(REPO_ROOT, "embed", "crds", "workers.hiclaw.io.yaml")) as f:
        assert r.stdout == f.read()
    doc = yaml.safe_load(r.stdout)
    assert doc["spec"]["names"]["shortNames"] == ["wk"]


def test_install_crds_server_dry_run_persists_nothing(installed, api):
    before = crd_rv(api)
    r = run("install-crds", "--dry-run=server")
    assert r.returncode == 0, r.stderr
    assert "validated (server dry run)" in r.stdout
    assert crd_rv(api) == before


def test_install_crds_usage_and_connection_errors(tmp_path):
    r = run("install-crds", "--timeout", "soon")
    assert r.returncode == 2 and "--timeout" in r.stderr
    r = run("install-crds", "--bogus")
    assert r.returncode == 2 and "--bogus" in r.stderr
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    r = run("install-crds", env=env)
    assert r.returncode != 0 and "no cluster configured" in r.stderr


def test_install_crds_fails_with_the_servers_message(installed, tb):
    # A user without RBAC on CRDs: the apply is refused and the message says why.
    kc = os.path.join(tb.WC_TESTBED, "probe-user1.kubeconfig")
    with open(kc, "w") as f:
        yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "u",
            "clusters": [{"name": "c", "cluster": {"server": tb.WC_APISERVER_URL,
                                                   "certificate-authority": tb.WC_CA_FILE}}],
            "users": [{"name": "u", "user": {"token": tb.WC_TEST_USER1_TOKEN}}],
            "contexts": [{"name": "u", "context": {"cluster": "c", "user": "u"}}],
        }, f)
    r = run("install-crds", "--kubeconfig", kc)
    assert r.returncode == 1
    assert "403 Forbidden" in r.stderr and "customresourcedefinitions" in r.stderr
    assert tb.WC_TEST_USER1_TOKEN not in r.stderr + r.stdout


# ---- the compatibility rule --------------------------------------------------------------

@pytest.fixture(scope="module")
def v11_crd(api):
    """HiClaw v1.1's own CRD, renamed into a test group, next to ours."""
    with open(V11_CRD) as f:
        crd = yaml.safe_load(f)  # the duplicate `env` key: the last one wins, as in Go's decoder
    crd["metadata"]["name"] = f"workers.{V11_GROUP}"
    crd["spec"]["group"] = V11_GROUP
    env = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["env"]
    env.pop("propertyNames", None)  # not part of apiextensions v1: the server would drop it anyway
    ext = client.ApiextensionsV1Api(api)
    try:
        ext.create_custom_resource_definition(crd)
    except ApiException as e:
        if e.status != 409:
            raise

    def established():
        c = ext.read_custom_resource_definition(f"workers.{V11_GROUP}")
        return any(x.type == "Established" and x.status == "True" for x in (c.status.conditions or []))

    wait_for(established, 30, what="v1.1 CRD established")
    return V11_GROUP


def strip_server_fields(obj):
    o = copy.deepcopy(obj)
    for k in ("creationTimestamp", "generation", "managedFields", "resourceVersion", "uid", "namespace",
              "selfLink"):
        o["metadata"].pop(k, None)
    o.pop("apiVersion", None)
    return o


@pytest.mark.parametrize("fixture", [name for name, _ in load_samples() if name != "extended.yaml"])
def test_v11_samples_round_trip_unchanged(fixture, installed, v11_crd, custom, namespace):
    sample = dict(load_samples())[fixture]
    ours = custom.create_namespaced_custom_object("hiclaw.io", "v1beta1", namespace, "workers", copy.deepcopy(sample))
    theirs_in = copy.deepcopy(sample)
    theirs_in["apiVersion"] = f"{v11_crd}/v1beta1"
    theirs = custom.create_namespaced_custom_object(v11_crd, "v1beta1", namespace, "workers", theirs_in)
    name = sample["metadata"]["name"]
    ours = custom.get_namespaced_custom_object("hiclaw.io", "v1beta1", namespace, "workers", name)
    theirs = custom.get_namespaced_custom_object(v11_crd, "v1beta1", namespace, "workers", name)
    # Exactly what v1.1 stores (its schema defaults included) ...
    assert strip_server_fields(ours) == strip_server_fields(theirs)
    # ... and, for samples that spell their defaults out, exactly what was sent.
    if fixture != "copaw-sleeping.yaml":
        assert ours["spec"] == sample["spec"]
        assert ours["metadata"].get("labels") == sample["metadata"].get("labels")
        assert ours["metadata"].get("annotations") == sample["metadata"].get("annotations")
    else:
        assert ours["spec"]["mcpServers"][0]["transport"] == "http"
        assert ours["spec"]["expose"][0]["protocol"] == "http"

    # Status written by other HiClaw components survives the status subresource unchanged.
    status = {"phase": "Running", "matrixUserID": "@alice:matrix.example.com", "roomID": "!room:matrix.example.com",
              "containerState": "running", "lastHeartbeat": "2026-11-23T10:00:00Z", "message": "ok",
              "observedGeneration": 1, "exposedPorts": [{"port": 8080, "domain": "alice-8080.example.com"}]}
    a = custom.patch_namespaced_custom_object_status("hiclaw.io", "v1beta1", namespace, "workers", name,
                                                     {"status": status})
    b = custom.patch_namespaced_custom_object_status(v11_crd, "v1beta1", namespace, "workers", name,
                                                     {"status": status})
    assert a["status"] == status
    assert a["status"] == b["status"]


def test_extended_fields_are_accepted(installed, custom, namespace):
    sample = dict(load_samples())["extended.yaml"]
    custom.create_namespaced_custom_object("hiclaw.io", "v1beta1", namespace, "workers", copy.deepcopy(sample))
    got = custom.get_namespaced_custom_object("hiclaw.io", "v1beta1", namespace, "workers", "extended")
    assert got["spec"] == sample["spec"]
    status = {"phase": "Starting", "backendRuntime": "sandbox",
              "instance": {"kind": "Sandbox", "name": "sbx-1", "claimName": "hiclaw-worker-extended",
                           "podIP": "10.1.2.3"},
              "conditions": [{"type": "Ready", "status": "False", "reason": "Starting", "message": "claiming",
                              "lastTransitionTime": "2026-11-23T10:00:00Z", "observedGeneration": 1}]}
    out = custom.patch_namespaced_custom_object_status("hiclaw.io", "v1beta1", namespace, "workers", "extended",
                                                       {"status": status})
    assert out["status"] == status


@pytest.mark.parametrize("field,value", [("backendRuntime", "vm"), ("state", "Paused"), ("runtime", "python")])
def test_schema_rejects_invalid_enums(installed, custom, namespace, field, value):
    body = {"apiVersion": "hiclaw.io/v1beta1", "kind": "Worker",
            "metadata": {"name": f"bad-{field.lower()}"}, "spec": {"model": "m", field: value}}
    with pytest.raises(ApiException) as e:
        custom.create_namespaced_custom_object("hiclaw.io", "v1beta1", namespace, "workers", body)
    assert e.value.status == 422
    assert field in e.value.body and value in e.value.body


def test_model_is_required(installed, custom, namespace):
    body = {"apiVersion": "hiclaw.io/v1beta1", "kind": "Worker", "metadata": {"name": "no-model"}, "spec": {}}
    with pytest.raises(ApiException) as e:
        custom.create_namespaced_custom_object("hiclaw.io", "v1beta1", namespace, "workers", body)
    assert e.value.status == 422 and "spec.model" in e.value.body


def test_printer_columns(installed, custom, namespace):
    custom.create_namespaced_custom_object("hiclaw.io", "v1beta1", namespace, "workers", {
        "apiVersion": "hiclaw.io/v1beta1", "kind": "Worker", "metadata": {"name": "columns"},
        "spec": {"model": "qwen3.6-plus"}})
    custom.patch_namespaced_custom_object_status("hiclaw.io", "v1beta1", namespace, "workers", "columns", {
        "status": {"phase": "Running", "backendRuntime": "pod", "conditions": [
            {"type": "Ready", "status": "True", "reason": "Running", "message": "",
             "lastTransitionTime": "2026-11-23T10:00:00Z"}]}})
    out = subprocess.run(["kubectl", "get", "wk", "columns", "-n", namespace], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0].split() == ["NAME", "MODEL", "BACKEND", "PHASE", "READY", "AGE"]
    assert out[1].split()[:5] == ["columns", "qwen3.6-plus", "pod", "Running", "True"]
