"""Issue 15 on the real bed: which Workers a controller handles and which objects are a Worker's.

- Two controllers in one namespace each act only on the Workers labelled for them; a Worker with
  no label is nobody's, and a controller says at start how many it ignores (item 1).
- A Pod of a deleted Worker of the same name (another UID) is neither deleted nor adopted; a
  foreign Pod holding the name is reported, not mistaken for the Worker's (items 9: 409 and
  ownerReference UID).
- The finalizer waits for the API server, not the cache: a controller whose Pod cache stopped
  following (the failpoint build's freeze-cache-pods) keeps the finalizer while the API server
  still has a Pod of the Worker (item 2).
- A '$' in spec.env reaches the Pod as '$$' (the kubelet expands $(VAR)) (item 9).
- An http:// worker-deps endpoint is refused unless allowed by its named setting (item 9).
"""

from __future__ import annotations

import subprocess
import time

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

import controller_harness as h
from conftest import drop_namespace, make_namespace, unique


def _gone(fn) -> bool:
    try:
        fn()
        return False
    except ApiException as e:
        return e.status == 404


def test_two_controllers_in_one_namespace_each_handle_the_workers_labelled_for_them(tb, api, core, custom):
    ns = make_namespace(core, "two-ctl")
    a = h.ControllerProcess(tb, core, ns, unique("ctl-a"))
    b = h.ControllerProcess(tb, core, ns, unique("ctl-b"))
    try:
        for c in (a, b):
            c.setup_identity()
        # a Worker nobody's (no label) exists before either starts
        h.create_worker(custom, ns, "wn", controller="")
        mark = h.audit_offset(tb)
        a.start()
        b.start()
        h.create_worker(custom, ns, "wa", controller=a.name)
        h.create_worker(custom, ns, "wb", controller=b.name)
        h.wait_phase(custom, ns, "wa", "Running", timeout=30)
        h.wait_phase(custom, ns, "wb", "Running", timeout=30)
        time.sleep(2)
        pa, pb = h.get_pod(core, ns, "wa"), h.get_pod(core, ns, "wb")
        assert pa.metadata.labels[h.CONTROLLER_LABEL] == a.name and pb.metadata.labels[h.CONTROLLER_LABEL] == b.name
        writes = h.audit_writes(tb, mark, namespace=ns)
        by = {}
        for wr in writes:
            by.setdefault(wr["user"], set()).add((wr["resource"], wr["name"]))
        # each controller wrote only its own Workers' objects
        assert not {n for _, n in by.get(a.username, set())} & {"wb", "hiclaw-worker-wb"}, by.get(a.username)
        assert not {n for _, n in by.get(b.username, set())} & {"wa", "hiclaw-worker-wa"}, by.get(b.username)
        # the unlabelled Worker: untouched by both — no finalizer, no status, no Pod, no ServiceAccount
        wn = h.get_worker(custom, ns, "wn")
        assert not wn["metadata"].get("finalizers") and not wn.get("status"), wn
        assert h.get_pod(core, ns, "wn") is None
        assert _gone(lambda: core.read_namespaced_service_account("hiclaw-worker-wn", ns))
        assert not [wr for wr in writes if wr["name"] in ("wn", "hiclaw-worker-wn")], writes
        # each said once, at start, that it ignores one Worker without the label
        for c in (a, b):
            warn = [r for r in c.log_records() if "without a hiclaw.io/controller label" in (r.get("msg") or "")]
            assert len(warn) == 1 and warn[0].get("count") == "1" and "wn" in warn[0].get("workers", ""), warn
        # deleting one controller's Worker is that controller's business alone
        h.delete_worker(custom, ns, "wa")
        h.wait_for_value(lambda: _gone(lambda: h.get_worker(custom, ns, "wa")), 30, "wa deleted")
        assert h.get_pod(core, ns, "wb") is not None
        assert set(h.deleted_by(tb, mark, "serviceaccounts", ns, "hiclaw-worker-wa")) == {a.username}
    finally:
        a.close()
        b.close()
        drop_namespace(core, ns)


def test_a_pod_of_another_worker_is_neither_deleted_nor_adopted(tb, api, core, custom):
    ns = make_namespace(core, "ownership")
    ctl = h.ControllerProcess(tb, core, ns, unique("ctl"))
    try:
        ctl.setup_identity()
        ctl.start()
        # 1. a Worker deleted and recreated under the same name while its old Pod is still going
        #    away (held here by a finalizer, as a slow node would hold it)
        old = h.create_worker(custom, ns, "w")
        h.wait_phase(custom, ns, "w", "Running", timeout=30)
        old_pod = h.get_pod(core, ns, "w")
        core.patch_namespaced_pod(old_pod.metadata.name, ns, {"metadata": {"finalizers": ["e2e.wc.test/hold"]}})
        ctl.stop()
        h.remove_finalizers(custom, ns, "w")
        h.delete_worker(custom, ns, "w")
        h.wait_for_value(lambda: _gone(lambda: h.get_worker(custom, ns, "w")), 20, "old Worker gone")
        # the garbage collector deletes the old Pod; the finalizer keeps it, owned by the old UID
        h.wait_pod(core, ns, "w", lambda p: p is not None and p.metadata.deletion_timestamp, timeout=60,
                   what="old Pod deleting")
        new = h.create_worker(custom, ns, "w")
        assert new["metadata"]["uid"] != old["metadata"]["uid"]
        mark = h.audit_offset(tb)
        ctl.start()
        w = h.wait_condition(custom, ns, "w", "Synced", "False", "PodNameConflict", timeout=30)
        msg = h.condition(w, "Synced")["message"]
        assert old["metadata"]["uid"] in msg and "another Worker" in msg, msg
        time.sleep(3)
        p = h.get_pod(core, ns, "w")
        assert p.metadata.uid == old_pod.metadata.uid, "the old Worker's Pod was replaced"
        assert p.metadata.owner_references[0].uid == old["metadata"]["uid"]
        assert not [x for x in h.audit_writes(tb, mark, "pods", ns) if x["user"] == ctl.username
                    and x["verb"] != "create"], "the old Pod was touched"
        # once it is gone, the Worker gets its own Pod
        core.patch_namespaced_pod(p.metadata.name, ns, {"metadata": {"finalizers": None}})
        h.wait_worker(custom, ns, "w", lambda o: (o.get("status") or {}).get("phase") == "Running"
                      and h.condition(o, "Synced")["status"] == "True", 60, "Running with its own Pod")
        mine = h.get_pod(core, ns, "w")
        assert mine.metadata.owner_references[0].uid == new["metadata"]["uid"]

        # 2. a Pod of that name made by somebody else entirely
        core.create_namespaced_pod(ns, client.V1Pod(
            metadata=client.V1ObjectMeta(name="hiclaw-worker-x", labels={"app": "not-hiclaw"}),
            spec=client.V1PodSpec(automount_service_account_token=False,
                                  containers=[client.V1Container(name="c", image="img/other:1")])))
        h.create_worker(custom, ns, "x")
        w = h.wait_condition(custom, ns, "x", "Synced", "False", "PodNameConflict", timeout=30)
        assert "not controlled by this Worker" in h.condition(w, "Synced")["message"]
        assert core.read_namespaced_pod("hiclaw-worker-x", ns).metadata.labels == {"app": "not-hiclaw"}
        assert ctl.running()
    finally:
        ctl.close()
        drop_namespace(core, ns)


def test_the_finalizer_waits_for_the_api_server_not_the_cache(tb, api, core, custom):
    """A controller whose Pod cache stopped following the API server right after its first list
    (failpoint build: WC_FAILPOINT=freeze-cache-pods). A Pod of the Worker that the cache never
    saw still exists: the finalizer stays until the API server has none."""
    ns = make_namespace(core, "finalizer-live")
    ctl = h.ControllerProcess(tb, core, ns, unique("ctl"), binary_path=h.failpoint_binary(),
                              env={"WC_FAILPOINT": "freeze-cache-pods"})
    try:
        ctl.setup_identity()
        ctl.start()
        w = h.create_worker(custom, ns, "w", containerManaged=False)
        h.wait_condition(custom, ns, "w", "Ready", "Unknown", "Unmanaged", timeout=30)
        # an agent of this Worker the cache does not know of (started by hand, say)
        core.create_namespaced_pod(ns, client.V1Pod(
            metadata=client.V1ObjectMeta(name="hiclaw-worker-w", labels={
                "app": "hiclaw-worker", "hiclaw.io/worker": "w", h.CONTROLLER_LABEL: ctl.name, "hiclaw.io/backend": "pod"},
                owner_references=[client.V1OwnerReference(api_version="hiclaw.io/v1beta1", kind="Worker", name="w",
                                                          uid=w["metadata"]["uid"], controller=True)]),
            spec=client.V1PodSpec(automount_service_account_token=False,
                                  containers=[client.V1Container(name="worker", image="img/w:1")])))
        h.delete_worker(custom, ns, "w")
        wk = h.wait_condition(custom, ns, "w", "Synced", "False", "CleanupPending", timeout=30)
        assert "Pod hiclaw-worker-w" in h.condition(wk, "Synced")["message"]
        time.sleep(3)
        assert h.FINALIZER in h.get_worker(custom, ns, "w")["metadata"]["finalizers"], "finalizer removed on the cache's word"
        core.delete_namespaced_pod("hiclaw-worker-w", ns)
        h.wait_for_value(lambda: _gone(lambda: h.get_worker(custom, ns, "w")), 60, "Worker gone once the Pod is")
    finally:
        ctl.close()
        drop_namespace(core, ns)


def test_a_dollar_in_spec_env_reaches_the_container_unexpanded(tb, core, custom, namespace):
    ctl = h.ControllerProcess(tb, core, namespace, unique("ctl"))
    try:
        ctl.setup_identity()
        ctl.start()
        h.create_worker(custom, namespace, "d", env={"A": "x$(HOME)y", "B": "$$", "C": "plain"})
        pod = h.wait_pod(core, namespace, "d")
        env = {e.name: e.value for e in pod.spec.containers[0].env if e.value_from is None}
        # the kubelet turns $$ into $ and expands $(VAR): these are the bytes the container sees as
        # "x$(HOME)y" and "$$" — exactly what a sandbox's env file gives
        assert env["A"] == "x$$(HOME)y" and env["B"] == "$$$$" and env["C"] == "plain", env
    finally:
        ctl.close()


@pytest.mark.parametrize("allow", [False, True])
def test_a_plaintext_worker_deps_endpoint_needs_its_named_setting(tb, core, allow, tmp_path):
    ns = make_namespace(core, "plaintext")
    ctl = h.ControllerProcess(tb, core, ns, unique("ctl"), sandbox=True,
                              env={"HICLAW_WORKER_DEPS_ENDPOINT": "http://127.0.0.1:9",
                                   "HICLAW_WORKER_DEPS_CA_FILE": "",
                                   **({"HICLAW_WORKER_DEPS_ALLOW_PLAINTEXT_HTTP": "true"} if allow else {})})
    try:
        ctl.setup_identity()
        if not allow:
            r = subprocess.run(ctl.argv(), env=ctl.process_env(), capture_output=True, text=True, timeout=30)
            assert r.returncode == 2, (r.returncode, r.stderr)
            assert "HICLAW_WORKER_DEPS_ENDPOINT" in r.stderr and "HICLAW_WORKER_DEPS_ALLOW_PLAINTEXT_HTTP" in r.stderr
        else:
            ctl.start()  # starts (the endpoint is only used when a sandbox Worker needs it)
            assert ctl.running()
    finally:
        ctl.close()
        drop_namespace(core, ns)
