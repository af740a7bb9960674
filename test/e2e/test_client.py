"""The Kubernetes client core (src/kube/) against the real API server, through test/e2e/probe.c.

- Authentication: bearer token (kubeconfig), client certificate (kubeconfig *-data), the
  in-cluster layout simulated in a temp dir (with token rotation), explicit --server flags.
  A wrong CA fails with a TLS error, never silently.
- REST: paging, delete preconditions, JSON patch, API errors with code + reason + message.
- The informer sees every change across an API server restart and a forced 410 (etcd
  compacted past its resourceVersion), and its cache equals a fresh list afterwards.
- The Event recorder aggregates repeats; the Lease client's compare-and-swap holds.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import subprocess
import threading

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

import reliability_support as rs
from conftest import REPO_ROOT, drop_namespace, make_namespace, wait_for


def probe_path() -> str:
    p = os.environ.get("WC_PROBE", os.path.join(REPO_ROOT, "build", "wc-probe"))
    assert os.access(p, os.X_OK), f"wc-probe not built at {p} (./build.sh probe)"
    return p


def probe(*args, env=None, timeout=60):
    return subprocess.run([probe_path(), *args], capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else dict(os.environ))


def write_kubeconfig(path, tb, user: dict, ca_file=None, server=None):
    with open(path, "w") as f:
        yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "t",
            "clusters": [{"name": "c", "cluster": {"server": server or tb.WC_APISERVER_URL,
                                                   "certificate-authority": ca_file or tb.WC_CA_FILE}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}],
        }, f)
    return str(path)


def whoami(*connect, env=None):
    r = probe(*connect, "whoami", env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout.split("USER ", 1)[1].strip()


def sa_token(core, namespace, name, audience=None):
    try:
        core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as e:
        if e.status != 409:
            raise
    spec = client.V1TokenRequestSpec(audiences=[audience] if audience else [], expiration_seconds=3600)
    tr = core.create_namespaced_service_account_token(name, namespace, client.AuthenticationV1TokenRequest(spec=spec))
    return tr.status.token


# ---- authentication ------------------------------------------------------------------------

def test_token_auth_from_kubeconfig(tb, tmp_path):
    kc = write_kubeconfig(tmp_path / "kc", tb, {"token": tb.WC_TEST_USER1_TOKEN})
    assert whoami("--kubeconfig", kc) == tb.WC_TEST_USER1


def test_client_certificate_auth_from_kubeconfig_data(tb, tmp_path):
    with open(tb.WC_ADMIN_CLIENT_CERT, "rb") as f:
        cert = base64.b64encode(f.read()).decode()
    with open(tb.WC_ADMIN_CLIENT_KEY, "rb") as f:
        key = base64.b64encode(f.read()).decode()
    kc = write_kubeconfig(tmp_path / "kc", tb, {"client-certificate-data": cert, "client-key-data": key})
    user = whoami("--kubeconfig", kc)
    assert user and user != "system:anonymous"
    # The identity is the certificate's CN: prove it with the openssl view of the same file.
    subj = subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "multiline", "-in",
                           tb.WC_ADMIN_CLIENT_CERT], capture_output=True, text=True, check=True).stdout
    assert f"commonName                = {user}" in subj


def test_in_cluster_layout_with_token_rotation(tb, core, namespace, tmp_path):
    sa_dir = tmp_path / "sa"
    sa_dir.mkdir()
    with open(tb.WC_CA_FILE) as f:
        (sa_dir / "ca.crt").write_text(f.read())
    (sa_dir / "namespace").write_text(namespace)
    (sa_dir / "token").write_text(sa_token(core, namespace, "first"))
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": "127.0.0.1",
           "KUBERNETES_SERVICE_PORT": tb.WC_APISERVER_PORT, "WORKER_CONTROLLER_SA_DIR": str(sa_dir)}
    # 2 calls 1.5 s apart; the token file is replaced in between, as the kubelet rotates it.
    p = subprocess.Popen([probe_path(), "whoami", "2", "1500"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    first = p.stdout.readline().strip()
    tmp = sa_dir / "token.new"
    tmp.write_text(sa_token(core, namespace, "second"))
    os.replace(tmp, sa_dir / "token")
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert first == f"USER system:serviceaccount:{namespace}:first"
    assert out.strip() == f"USER system:serviceaccount:{namespace}:second"


def test_explicit_server_flags(tb, tmp_path):
    tok = tmp_path / "tok"
    tok.write_text(tb.WC_TEST_USER2_TOKEN + "\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    assert whoami("--server", tb.WC_APISERVER_URL, "--token-file", str(tok), "--ca-file", tb.WC_CA_FILE,
                  env=env) == tb.WC_TEST_USER2


def test_wrong_ca_is_a_tls_error_never_silent(tb, tmp_path):
    wrong = tmp_path / "wrong-ca"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / "k"), "-out", str(wrong), "-subj", "/CN=wrong-ca", "-days", "1"],
                   check=True, capture_output=True)
    kc = write_kubeconfig(tmp_path / "kc", tb, {"token": tb.WC_TEST_USER1_TOKEN}, ca_file=str(wrong))
    r = probe("--kubeconfig", kc, "whoami")
    assert r.returncode == 1
    assert "code tls" in r.stderr and "trust anchor" in r.stderr, r.stderr
    assert tb.WC_TEST_USER1_TOKEN not in r.stderr
    # A server name outside the certificate is refused too (the name check is real).
    kc2 = write_kubeconfig(tmp_path / "kc2", tb, {"token": tb.WC_TEST_USER1_TOKEN},
                           server=tb.WC_APISERVER_URL.replace("localhost", "127.0.0.1"))
    r2 = probe("--kubeconfig", kc2, "whoami")
    assert r2.returncode == 1 and r2.stderr


def test_exec_plugin_is_refused_clearly(tb, tmp_path):
    kc = write_kubeconfig(tmp_path / "kc", tb, {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                                          "command": "aws", "args": ["eks", "get-token"]}})
    r = probe("--kubeconfig", kc, "whoami")
    assert r.returncode == 1 and "exec credential plugin, which is not supported" in r.stderr


# ---- REST ------------------------------------------------------------------------------------

def test_api_errors_carry_code_reason_message(tb, namespace):
    r = probe("request", "GET", f"/api/v1/namespaces/{namespace}/pods/does-not-exist")
    assert r.returncode == 1
    assert "STATUS 404" in r.stdout
    assert "404 NotFound: pods \"does-not-exist\" not found" in r.stderr and "http 404" in r.stderr


def test_delete_preconditions_and_json_patch(tb, core, namespace):
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="pre")))
    sa = core.read_namespaced_service_account("pre", namespace)
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/pre"
    wrong = json.dumps({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}})
    r = probe("request", "DELETE", path, wrong)
    assert r.returncode == 1 and "409 Conflict" in r.stderr
    patch = json.dumps([{"op": "add", "path": "/metadata/labels", "value": {"patched": "yes"}}])
    r = probe("request", "PATCH", path, patch, "application/json-patch+json")
    assert r.returncode == 0, r.stderr
    assert core.read_namespaced_service_account("pre", namespace).metadata.labels == {"patched": "yes"}
    right = json.dumps({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": sa.metadata.uid}})
    r = probe("request", "DELETE", path, right)
    assert r.returncode == 0, r.stderr
    with pytest.raises(ApiException) as e:
        core.read_namespaced_service_account("pre", namespace)
    assert e.value.status == 404


# ---- the informer ----------------------------------------------------------------------------

class Informer:
    """A running `wc-probe informer` process: its event lines are collected on a thread."""

    def __init__(self, resource, namespace, env_extra=None):
        env = dict(os.environ)
        env.update(env_extra or {})
        self.p = subprocess.Popen([probe_path(), "informer", resource, namespace], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.events = []
        self.stderr_lines: list = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        wait_for(lambda: self._drain_until("SYNCED"), 60, what="informer synced")

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.strip())

    def _read_stderr(self):
        for line in self.p.stderr:
            self.stderr_lines.append(line)

    def stderr_text(self):
        return "".join(self.stderr_lines)

    def _drain_until(self, marker=None):
        found = False
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return found
            if line == marker:
                found = True
            elif line.startswith("{\"event\""):
                self.events.append(json.loads(line))
            elif line.startswith("{"):
                self.last_reply = json.loads(line)
                if marker and marker in line:
                    found = True

    def command(self, cmd, key):
        self.last_reply = None
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        wait_for(lambda: self._drain_until(key) or None, 10, what=f"reply to {cmd}")
        return self.last_reply

    def cache(self):
        return {e["key"]: e["rv"] for e in self.command("dump", "\"cache\"")["cache"]}

    def stats(self):
        return self.command("stats", "\"stats\"")["stats"]

    def close(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
            self.p.wait(timeout=10)
        except Exception:
            self.p.kill()
            self.p.wait()


def worker(name, model="m"):
    return {"apiVersion": "hiclaw.io/v1beta1", "kind": "Worker", "metadata": {"name": name}, "spec": {"model": model}}


def fresh_list(custom, namespace):
    items = custom.list_namespaced_custom_object("hiclaw.io", "v1beta1", namespace, "workers")["items"]
    return {f"{namespace}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items}


@pytest.fixture
def own_namespace(core, request):
    """A fresh namespace for one test: informer tests compare the whole namespace's contents."""
    name = make_namespace(core, request.node.name.replace("_", "-").replace("[", "-").strip("]")[-40:].strip("-"))
    yield name
    drop_namespace(core, name)


@pytest.fixture
def crd_installed(tb):
    r = subprocess.run([os.environ.get("WC_BINARY", os.path.join(REPO_ROOT, "worker-controller")), "install-crds"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def informer_follows_changes(custom, ns, inf):
    """Creates, changes and deletes Workers under a synced informer: its cache must end equal
    to a fresh list, and it must have told its handler about each."""
    custom.create_namespaced_custom_object("hiclaw.io", "v1beta1", ns, "workers", worker("live"))
    custom.patch_namespaced_custom_object("hiclaw.io", "v1beta1", ns, "workers", "pre-1", {"spec": {"model": "x"}})
    custom.delete_namespaced_custom_object("hiclaw.io", "v1beta1", ns, "workers", "pre-2")
    wait_for(lambda: inf.cache() == fresh_list(custom, ns), 15, what="cache == list")
    kinds = {(e["event"], e["key"]) for e in inf.events}
    assert ("add", f"{ns}/live") in kinds
    assert ("update", f"{ns}/pre-1") in kinds
    assert ("delete", f"{ns}/pre-2") in kinds


def test_informer_streams_its_list_and_follows_changes(crd_installed, custom, own_namespace):
    """The default: the initial list arrives as a watch with sendInitialEvents, and the same
    stream then carries the changes (one watch request in all)."""
    ns = own_namespace
    for i in range(20):
        custom.create_namespaced_custom_object("hiclaw.io", "v1beta1", ns, "workers", worker(f"pre-{i}"))
    inf = Informer("workers", ns)
    try:
        assert set(inf.cache()) == set(fresh_list(custom, ns))
        st = inf.stats()
        assert (st["lists"], st["streamed"], st["stream_refused"], st["watches"]) == (1, 1, 0, 1), st
        adds = [e for e in inf.events if e["event"] == "add"]
        assert len(adds) == 20, inf.events
        informer_follows_changes(custom, ns, inf)
        st = inf.stats()
        assert (st["lists"], st["watches"], st["watch_errors"]) == (1, 1, 0), st
    finally:
        inf.close()


def test_informer_lists_in_pages_and_follows_changes(crd_installed, custom, own_namespace):
    ns = own_namespace
    for i in range(20):  # the probe lists with limit=7: three pages
        custom.create_namespaced_custom_object("hiclaw.io", "v1beta1", ns, "workers", worker(f"pre-{i}"))
    inf = Informer("workers", ns, {"PROBE_PAGED_ONLY": "1"})
    try:
        assert set(inf.cache()) == set(fresh_list(custom, ns))
        informer_follows_changes(custom, ns, inf)
        st = inf.stats()
        assert (st["lists"], st["streamed"]) == (1, 0), st
    finally:
        inf.close()


def test_informer_pages_when_the_server_will_not_stream(crd_installed, tb, custom, own_namespace):
    """An API server with the WatchList feature gate off (1.33's default) answers a streamed
    list with 422: the informer lists in pages instead, at once (no backoff), and works."""
    ns = own_namespace
    for i in range(5):
        custom.create_namespaced_custom_object("hiclaw.io", "v1beta1", ns, "workers", worker(f"pre-{i}"))
    argv, env = rs.kill_apiserver(tb)
    try:
        rs.start_apiserver(tb, argv + ["--feature-gates=WatchList=false"], env)
        inf = Informer("workers", ns)
        try:
            assert inf.cache() == fresh_list(custom, ns)
            st = inf.stats()
            # (A watch may still meet "429 storage is (re)initializing" right after the restart.)
            assert (st["streamed"], st["stream_refused"]) == (0, 1), (st, inf.stderr_text())
            informer_follows_changes(custom, ns, inf)
        finally:
            inf.close()
        assert "listing in pages" in inf.stderr_text()
    finally:
        rs.kill_apiserver(tb)
        rs.start_apiserver(tb, argv, env)


# The API server restart and etcd compaction helpers live in reliability_support (shared with
# the controller-level fault tests).
restart_apiserver = rs.restart_apiserver
etcd_compact = rs.etcd_compact


def test_informer_survives_apiserver_restart(crd_installed, tb, custom, namespace, api):
    ns = namespace
    inf = Informer("workers", ns, {"PROBE_BACKOFF_MIN_MS": "800"})
    try:
        for i in range(5):
            custom.create_namespaced_custom_object("hiclaw.io", "v1beta1", ns, "workers", worker(f"r-{i}"))
        wait_for(lambda: inf.cache() == fresh_list(custom, ns), 15, what="initial convergence")
        restart_apiserver(tb)
        custom.create_namespaced_custom_object("hiclaw.io", "v1beta1", ns, "workers", worker("after-restart"))
        custom.delete_namespaced_custom_object("hiclaw.io", "v1beta1", ns, "workers", "r-0")
        custom.patch_namespaced_custom_object("hiclaw.io", "v1beta1", ns, "workers", "r-1", {"spec": {"model": "y"}})
        wait_for(lambda: inf.cache() == fresh_list(custom, ns), 60, interval=0.5, what="cache == list after restart")
        keys = {(e["event"], e["key"]) for e in inf.events}
        assert ("add", f"{ns}/after-restart") in keys and ("delete", f"{ns}/r-0") in keys
    finally:
        inf.close()


@pytest.mark.parametrize("list_mode", ["streamed", "paged"])
def test_informer_relists_on_410_and_misses_nothing(crd_installed, tb, custom, own_namespace, list_mode):
    ns = own_namespace
    inf = Informer("workers", ns, {"PROBE_BACKOFF_MIN_MS": "800", "PROBE_PAGED_ONLY": "1" if list_mode == "paged" else "0"})
    try:
        for i in range(6):
            custom.create_namespaced_custom_object("hiclaw.io", "v1beta1", ns, "workers", worker(f"g-{i}"))
        wait_for(lambda: inf.cache() == fresh_list(custom, ns), 15, what="initial convergence")
        # Freeze the informer, change things behind its back, restart the API server (its watch
        # cache starts over) and compact etcd past every revision the informer knows.
        inf.p.send_signal(signal.SIGSTOP)
        try:
            restart_apiserver(tb)
            custom.delete_namespaced_custom_object("hiclaw.io", "v1beta1", ns, "workers", "g-0")
            custom.delete_namespaced_custom_object("hiclaw.io", "v1beta1", ns, "workers", "g-1")
            custom.create_namespaced_custom_object("hiclaw.io", "v1beta1", ns, "workers", worker("while-frozen"))
            custom.patch_namespaced_custom_object("hiclaw.io", "v1beta1", ns, "workers", "g-2", {"spec": {"model": "z"}})
            etcd_compact(tb)
        finally:
            inf.p.send_signal(signal.SIGCONT)
        wait_for(lambda: inf.cache() == fresh_list(custom, ns), 90, interval=0.5, what="cache == list after 410")
        st = inf.stats()
        assert st["relists_gone"] >= 1 and st["lists"] >= 2, st
        assert st["streamed"] == (st["lists"] if list_mode == "streamed" else 0), st
        keys = {(e["event"], e["key"]) for e in inf.events}
        for want in [("delete", f"{ns}/g-0"), ("delete", f"{ns}/g-1"), ("add", f"{ns}/while-frozen"),
                     ("update", f"{ns}/g-2")]:
            assert want in keys, (want, inf.events[-10:])
    finally:
        inf.close()


# ---- Events and Leases ----------------------------------------------------------------------------

def test_event_recorder_aggregates_repeats(tb, api, namespace):
    uid = "11111111-2222-3333-4444-555555555555"
    r = probe("event", namespace, "alice", uid, "Warning", "BackendSwitchBlocked", "cannot switch", "5")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"created": 1, "patched": 4, "failed": 0}
    evs = client.EventsV1Api(api).list_namespaced_event(namespace).items
    mine = [e for e in evs if e.regarding and e.regarding.uid == uid]
    assert len(mine) == 1
    e = mine[0]
    assert (e.type, e.reason, e.note, e.regarding.kind, e.regarding.name) == (
        "Warning", "BackendSwitchBlocked", "cannot switch", "Worker", "alice")
    assert e.reporting_controller == "hiclaw.io/worker-controller"
    assert e.series.count == 5


def test_lease_compare_and_swap(tb, namespace):
    r = probe("lease", namespace, "wc-test-leader", "replica-a")
    assert r.returncode == 0, r.stderr + r.stdout
    out = json.loads(r.stdout)
    assert out["holder"] == "replica-a" and out["duration"] == 15 and out["stale_write_conflict"] is True
