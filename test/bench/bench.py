#!/usr/bin/env python3
"""worker-controller benchmarks on the real test bed: the product, its controller-runtime peer
and the floor, side by side (issue 18; BENCHMARKS.md says what each figure means).

    ./build.sh bench            short run: N=200, 3 rounds of product/peer/floor, a sandbox pair,
                                an agent-sandbox pair
    ./build.sh bench --full     N=1,000/5,000/10,000 x 3 rounds, restart at 5,000 and 10,000,
                                sandbox (through OpenKruise) and agent-sandbox (through the
                                kubernetes-sigs controller) vs their floors at 1,000
    ./build.sh bench --n50k     the 50,000-Worker run (product; 1,000 first for the slope)

build.sh builds the three programs, brings up a bed of its own with WC_BED_FAST=1 (the bed's
scheduler and controller-manager without client rate limits, kwok playing 32 Pod stages at
once: test/cluster/README.md) and runs this script. The bed is real: kube-scheduler binds the
Pods, kwok runs them, the OpenKruise agents controller serves every claim from the warm pool,
the played agent-runtime takes /init and the mounts, the kubernetes-sigs agent-sandbox
controller makes each agent-sandbox Sandbox's Pod (a cold start: no pool) and reports it Ready.
Nothing here writes a Pod's, a claim's or a Sandbox's status. The product, the peer and the floor all run against that same bed, back to back.

One *run* = one mode on a fresh namespace: N Workers are created first (timed: the create
rate), a sandbox run fills its warm pool (N sandboxes, timed), the stopwatch (`wc-bench watch`)
syncs, then at t0 the mode's process starts:

* controller: `worker-controller run` (the product);
* peer:       `wc-bench-peer run` (test/bench/peer/, controller-runtime, pod backend only);
* floor:      `wc-bench floor` (the minimal client making the product's writes, no logic).

T_inst = the N-th instance (Pod / SandboxClaim / agent-sandbox Sandbox) seen by the stopwatch - t0; T_run = the N-th
Worker with status.phase=Running - t0. For the controller and the peer then: /proc (VmRSS, VmHWM,
utime+stime) and /metrics (rest_client_requests_total by method) at convergence, a steady window
(RSS, CPU and requests per minute), and — at the restart sizes — a restart on the converged
namespace: exec -> /readyz 200, and the writes in the first seconds after. The namespace is
then emptied (the finalizers removed: the controller is stopped) and deleted, and the next run
waits until it is gone. Modes alternate within a round and the order rotates between rounds;
ratios are computed per round and their median reported, every round's value kept.
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
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.path.join(ROOT, "build", "bench")
CTL_NAME = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MODES = ("controller", "peer", "floor")
LABEL = {"controller": "product", "peer": "peer", "floor": "floor"}


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

    def delete_namespace(self, ns: str, timeout: float) -> float | None:
        """Deletes ns and waits until it is gone: seconds taken, or None at the deadline."""
        t0 = time.time()
        try:
            self.req("DELETE", f"/api/v1/namespaces/{ns}")
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise
        while time.time() - t0 < timeout:
            try:
                self.req("GET", f"/api/v1/namespaces/{ns}", timeout=10)
            except urllib.error.HTTPError as e:
                if e.code == 404:
                    return round(time.time() - t0, 1)
            except Exception:  # noqa: BLE001 - a slow API server: keep waiting
                pass
            time.sleep(1)
        return None


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


def scrape_full(addr: str) -> tuple:
    """(rest_client_requests_total summed by method, controller_runtime_reconcile_total summed):
    the product and controller-runtime export both under these names."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        text = r.read().decode()
    by_method: dict = {}
    reconciles = 0.0
    for line in text.splitlines():
        if line.startswith("rest_client_requests_total{"):
            labels, _, val = line.rpartition(" ")
            m = labels.split('method="', 1)[1].split('"', 1)[0]
            by_method[m] = by_method.get(m, 0) + float(val)
        elif line.startswith("controller_runtime_reconcile_total{"):
            reconciles += float(line.rpartition(" ")[2])
    return by_method, reconciles


def scrape(addr: str) -> dict:
    return scrape_full(addr)[0]


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except Exception:  # noqa: BLE001
        return False


def writes(m: dict) -> float:
    return sum(v for k, v in m.items() if k not in ("GET", "LIST", "WATCH"))


class Runner:
    def __init__(self, bed: Bed, workdir: str, controller_bin: str, bench_bin: str, concurrency: int,
                 peer_bin: str | None = None):
        self.bed, self.workdir = bed, workdir
        self.bins = {"controller": controller_bin, "peer": peer_bin}
        self.ctl_bin, self.bench_bin = controller_bin, bench_bin
        self.concurrency = concurrency
        self.children: list[subprocess.Popen] = []

    # -- environment ----------------------------------------------------------------------
    def base_env(self, ns: str, backend: str, n: int = 0) -> dict:
        e = self.bed.env
        home = os.path.join(self.workdir, "home")
        os.makedirs(home, exist_ok=True)
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "HICLAW_K8S_NAMESPACE": ns, "HICLAW_CONTROLLER_NAME": CTL_NAME,
               "HICLAW_LEADER_ELECT": "false", "HICLAW_LOG_LEVEL": "warn", "HICLAW_LOG_FORMAT": "text",
               "HICLAW_CONCURRENCY": str(self.concurrency),
               "HICLAW_SANDBOX_ENABLED": "true" if backend == "sandbox" else "false"}
        if backend == "agent-sandbox":
            env["HICLAW_AGENT_SANDBOX_ENABLED"] = "true"
        if backend == "sandbox":
            env.update({"HICLAW_WORKER_DEPS_ENDPOINT": e["WC_S3_ENDPOINT"], "HICLAW_WORKER_DEPS_BUCKET": e["WC_S3_BUCKET"],
                        "HICLAW_WORKER_DEPS_ACCESS_KEY_ID": e["WC_S3_ACCESS_KEY"],
                        "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY": e["WC_S3_SECRET_KEY"],
                        "HICLAW_WORKER_DEPS_CA_FILE": e["WC_CA_FILE"], "HICLAW_WORKER_DEPS_REGION": e["WC_S3_REGION"],
                        "HICLAW_WORKER_DEPS_PREFIX": f"bench/{ns}/",
                        # the warm pool the bench filled before t0 (wc-bench pool): the controller
                        # applies the same SandboxSet, unchanged
                        "HICLAW_SANDBOX_PREWARM_SIZE": str(max(1, n)), "HICLAW_SANDBOX_CLAIM_TIMEOUT": "30m",
                        "HICLAW_SANDBOX_WAIT_READY_TIMEOUT": "30m"})
        return env

    def conn(self) -> list:
        return ["--server", self.bed.url, "--token-file", self.bed.token_file, "--ca-file", self.bed.env["WC_CA_FILE"]]

    def tool(self, role: str) -> list:
        return [self.bench_bin, role] + self.conn()

    def tool_env(self, ns: str, backend: str, n: int = 0, **bench) -> dict:
        env = self.base_env(ns, backend, n)
        env["BENCH_BACKEND"] = backend
        env["BENCH_N"] = str(n)
        for k, v in bench.items():
            env["BENCH_" + k.upper()] = str(v)
        return env

    def spawn(self, argv, env, log_name, stdout=subprocess.PIPE) -> subprocess.Popen:
        logf = open(os.path.join(self.workdir, log_name), "ab")
        p = subprocess.Popen(argv, env=env, stdout=stdout, stderr=logf, cwd=self.workdir, text=True)
        logf.close()
        self.children.append(p)
        return p

    def run_tool(self, role: str, ns: str, backend: str, n: int, timeout: float, **bench) -> dict:
        r = subprocess.run(self.tool(role), env=self.tool_env(ns, backend, n, seconds=int(timeout), **bench),
                           capture_output=True, text=True, timeout=timeout + 60)
        out = [l for l in r.stdout.splitlines() if l.startswith("{")]
        if r.returncode != 0 or not out:
            raise RuntimeError(f"wc-bench {role} failed ({r.returncode}): {r.stderr[-2000:]}")
        return json.loads(out[-1])

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
            raise RuntimeError(f"{os.path.basename(p.args[0])} {p.args[1] if len(p.args) > 1 else ''}: "
                               f"no '{want}' within {timeout:.0f}s")
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
    def create_workers(self, ns: str, backend: str, n: int, threads: int = 32, timeout: float = 900) -> dict:
        self.bed.create_namespace(ns)
        if n == 0:
            return {"created": 0, "seconds": 0.0}
        return self.run_tool("create", ns, backend, n, timeout, threads=threads, prefix="bw")

    def start(self, mode: str, ns: str, backend: str, n: int):
        """Starts the controller or the peer: (process, t0, metrics address, health address)."""
        env = self.base_env(ns, backend, n)
        maddr, haddr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        env["HICLAW_METRICS_ADDR"], env["HICLAW_HEALTH_ADDR"] = maddr, haddr
        t0 = time.time()
        p = self.spawn([self.bins[mode], "run"] + self.conn(), env, f"{mode}-{ns}.log", stdout=subprocess.DEVNULL)
        return p, t0, maddr, haddr

    # kept for ab_ready.py / ab_rss.py
    def start_controller(self, ns: str, backend: str):
        return self.start("controller", ns, backend, 0)

    def start_until_ready(self, ns: str, backend: str, timeout: float = 120, mode: str = "controller", n: int = 0):
        """Starts the controller (or the peer) and polls /readyz every 10 ms: (process, seconds
        from exec to the first 200 or None, metrics address, /proc status at that moment)."""
        p, t0, maddr, haddr = self.start(mode, ns, backend, n)
        ready = None
        while time.time() - t0 < timeout and p.poll() is None:
            if http_ok(f"http://{haddr}/readyz"):
                ready = time.time() - t0
                break
            time.sleep(0.01)
        return p, ready, maddr, proc_status(p.pid)

    def converge(self, ns: str, backend: str, n: int, mode: str, timeout: float, steady_s: float = 0,
                 restart_window: float | None = None) -> dict:
        """One run of `mode` on ns (Workers, and a sandbox run's pool, already there)."""
        res: dict = {"ns": ns, "backend": backend, "n": n, "mode": mode}
        w = self.spawn(self.tool("watch"), self.tool_env(ns, backend, n, seconds=int(timeout)), f"watch-{ns}.log")
        self.wait_line(w, "SYNCED", 120)
        stop_sampler = threading.Event()
        p = None
        if mode in ("controller", "peer"):
            p, t0, maddr, haddr = self.start(mode, ns, backend, n)
            res["metrics_addr"], res["health_addr"] = maddr, haddr

            def sampler():
                while not stop_sampler.is_set():
                    if "ready_s" not in res and http_ok(f"http://{haddr}/readyz"):
                        res["ready_s"] = round(time.time() - t0, 3)
                    stop_sampler.wait(0.1 if "ready_s" not in res else 0.5)

            threading.Thread(target=sampler, daemon=True).start()
        else:
            t0 = time.time()
            fl = self.spawn(self.tool("floor"), self.tool_env(ns, backend, n, seconds=int(timeout)), f"floor-{ns}.log")
        try:
            line = self.wait_line(w, "{", timeout + 30)
        finally:
            stop_sampler.set()
        wres = json.loads(line)
        res["t_instances_s"] = round(wres["last_instance_ms"] / 1000 - t0, 3) if wres["last_instance_ms"] else None
        res["t_running_s"] = round(wres["all_running_ms"] / 1000 - t0, 3) if wres["all_running_ms"] else None
        res["instances"], res["running"] = wres["instances"], wres["running"]
        self.stop(w)
        if p is None:
            try:
                out, _ = fl.communicate(timeout=120)
                lines = [l for l in out.splitlines() if l.startswith("{")]
                if lines:
                    res["floor"] = json.loads(lines[-1])
                    if n:
                        res["requests_per_worker"] = round(res["floor"]["requests"] / n, 2)
                        res["writes_per_worker"] = round(res["floor"]["writes"] / n, 2)
            except subprocess.TimeoutExpired:
                self.stop(fl)
            if fl in self.children:
                self.children.remove(fl)
            return res
        for _ in range(300):  # N = 0 "converges" at once: measure a started process
            if "ready_s" in res or p.poll() is not None:
                break
            if http_ok(f"http://{res['health_addr']}/readyz"):
                res["ready_s"] = round(time.time() - t0, 3)
                break
            time.sleep(0.1)
        st = proc_status(p.pid)
        res["converge_rss_kib"], res["peak_rss_kib"], res["converge_cpu_s"] = st.get("VmRSS"), st.get("VmHWM"), st.get("cpu_s")
        try:
            m0, rec0 = scrape_full(res["metrics_addr"])
        except Exception as e:  # noqa: BLE001
            log("metrics scrape failed:", e)
            m0, rec0 = {}, None
        res["requests_converge"], res["reconciles_converge"] = m0, rec0
        if n:
            res["requests_per_worker"] = round(sum(m0.values()) / n, 2)
            res["writes_per_worker"] = round(writes(m0) / n, 2)
            res["reconciles_per_worker"] = round(rec0 / n, 2) if rec0 is not None else None
        if steady_s > 0:
            # let the tail settle (the last status patches' events), then measure a window
            time.sleep(min(10, steady_s / 3))
            a, s0 = scrape(res["metrics_addr"]), proc_status(p.pid)
            ta = time.time()
            time.sleep(steady_s)
            b, s1 = scrape(res["metrics_addr"]), proc_status(p.pid)
            mins = (time.time() - ta) / 60
            diff = {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b)}
            res["steady_window_s"] = round(mins * 60, 1)
            res["steady_req_per_min"] = round(sum(diff.values()) / mins, 2)
            res["steady_writes_per_min"] = round(writes(diff) / mins, 2)
            res["steady_by_method"] = {k: round(v / mins, 2) for k, v in diff.items()}
            res["steady_rss_kib"] = s1.get("VmRSS")
            res["peak_rss_kib"] = s1.get("VmHWM")
            res["steady_cpu_s_per_min"] = round((s1.get("cpu_s", 0) - s0.get("cpu_s", 0)) / mins, 3)
            res["cpu_s_total"] = s1.get("cpu_s")
        self.stop(p)
        if restart_window is not None:
            res["restart"] = self.restart(ns, backend, n, mode, restart_window)
        return res

    def restart(self, ns: str, backend: str, n: int, mode: str, window: float) -> dict:
        """Start again on the converged namespace: exec -> /readyz 200, then the writes made in
        the next `window` seconds (there is nothing to do: 0 expected)."""
        p, ready, maddr, st = self.start_until_ready(ns, backend, mode=mode, n=n)
        time.sleep(window)
        try:
            m = scrape(maddr)
        except Exception:  # noqa: BLE001
            m = {}
        st2 = proc_status(p.pid)
        self.stop(p)
        return {"ready_s": round(ready, 3) if ready is not None else None, "rss_at_ready_kib": st.get("VmRSS"),
                "cpu_at_ready_s": st.get("cpu_s"), "peak_rss_kib": st2.get("VmHWM"), "window_s": window,
                "requests_window": m, "writes_window": writes(m)}

    def clear(self, ns: str, backend: str, n: int, timeout: float) -> dict:
        """Removes the finalizers of the namespace's Workers, deletes it, waits until it is gone."""
        out: dict = {}
        if n:
            try:
                out["clear"] = self.run_tool("clear", ns, backend, n, timeout, threads=16)
            except Exception as e:  # noqa: BLE001
                log(f"clear {ns}: {e}")
        if backend in ("pod", "agent-sandbox"):
            # the Pods at once (grace 0: no kubelet to wait for), not one by one through kwok
            try:
                self.bed.req("DELETE", f"/api/v1/namespaces/{ns}/pods?gracePeriodSeconds=0", {"kind": "DeleteOptions",
                             "apiVersion": "v1", "gracePeriodSeconds": 0}, timeout=max(60, timeout))
            except Exception as e:  # noqa: BLE001
                log(f"deleting the Pods of {ns}: {e}")
        out["delete_s"] = self.bed.delete_namespace(ns, timeout)
        if out["delete_s"] is None:
            log(f"namespace {ns} still there after {timeout:.0f} s: going on")
        return out


# ---- figures ------------------------------------------------------------------------------------

def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def fmt_kib(k):
    return f"{k / 1024:.1f} MiB" if k else "—"


def fmt(x, nd=2):
    return "—" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def runs_of(R: dict, backend: str, n: int, mode: str) -> list:
    return [r for r in R["runs"] if r["backend"] == backend and r["n"] == n and r["mode"] == mode and not r.get("error")]


def per_round(R: dict, backend: str, n: int, a: str, b: str, field) -> list:
    """a/b of `field` within each round (same round = back to back), in round order."""
    get = field if callable(field) else (lambda r: r.get(field))
    ra = {r["round"]: get(r) for r in runs_of(R, backend, n, a)}
    rb = {r["round"]: get(r) for r in runs_of(R, backend, n, b)}
    return [ra[k] / rb[k] for k in sorted(ra) if k in rb and ra[k] and rb[k]]


def ratio_cell(xs: list) -> str:
    if not xs:
        return "—"
    m = statistics.median(xs)
    return f"**{m:.2f}**" + (f" ({', '.join(f'{x:.2f}' for x in xs)})" if len(xs) > 1 else "")


def values_cell(rs: list, field, scale=1.0, nd=2) -> str:
    get = field if callable(field) else (lambda r: r.get(field))
    xs = [get(r) for r in rs]
    xs = [x * scale for x in xs if x is not None]
    if not xs:
        return "—"
    m = statistics.median(xs)
    return f"{m:.{nd}f}" + (f" ({', '.join(f'{x:.{nd}f}' for x in xs)})" if len(xs) > 1 else "")


def restart_ready(r):
    return (r.get("restart") or {}).get("ready_s")


def render_table(R: dict) -> str:
    out = []
    ns = sorted({r["n"] for r in R["runs"] if r["backend"] == "pod" and r["n"] > 0})
    modes = [m for m in MODES if any(r["mode"] == m for r in R["runs"])]
    if ns:
        out.append("### Pod Workers: converge time (seconds from start to the N-th Worker Running; median, every round)\n")
        pairs = [(a, b) for a, b in (("controller", "floor"), ("peer", "floor"), ("controller", "peer"))
                 if a in modes and b in modes]
        hdr = "| N | rounds | create N Workers (s) | " + " | ".join(LABEL[m] for m in modes) + \
              "".join(f" | {LABEL[a]} / {LABEL[b]}" for a, b in pairs) + " |"
        out += [hdr, "|" + "---|" * (hdr.count("|") - 1)]
        for n in ns:
            rs = [r for r in R["runs"] if r["backend"] == "pod" and r["n"] == n]
            rounds = len({r["round"] for r in rs})
            cells = [values_cell(runs_of(R, "pod", n, m), "t_running_s") for m in modes]
            out.append(f"| {n} | {rounds} | {fmt(med([r.get('create_s') for r in rs]))} | " + " | ".join(cells)
                       + "".join(f" | {ratio_cell(per_round(R, 'pod', n, a, b, 't_running_s'))}" for a, b in pairs) + " |")
        out.append("")
        out.append("### Pod Workers: what it costs (product vs peer; median of the rounds, each round in parentheses)\n")
        out.append("| N | who | peak RSS (MiB) | steady RSS (MiB) | CPU s to converge | requests / Worker | writes / Worker "
                   "| reconciles / Worker | steady req/min | steady CPU s/min |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for n in ns:
            for m in ("controller", "peer", "floor"):
                rs = runs_of(R, "pod", n, m)
                if not rs:
                    continue
                if m == "floor":
                    out.append(f"| {n} | floor | — | — | — | {values_cell(rs, 'requests_per_worker')} | "
                               f"{values_cell(rs, 'writes_per_worker')} | — | — | — |")
                    continue
                out.append(f"| {n} | {LABEL[m]} | {values_cell(rs, 'peak_rss_kib', 1 / 1024, 1)} | "
                           f"{values_cell(rs, 'steady_rss_kib', 1 / 1024, 1)} | {values_cell(rs, 'converge_cpu_s')} | "
                           f"{values_cell(rs, 'requests_per_worker')} | {values_cell(rs, 'writes_per_worker')} | "
                           f"{values_cell(rs, 'reconciles_per_worker')} | {values_cell(rs, 'steady_req_per_min', nd=1)} | {values_cell(rs, 'steady_cpu_s_per_min', nd=3)} |")
        out.append("")
        # the request mix at convergence, per Worker (medians)
        out.append("Requests per Worker by method at convergence (median): " + "; ".join(
            f"N={n} {LABEL[m]} " + ", ".join(
                f"{k} {med([(r.get('requests_converge') or {}).get(k, 0) / n for r in runs_of(R, 'pod', n, m)])}"
                for k in sorted({k for r in runs_of(R, 'pod', n, m) for k in (r.get('requests_converge') or {})}))
            for n in ns for m in ("controller", "peer") if runs_of(R, "pod", n, m)) + "\n")
        ratio_rows = []
        for n in (ns if "peer" in modes and "controller" in modes else []):
            def rr(field):
                return ratio_cell(per_round(R, "pod", n, "controller", "peer", field))
            ratio_rows.append(f"| {n} | {rr('t_running_s')} | {rr('peak_rss_kib')} | {rr('steady_rss_kib')} | "
                              f"{rr('converge_cpu_s')} | {rr('requests_per_worker')} | {rr(restart_ready)} |")
        if ratio_rows:
            out.append("### Ratios, product / peer (per round, median first; below 1: the product is faster or smaller)\n")
            out.append("| N | converge time | peak RSS | steady RSS | CPU to converge | requests / Worker | ready after restart |")
            out.append("|---|---|---|---|---|---|---|")
            out += ratio_rows
            out.append("")
        if R.get("kind") == "n50k":
            out.append("### Scale run (product)\n")
            out.append("| N | create (s) | create rate (Workers/s) | all Running (s) | peak RSS (MiB) | steady RSS (MiB) "
                       "| CPU s to converge | API requests (per Worker) | steady CPU s/min | ready after restart (s) |")
            out.append("|---|---|---|---|---|---|---|---|---|---|")
            for n in ns:
                for r in runs_of(R, "pod", n, "controller"):
                    rq = sum((r.get("requests_converge") or {}).values())
                    rate = r["created"] / r["create_s"] if r.get("create_s") else None
                    out.append(f"| {n} | {fmt(r.get('create_s'))} | {fmt(rate, 0)} | {fmt(r.get('t_running_s'))} | "
                               f"{fmt_kib(r.get('peak_rss_kib'))} | {fmt_kib(r.get('steady_rss_kib'))} | "
                               f"{fmt(r.get('converge_cpu_s'))} | {rq:.0f} ({fmt(r.get('requests_per_worker'))}) | "
                               f"{fmt(r.get('steady_cpu_s_per_min'), 3)} | {fmt(restart_ready(r), 3)} |")
            out.append("")
    rst = [r for r in R["runs"] if r.get("restart")]
    if rst:
        out.append("### Ready after a restart on the converged Workers (exec → /readyz 200)\n")
        out.append("| N | who | ready (s) | CPU s at ready | RSS at ready (MiB) | peak RSS (MiB) | writes in the window after |")
        out.append("|---|---|---|---|---|---|---|")
        for n in sorted({r["n"] for r in rst}):
            for m in ("controller", "peer"):
                rs = [r for r in rst if r["n"] == n and r["mode"] == m]
                if not rs:
                    continue
                out.append(f"| {n} | {LABEL[m]} | {values_cell(rs, restart_ready, nd=3)} | "
                           f"{values_cell(rs, lambda r: r['restart'].get('cpu_at_ready_s'))} | "
                           f"{values_cell(rs, lambda r: r['restart'].get('rss_at_ready_kib'), 1 / 1024, 1)} | "
                           f"{values_cell(rs, lambda r: r['restart'].get('peak_rss_kib'), 1 / 1024, 1)} | "
                           f"{values_cell(rs, lambda r: r['restart'].get('writes_window'), nd=0)} |")
        out.append("")
    idle = [r for r in R["runs"] if r["n"] == 0]
    if idle:
        out.append("### Idle (no Workers)\n")
        out.append("| who | RSS (MiB) | CPU s/min | requests/min | ready after a restart (s) |")
        out.append("|---|---|---|---|---|")
        for m in ("controller", "peer"):
            rs = [r for r in idle if r["mode"] == m]
            if rs:
                out.append(f"| {LABEL[m]} | {values_cell(rs, 'steady_rss_kib', 1 / 1024, 1)} | "
                           f"{values_cell(rs, 'steady_cpu_s_per_min', nd=3)} | {values_cell(rs, 'steady_req_per_min', nd=1)} | "
                           f"{values_cell(rs, restart_ready, nd=3)} |")
        out.append("")
    sb = sorted({r["n"] for r in R["runs"] if r["backend"] == "sandbox"})
    if sb:
        out.append("### Sandbox Workers through OpenKruise (warm pool of N, filled before t0): product vs floor\n")
        out.append("| N | rounds | pool fill (s) | product: last claim | floor: last claim | product: all Running | "
                   "floor: all Running | product / floor | product requests / Worker (floor) | product CPU s |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for n in sb:
            c, f = runs_of(R, "sandbox", n, "controller"), runs_of(R, "sandbox", n, "floor")
            out.append(f"| {n} | {len({r['round'] for r in c + f})} | {fmt(med([r.get('pool_s') for r in c + f]))} | "
                       f"{values_cell(c, 't_instances_s')} | {values_cell(f, 't_instances_s')} | "
                       f"{values_cell(c, 't_running_s')} | {values_cell(f, 't_running_s')} | "
                       f"{ratio_cell(per_round(R, 'sandbox', n, 'controller', 'floor', 't_running_s'))} | "
                       f"{values_cell(c, 'requests_per_worker')} ({values_cell(f, 'requests_per_worker')}) | "
                       f"{values_cell(c, 'converge_cpu_s')} |")
        out.append("")
    asb = sorted({r["n"] for r in R["runs"] if r["backend"] == "agent-sandbox"})
    if asb:
        out.append("### Agent-sandbox Workers through the kubernetes-sigs controller (cold start): product vs floor\n")
        out.append("| N | rounds | product: last Sandbox | floor: last Sandbox | product: all Running | floor: all Running | "
                   "product / floor | product requests / Worker (floor) | product CPU s |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for n in asb:
            c, f = runs_of(R, "agent-sandbox", n, "controller"), runs_of(R, "agent-sandbox", n, "floor")
            out.append(f"| {n} | {len({r['round'] for r in c + f})} | "
                       f"{values_cell(c, 't_instances_s')} | {values_cell(f, 't_instances_s')} | "
                       f"{values_cell(c, 't_running_s')} | {values_cell(f, 't_running_s')} | "
                       f"{ratio_cell(per_round(R, 'agent-sandbox', n, 'controller', 'floor', 't_running_s'))} | "
                       f"{values_cell(c, 'requests_per_worker')} ({values_cell(f, 'requests_per_worker')}) | "
                       f"{values_cell(c, 'converge_cpu_s')} |")
        out.append("")
    if R.get("slope"):
        s = R["slope"]
        out.append(f"### Cost slope, product, N = {s['n0']} → {s['n1']} (per additional Worker)\n")
        out.append("| steady RSS | peak RSS | CPU to converge | requests | converge time | create rate at N1 |")
        out.append("|---|---|---|---|---|---|")
        out.append(f"| {fmt(s.get('steady_rss_b'), 0)} B | {fmt(s.get('peak_rss_b'), 0)} B | {fmt(s.get('cpu_ms'), 3)} ms | "
                   f"{fmt(s.get('requests'), 2)} | {fmt(s.get('converge_ms'), 2)} ms | {fmt(s.get('create_rate'), 0)} Workers/s |")
        out.append("")
    failed = [r for r in R["runs"] if r.get("error")]
    if failed:
        out.append("Runs that failed: " + "; ".join(f"{r['mode']} {r['backend']} N={r['n']} round {r['round']}: {r['error']}"
                                                   for r in failed) + "\n")
    if "binary_bytes" in R:
        out.append(f"Binaries: product {R['binary_bytes']} bytes stripped; peer {R.get('peer_bytes', '—')} bytes "
                   f"({R.get('peer_version', '')}).\n")
    return "\n".join(out)


def slope(R: dict, n0: int, n1: int) -> dict | None:
    a, b = runs_of(R, "pod", n0, "controller"), runs_of(R, "pod", n1, "controller")
    if not a or not b or n1 == n0:
        return None
    d = n1 - n0

    def m(rs, f):
        return med([f(r) for r in rs])

    def diff(f, scale):
        x, y = m(a, f), m(b, f)
        return None if x is None or y is None else round((y - x) * scale / d, 3)

    cr = m(b, lambda r: r.get("created") / r["create_s"] if r.get("create_s") else None)
    return {"n0": n0, "n1": n1,
            "steady_rss_b": diff(lambda r: r.get("steady_rss_kib"), 1024),
            "peak_rss_b": diff(lambda r: r.get("peak_rss_kib"), 1024),
            "cpu_ms": diff(lambda r: r.get("converge_cpu_s"), 1000),
            "requests": diff(lambda r: sum((r.get("requests_converge") or {}).values()) or None, 1),
            "converge_ms": diff(lambda r: r.get("t_running_s"), 1000),
            "create_rate": round(cr, 1) if cr else None}


def plots(R: dict, outdir: str) -> list:
    py = os.path.expanduser("~/.cache/worker-controller/bench-venv/bin/python")
    if not os.path.exists(py):
        log("no matplotlib venv; skipping plots (./build.sh bench creates it)")
        return []
    data = os.path.join(outdir, "results.json")
    r = subprocess.run([py, os.path.join(HERE, "plot.py"), data, outdir], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        log("plot failed:", r.stderr[-1500:])
        return []
    return r.stdout.split()


# ---- the plan -------------------------------------------------------------------------------------

def intlist(s: str) -> list:
    return [int(x) for x in s.split(",") if x.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    kind = ap.add_mutually_exclusive_group()
    kind.add_argument("--full", action="store_true", help="N = 1,000/5,000/10,000 x 3 rounds, restarts, sandbox at 1,000")
    kind.add_argument("--n50k", action="store_true", help="the 50,000-Worker run (product; 1,000 first for the slope)")
    ap.add_argument("--n", type=int, default=200, help="N of the short run")
    ap.add_argument("--ns", default=None, help="override the pod N list (e.g. --full --ns 100,200 to try the full run small)")
    ap.add_argument("--sandbox-ns", default=None, help="override the sandbox N list ('' for none)")
    ap.add_argument("--agent-sandbox-ns", default=None, help="override the agent-sandbox N list ('' for none)")
    ap.add_argument("--restart-ns", default=None, help="override where restarts are measured")
    ap.add_argument("--rounds", "--reps", type=int, default=None, dest="rounds", help="rounds per N (pod)")
    ap.add_argument("--sandbox-rounds", type=int, default=None)
    ap.add_argument("--agent-sandbox-rounds", type=int, default=None)
    ap.add_argument("--modes", default=None, help="comma list of controller,peer,floor (default: all; --n50k: controller)")
    ap.add_argument("--steady", type=float, default=None, help="steady window seconds")
    ap.add_argument("--restart-window", type=float, default=None, help="seconds watched for writes after a restart")
    ap.add_argument("--no-idle", action="store_true", help="skip the N=0 runs")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--deadline-min", type=float, default=None, help="stop starting new runs after this many minutes")
    ap.add_argument("--converge-cap", type=float, default=3600, help="longest wait for one run to converge (s)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--controller", default=None, help="product binary (default build/bench/worker-controller)")
    ap.add_argument("--peer", default=None, help="peer binary (default build/bench/wc-bench-peer)")
    ap.add_argument("--bed", default=os.environ.get("WC_TESTBED", "/tmp/wc-bed-bench"))
    a = ap.parse_args()

    if a.full:
        pod_ns, sbx_ns, restart_ns, rounds, sbx_rounds, steady, window = [1000, 5000, 10000], [1000], [5000, 10000], 3, 3, 60, 20
        asb_ns, asb_rounds = [1000], 3
        outdir, deadline = os.path.join(HERE, "results"), 360
    elif a.n50k:
        pod_ns, sbx_ns, restart_ns, rounds, sbx_rounds, steady, window = [1000, 50000], [], [50000], 1, 0, 60, 20
        asb_ns, asb_rounds = [], 0
        outdir, deadline = os.path.join(HERE, "results-50k"), 180
    else:
        pod_ns, sbx_ns, restart_ns, rounds, sbx_rounds, steady, window = [a.n], [a.n], [a.n], 3, 1, 10, 5
        asb_ns, asb_rounds = [a.n], 1
        outdir, deadline = BUILD, 60
    if a.ns is not None:
        pod_ns = intlist(a.ns)
    if a.sandbox_ns is not None:
        sbx_ns = intlist(a.sandbox_ns)
    if a.agent_sandbox_ns is not None:
        asb_ns = intlist(a.agent_sandbox_ns)
    if a.restart_ns is not None:
        restart_ns = intlist(a.restart_ns)
    elif a.ns is not None:
        restart_ns = pod_ns[1:] or pod_ns  # as the full run: all but the smallest
    rounds = a.rounds or rounds
    sbx_rounds = a.sandbox_rounds if a.sandbox_rounds is not None else sbx_rounds
    asb_rounds = a.agent_sandbox_rounds if a.agent_sandbox_rounds is not None else asb_rounds
    steady = a.steady if a.steady is not None else steady
    window = a.restart_window if a.restart_window is not None else window
    deadline = time.time() + 60 * (a.deadline_min or deadline)
    modes = [m for m in (a.modes or ("controller" if a.n50k else ",".join(MODES))).split(",") if m]
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m}")
    outdir = a.out or outdir
    os.makedirs(outdir, exist_ok=True)
    workdir = os.path.join(BUILD, "work-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(workdir, exist_ok=True)

    bed_env = load_bed(os.path.join(a.bed, "env"))
    if bed_env.get("WC_BED_FAST") != "1":
        log(f"warning: the bed in {a.bed} was not started with WC_BED_FAST=1: its scheduler (50 QPS) may set the pace")
    bed = Bed(bed_env, workdir)
    peer_bin = a.peer or os.path.join(BUILD, "wc-bench-peer")
    run = Runner(bed, workdir, a.controller or os.path.join(BUILD, "worker-controller"), os.path.join(BUILD, "wc-bench"),
                 a.concurrency, peer_bin)
    if "peer" in modes and not os.access(peer_bin, os.X_OK):
        ap.error(f"no peer binary at {peer_bin} (./build.sh bench builds it)")
    ctl_env = dict(os.environ, KUBECONFIG=bed_env["KUBECONFIG"])
    subprocess.run([run.ctl_bin, "install-crds"], env=ctl_env, check=True, capture_output=True, timeout=120)
    kind_name = "full" if a.full else "n50k" if a.n50k else "short"
    R: dict = {"kind": kind_name, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "concurrency": a.concurrency, "binary_bytes": os.path.getsize(run.ctl_bin), "modes": modes,
               "plan": {"pod_ns": pod_ns, "sandbox_ns": sbx_ns, "restart_ns": restart_ns, "rounds": rounds,
                        "sandbox_rounds": sbx_rounds, "agent_sandbox_ns": asb_ns, "agent_sandbox_rounds": asb_rounds, "steady_s": steady, "restart_window_s": window},
               "bed": {"fast": bed_env.get("WC_BED_FAST"), "pod_cidr": bed_env.get("WC_POD_CIDR")},
               "load_start": os.getloadavg(), "runs": []}
    if os.access(peer_bin, os.X_OK):
        R["peer_bytes"] = os.path.getsize(peer_bin)
        R["peer_version"] = os.path.basename(os.path.dirname(os.path.realpath(peer_bin)))
    tag = f"{int(time.time()) % 1000000:06d}"
    seq = [0]

    def nsname(kind: str) -> str:
        seq[0] += 1
        return f"b{tag}-{seq[0]:03d}-{kind}"

    def save():
        with open(os.path.join(outdir, "results.json"), "w") as f:
            json.dump(R, f, indent=1, default=str)

    def one(mode: str, backend: str, n: int, rnd: int, restart: bool, steady_s: float):
        timeout = min(max(120, n * 0.6), a.converge_cap)
        ns = nsname(f"{backend[0]}{mode[0]}")
        rec: dict = {"mode": mode, "backend": backend, "n": n, "round": rnd, "ns": ns, "load": os.getloadavg()[0]}
        try:
            c = run.create_workers(ns, backend, n, timeout=max(300, n * 0.1))
            rec["created"], rec["create_s"] = c["created"], c["seconds"]
            if backend == "sandbox" and n:
                pl = run.run_tool("pool", ns, backend, n, max(300, n * 1.0))
                rec["pool_s"] = pl["seconds"]
            r = run.converge(ns, backend, n, mode, timeout, steady_s=steady_s if mode != "floor" else 0,
                             restart_window=window if restart and mode != "floor" else None)
            rec.update(r)
            log(f"{backend} N={n} round {rnd} {LABEL[mode]}: created in {rec['create_s']} s"
                + (f", pool {rec['pool_s']} s" if "pool_s" in rec else "")
                + f"; last instance {r['t_instances_s']} s, all Running {r['t_running_s']} s"
                + (f", peak {fmt_kib(r.get('peak_rss_kib'))}, steady {fmt_kib(r.get('steady_rss_kib'))}, "
                   f"CPU {r.get('converge_cpu_s')} s, req/Worker {r.get('requests_per_worker')}" if mode != "floor"
                   else f", req/Worker {r.get('requests_per_worker')}")
                + (f"; restart: ready {r['restart']['ready_s']} s, {r['restart']['writes_window']} writes"
                   if r.get("restart") else ""))
        except Exception as e:  # noqa: BLE001 - one failed run is reported, the others go on
            rec["error"] = f"{type(e).__name__}: {e}"[:500]
            log(f"{backend} N={n} round {rnd} {LABEL[mode]}: FAILED: {rec['error']}")
            run.cleanup()
        finally:
            rec["cleanup"] = run.clear(ns, backend, n, max(180, n * 0.1))
            R["runs"].append(rec)
            save()

    def rotated(ms: list, k: int) -> list:
        k %= len(ms)
        return ms[k:] + ms[:k]

    try:
        if not a.no_idle and not a.n50k:
            for m in [x for x in modes if x != "floor"]:
                one(m, "pod", 0, 0, True, steady)
        for n in pod_ns:
            for rnd in range(rounds):
                for m in rotated(modes, rnd):
                    if time.time() > deadline:
                        raise TimeoutError("deadline")
                    one(m, "pod", n, rnd, n in restart_ns, steady)
        for n in sbx_ns:
            for rnd in range(sbx_rounds):
                for m in rotated([x for x in modes if x != "peer"], rnd):
                    if time.time() > deadline:
                        raise TimeoutError("deadline")
                    one(m, "sandbox", n, rnd, False, 0)
        for n in asb_ns:
            for rnd in range(asb_rounds):
                for m in rotated([x for x in modes if x != "peer"], rnd):
                    if time.time() > deadline:
                        raise TimeoutError("deadline")
                    one(m, "agent-sandbox", n, rnd, False, 0)
    except TimeoutError:
        log("deadline reached: no more runs started")
        R["stopped_at_deadline"] = True
    finally:
        run.cleanup()
        save()
    if len(pod_ns) >= 2:
        R["slope"] = slope(R, min(pod_ns), max(pod_ns))
    R["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    R["load_end"] = os.getloadavg()
    save()
    table = render_table(R)
    with open(os.path.join(outdir, "table.md"), "w") as f:
        f.write(table + "\n")
    pngs = plots(R, outdir)
    print(table)
    if pngs:
        print("plots: " + " ".join(pngs))
    print(f"results: {os.path.join(outdir, 'results.json')}")
    return 0 if not any(r.get("error") for r in R["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
