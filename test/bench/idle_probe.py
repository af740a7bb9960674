"""Idle probe: one controller (sandbox backend on: four watches and two HTTP servers) for an
empty namespace on a running bed; after a 5 s settle, its wakeups (voluntary +
involuntary context switches summed over its threads) and CPU over a window.

    source $WC_TESTBED/env; python test/bench/idle_probe.py [WINDOW_S]   (the e2e venv's python)

Context switches count how often the process is woken whatever else loads the machine, so the
figure holds on a busy machine where a CPU-seconds figure would not."""
import os, sys, time, glob
from types import SimpleNamespace
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from kubernetes import client, config
import controller_harness as ch
from conftest import make_namespace, unique, drop_namespace

def ctx(pid):
    n = 0
    for f in glob.glob(f"/proc/{pid}/task/*/status"):
        for line in open(f):
            if "ctxt_switches" in line:
                n += int(line.split()[1])
    return n

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

tb = SimpleNamespace(**{k: v for k, v in os.environ.items() if k.startswith("WC_") or k == "KUBECONFIG"})
api = config.new_client_from_config(config_file=tb.KUBECONFIG)
core = client.CoreV1Api(api)
ns = make_namespace(core, "idle")
window = float(sys.argv[1]) if len(sys.argv) > 1 else 20
c = ch.ControllerProcess(tb, core, ns, unique("idle"), sandbox=True, env={})
c.setup_identity(); c.start()
try:
    time.sleep(5)
    pid = c.proc.pid
    x0, c0, t0 = ctx(pid), cpu(pid), time.monotonic()
    time.sleep(window)
    x1, c1, t1 = ctx(pid), cpu(pid), time.monotonic()
    print(f"wakeups/s {(x1-x0)/(t1-t0):.1f}  cpu s/min {(c1-c0)/(t1-t0)*60:.3f}  threads {len(os.listdir(f'/proc/{pid}/task'))}")
finally:
    c.close(); drop_namespace(core, ns)
