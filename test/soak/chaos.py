"""Chaos soak on the real bed: a fleet of pod and sandbox Workers churned while faults are
injected, with an invariant checker watching throughout (chaos_invariants.py).

  ./build.sh soak-chaos [--minutes N] [--seed S] [--workers W]

Runs on a test bed of its own (WC_TESTBED, default /tmp/wc-bed-chaos; brought up if needed; the
faults kill its kube-apiserver, OpenKruise, kube-controller-manager and MinIO, so never share it).

  fleet     W Workers (half pod, half sandbox), churned by a seeded driver: create, change
            image or env (a recreate), Sleeping/Running, switch backends through Stopped,
            delete, recreate under the same name, change workerName. Every Worker has a
            credentials Secret of planted values the checker looks for everywhere.
  replicas  two controller processes of one controller name with leader election, each under
            a ServiceAccount of its own (the audit log tells their writes apart), connected to
            the API server through a loopback proxy the faults slow or stall, and to the
            worker-deps S3 through a proxy the faults make fail writes.
  faults    chaos_faults.py, at seeded moments.
  end       the faults stop, the churn stops, the fleet must converge to what the Workers say
            within a bound, nothing may be orphaned, and the run prints its figures.

Exit status: 0 when nothing was violated and the fleet converged; 1 otherwise. Bounded in time
(--minutes plus the convergence bound) and in operations.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import bed  # noqa: E402
import chaos_faults as cf  # noqa: E402
import chaos_invariants as ci  # noqa: E402
import controller_harness as h  # noqa: E402
import sandbox_support as sx  # noqa: E402
from conftest import drop_namespace, make_namespace  # noqa: E402
from kubernetes import client, config  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402
from latency_proxy import LatencyProxy  # noqa: E402
from s3_fault_proxy import S3FaultProxy  # noqa: E402

IMAGES = ["registry.example/hiclaw/worker:chaos-1", "registry.example/hiclaw/worker:chaos-2"]


class TB:
    """The bed's env file as attributes, like the e2e fixture."""

    def __init__(self, path: str):
        import shlex
        for line in open(path):
            line = line.strip()
            if line.startswith("export "):
                k, v = line[len("export "):].split("=", 1)
                setattr(self, k, shlex.split(v)[0] if v else "")


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Fleet:
    """The Workers and what each should end as. A seeded driver of operations."""

    def __init__(self, custom, core, ns: str, controller: str, rng: random.Random, n: int):
        self.custom, self.core, self.ns, self.controller, self.rng = custom, core, ns, controller, rng
        self.want: dict = {}       # name -> spec dict (None: deleted)
        self.switching: dict = {}  # name -> the backend it moves to once it is Stopped
        self.ops: dict = {}
        self.planted: list = []
        self.names = [f"cw-{i:02d}" for i in range(n)]
        for i, name in enumerate(self.names):
            self.want[name] = None
            self._creds(name)
            self.create(name, "pod" if i % 2 == 0 else "sandbox")

    def _creds(self, name: str) -> None:
        vals = {k: f"chaos-{k.lower()}-{self.rng.getrandbits(64):016x}"
                for k in ("WORKER_MATRIX_TOKEN", "WORKER_GATEWAY_KEY", "WORKER_MINIO_PASSWORD")}
        self.planted += vals.values()
        try:
            self.core.create_namespaced_secret(self.ns, client.V1Secret(
                metadata=client.V1ObjectMeta(name=f"hiclaw-creds-{name}"), string_data=vals))
        except ApiException as e:
            if e.status != 409:
                raise

    def _count(self, op: str) -> None:
        self.ops[op] = self.ops.get(op, 0) + 1

    def create(self, name: str, backend: str) -> None:
        spec = {"backendRuntime": backend, "state": "Running", "image": self.rng.choice(IMAGES),
                "env": {"CHAOS": str(self.rng.getrandbits(16))}}
        try:
            h.create_worker(self.custom, self.ns, name, controller=self.controller, **spec)
            self.want[name] = spec
            self._count("create")
        except ApiException as e:
            if e.status != 409:  # still going away: try again later
                raise

    def patch(self, name: str, change: dict, op: str) -> None:
        try:
            h.patch_worker(self.custom, self.ns, name, {"spec": change})
            self.want[name].update(change)
            self._count(op)
        except ApiException as e:
            if e.status not in (404, 409, 422):
                raise

    def step(self) -> None:
        name = self.rng.choice(self.names)
        spec = self.want[name]
        if spec is None:
            self.create(name, self.rng.choice(["pod", "sandbox"]))  # recreated under the same name
            return
        if name in self.switching:
            # a backend switch goes through Stopped: once the old instance is gone, run on the other
            st = (h.get_worker(self.custom, self.ns, name).get("status") or {})
            if st.get("phase") == "Stopped":
                self.patch(name, {"backendRuntime": self.switching.pop(name), "state": "Running"}, "switch-backend")
            return
        r = self.rng.random()
        if r < 0.15:
            self.patch(name, {"image": self.rng.choice(IMAGES)}, "image")
        elif r < 0.30:
            self.patch(name, {"env": {"CHAOS": str(self.rng.getrandbits(16))}}, "env")
        elif r < 0.50:
            self.patch(name, {"state": "Sleeping" if spec["state"] == "Running" else "Running"}, "sleep-wake")
        elif r < 0.62:
            self.patch(name, {"state": "Stopped"}, "stop-to-switch")
            self.switching[name] = "pod" if spec["backendRuntime"] == "sandbox" else "sandbox"
        elif r < 0.70 and spec["state"] == "Stopped":
            self.patch(name, {"state": "Running"}, "run")
        elif r < 0.80:
            self.patch(name, {"workerName": f"{name}-{self.rng.getrandbits(12):03x}"}, "workername")
        elif r < 0.92:
            try:
                h.delete_worker(self.custom, self.ns, name)
                self.want[name] = None
                self.switching.pop(name, None)
                self._count("delete")
            except ApiException:
                pass
        else:
            self.patch(name, {"state": "Running"}, "run")

    def converged(self) -> list:
        """What is not yet as the Workers say (empty: converged)."""
        bad = []
        have = {w["metadata"]["name"]: w for w in h.list_workers(self.custom, self.ns)}
        for name, spec in self.want.items():
            w = have.get(name)
            if spec is None:
                if w is not None:
                    bad.append(f"{name}: still there")
                continue
            if w is None:
                bad.append(f"{name}: missing")
                continue
            st = w.get("status") or {}
            want_phase = {"Running": "Running", "Sleeping": "Sleeping", "Stopped": "Stopped"}[spec["state"]]
            synced = (h.condition(w, "Synced") or {}).get("status")
            if st.get("phase") != want_phase or synced != "True" or \
                    st.get("observedGeneration") != w["metadata"]["generation"] or \
                    (want_phase == "Running" and st.get("backendRuntime") != spec["backendRuntime"]):
                bad.append(f"{name}: {st.get('phase')}/{st.get('backendRuntime')} synced={synced} "
                           f"(want {want_phase}/{spec['backendRuntime']})")
        return bad


def bed_diagnosis(tb, core, ns: str) -> list:
    """Why a fleet may not converge that is not the controller's doing: the bed's processes that
    are no longer alive, and the Pods that are not Ready with what their status says."""
    out = []
    for f in sorted(os.listdir(tb.WC_TESTBED)):
        if f.endswith(".pid"):
            try:
                with open(os.path.join(tb.WC_TESTBED, f)) as fh:
                    pid = int(fh.read().split()[0])
                os.kill(pid, 0)
            except (OSError, ValueError, IndexError):
                out.append(f"bed process {f[:-4]} is not running")
    try:
        for p in core.list_namespaced_pod(ns).items:
            ready = [c.status for c in (p.status.conditions or []) if c.type == "Ready"]
            if ready != ["True"]:
                out.append(f"Pod {p.metadata.name}: phase {p.status.phase}, node {p.spec.node_name}, "
                           f"Ready {ready}, deleting {bool(p.metadata.deletion_timestamp)}")
    except Exception as e:
        out.append(f"Pods not listed: {e!r}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=20261202)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--binary", default=None, help="the controller binary (default: the product)")
    ap.add_argument("--converge-s", type=float, default=240.0)
    ap.add_argument("--faults", default="controller,apiserver,openkruise,kcm,minio,compaction,slow-api,stall-api,s3-writes")
    ap.add_argument("--json", default=None, help="write the figures here too")
    ap.add_argument("--token-rotate-s", type=float, default=1200.0,
                    help="rotate the replicas' 1 h tokens this often, as the kubelet would (a run outlasts them)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    tb = TB(os.path.join(os.environ.get("WC_TESTBED", "/tmp/wc-bed-chaos"), "env"))
    os.environ.setdefault("WC_AUDIT_LOG", tb.WC_AUDIT_LOG)
    api = config.new_client_from_config(config_file=tb.KUBECONFIG)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    import boto3
    from botocore.config import Config
    s3 = boto3.client("s3", endpoint_url=tb.WC_S3_ENDPOINT, region_name=tb.WC_S3_REGION,
                      aws_access_key_id=tb.WC_S3_ACCESS_KEY, aws_secret_access_key=tb.WC_S3_SECRET_KEY,
                      verify=tb.WC_CA_FILE, config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                                         retries={"max_attempts": 2}, connect_timeout=5, read_timeout=10))
    ns = make_namespace(core, "chaos")
    log(f"chaos soak: seed={a.seed} minutes={a.minutes} workers={a.workers} namespace={ns}")
    api_px = LatencyProxy("127.0.0.1", int(tb.WC_APISERVER_PORT))
    s3_px = S3FaultProxy("127.0.0.1", int(tb.WC_S3_PORT), tb.WC_CA_FILE, os.path.join(tb.WC_TESTBED, "pki"))
    ctl_name = "chaos-ctl"
    env = {"HICLAW_LEADER_ELECT": "true", "HICLAW_SANDBOX_PREWARM_SIZE": "3", "HICLAW_SANDBOX_CLAIM_TIMEOUT": "2m",
           "HICLAW_WORKER_DEPS_ENDPOINT": s3_px.url(), "HICLAW_LOG_LEVEL": "info"}
    replicas = [h.ControllerProcess(tb, core, ns, ctl_name, sandbox=True, env=env, binary_path=a.binary)
                for _ in range(2)]
    replicas[0].setup_identity()
    replicas[1].setup_replica_identity(f"{ctl_name}-b")
    for r in replicas:
        r.server_url = api_px.url()
        r.start(wait_synced=False)
    h.wait_for_value(lambda: any("became leader" in r.log_text() for r in replicas), 60, "a leader")
    start_rss = {i: rss_kib(r.proc.pid) for i, r in enumerate(replicas)}

    fleet = Fleet(custom, core, ns, ctl_name, rng, a.workers)
    runtime = bed.Runtime(tb)
    checker = ci.Checker(tb, api, ns, s3, runtime, [r.username for r in replicas], fleet.planted,
                         [r.log_path for r in replicas], log=log).start()

    def stall(on):
        api_px.hold_requests = on

    def slow(on):
        api_px.delay = rng.uniform(0.2, 0.5) if on else 0.0

    def s3_fail(on):
        s3_px.fail_writes = on

    def kruise_ready():
        h.wait_for_value(lambda: _http_ok(tb.WC_KRUISE_HEALTH_URL), 60, "OpenKruise health")

    # the bed's components, shared by the faults that kill them and the supervisor that restarts
    # one that exits on its own (kube-apiserver and etcd: only ever by their own faults)
    bed_procs = {n: cf.BedProcess(tb, n) for n in
                 ("kube-controller-manager", "kube-scheduler", "kwok", "agent-sandbox", "agent-runtime")}
    bed_procs["openkruise"] = cf.BedProcess(tb, "openkruise", (tb.WC_KRUISE_HEALTH_URL.rsplit(":", 1)[1].split("/")[0],))
    bed_procs["minio"] = cf.BedProcess(tb, "minio", (tb.WC_S3_PORT,))
    supervisor = cf.Supervisor(list(bed_procs.values()), log=log).start()

    catalogue = {
        "controller": cf.ControllerKill(replicas, rng),
        "apiserver": cf.ApiServerRestart(tb),
        "openkruise": cf.KillRestart("openkruise", bed_procs["openkruise"], rng, ready=kruise_ready),
        "kcm": cf.KillRestart("kcm", bed_procs["kube-controller-manager"], rng),
        "minio": cf.KillRestart("minio", bed_procs["minio"], rng, down=(2.0, 8.0)),
        "compaction": cf.Compaction(tb),
        "slow-api": cf.Window("slow-api", slow, rng),
        "stall-api": cf.Window("stall-api", stall, rng, secs=(5.0, 9.0)),
        "s3-writes": cf.Window("s3-writes", s3_fail, rng),
    }
    faults = [catalogue[k] for k in a.faults.split(",") if k]
    t_start = time.monotonic()
    until = t_start + a.minutes * 60
    injector = cf.Injector(faults, rng, log=log).start(until) if faults else None
    steps = 0
    rotated = t_start
    try:
        while time.monotonic() < until and steps < 100000:
            if time.monotonic() - rotated > a.token_rotate_s:
                try:  # the replicas' 1 h tokens, rotated as the kubelet would (a run outlasts them)
                    for r in replicas:
                        r.rotate_token()
                    rotated = time.monotonic()
                    log("replica tokens rotated")
                except Exception as e:
                    log(f"token rotation: {type(e).__name__}; trying again")
            try:
                fleet.step()
            except Exception as e:  # the API server may be down (a fault): the driver waits
                log(f"driver: {type(e).__name__}; waiting")
                time.sleep(2)
            steps += 1
            time.sleep(rng.uniform(0.5, 2.5))
        if injector:
            injector.stop()
        api_px.hold_requests, api_px.delay, s3_px.fail_writes = False, 0.0, False
        for r in replicas:  # a replica killed by the last fault may still be restarting
            if not r.running():
                r.start(wait_synced=False)
        t_quiet = time.monotonic()
        log(f"churn and faults over after {t_quiet - t_start:.0f}s; waiting for the fleet to converge")
        bad = None
        deadline = t_quiet + a.converge_s
        while time.monotonic() < deadline:
            try:
                bad = fleet.converged()
            except Exception as e:
                bad = [repr(e)]
            if not bad:
                break
            time.sleep(2)
        converge_s = time.monotonic() - t_quiet
        if bad:
            for line in bed_diagnosis(tb, core, ns):
                log(f"not converged: {line}")
        time.sleep(checker.grace + 5)  # let the orphan checks of the last deletions run
        checker.sweep()
        checker.sweep_slow()
    finally:
        supervisor.stop()
        checker.stop()
        end_rss = {i: rss_kib(r.proc.pid) if r.running() else 0 for i, r in enumerate(replicas)}
        for r in replicas:
            r.close()
        api_px.close()
        s3_px.close()
    figures = {
        "seed": a.seed, "minutes": a.minutes, "workers": a.workers, "operations": fleet.ops,
        "operations_total": sum(fleet.ops.values()), "faults": injector.counts if injector else {},
        "fault_errors": injector.errors if injector else [], "checks": checker.checks,
        "violations": checker.violations, "converged": not bad, "not_converged": bad or [],
        "converge_after_last_fault_s": round(time.monotonic() - (injector.last_fault_end if injector else t_quiet)
                                             - checker.grace - 5, 1) if not bad else None,
        "converge_after_quiet_s": round(converge_s, 1),
        "controller_rss_kib": {"start": start_rss, "end": end_rss},
        "bed_restarts": supervisor.restarts,
    }
    print(json.dumps(figures, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(figures, f, indent=1)
    ok = not checker.violations and not bad
    if ok:
        drop_namespace(core, ns)
    log(f"chaos soak {'PASSED' if ok else 'FAILED'}: {sum(fleet.ops.values())} operations, "
        f"{sum((injector.counts if injector else {}).values())} faults, {checker.checks} checks, "
        f"{len(checker.violations)} violations")
    return 0 if ok else 1


def _http_ok(url: str) -> bool:
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except Exception:
        return False


if __name__ == "__main__":
    sys.exit(main())
