"""Faults for the chaos soak, injected at random but reproducible (seeded) moments.

Each fault is a small object with ``begin()`` and ``end()`` (``end`` may be a no-op for an
instantaneous one) and a ``kind`` name; the injector picks one at each of its seeded moments,
runs it, and counts it. Everything acts through the bed's real processes and loopback proxies:

  controller    SIGKILL one controller replica (leader or standby), restart it after 1-5 s
  apiserver     SIGKILL kube-apiserver, start it again with the same command line
  openkruise    SIGKILL the OpenKruise agents controller, restart it
  kcm           SIGKILL kube-controller-manager, restart it
  minio         SIGKILL MinIO, restart it
  compaction    compact etcd at its current revision: every watch gets 410 Gone
  slow-api      the controllers' API connections slow down (0.2-0.5 s per chunk) for 10-25 s
  stall-api     the controllers' new API requests hang for 5-9 s (open watches keep flowing)
  s3-writes     the worker-deps S3 answers 503 SlowDown to every write for 10-25 s

Beside them, ``Supervisor`` restarts a bed component that exits with no fault taking it down,
as the kubelet would, and counts it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from typing import Callable, Optional

import reliability_support as rs
from conftest import wait_port_free


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False


class BedProcess:
    """One of the bed's processes (by its PID file): SIGKILL it, start it again exactly as
    up.sh did (same executable, argv, environment, own session, log appended, PID file
    rewritten)."""

    def __init__(self, tb, name: str, ports: tuple = ()):
        self.tb, self.name, self.ports = tb, name, ports
        self.pidfile = os.path.join(tb.WC_TESTBED, f"{name}.pid")
        self.logfile = os.path.join(tb.WC_TESTBED, "logs", f"{name}.log")
        self.saved: Optional[tuple] = None
        self.children: list = []
        self.busy = False  # a fault has it down on purpose: the supervisor leaves it alone

    def pid(self) -> int:
        with open(self.pidfile) as f:
            return int(f.read().split()[0])

    def alive(self) -> bool:
        try:
            return _alive(self.pid())
        except (OSError, ValueError, IndexError):
            return False

    def snapshot(self) -> None:
        """Remember how it runs (executable, argv, environment), to start it again the same way."""
        pid = self.pid()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(kv.decode().split("=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        exe = os.readlink(f"/proc/{pid}/exe")
        assert self.tb.WC_TESTBED + "/" in " ".join(argv) + " ".join(env.values()), f"{pid} is not this bed's {self.name}"
        self.saved = (exe, argv, env)

    def kill(self) -> None:
        pid = self.pid()
        self.snapshot()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        for p in self.children:
            if p.pid == pid:
                p.wait(timeout=10)

    def start(self) -> None:
        assert self.saved, "kill() first"
        exe, argv, env = self.saved
        for port in self.ports:
            wait_port_free(int(port))
        with open(self.logfile, "ab") as log:
            p = subprocess.Popen([exe] + argv[1:], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True, close_fds=True)
        self.children.append(p)
        with open(self.pidfile, "w") as f:
            f.write(f"{p.pid}\n")


class Fault:
    kind = "?"

    def begin(self) -> None: ...

    def end(self) -> None: ...


class KillRestart(Fault):
    """SIGKILL a bed process now, restart it after `down` seconds."""

    def __init__(self, kind: str, proc: BedProcess, rng: random.Random, down=(1.0, 4.0), ready: Optional[Callable] = None):
        self.kind, self.proc, self.rng, self.down, self.ready = kind, proc, rng, down, ready

    def begin(self) -> None:
        self.proc.busy = True
        try:
            self.proc.kill()
            time.sleep(self.rng.uniform(*self.down))
            self.proc.start()
        finally:
            self.proc.busy = False
        if self.ready:
            self.ready()


class ApiServerRestart(Fault):
    kind = "apiserver"

    def __init__(self, tb):
        self.tb = tb

    def begin(self) -> None:
        rs.restart_apiserver(self.tb)


class Compaction(Fault):
    kind = "compaction"

    def __init__(self, tb):
        self.tb = tb

    def begin(self) -> None:
        rs.etcd_compact(self.tb)


class Window(Fault):
    """A condition that holds for a while: set(True) now, set(False) after `secs` seconds."""

    def __init__(self, kind: str, set_fn: Callable[[bool], None], rng: random.Random, secs=(10.0, 25.0)):
        self.kind, self.set_fn, self.rng, self.secs = kind, set_fn, rng, secs

    def begin(self) -> None:
        self.set_fn(True)
        time.sleep(self.rng.uniform(*self.secs))
        self.set_fn(False)


class ControllerKill(Fault):
    """SIGKILL one controller replica (chosen at random), restart it after 1-5 s."""
    kind = "controller"

    def __init__(self, replicas: list, rng: random.Random):
        self.replicas, self.rng = replicas, rng

    def begin(self) -> None:
        c = self.rng.choice(self.replicas)
        c.kill()
        time.sleep(self.rng.uniform(1.0, 5.0))
        c.start(wait_synced=False)


class Supervisor:
    """What the kubelet does for a cluster's static Pods, for the bed's components: one that exits
    when no fault took it down (the 60-minute run of seed 16001 lost its kube-scheduler that way,
    without a line in its log, and the fleet could not converge) is started again the same way.
    Each restart is logged loudly with the end of the process's log, and counted in the figures:
    it is the bed's failure, not the controller's, and must be visible, never silent."""

    def __init__(self, procs: list, log: Callable = print, interval: float = 2.0):
        self.procs, self.log, self.interval = procs, log, interval
        self.restarts: dict = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Supervisor":
        for p in self.procs:
            p.snapshot()
        self._t.start()
        return self

    def _tail(self, p) -> str:
        try:
            with open(p.logfile, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 600))
                return f.read().decode(errors="replace").strip().splitlines()[-1][:300]
        except (OSError, IndexError):
            return "(no log)"

    def check(self) -> None:
        for p in self.procs:
            if p.busy or p.alive():
                continue
            self.log(f"BED: {p.name} exited with no fault taking it down (last log line: {self._tail(p)}); "
                     f"starting it again, as the kubelet restarts a static Pod")
            self.restarts[p.name] = self.restarts.get(p.name, 0) + 1
            try:
                p.start()
            except Exception as e:
                self.log(f"BED: {p.name} could not be started again: {e!r}")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        self._t.join(30)


class Injector:
    """Runs faults at seeded moments on its own thread: one at a time, a random pause of
    `gap` seconds between them, until `stop()` or the deadline. Records what it did."""

    def __init__(self, faults: list[Fault], rng: random.Random, gap=(8.0, 25.0), log: Callable = print):
        self.faults, self.rng, self.gap, self.log = faults, rng, gap, log
        self.counts: dict = {}
        self.errors: list = []
        self.last_fault_end = time.monotonic()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def start(self, until: float) -> "Injector":
        self.until = until
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            pause = self.rng.uniform(*self.gap)
            if self._stop.wait(pause) or time.monotonic() + 30 > self.until:
                return
            f = self.rng.choice(self.faults)
            t0 = time.monotonic()
            self.log(f"fault {f.kind} begins")
            try:
                f.begin()
            except Exception as e:  # a fault that could not be injected is reported, not fatal
                self.errors.append(f"{f.kind}: {e!r}")
            self.counts[f.kind] = self.counts.get(f.kind, 0) + 1
            self.last_fault_end = time.monotonic()
            self.log(f"fault {f.kind} over after {self.last_fault_end - t0:.1f}s")

    def stop(self) -> None:
        self._stop.set()
        self._t.join(300)
