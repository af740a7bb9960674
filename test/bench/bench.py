#!/usr/bin/env python3
"""worker-controller benchmarks (issue 8): convergence vs the floor, footprint, startup.

Run by `./build.sh bench` (short: N=200, both backends, 1 repetition) or
`./build.sh bench --full` (N=1000 x3 both backends, footprint at 0/1000/5000/10000, startup
with 5000 existing Workers). Needs a test bed (test/cluster/up.sh); build.sh brings one up in
WC_TESTBED (default /tmp/wc-bed-bench) and leaves it up unless --down.

Every figure comes from one of these measurements (all loopback, bounded in count and time):

* converge: N Workers are created first (timed separately: `create`), the stand-in
  (`wc-bench standin`: kubelet + OpenKruise, prompt, C threads) and the stopwatch
  (`wc-bench watch`: informers on Workers and instances) are synced, then at t0 the controller
  (or the floor, `wc-bench floor`) is started. T_inst = last Pod/SandboxClaim seen by the
  stopwatch - t0; T_run = last Worker with status.phase=Running seen - t0. Same stand-in, same
  stopwatch, same namespace shape for both; the ratio is controller / floor, back to back.
* footprint: /proc/PID/status (VmRSS, VmHWM) and /proc/PID/stat (utime+stime) of the
  controller; its /metrics rest_client_requests_total by method, at convergence and over a
  steady window afterwards.
* startup: the controller restarted on a namespace with N converged Workers: exec -> /readyz 200.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.path.join(ROOT, "build", "bench")
CTL_NAME = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)


def load_bed(path: str) -> dict:
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("export "):
                k, _, v = line[len("export "):].partition("=")
                env[k] = shlex.split(v)[0] if v else ""
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bed:
    def __init__(self, env: dict, workdir: str):
        self.env = env
        self.url = env["WC_APISERVER_URL"]
        self.ctx = ssl.create_default_context(cafile=env["WC_CA_FILE"])
        self.token_file = os.path.join(workdir, "admin-token")
        with open(os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(env["WC_ADMIN_TOKEN"])

    def req(self, method: str, path: str, body=None, timeout=30):
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": "Bearer " + self.env["WC_ADMIN_TOKEN"], "Content-Type": "application/json"})
        with urllib.request.urlopen(r, context=self.ctx, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")

    def create_namespace(self, ns: str):
        self.req("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    def apiserver_metrics(self) -> str:
        r = urllib.request.Request(self.url + "/metrics", headers={"Authorization": "Bearer " + self.env["WC_ADMIN_TOKEN"]})
        with urllib.request.urlopen(r, context=self.ctx, timeout=30) as resp:
            return resp.read().decode()


def proc_status(pid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0])  # KiB
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rpartition(")")[2].split()
            out["cpu_s"] = (int(rest[11]) + int(rest[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        pass
    return out


def scrape(addr: str) -> dict:
    """rest_client_requests_total summed by method, plus process_* gauges."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        text = r.read().decode()
    by_method: dict = {}
    for line in text.splitlines():
        if line.startswith("rest_client_requests_total{"):
            labels, _, val = line.rpartition(" ")
            m = labels.split('method="', 1)[1].split('"', 1)[0]
            by_method[m] = by_method.get(m, 0) + float(val)
    return by_method


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except Exception:
        return False


class Runner:
    def __init__(self, bed: Bed, workdir: str, controller_bin: str, bench_bin: str, concurrency: int):
        self.bed, self.workdir = bed, workdir
        self.ctl_bin, self.bench_bin = controller_bin, bench_bin
        self.concurrency = concurrency
        self.children: list[subprocess.Popen] = []

    # -- environment ----------------------------------------------------------------------
    def base_env(self, ns: str, backend: str) -> dict:
        e = self.bed.env
        home = os.path.join(self.workdir, "home")
        os.makedirs(home, exist_ok=True)
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "HICLAW_K8S_NAMESPACE": ns, "HICLAW_CONTROLLER_NAME": CTL_NAME,
               "HICLAW_LEADER_ELECT": "false", "HICLAW_LOG_LEVEL": "warn", "HICLAW_LOG_FORMAT": "text",
               "HICLAW_CONCURRENCY": str(self.concurrency),
               "HICLAW_SANDBOX_ENABLED": "true" if backend == "sandbox" else "false"}
        if backend == "sandbox":
            env.update({"HICLAW_WORKER_DEPS_ENDPOINT": e["WC_S3_ENDPOINT"], "HICLAW_WORKER_DEPS_BUCKET": e["WC_S3_BUCKET"],
                        "HICLAW_WORKER_DEPS_ACCESS_KEY_ID": e["WC_S3_ACCESS_KEY"],
                        "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY": e["WC_S3_SECRET_KEY"],
                        "HICLAW_WORKER_DEPS_CA_FILE": e["WC_CA_FILE"], "HICLAW_WORKER_DEPS_REGION": e["WC_S3_REGION"],
                        "HICLAW_WORKER_DEPS_PREFIX": f"bench/{ns}/"})
        return env

    def conn(self) -> list:
        return ["--server", self.bed.url, "--token-file", self.bed.token_file, "--ca-file", self.bed.env["WC_CA_FILE"]]

    def tool(self, role: str, ns: str, backend: str, **bench) -> list:
        return [self.bench_bin, role] + self.conn()

    def tool_env(self, ns: str, backend: str, **bench) -> dict:
        env = self.base_env(ns, backend)
        env["BENCH_BACKEND"] = backend
        for k, v in bench.items():
            env["BENCH_" + k.upper()] = str(v)
        return env

    def spawn(self, argv, env, log_name, stdin=None, stdout=subprocess.PIPE) -> subprocess.Popen:
        logf = open(os.path.join(self.workdir, log_name), "ab")
        p = subprocess.Popen(argv, env=env, stdin=stdin, stdout=stdout, stderr=logf, cwd=self.workdir, text=True)
        logf.close()
        self.children.append(p)
        return p

    @staticmethod
    def wait_line(p: subprocess.Popen, want: str, timeout: float) -> str:
        """Reads lines from p.stdout until one starts with want (a reader thread bounds the wait)."""
        box: list = []

        def rd():
            for line in p.stdout:
                if line.startswith(want):
                    box.append(line)
                    return

        t = threading.Thread(target=rd, daemon=True)
        t.start()
        t.join(timeout)
        if not box:
            raise RuntimeError(f"{p.args[1] if len(p.args) > 1 else p.args[0]}: no '{want}' within {timeout}s")
        return box[0]

    def stop(self, p: subprocess.Popen, sig=signal.SIGTERM, timeout=40):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.children:
            self.children.remove(p)

    def cleanup(self):
        for p in list(self.children):
            self.stop(p, timeout=10)

    # -- pieces ---------------------------------------------------------------------------
    def create_workers(self, ns: str, backend: str, n: int, threads: int = 32) -> dict:
        self.bed.create_namespace(ns)
        if n == 0:
            return {"created": 0, "seconds": 0.0}
        r = subprocess.run(self.tool("create", ns, backend), env=self.tool_env(ns, backend, n=n, threads=threads,
                                                                             seconds=900, prefix="bw"),
                           capture_output=True, text=True, timeout=960)
        if r.returncode != 0:
            raise RuntimeError(f"create failed: {r.stderr[-2000:]}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    def start_controller(self, ns: str, backend: str):
        env = self.base_env(ns, backend)
        maddr, haddr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        env["HICLAW_METRICS_ADDR"], env["HICLAW_HEALTH_ADDR"] = maddr, haddr
        t0 = time.time()
        p = self.spawn([self.ctl_bin, "run"] + self.conn(), env, f"controller-{ns}.log", stdout=subprocess.DEVNULL)
        return p, t0, maddr, haddr

    def converge(self, ns: str, backend: str, n: int, mode: str, timeout: float, steady_s: float = 0,
                 keep: bool = False) -> dict:
        """One convergence run of `mode` (controller|floor) on ns (Workers already created)."""
        res: dict = {"ns": ns, "backend": backend, "n": n, "mode": mode}
        sti = self.spawn(self.tool("standin", ns, backend), self.tool_env(ns, backend, threads=8, seconds=timeout + steady_s + 120),
                         f"standin-{ns}.log", stdin=subprocess.PIPE)
        self.wait_line(sti, "SYNCED", 120)
        w = self.spawn(self.tool("watch", ns, backend), self.tool_env(ns, backend, n=n, seconds=timeout), f"watch-{ns}.log")
        self.wait_line(w, "SYNCED", 120)
        samples = []
        stop_sampler = threading.Event()
        if mode == "controller":
            p, t0, maddr, haddr = self.start_controller(ns, backend)
            res["metrics_addr"], res["health_addr"] = maddr, haddr

            def sampler():
                ready_at = None
                while not stop_sampler.is_set():
                    s = proc_status(p.pid)
                    if s:
                        samples.append((time.time() - t0, s.get("VmRSS", 0)))
                    if ready_at is None and http_ok(f"http://{haddr}/readyz"):
                        ready_at = time.time() - t0
                        res["ready_s"] = round(ready_at, 3)
                    stop_sampler.wait(0.25)

            th = threading.Thread(target=sampler, daemon=True)
            th.start()
        else:
            t0 = time.time()
            extras = {"floor_extras": 1} if mode == "floorx" else {}
            p = self.spawn(self.tool("floor", ns, backend), self.tool_env(ns, backend, n=n, seconds=timeout, **extras),
                           f"floor-{ns}.log")
        line = self.wait_line(w, "{", timeout + 30)
        wres = json.loads(line)
        res["t_instances_s"] = round(wres["last_instance_ms"] / 1000 - t0, 3) if wres["last_instance_ms"] else None
        res["t_running_s"] = round(wres["all_running_ms"] / 1000 - t0, 3) if wres["all_running_ms"] else None
        res["instances"], res["running"] = wres["instances"], wres["running"]
        self.stop(w)
        if mode == "controller":
            st = proc_status(p.pid)
            res["converge_rss_kib"], res["peak_rss_kib"], res["converge_cpu_s"] = st.get("VmRSS"), st.get("VmHWM"), st.get("cpu_s")
            try:
                m0 = scrape(res["metrics_addr"])
            except Exception as e:  # noqa: BLE001
                log("metrics scrape failed:", e)
                m0 = {}
            res["requests_converge"] = m0
            res["requests_per_worker"] = round(sum(m0.values()) / n, 2) if n else None
            res["writes_per_worker"] = round(sum(v for k, v in m0.items() if k != "GET") / n, 2) if n else None
            if steady_s > 0:
                # let the tail settle (last status patches' events), then measure a window
                time.sleep(min(10, steady_s / 3))
                a, s0 = scrape(res["metrics_addr"]), proc_status(p.pid)
                ta = time.time()
                time.sleep(steady_s)
                b, s1 = scrape(res["metrics_addr"]), proc_status(p.pid)
                mins = (time.time() - ta) / 60
                diff = {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b)}
                res["steady_window_s"] = round(mins * 60, 1)
                res["steady_req_per_min"] = round(sum(diff.values()) / mins, 2)
                res["steady_writes_per_min"] = round(sum(v for k, v in diff.items() if k != "GET") / mins, 2)
                res["steady_by_method"] = {k: round(v / mins, 2) for k, v in diff.items()}
                res["steady_rss_kib"] = s1.get("VmRSS")
                res["peak_rss_kib"] = s1.get("VmHWM")
                res["steady_cpu_s_per_min"] = round((s1.get("cpu_s", 0) - s0.get("cpu_s", 0)) / mins, 3)
                res["cpu_s_total"] = s1.get("cpu_s")
            stop_sampler.set()
            res["rss_samples"] = samples[-1:]  # keep the JSON small
            if keep:
                res["_proc"] = p
            else:
                self.stop(p)
        else:
            try:
                out, _ = p.communicate(timeout=60)
                fl = [l for l in out.splitlines() if l.startswith("{")]
                if fl:
                    res["floor"] = json.loads(fl[-1])
            except subprocess.TimeoutExpired:
                self.stop(p)
            if p in self.children:
                self.children.remove(p)
        sti.stdin.close()
        self.stop(sti)
        return res

    def start_until_ready(self, ns: str, backend: str, timeout: float = 60):
        """Starts the controller and polls /readyz every 10 ms: (process, seconds from exec to
        the first 200 or None, metrics address, /proc status at that moment)."""
        p, t0, maddr, haddr = self.start_controller(ns, backend)
        ready = None
        while time.time() - t0 < timeout and p.poll() is None:
            if http_ok(f"http://{haddr}/readyz"):
                ready = time.time() - t0
                break
            time.sleep(0.01)
        return p, ready, maddr, proc_status(p.pid)

    def startup(self, ns: str, backend: str, n: int, timeout: float = 60) -> dict:
        """Restart on a namespace with n converged Workers: exec -> /readyz 200; then how many
        writes the restart causes in the next 20 s (should be 0)."""
        p, ready, maddr, st = self.start_until_ready(ns, backend, timeout)
        time.sleep(20)
        m = scrape(maddr)
        st2 = proc_status(p.pid)
        self.stop(p)
        return {"ns": ns, "n": n, "ready_s": round(ready, 3) if ready is not None else None,
                "rss_at_ready_kib": st.get("VmRSS"), "rss_after_20s_kib": st2.get("VmRSS"),
                "peak_rss_kib": st2.get("VmHWM"),
                "requests_first_20s": m, "writes_first_20s": sum(v for k, v in m.items() if k != "GET")}


def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def fmt_kib(k):
    return f"{k / 1024:.2f} MiB" if k else "—"


def pairs(runs: list) -> dict:
    return {r.get("pair", f"old-{i}"): r for i, r in enumerate(runs)}


def ratios(c: list, f: list, field: str) -> list:
    pc, pf = pairs(c), pairs(f)
    return [pc[k][field] / pf[k][field] for k in pc if k in pf and pc[k].get(field) and pf[k].get(field)]


def render_table(R: dict) -> str:
    out = []
    out.append("### Convergence vs the floor (wall seconds from start of the controller / floor, Workers pre-created)\n")
    out.append("| backend | N | reps | create N Workers (s) | controller: last instance | floor: last instance | controller: all Running | floor: all Running | ratio (Running) | ratio (instances) |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    notes: list = []
    for key, g in sorted(R.get("converge", {}).items()):
        c = g["controller"]
        f = g["floor"]
        ci, fi = med([r["t_instances_s"] for r in c]), med([r["t_instances_s"] for r in f])
        cr, fr = med([r["t_running_s"] for r in c]), med([r["t_running_s"] for r in f])
        rr = ratios(c, f, "t_running_s")
        iratios = ratios(c, f, "t_instances_s")
        spread = f" (runs: {', '.join(f'{x:.2f}' for x in rr)})" if len(rr) > 1 else ""
        if g.get("floorx"):
            xr = med([r["t_running_s"] for r in g["floorx"]])
            xratios = ratios(c, g["floorx"], "t_running_s")
            notes.append(f"{g['backend']} N={g['n']}: floor + the controller's Secret GETs and Events: all Running {xr} s; "
                         f"controller / that = {med(xratios)}")
        out.append(f"| {g['backend']} | {g['n']} | {len(c)} | {med([r.get('create_s') for r in c + f])} | {ci} | {fi} | {cr} | {fr} | "
                   f"**{med(rr)}**{spread} | {med(iratios)} |")
    out.append("")
    if notes:
        out.extend(["- " + x for x in notes] + [""])
    fp = R.get("footprint", [])
    if fp:
        out.append("### Controller footprint (pod backend; N Workers with their Pods, converged)\n")
        out.append("| N | peak RSS | steady RSS | CPU s to converge | requests / Worker (writes) | steady req/min (writes/min) | steady CPU s/min |")
        out.append("|---|---|---|---|---|---|---|")
        for r in fp:
            out.append(f"| {r['n']} | {fmt_kib(r.get('peak_rss_kib'))} | {fmt_kib(r.get('steady_rss_kib'))} | "
                       f"{r.get('converge_cpu_s')} | {r.get('requests_per_worker')} ({r.get('writes_per_worker')}) | "
                       f"{r.get('steady_req_per_min')} ({r.get('steady_writes_per_min')}) | {r.get('steady_cpu_s_per_min')} |")
        out.append("")
        base = [r for r in fp if r["n"] == 0]
        big = [r for r in fp if r["n"] > 0 and r.get("steady_rss_kib")]
        if base and big and base[0].get("steady_rss_kib"):
            b = base[0]["steady_rss_kib"]
            out.append("Incremental steady RSS per Worker: " + ", ".join(
                f"N={r['n']}: {(r['steady_rss_kib'] - b) * 1024 / r['n']:.0f} B" for r in big) + "\n")
    su = R.get("startup")
    if su:
        out.append("### Startup to ready\n")
        out.append("| existing Workers | exec → /readyz 200 | RSS at ready | writes in first 20 s |")
        out.append("|---|---|---|---|")
        for r in su:
            out.append(f"| {r['n']} | {r['ready_s']} s | {fmt_kib(r.get('rss_at_ready_kib'))} | {r['writes_first_20s']} |")
        out.append("")
    if "binary_bytes" in R:
        out.append(f"Stripped binary: {R['binary_bytes']} bytes ({R['binary_bytes'] / 1048576:.2f} MiB)\n")
    return "\n".join(out)


def plots(R: dict, outdir: str) -> list:
    py = os.path.expanduser("~/.cache/worker-controller/bench-venv/bin/python")
    if not os.path.exists(py):
        log("no matplotlib venv; skipping plots (./build.sh bench creates it)")
        return []
    data = os.path.join(outdir, "results.json")
    script = os.path.join(HERE, "plot.py")
    r = subprocess.run([py, script, data, outdir], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        log("plot failed:", r.stderr[-1500:])
        return []
    return r.stdout.split()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="the full run (long)")
    ap.add_argument("--n", type=int, default=200, help="N for the short run")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--backends", default="pod,sandbox")
    ap.add_argument("--converge-ns", default=None, help="comma list of N for convergence (full: 1000)")
    ap.add_argument("--footprint-ns", default=None, help="comma list of N for footprint (full: 0,1000,5000,10000)")
    ap.add_argument("--steady", type=float, default=None, help="steady window seconds")
    ap.add_argument("--startup-n", type=int, default=None)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--modes", default="controller,floor",
                    help="convergence modes, back to back per repetition: controller, floor, floorx (the floor plus "
                         "the controller's Secret GETs and Event)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--controller", default=None, help="controller binary (default build/bench/worker-controller)")
    ap.add_argument("--merge", default=None, help="a previous results.json whose runs are kept (added to this run's)")
    ap.add_argument("--bed", default=os.environ.get("WC_TESTBED", "/tmp/wc-bed-bench"))
    a = ap.parse_args()

    conv_ns = [int(x) for x in (a.converge_ns if a.converge_ns is not None else ("1000" if a.full else str(a.n))).split(",") if x]
    foot_ns = [int(x) for x in (a.footprint_ns if a.footprint_ns is not None
                                else ("0,1000,5000,10000" if a.full else f"0,{a.n}")).split(",") if x]
    reps = a.reps or (3 if a.full else 1)
    steady = a.steady if a.steady is not None else (60 if a.full else 15)
    startup_n = a.startup_n if a.startup_n is not None else (5000 if a.full else a.n)
    outdir = a.out or (os.path.join(HERE, "results") if a.full else BUILD)
    os.makedirs(outdir, exist_ok=True)
    workdir = os.path.join(BUILD, "work-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(workdir, exist_ok=True)

    bed = Bed(load_bed(os.path.join(a.bed, "env")), workdir)
    run = Runner(bed, workdir, a.controller or os.path.join(BUILD, "worker-controller"), os.path.join(BUILD, "wc-bench"),
                 a.concurrency)
    ctl_env = dict(os.environ, KUBECONFIG=bed.env["KUBECONFIG"])
    subprocess.run([run.ctl_bin, "install-crds"], env=ctl_env, check=True, capture_output=True, timeout=120)
    R: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "concurrency": a.concurrency,
               "binary_bytes": os.path.getsize(run.ctl_bin), "converge": {}, "footprint": [], "startup": []}
    if a.merge:
        prev = json.load(open(a.merge))
        R["merged_from"] = {"file": a.merge, "started": prev.get("started"), "finished": prev.get("finished")}
        R["started"] = prev.get("started", R["started"])
        R["converge"] = prev.get("converge", {})
        R["footprint"] = prev.get("footprint", [])
        R["startup"] = prev.get("startup", [])
    tag = f"{int(time.time()) % 1000000:06d}"
    seq = [0]

    def nsname(kind: str) -> str:
        seq[0] += 1
        return f"b{tag}-{seq[0]:03d}-{kind}"

    def save():
        with open(os.path.join(outdir, "results.json"), "w") as f:
            json.dump(R, f, indent=1, default=str)

    try:
        # 1. convergence ratio, controller and floor back to back, repeated
        for backend in a.backends.split(","):
            for n in conv_ns:
                g = R["converge"].setdefault(f"{backend}-{n:05d}", {"backend": backend, "n": n, "controller": [], "floor": []})
                for rep in range(reps):
                    for mode in a.modes.split(","):
                        g.setdefault(mode, [])
                        ns = nsname(f"{backend[0]}{mode[0]}")
                        c = run.create_workers(ns, backend, n)
                        log(f"{backend} N={n} rep {rep + 1}/{reps} {mode}: created {c['created']} in {c['seconds']} s ({ns})")
                        r = run.converge(ns, backend, n, mode, timeout=max(120, n * 0.6))
                        r["create_s"] = c["seconds"]
                        r["pair"] = f"{tag}-{rep}"  # controller and floor(s) of one repetition, back to back
                        log(f"  -> last instance {r['t_instances_s']} s, all Running {r['t_running_s']} s"
                            + (f", peak RSS {fmt_kib(r.get('peak_rss_kib'))}, req/Worker {r.get('requests_per_worker')}"
                               if mode == "controller" else ""))
                        g[mode].append(r)
                        save()
        # 2. footprint (pod backend), with a steady window; startup on the startup_n namespace
        for n in foot_ns:
            ns = nsname("fp")
            c = run.create_workers(ns, "pod", n)
            log(f"footprint N={n}: created {c['created']} in {c['seconds']} s ({ns})")
            r = run.converge(ns, "pod", n, "controller", timeout=max(120, n * 0.6), steady_s=steady)
            r["create_s"] = c["seconds"]
            log(f"  -> Running {r['t_running_s']} s, peak {fmt_kib(r.get('peak_rss_kib'))}, steady {fmt_kib(r.get('steady_rss_kib'))}, "
                f"steady {r.get('steady_req_per_min')} req/min ({r.get('steady_writes_per_min')} writes/min)")
            R["footprint"].append(r)
            save()
            if n == startup_n:
                s = run.startup(ns, "pod", n)
                log(f"  startup with {n} existing Workers: ready in {s['ready_s']} s, writes in first 20 s: {s['writes_first_20s']}")
                R["startup"].append(s)
                save()
    finally:
        run.cleanup()
        save()
    R["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save()
    table = render_table(R)
    with open(os.path.join(outdir, "table.md"), "w") as f:
        f.write(table + "\n")
    pngs = plots(R, outdir)
    print(table)
    if pngs:
        print("plots: " + " ".join(pngs))
    print(f"results: {os.path.join(outdir, 'results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
