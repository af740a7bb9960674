"""Issue 16: every invariant of the chaos soak's checker fires.

The checker (test/soak/chaos_invariants.py) is only worth its zero if it can say no. Each case
runs the failpoint build of the controller with one deliberately broken behaviour
(WC_FAILPOINT=break-..., never in the product), makes the broken path happen on the real bed, and
asserts the checker fails with a message naming the invariant that behaviour violates:

  break-switch-guard      a Pod is made beside a running sandbox       -> both-backends
  break-duplicate-pod     every Pod is made twice                      -> duplicate-instance
  break-skip-cleanup      the finalizer goes, nothing is cleaned up    -> orphan
  break-deps-after-claim  the claim is made before its env and token   -> claim-before-deps
  break-foreign-deps      the env file names another Worker            -> foreign-deps
  break-leak-secret       a credential in the status message, raw      -> secret-leak
  break-ignore-lease-loss a replica that lost its lease keeps writing  -> two-writers
  break-status-running    Running reported whatever runs               -> running-while-idle

and the soak's bed supervisor restarts a component that exits with no fault taking it down.
"""

from __future__ import annotations

import os
import sys
import time

import pytest
from kubernetes import client

import bed
import controller_harness as h
import sandbox_support as sx
from conftest import drop_namespace, make_namespace, unique

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "soak"))
import chaos_invariants as ci  # noqa: E402

GRACE = 8.0


class Case:
    """A namespace, a broken controller, and a checker watching them."""

    def __init__(self, tb, api, core, s3, runtime, failpoint: str, sandbox: bool = True, env=None):
        self.tb, self.api, self.core = tb, api, core
        self.custom = client.CustomObjectsApi(api)
        self.ns = make_namespace(core, failpoint[:20])
        self.ctl = h.ControllerProcess(tb, core, self.ns, unique("brk"), sandbox=sandbox,
                                       binary_path=h.failpoint_binary(), env={"WC_FAILPOINT": failpoint, **(env or {})})
        self.ctl.setup_identity()
        self.planted = [f"planted-{unique('s')}-SECRET"]
        self.extra = []
        self.checker = ci.Checker(tb, api, self.ns, s3, runtime, [self.ctl.username], self.planted,
                                  [self.ctl.log_path], grace_s=GRACE, log=print).start()

    def creds(self, worker: str) -> None:
        self.core.create_namespaced_secret(self.ns, client.V1Secret(
            metadata=client.V1ObjectMeta(name=f"hiclaw-creds-{worker}"),
            string_data={"WORKER_MATRIX_TOKEN": self.planted[0]}))

    def fired(self, invariant: str, timeout: float = 90.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hit = [v for v in self.checker.violations if v.startswith(f"INVARIANT {invariant}:")]
            if hit:
                return hit[0]
            time.sleep(0.5)
        raise AssertionError(f"the checker did not report {invariant} within {timeout}s; it said: "
                             f"{self.checker.violations}\n{self.ctl.log_tail(15)}")

    def close(self) -> None:
        self.checker.stop()
        for c in [self.ctl] + self.extra:
            c.close()
        drop_namespace(self.core, self.ns)


@pytest.fixture
def case(tb, api, core, s3, runtime):
    made = []

    def make(failpoint, **kw):
        c = Case(tb, api, core, s3, runtime, failpoint, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def test_both_backends_fires(case):
    c = case("break-switch-guard")
    c.ctl.start()
    h.create_worker(c.custom, c.ns, "w", backendRuntime="sandbox")
    h.wait_phase(c.custom, c.ns, "w", "Running", timeout=60)
    h.patch_worker(c.custom, c.ns, "w", {"spec": {"backendRuntime": "pod"}})  # while Running: must be blocked
    print(c.fired("both-backends"))


def test_duplicate_instance_fires(case):
    c = case("break-duplicate-pod", sandbox=False)
    c.ctl.start()
    h.create_worker(c.custom, c.ns, "w")
    print(c.fired("duplicate-instance"))


def test_orphan_fires(case):
    c = case("break-skip-cleanup", sandbox=False)
    c.ctl.start()
    h.create_worker(c.custom, c.ns, "w")
    h.wait_phase(c.custom, c.ns, "w", "Running", timeout=60)
    c.core.patch_namespaced_pod("hiclaw-worker-w", c.ns, {"metadata": {"finalizers": ["e2e.wc.test/hold"]}})
    h.delete_worker(c.custom, c.ns, "w")
    try:
        print(c.fired("orphan", timeout=GRACE + 60))
    finally:
        c.core.patch_namespaced_pod("hiclaw-worker-w", c.ns, {"metadata": {"finalizers": None}})


def test_claim_before_deps_fires(case):
    c = case("break-deps-after-claim")
    c.ctl.start()
    h.create_worker(c.custom, c.ns, "w", backendRuntime="sandbox")
    print(c.fired("claim-before-deps"))


def test_foreign_deps_fires(case):
    c = case("break-foreign-deps")
    c.ctl.start()
    h.create_worker(c.custom, c.ns, "w", backendRuntime="sandbox")
    print(c.fired("foreign-deps"))


def test_secret_leak_fires(case):
    c = case("break-leak-secret", sandbox=False)
    c.creds("w")
    c.ctl.start()
    h.create_worker(c.custom, c.ns, "w")
    print(c.fired("secret-leak", timeout=60))


def test_two_writers_fires(tb, case):
    c = case("break-ignore-lease-loss", sandbox=False, env={"HICLAW_LEADER_ELECT": "true"})
    c.ctl.start()
    c.ctl.wait_log("became leader", timeout=30)
    other = h.ControllerProcess(tb, c.core, c.ns, c.ctl.name, env={"HICLAW_LEADER_ELECT": "true"})
    other.setup_replica_identity(f"{c.ctl.name}-b")
    c.extra.append(other)
    c.checker.controller_users.add(other.username)
    other.start(wait_synced=False)
    names = [f"w{i}" for i in range(6)]
    for n in names:
        h.create_worker(c.custom, c.ns, n)
    # an intruder takes the lease: the broken replica goes on as if it still led
    coord = client.CoordinationV1Api(c.api)
    lease = coord.read_namespaced_lease(f"{c.ctl.name}-leader", c.ns)
    lease.spec.holder_identity = "intruder"
    lease.spec.lease_duration_seconds = 3
    lease.spec.renew_time = __import__("datetime").datetime.now(__import__("datetime").timezone.utc)
    coord.replace_namespaced_lease(f"{c.ctl.name}-leader", c.ns, lease)
    other.wait_log("became leader", timeout=60)
    deadline = time.monotonic() + 60
    i = 0
    while time.monotonic() < deadline and not [v for v in c.checker.violations if "two-writers" in v]:
        for n in names:  # keep both replicas busy writing
            h.patch_worker(c.custom, c.ns, n, {"spec": {"env": {"TICK": str(i)}}})
        i += 1
        time.sleep(1)
    print(c.fired("two-writers", timeout=5))


def test_running_while_idle_fires(case):
    c = case("break-status-running", sandbox=False)
    c.ctl.start()
    h.create_worker(c.custom, c.ns, "w", labels=bed.HOLD)  # its Pod never runs
    print(c.fired("running-while-idle", timeout=GRACE + 60))


def _sandbox_of(worker_uid: str, uid: str, rv: int) -> dict:
    return {"metadata": {"uid": uid, "name": f"pool-{uid}", "resourceVersion": str(rv),
                         "labels": {ci.WORKER_UID_LABEL: worker_uid}}}


def test_relist_does_not_invent_an_overlap(tb, api, s3, runtime):
    """A relist learns only that an object is gone by the list's revision, not when it went: the
    checker must not take the list's revision for its end (a Sandbox deleted, then another claimed
    for the Worker, both while the watch was down, read as two at once — the soak of seed 16001
    reported exactly that after an API server restart). An overlap it did see still fires."""
    checker = ci.Checker(tb, api, unique("nowatch"), s3, runtime, [], [], [], grace_s=GRACE, log=print)
    checker._event("sandboxes", "ADDED", _sandbox_of("w1", "a", 100))
    # watch down; meanwhile a is deleted (rev 140) and b claimed for the Worker (rev 150); relist at 200
    checker._event("sandboxes", "ADDED", _sandbox_of("w1", "b", 150))
    checker._relisted("sandboxes", {"b"}, 200)
    checker.check_overlaps()
    assert checker.violations == []

    checker._event("sandboxes", "ADDED", _sandbox_of("w2", "c", 300))
    checker._event("sandboxes", "ADDED", _sandbox_of("w2", "d", 310))
    checker._event("sandboxes", "MODIFIED", _sandbox_of("w2", "c", 320))  # c seen alive after d was the Worker's
    checker._relisted("sandboxes", {"d"}, 400)
    checker.check_overlaps()
    assert [v for v in checker.violations if v.startswith("INVARIANT duplicate-instance:")], checker.violations


# ---- the soak's bed: a component that exits on its own is restarted, loudly ---------------------------

def test_a_bed_component_that_exits_is_restarted_and_counted(tb, core):
    """The 60-minute run of seed 16001 lost its kube-scheduler (no line in its log) and could not
    converge. The soak's supervisor starts such a component again, as the kubelet restarts a static
    Pod, says so loudly and counts it — here kube-scheduler, killed behind the faults' back."""
    import signal
    import chaos_faults as cf
    lines = []
    sched = cf.BedProcess(tb, "kube-scheduler")
    sup = cf.Supervisor([sched], log=lines.append, interval=0.5).start()
    ns = make_namespace(core, "bed-sup")
    try:
        old = sched.pid()
        os.kill(old, signal.SIGKILL)
        sx.wait(lambda: sched.alive() and sched.pid() != old, 20, "kube-scheduler started again")
        assert sup.restarts == {"kube-scheduler": 1}
        assert [m for m in lines if m.startswith("BED: kube-scheduler exited")], lines
        # and it schedules: a Pod gets a Node
        core.create_namespaced_pod(ns, client.V1Pod(
            metadata=client.V1ObjectMeta(name="sup-check"),
            spec=client.V1PodSpec(automount_service_account_token=False,
                                  containers=[client.V1Container(name="c", image="registry.invalid/sup:1")])))
        sx.wait(lambda: core.read_namespaced_pod("sup-check", ns).spec.node_name, 60, "the Pod scheduled")
    finally:
        sup.stop()
        drop_namespace(core, ns)
