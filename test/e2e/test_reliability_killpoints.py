"""Issue 9, deterministic kill points: the controller dies right after one exact step of a
reconcile, and a restart finishes the job with nothing duplicated and nothing orphaned.

The controller under test is the failpoint build (src/base/testhooks.c: WC_FAILPOINT=
after-<action> makes it SIGKILL itself right after that action succeeded, before the next one
and before any status write). Then the product binary is started on the same identity and
namespace and must converge. Every scenario runs in a namespace of its own.

Create path, sandbox: after the ServiceAccount, after writing the worker-deps objects (the
seed's blocker: deps exist, the claim does not yet), after creating the claim.
Delete path, sandbox: after deleting the claim (its Sandbox still there), after deleting the
Sandbox, after deleting the deps objects, after deleting the ServiceAccount (finalizer still on).
Pod backend: after the finalizer, after the ServiceAccount, after creating the Pod; on delete,
after deleting the Pod and after deleting the ServiceAccount.
"""

from __future__ import annotations

import time

import pytest
from kubernetes.client.rest import ApiException

import controller_harness as h
import sandbox_support as sb
from conftest import drop_namespace, make_namespace, unique


def _wait_killed(ctl: h.ControllerProcess, point: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and ctl.proc.poll() is None:
        time.sleep(0.05)
    assert ctl.proc.poll() == -9, f"failpoint {point} did not fire (rc={ctl.proc.poll()}):\n{ctl.log_tail()}"
    assert f"failpoint {point}: SIGKILL" in ctl.log_text(), ctl.log_tail()


def _restart_product(ctl: h.ControllerProcess) -> None:
    ctl.binary_path = None
    ctl.extra_env.pop("WC_FAILPOINT", None)
    ctl.start(timeout=60)


def _start_failpoint(ctl: h.ControllerProcess, point: str) -> None:
    ctl.binary_path = h.failpoint_binary()
    ctl.extra_env["WC_FAILPOINT"] = point
    ctl.start(timeout=60)


def _gone(fn) -> bool:
    try:
        fn()
        return False
    except ApiException as e:
        return e.status == 404


def _sandbox_objects(custom, ns, worker):
    return sb.claims_of(custom, ns, worker), sb.sandboxes_of(custom, ns, worker)


def _deps(s3, bucket, ns, worker) -> dict:
    k = sb.deps_keys(ns, worker)
    return {x: sb.s3_head(s3, bucket, k[x]) is not None for x in ("env", "token", "data")}


@pytest.fixture
def scenario_ns(core):
    ns = make_namespace(core, "killpoint")
    yield ns
    drop_namespace(core, ns)


# ---- sandbox ---------------------------------------------------------------------------------

@pytest.mark.parametrize("point", ["after-ensure-serviceaccount", "after-write-deps", "after-create-claim"])
def test_sandbox_create_killed_at(point, tb, api, core, custom, s3, scenario_ns):
    ns, bucket, w = scenario_ns, tb.WC_S3_BUCKET, unique("kp")
    ctl = h.ControllerProcess(tb, core, ns, unique("kpctl"), sandbox=True)
    ctl.setup_identity()
    try:
        _start_failpoint(ctl, point)
        h.create_worker(custom, ns, w, backendRuntime="sandbox")
        _wait_killed(ctl, point)
        claims, _ = _sandbox_objects(custom, ns, w)
        deps = _deps(s3, bucket, ns, w)
        if point == "after-write-deps":
            # the state the seed's blocker is about: every deps object written, no claim yet
            assert all(deps.values()), deps
            assert claims == [], [c["metadata"]["name"] for c in claims]
        if point == "after-create-claim":
            assert len(claims) == 1 and all(deps.values()), (claims, deps)
        _restart_product(ctl)
        h.wait_phase(custom, ns, w, "Running", timeout=60)
        claims, sandboxes = _sandbox_objects(custom, ns, w)
        assert len(claims) == 1 and len(sandboxes) == 1, (claims, sandboxes)
        assert all(_deps(s3, bucket, ns, w).values())
        assert ctl.running(), ctl.log_tail()
    finally:
        ctl.close()


def _killed_while_deleting(ctl, custom, ns, w, point, **spec):
    """Runs the product until Worker w is Running, then deletes w under the failpoint build
    and waits for the kill: killed mid-cleanup, the Worker is still there, held by its
    finalizer."""
    ctl.start(timeout=60)
    h.create_worker(custom, ns, w, **spec)
    h.wait_phase(custom, ns, w, "Running", timeout=60)
    ctl.stop()
    _start_failpoint(ctl, point)
    h.delete_worker(custom, ns, w)
    _wait_killed(ctl, point)
    assert h.get_worker(custom, ns, w)["metadata"].get("deletionTimestamp")


@pytest.mark.parametrize("point", ["after-delete-claim", "after-delete-sandbox", "after-delete-deps-all",
                                   "after-delete-serviceaccount"])
def test_sandbox_delete_killed_at(point, tb, api, core, custom, s3, scenario_ns):
    ns, bucket, w = scenario_ns, tb.WC_S3_BUCKET, unique("kp")
    ctl = h.ControllerProcess(tb, core, ns, unique("kpctl"), sandbox=True)
    ctl.setup_identity()
    try:
        _killed_while_deleting(ctl, custom, ns, w, point, backendRuntime="sandbox")
        claims, sandboxes = _sandbox_objects(custom, ns, w)
        if point == "after-delete-claim":
            assert sandboxes, "the Sandbox should outlive its claim at this kill point"
        _restart_product(ctl)
        h.wait_for_value(lambda: _gone(lambda: h.get_worker(custom, ns, w)), 60, "Worker deleted")
        # nothing orphaned
        claims, sandboxes = _sandbox_objects(custom, ns, w)
        assert claims == [] and sandboxes == [], (claims, sandboxes)
        assert sb.s3_list(s3, bucket, sb.deps_keys(ns, w)["dir"] + "/") == []
        assert _gone(lambda: core.read_namespaced_service_account(sb.sa_name(w), ns))
        assert ctl.running(), ctl.log_tail()
    finally:
        ctl.close()


# ---- pod ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("point", ["after-add-finalizer", "after-ensure-serviceaccount", "after-create-pod"])
def test_pod_create_killed_at(point, tb, api, core, custom, scenario_ns):
    ns, w = scenario_ns, unique("kp")
    ctl = h.ControllerProcess(tb, core, ns, unique("kpctl"))
    ctl.setup_identity()
    try:
        _start_failpoint(ctl, point)
        h.create_worker(custom, ns, w)
        _wait_killed(ctl, point)
        _restart_product(ctl)
        h.wait_phase(custom, ns, w, "Running", timeout=60)
        pods = h.worker_pods(core, ns, w)
        assert len(pods) == 1, [p.metadata.name for p in pods]
        assert ctl.running(), ctl.log_tail()
    finally:
        ctl.close()


@pytest.mark.parametrize("point", ["after-delete-pod", "after-delete-serviceaccount"])
def test_pod_delete_killed_at(point, tb, api, core, custom, scenario_ns):
    ns, w = scenario_ns, unique("kp")
    ctl = h.ControllerProcess(tb, core, ns, unique("kpctl"))
    ctl.setup_identity()
    try:
        _killed_while_deleting(ctl, custom, ns, w, point)
        _restart_product(ctl)
        h.wait_for_value(lambda: _gone(lambda: h.get_worker(custom, ns, w)), 60, "Worker deleted")
        assert h.worker_pods(core, ns, w) == []
        assert _gone(lambda: core.read_namespaced_service_account(h.pod_name(w), ns))
        assert ctl.running(), ctl.log_tail()
    finally:
        ctl.close()
