"""Issue 9, outages while the controller runs.

1. etcd compaction forcing 410 on every watch, mid-run: the controller (sandbox-enabled, so it
   watches Workers, Pods, SandboxClaims and Sandboxes) is frozen (SIGSTOP); behind its back the
   API server is restarted (its watch cache starts over), Workers are created, stopped, changed
   and deleted, and etcd is compacted past every revision the controller knows. On SIGCONT
   every watch resumes from a compacted revision: 410 → relist. Nothing is missed: every change
   made while it was frozen is acted on, and every informer relisted.
2. S3 stopped for 60 s during a burst of sandbox creates: no claim is created while storage is
   down (a claim only follows deps objects written and verified in the same reconcile), every
   claim that exists has its deps objects, and everything converges after S3 is back.
"""

from __future__ import annotations

import signal
import threading
import time

from kubernetes.client.rest import ApiException

import controller_harness as h
import reliability_support as rs
import sandbox_support as sb


def _deps_present(s3, bucket, ns, worker) -> bool:
    k = sb.deps_keys(ns, worker)
    return all(sb.s3_head(s3, bucket, k[x]) is not None for x in ("env", "token", "data"))


def test_compaction_410_on_every_watch_mid_run_misses_nothing(tb, api, core, custom, namespace, s3):
    ns, bucket = namespace, tb.WC_S3_BUCKET
    ctl = sb.sandbox_controller(tb, core, ns, {"HICLAW_LOG_LEVEL": "debug"})
    try:
        pods = [f"cp-pod-{i}" for i in range(4)]
        sbxs = [f"cp-sbx-{i}" for i in range(4)]
        for n in pods:
            h.create_worker(custom, ns, n)
        for n in sbxs:
            h.create_worker(custom, ns, n, backendRuntime="sandbox")
        for n in pods + sbxs:
            h.wait_phase(custom, ns, n, "Running", timeout=90)
        mark = len(ctl.log_text())

        ctl.proc.send_signal(signal.SIGSTOP)
        try:
            rs.restart_apiserver(tb)
            # behind its back: new Workers of both kinds, a stop, a spec change, deletes
            h.create_worker(custom, ns, "cp-new-pod")
            h.create_worker(custom, ns, "cp-new-sbx", backendRuntime="sandbox")
            h.patch_worker(custom, ns, pods[0], {"spec": {"state": "Stopped"}})
            h.patch_worker(custom, ns, sbxs[0], {"spec": {"state": "Stopped"}})
            h.patch_worker(custom, ns, pods[1], {"spec": {"image": "registry.example/changed-while-frozen:1"}})
            h.delete_worker(custom, ns, pods[2])
            h.delete_worker(custom, ns, sbxs[2])
            rs.etcd_compact(tb)
        finally:
            ctl.proc.send_signal(signal.SIGCONT)

        for n in ("cp-new-pod", "cp-new-sbx", pods[1], pods[3], sbxs[1], sbxs[3]):
            h.wait_phase(custom, ns, n, "Running", timeout=120)
        for n in (pods[0], sbxs[0]):
            h.wait_phase(custom, ns, n, "Stopped", timeout=120)
        for n in (pods[2], sbxs[2]):
            h.wait_for_value(lambda n=n: _gone(custom, ns, n), 120, f"{n} deleted")

        # the spec change reached the Pod (recreated with the new image)
        def image_applied():
            p = h.get_pod_dict(api, core, ns, pods[1])
            return p and p["spec"]["containers"][0]["image"] == "registry.example/changed-while-frozen:1"
        h.wait_for_value(image_applied, 60, "the changed image in the Pod")
        # nothing left of the stopped and deleted ones, one instance for each running one
        assert h.worker_pods(core, ns, pods[0]) == [] and h.worker_pods(core, ns, pods[2]) == []
        for n in (sbxs[0], sbxs[2]):
            assert sb.claims_of(custom, ns, n) == [] and sb.sandboxes_of(custom, ns, n) == [], n
        assert sb.s3_list(s3, bucket, sb.deps_keys(ns, sbxs[2])["dir"] + "/") == []
        for n in ("cp-new-pod", pods[1], pods[3]):
            assert len(h.worker_pods(core, ns, n)) == 1, n
        for n in ("cp-new-sbx", sbxs[1], sbxs[3]):
            assert len(sb.claims_of(custom, ns, n)) == 1 and len(sb.sandboxes_of(custom, ns, n)) == 1, n
            assert _deps_present(s3, bucket, ns, n), n

        # every informer was told 410 and relisted
        relisted = ctl.log_text()[mark:].count("watch expired, relisting")
        assert relisted >= 4, (relisted, ctl.log_tail())
        assert ctl.running(), ctl.log_tail()
    finally:
        ctl.close()


def _gone(custom, ns, name) -> bool:
    try:
        h.get_worker(custom, ns, name)
        return False
    except ApiException as e:
        return e.status == 404


def test_s3_stopped_60s_during_sandbox_creates(tb, api, core, custom, namespace, s3):
    ns, bucket = namespace, tb.WC_S3_BUCKET
    ctl = sb.sandbox_controller(tb, core, ns)
    first_seen: dict[str, float] = {}
    lock = threading.Lock()

    def on_claim(kind, obj):
        w = (obj["metadata"].get("labels") or {}).get("hiclaw.io/worker")
        with lock:
            first_seen.setdefault(w, time.monotonic())

    rec = sb.custom_recorder(api, custom, ns, sb.CLAIMS, on_claim)
    mc = sb.MinioControl(tb)
    restarted = True
    try:
        names = [f"s3o-{i:02d}" for i in range(30)]
        for n in names[:10]:          # a burst ...
            h.create_worker(custom, ns, n, backendRuntime="sandbox")
        mc.stop()                     # ... cut off in the middle
        restarted = False
        t_stop = time.monotonic()
        for n in names[10:]:          # ... and going on while storage is down
            h.create_worker(custom, ns, n, backendRuntime="sandbox")
        time.sleep(max(0.0, 60 - (time.monotonic() - t_stop)))
        ctl_alive = ctl.running()
        t_start = time.monotonic()
        mc.start()
        restarted = True
        assert ctl_alive, ctl.log_tail()

        # a reconcile that verified its deps just before the stop may create its claim just
        # after it; none may be created later in the outage
        with lock:
            during = sorted(w for w, t in first_seen.items() if t_stop + 5 < t < t_start)
        assert during == [], f"claims created while S3 was down: {during}"
        for n in names:
            h.wait_phase(custom, ns, n, "Running", timeout=240)
        print(f"all {len(names)} Running {time.monotonic() - t_start:.1f} s after S3 came back")
        for n in names:
            assert len(sb.claims_of(custom, ns, n)) == 1 and len(sb.sandboxes_of(custom, ns, n)) == 1, n
            assert _deps_present(s3, bucket, ns, n), n
        assert ctl.running(), ctl.log_tail()
    finally:
        if not restarted:
            mc.start()
        rec.stop()
        ctl.close()
