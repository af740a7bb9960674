"""Issue 9, faults survived and nothing lost. Every fault is bounded in time and count; the
random seed of each run is printed so a failure can be replayed.

1. kube-apiserver SIGKILLed and restarted (twice) while 200 Workers are being created: every
   Worker converges to exactly one Pod, and a watcher over Pods running throughout never sees
   two live Pods for one Worker.
2. The controller SIGKILLed at random moments (sandbox backend) while Workers are created,
   stopped and deleted: after every kill, no SandboxClaim exists without its worker-deps
   objects; after the last restart everything converges and nothing is orphaned (no claim,
   Sandbox, deps object or ServiceAccount of a deleted Worker; exactly one claim + Sandbox per
   running Worker).
3. Conflict storm: the test rewrites Worker specs and the status fields other components own
   (matrixUserID, roomID) in a tight loop while the controller works: no lost update on either
   side — the Pod matches the final spec and the others' fields hold their last values.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from kubernetes.client.rest import ApiException

import controller_harness as h
import reliability_support as rs
import sandbox_support as sb


def _create_retrying(custom, ns, name, deadline, **kw):
    """Creates a Worker, riding out an API server outage; 409 means an earlier attempt landed."""
    while time.monotonic() < deadline:
        try:
            h.create_worker(custom, ns, name, **kw)
            return True
        except ApiException as e:
            if e.status == 409:
                return True
            time.sleep(0.3)
        except Exception:  # connection refused / reset while the API server is down
            time.sleep(0.3)
    return False


def test_apiserver_killed_during_200_creates(tb, api, core, custom, namespace):
    ns = namespace
    rnd = random.Random()
    seed = rnd.randrange(1 << 30)
    rnd.seed(seed)
    print(f"seed={seed}")
    n_workers = 200
    names = [f"ak-{i:03d}" for i in range(n_workers)]
    with h.controller_for(tb, core, ns, f"ctl-{h.unique_suffix()}", env={"HICLAW_CONCURRENCY": "4"}) as ctl, \
            rs.PodWatcher(api, ns) as pw:
        created: list[str] = []
        deadline = time.monotonic() + 300

        def creator():
            for n in names:
                if _create_retrying(custom, ns, n, deadline, env={"IDX": n}):
                    created.append(n)
                time.sleep(rnd.uniform(0.03, 0.12))  # paced, so both kills land mid-creation

        t = threading.Thread(target=creator, daemon=True)
        t0 = time.monotonic()
        t.start()
        restarts = []
        for k in range(2):
            target = (k + 1) * n_workers // 3 + rnd.randrange(20)
            h.wait_for_value(lambda: len(created) >= target or not t.is_alive(), 120, f"{target} Workers created")
            at, n_at = round(time.monotonic() - t0, 1), len(created)
            argv, env = rs.kill_apiserver(tb)
            down = rnd.uniform(1.0, 4.0)
            time.sleep(down)
            rs.start_apiserver(tb, argv, env)
            restarts.append((at, n_at, round(down, 1), round(time.monotonic() - t0 - at, 1)))
        t.join(300)
        assert not t.is_alive() and len(created) == n_workers, len(created)
        assert all(0 < r[1] < n_workers for r in restarts), restarts  # the kills hit mid-creation
        print(f"apiserver SIGKILLs at (s, Workers created at the kill, down s, until ready s): {restarts}")

        def converged():
            ws = h.list_workers(custom, ns)
            return len(ws) == n_workers and all((w.get("status") or {}).get("phase") == "Running" for w in ws)

        h.wait_for_value(converged, 240, "all 200 Workers Running after API server restarts", interval=1.0)
        print(f"converged in {time.monotonic() - t0:.1f}s; pod watcher reconnects={pw.reconnects}")
        ws = {w["metadata"]["name"]: w for w in h.list_workers(custom, ns)}
        by_worker: dict = {}
        for p in h.worker_pods(core, ns):
            by_worker.setdefault(p.metadata.labels["hiclaw.io/worker"], []).append(p)
        assert set(by_worker) == set(ws), set(by_worker) ^ set(ws)
        for n, ps in by_worker.items():
            assert len(ps) == 1, (n, [p.metadata.name for p in ps])
            assert ps[0].metadata.owner_references[0].uid == ws[n]["metadata"]["uid"]
            assert {e.name: e.value for e in ps[0].spec.containers[0].env}["IDX"] == n
        assert not pw.duplicates, pw.duplicates[:5]
        assert ctl.running(), ctl.log_tail()
        ctl.stop()


def _deps_present(s3, bucket, ns, worker) -> bool:
    k = sb.deps_keys(ns, worker)
    return all(sb.s3_head(s3, bucket, k[x]) is not None for x in ("env", "token", "data"))


def test_controller_killed_at_random_moments_sandbox(tb, api, core, custom, namespace, s3):
    """Approximates "killed right after writing the deps but before the claim" and "right
    after deleting a claim but before its Sandbox" by killing at random moments, many times,
    checking the invariants after each kill."""
    ns = namespace
    rnd = random.Random()
    seed = rnd.randrange(1 << 30)
    rnd.seed(seed)
    print(f"seed={seed}")
    bucket = tb.WC_S3_BUCKET
    rounds = 8
    alive: set = set()
    stopped: set = set()
    deleted: set = set()
    ctl = sb.sandbox_controller(tb, core, ns)
    violations = []
    try:
        for r in range(rounds):
            # work for this round: 3 new Workers, maybe stop one, maybe delete one
            for i in range(3):
                n = f"rk-{r}-{i}"
                h.create_worker(custom, ns, n, backendRuntime="sandbox")
                alive.add(n)
            if alive and rnd.random() < 0.6:
                n = rnd.choice(sorted(alive))
                h.patch_worker(custom, ns, n, {"spec": {"state": "Stopped"}})
                alive.discard(n)
                stopped.add(n)
            if (alive or stopped) and rnd.random() < 0.6:
                n = rnd.choice(sorted(alive | stopped))
                h.delete_worker(custom, ns, n)
                alive.discard(n)
                stopped.discard(n)
                deleted.add(n)
            time.sleep(rnd.uniform(0.05, 1.5))
            ctl.kill()
            # invariant: a claim never exists without its deps objects
            for c in sb.list_kind(custom, ns, "sandboxclaims"):
                w = (c["metadata"].get("labels") or {}).get("hiclaw.io/worker")
                if w and not _deps_present(s3, bucket, ns, w):
                    violations.append((r, "claim without deps", c["metadata"]["name"]))
            time.sleep(rnd.uniform(0.0, 0.5))
            ctl.start(timeout=60)
        assert not violations, violations

        def converged():
            for n in alive:
                w = h.get_worker(custom, ns, n)
                if (w.get("status") or {}).get("phase") != "Running":
                    return False
                if len(sb.claims_of(custom, ns, n)) != 1 or len(sb.sandboxes_of(custom, ns, n)) != 1:
                    return False
            for n in stopped:
                w = h.get_worker(custom, ns, n)
                if (w.get("status") or {}).get("phase") != "Stopped":
                    return False
                if sb.claims_of(custom, ns, n) or sb.sandboxes_of(custom, ns, n):
                    return False
            for n in deleted:
                try:
                    h.get_worker(custom, ns, n)
                    return False
                except ApiException as e:
                    if e.status != 404:
                        return False
            return True

        h.wait_for_value(converged, 180, "convergence after the last restart", interval=1.0)
        # nothing orphaned: every claim, Sandbox, ServiceAccount and deps prefix belongs to a live Worker
        live = {w["metadata"]["name"] for w in h.list_workers(custom, ns)}
        for plural in ("sandboxclaims", "sandboxes"):
            for o in sb.list_kind(custom, ns, plural, worker=""):  # every one labelled for a Worker
                w = o["metadata"]["labels"]["hiclaw.io/worker"]
                assert w in alive, (plural, o["metadata"]["name"], w)
        for sa in core.list_namespaced_service_account(ns, label_selector="hiclaw.io/worker").items:
            assert sa.metadata.labels["hiclaw.io/worker"] in live, sa.metadata.name
        for n in deleted:
            assert sb.s3_list(s3, bucket, sb.deps_keys(ns, n)["dir"] + "/") == [], n
        for n in alive:
            assert _deps_present(s3, bucket, ns, n), n
        print(f"{rounds} kills; alive={len(alive)} stopped={len(stopped)} deleted={len(deleted)}")
        assert ctl.running(), ctl.log_tail()
    finally:
        ctl.close()


def test_conflict_storm_no_lost_update(tb, api, core, custom, namespace):
    ns = namespace
    n_workers, iterations = 5, 60
    names = [f"storm-{i}" for i in range(n_workers)]
    with h.controller_for(tb, core, ns, f"ctl-{h.unique_suffix()}", env={"HICLAW_CONCURRENCY": "4"}) as ctl:
        for n in names:
            h.create_worker(custom, ns, n, env={"VAL": "0"})
        for n in names:
            h.wait_phase(custom, ns, n, "Running", timeout=60)
        last_spec = {n: "0" for n in names}
        last_status: dict = {}
        conflicts = 0
        t_end = time.monotonic() + 90
        for i in range(1, iterations + 1):
            if time.monotonic() > t_end:
                break
            for n in names:
                # the others' status fields: merge patch on /status, as HiClaw's components do
                patch = {"matrixUserID": f"@{n}-{i}:hs", "roomID": f"!room-{i}:hs"}
                h.patch_worker_status(custom, ns, n, patch)
                last_status[n] = patch
                if i % 6 == 0:  # a spec change (recreates the Pod) every few rounds
                    h.patch_worker(custom, ns, n, {"spec": {"env": {"VAL": str(i)}}})
                    last_spec[n] = str(i)
                # and an update with a resourceVersion (compare-and-swap), as kubectl edit does
                if i % 10 == 0:
                    for _ in range(10):
                        w = h.get_worker(custom, ns, n)
                        w["spec"]["soul"] = f"soul {i}"
                        try:
                            custom.replace_namespaced_custom_object(h.GROUP, h.VERSION, ns, h.PLURAL, n, w)
                            break
                        except ApiException as e:
                            assert e.status == 409, e
                            conflicts += 1
        print(f"storm: {i} rounds, {conflicts} test-side conflicts")

        def settled():
            for n in names:
                w = h.get_worker(custom, ns, n)
                st = w.get("status") or {}
                if st.get("phase") != "Running" or st.get("observedGeneration") != w["metadata"]["generation"]:
                    return False
                pod = h.get_pod_dict(api, core, ns, n)
                if not pod or pod["metadata"].get("deletionTimestamp"):
                    return False
                if h.env_map(pod)["VAL"]["value"] != last_spec[n]:
                    return False
            return True

        h.wait_for_value(settled, 120, "every Worker matches its final spec", interval=0.5)
        for n in names:
            w = h.get_worker(custom, ns, n)
            assert w["status"]["matrixUserID"] == last_status[n]["matrixUserID"], (n, w["status"])
            assert w["status"]["roomID"] == last_status[n]["roomID"], (n, w["status"])
            assert w["spec"]["env"]["VAL"] == last_spec[n]
            assert len(h.worker_pods(core, ns, n)) == 1
        assert ctl.running(), ctl.log_tail()
