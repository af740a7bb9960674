"""The Worker metrics (issue 19 item 2) on the real bed: each one driven by what it measures,
read back from the controller's /metrics, and observed once.

One sandbox-enabled controller (render-rbac identity, the bed's MinIO as worker-deps storage,
a managed warm pool) for the module:

- a pod Worker started → hiclaw_worker_startup_seconds{backend="pod"} +1 (from its
  creationTimestamp), not again on later reconciles; Sleeping → Running is a start again;
- a sandbox Worker → hiclaw_worker_deps_write_seconds, hiclaw_sandbox_claim_seconds and
  hiclaw_worker_startup_seconds{backend="sandbox"} +1 each, nested as they happen;
- an image change → hiclaw_worker_recreates_total{backend="pod",reason="Recreating"} +1, and
  no startup (a replacement is not a start);
- a blocked backend switch → hiclaw_backend_switch_blocked_total +1 once, however often the
  Worker is reconciled while blocked; +1 again after the block ended and came back;
- a start under way when the controller restarts is not observed by the new process (it cannot
  know when it began), while a start after the restart is;
- the exposition passes promtool (and ops_support.check_exposition), and every metric the
  Grafana dashboard (chart/dashboards/worker-controller.json) queries is one the binary exposes.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings

import pytest

import bed
import controller_harness as ch
import ops_support as ops
import sandbox_support as sx
from conftest import unique

POOL = "e2e-metrics-pool"
IMAGE = "registry.example/hiclaw/worker:e2e-1"
DASHBOARD = os.path.join(ops.CHART, "dashboards", "worker-controller.json")


@pytest.fixture(scope="module")
def ctl(tb, core, namespace):
    c = sx.sandbox_controller(tb, core, namespace, {
        "HICLAW_SANDBOX_POOL": POOL,
        "HICLAW_SANDBOX_CLAIM_TIMEOUT": "90s",
        "HICLAW_SANDBOX_WAIT_READY_TIMEOUT": "45s",
        "HICLAW_SANDBOX_TOKEN_TTL": "3600",
    })
    yield c
    c.close()


def metrics_url(c: ch.ControllerProcess) -> str:
    """The address the running process logged (the last start's: a restart picks a new port)."""
    addrs = [r["addr"] for r in c.log_records() if r.get("msg") == "serving metrics"]
    assert addrs, f"the controller logged no metrics address:\n{c.log_tail()}"
    return f"http://{addrs[-1]}/metrics"


def scrape(c: ch.ControllerProcess) -> str:
    st, text = ops.http_get(metrics_url(c))
    assert st == 200, text
    return text


def value(text: str, name: str, labels: str = "") -> float:
    return ops.metric_value(text, name, labels)


def wait_value(c, name: str, labels: str, want: float, timeout: float = 10) -> str:
    """Waits until the metric reads want (the observation follows the status write the test
    saw by microseconds); returns the scrape."""
    deadline = time.monotonic() + timeout
    text = scrape(c)
    while value(text, name, labels) != want and time.monotonic() < deadline:
        time.sleep(0.2)
        text = scrape(c)
    assert value(text, name, labels) == want, f"{name}{{{labels}}} = {value(text, name, labels)}, want {want}"
    return text


def ready(w: dict) -> bool:
    c = ch.condition(w, "Ready") or {}
    return (w.get("status") or {}).get("phase") == "Running" and c.get("status") == "True"


def pod_worker(custom, ns: str, **spec) -> str:
    name = unique("mw")
    ch.create_worker(custom, ns, name, **spec)
    return name


STARTUP = "hiclaw_worker_startup_seconds_count"
STARTUP_SUM = "hiclaw_worker_startup_seconds_sum"
POD = 'backend="pod"'
SBX = 'backend="sandbox"'


# ---- startup of a pod Worker ---------------------------------------------------------------

def test_pod_worker_startup_is_observed_once_under_backend_pod(ctl, custom, namespace):
    ns = namespace
    before = scrape(ctl)
    n0, s0 = value(before, STARTUP, POD), value(before, STARTUP_SUM, POD)
    sbx0 = value(before, STARTUP, SBX)
    t0 = time.time()
    w = pod_worker(custom, ns)
    created = ch.get_worker(custom, ns, w)["metadata"]["creationTimestamp"]
    ch.wait_worker(custom, ns, w, ready, 60, "Ready")
    took = time.time() - t0
    text = wait_value(ctl, STARTUP, POD, n0 + 1)
    observed = value(text, STARTUP_SUM, POD) - s0
    # from creationTimestamp (second precision): at most the wait seen here, plus that second
    assert 0 < observed <= took + 1.5, (observed, took, created)
    assert value(text, STARTUP, SBX) == sbx0
    # reconciles after Ready (an annotation change: a new resourceVersion, the same spec) observe nothing more
    ch.patch_worker(custom, ns, w, {"metadata": {"annotations": {"e2e.wc.test/poke": "1"}}})
    time.sleep(3)
    assert value(scrape(ctl), STARTUP, POD) == n0 + 1

    # Sleeping → Running is a start again, timed from the first reconcile that sees Running
    ch.patch_worker(custom, ns, w, {"spec": {"state": "Sleeping"}})
    ch.wait_phase(custom, ns, w, "Sleeping", timeout=30)
    assert value(scrape(ctl), STARTUP, POD) == n0 + 1
    t1 = time.time()
    ch.patch_worker(custom, ns, w, {"spec": {"state": "Running"}})
    ch.wait_worker(custom, ns, w, ready, 60, "Ready again")
    took = time.time() - t1
    text = wait_value(ctl, STARTUP, POD, n0 + 2)
    second = value(text, STARTUP_SUM, POD) - s0 - observed
    assert 0 < second <= took + 0.5, (second, took)
    ch.delete_worker(custom, ns, w)


# ---- a sandbox Worker: deps write, claim, startup ---------------------------------------------

def test_sandbox_worker_observes_deps_write_claim_and_startup(ctl, custom, namespace):
    ns = namespace
    before = scrape(ctl)
    deps0, claim0, start0 = (value(before, "hiclaw_worker_deps_write_seconds_count"),
                             value(before, "hiclaw_sandbox_claim_seconds_count"), value(before, STARTUP, SBX))
    sums0 = {k: value(before, k, lab) for k, lab in (("hiclaw_worker_deps_write_seconds_sum", ""),
                                                      ("hiclaw_sandbox_claim_seconds_sum", ""), (STARTUP_SUM, SBX))}
    pod0 = value(before, STARTUP, POD)
    t0 = time.time()
    w = pod_worker(custom, ns, backendRuntime="sandbox", image=IMAGE)
    ch.wait_worker(custom, ns, w, ready, 90, "Ready")
    took = time.time() - t0
    text = wait_value(ctl, STARTUP, SBX, start0 + 1)
    assert value(text, "hiclaw_worker_deps_write_seconds_count") == deps0 + 1
    assert value(text, "hiclaw_sandbox_claim_seconds_count") == claim0 + 1
    assert value(text, STARTUP, POD) == pod0
    deps = value(text, "hiclaw_worker_deps_write_seconds_sum") - sums0["hiclaw_worker_deps_write_seconds_sum"]
    claim = value(text, "hiclaw_sandbox_claim_seconds_sum") - sums0["hiclaw_sandbox_claim_seconds_sum"]
    startup = value(text, STARTUP_SUM, SBX) - sums0[STARTUP_SUM]
    # the deps come before the claim, both inside the start
    assert 0 < deps < startup and 0 < claim < startup <= took + 1.5, (deps, claim, startup, took)
    assert deps + claim <= startup + 1, (deps, claim, startup)   # + creationTimestamp's second
    # later reconciles (an annotation change; a label would be a spec change: a recreate) observe nothing more
    ch.patch_worker(custom, ns, w, {"metadata": {"annotations": {"e2e.wc.test/poke": "1"}}})
    time.sleep(3)
    text = scrape(ctl)
    assert (value(text, "hiclaw_worker_deps_write_seconds_count"), value(text, "hiclaw_sandbox_claim_seconds_count"),
            value(text, STARTUP, SBX)) == (deps0 + 1, claim0 + 1, start0 + 1)
    ch.delete_worker(custom, ns, w)


# ---- recreates ----------------------------------------------------------------------------------

def recreates(text: str, backend: str, reason: str) -> float:
    return value(text, "hiclaw_worker_recreates_total", f'backend="{backend}",reason="{reason}"')


def test_image_change_counts_one_recreate_with_its_reason(ctl, core, custom, namespace):
    ns = namespace
    n0 = value(scrape(ctl), STARTUP, POD) + 1     # this Worker's own start, observed first
    w = pod_worker(custom, ns)
    ch.wait_worker(custom, ns, w, ready, 60, "Ready")
    before = wait_value(ctl, STARTUP, POD, n0)
    old_uid = ch.get_pod(core, ns, w).metadata.uid
    r0, f0 = recreates(before, "pod", "Recreating"), recreates(before, "pod", "PodFailed")
    ch.patch_worker(custom, ns, w, {"spec": {"image": "registry.example/hiclaw/worker:e2e-2"}})

    def replaced():
        p = ch.get_pod(core, ns, w)
        return p is not None and p.metadata.uid != old_uid and p.spec.containers[0].image.endswith("e2e-2")
    ch.wait_for_value(replaced, 60, "the Pod replaced")
    ch.wait_worker(custom, ns, w, ready, 60, "Ready on the new image")
    text = wait_value(ctl, "hiclaw_worker_recreates_total", 'backend="pod",reason="Recreating"', r0 + 1)
    time.sleep(2)
    text = scrape(ctl)
    assert recreates(text, "pod", "Recreating") == r0 + 1
    assert recreates(text, "pod", "PodFailed") == f0
    assert value(text, STARTUP, POD) == n0           # a replacement is not a start
    for reason in ("Recreating", "ClaimFailed", "SandboxLost", "SandboxFailed"):
        assert f'hiclaw_worker_recreates_total{{backend="sandbox",reason="{reason}"}}' in text
    ch.delete_worker(custom, ns, w)


# ---- blocked switches ---------------------------------------------------------------------------

BLOCKED = "hiclaw_backend_switch_blocked_total"


def test_blocked_switch_counts_each_entry_once(ctl, core, custom, namespace):
    ns = namespace
    w = pod_worker(custom, ns)
    ch.wait_worker(custom, ns, w, ready, 60, "Ready")
    b0 = value(scrape(ctl), BLOCKED)
    ch.patch_worker(custom, ns, w, {"spec": {"backendRuntime": "sandbox"}})
    ch.wait_condition(custom, ns, w, "Synced", "False", "BackendSwitchBlocked", timeout=20)
    wait_value(ctl, BLOCKED, "", b0 + 1)
    for i in range(3):   # reconciled again and again while blocked
        ch.patch_worker(custom, ns, w, {"metadata": {"annotations": {"e2e.wc.test/poke": str(i)}}})
        time.sleep(1)
    assert value(scrape(ctl), BLOCKED) == b0 + 1
    assert sx.claims_of(custom, ns, w) == []
    # back to pod: unblocked; to sandbox again: a second entry
    ch.patch_worker(custom, ns, w, {"spec": {"backendRuntime": "pod"}})
    ch.wait_condition(custom, ns, w, "Synced", "True", timeout=20)
    ch.patch_worker(custom, ns, w, {"spec": {"backendRuntime": "sandbox"}})
    ch.wait_condition(custom, ns, w, "Synced", "False", "BackendSwitchBlocked", timeout=20)
    wait_value(ctl, BLOCKED, "", b0 + 2)
    ch.delete_worker(custom, ns, w)


# ---- a restart ---------------------------------------------------------------------------------

def test_a_start_under_way_at_a_restart_is_not_observed(ctl, core, custom, namespace):
    ns = namespace
    held = pod_worker(custom, ns, labels=bed.HOLD)      # its Pod stays Pending until released
    ch.wait_pod(core, ns, held, timeout=30)
    ch.wait_phase(custom, ns, held, "Starting", timeout=30)
    ctl.restart()
    n0 = value(scrape(ctl), STARTUP, POD)
    bed.kwok_state(core, ns, ch.pod_name(held), "ready")
    ch.wait_worker(custom, ns, held, ready, 60, "Ready after the release")
    time.sleep(2)
    assert value(scrape(ctl), STARTUP, POD) == n0       # begun before this process: not timed
    fresh = pod_worker(custom, ns)
    ch.wait_worker(custom, ns, fresh, ready, 60, "Ready")
    wait_value(ctl, STARTUP, POD, n0 + 1)
    for w in (held, fresh):
        ch.delete_worker(custom, ns, w)


# ---- the exposition and the dashboard -----------------------------------------------------------

PROMQL_WORDS = {"sum", "avg", "min", "max", "count", "rate", "irate", "increase", "delta", "histogram_quantile",
                "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "topk", "bottomk", "clamp_min", "clamp_max", "abs", "time", "vector", "scalar",
                "label_replace", "changes", "resets", "deriv", "avg_over_time", "max_over_time", "min_over_time",
                "sum_over_time", "inf", "nan", "le"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana label_values() query) selects:
    identifiers outside strings, label matchers, ranges and by/without lists that are neither
    functions nor keywords."""
    e = re.sub(r"label_values\(([^,]*),\s*\w+\s*\)", r"(\1)", expr)
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        word = m.group(0)
        if word.lower() in PROMQL_WORDS or e[m.end():].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def dashboard_exprs(dash: dict) -> list[str]:
    """Every query of the dashboard: each panel target's expr (rows' nested panels too) and each
    query variable's query."""
    out = []

    def panels(ps):
        for p in ps or []:
            out.extend(t["expr"] for t in p.get("targets") or [] if t.get("expr"))
            panels(p.get("panels"))
    panels(dash.get("panels"))
    for v in (dash.get("templating") or {}).get("list") or []:
        if v.get("type") == "query":
            q = v.get("query")
            out.append(q.get("query", "") if isinstance(q, dict) else q or "")
    return out


def exposed_names(text: str) -> set[str]:
    """Every name a query may select: each family of a # TYPE line, and a histogram's _bucket,
    _sum and _count series."""
    names = set()
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.add(m.group(1))
        if m.group(2) == "histogram":
            names |= {m.group(1) + s for s in ("_bucket", "_sum", "_count")}
    return names


def unknown_dashboard_metrics(dash: dict, text: str) -> set[str]:
    referenced = set().union(*(promql_metric_names(e) for e in dashboard_exprs(dash)))
    return referenced - exposed_names(text)


def test_exposition_passes_promtool_and_the_dashboard_queries_only_exposed_metrics(ctl):
    text = scrape(ctl)
    for fam, typ in (("hiclaw_worker_startup_seconds", "histogram"), ("hiclaw_worker_deps_write_seconds", "histogram"),
                     ("hiclaw_sandbox_claim_seconds", "histogram"), ("hiclaw_worker_recreates_total", "counter"),
                     ("hiclaw_backend_switch_blocked_total", "counter")):
        assert re.search(rf"^# TYPE {fam} {typ}$", text, re.M), fam
        assert re.search(rf"^# HELP {fam} \S", text, re.M), fam
    assert ops.check_exposition(text) == [], text
    tool = ops.promtool()
    if tool is None:
        warnings.warn("promtool is not built (test/cluster/promtool.sh): checked by ops_support.check_exposition only")
    else:
        r = ops.run([tool, "check", "metrics"], input=text)
        assert r.returncode == 0, f"promtool check metrics:\n{r.stdout}{r.stderr}"

    with open(DASHBOARD) as f:
        dash = json.load(f)
    exprs = dashboard_exprs(dash)
    assert exprs and dash.get("title") and dash.get("uid")
    assert unknown_dashboard_metrics(dash, text) == set()
    referenced = set().union(*(promql_metric_names(e) for e in exprs))
    for name in ("hiclaw_worker_startup_seconds_bucket", "hiclaw_worker_deps_write_seconds_bucket",
                 "hiclaw_sandbox_claim_seconds_bucket", "hiclaw_worker_recreates_total",
                 "hiclaw_backend_switch_blocked_total"):
        assert name in referenced, f"the dashboard does not graph {name}"
    # the check can say no: a misspelt metric is reported
    bad = json.loads(json.dumps(dash).replace("hiclaw_sandbox_claim_seconds_bucket", "hiclaw_sandbox_claim_secs_bucket"))
    assert unknown_dashboard_metrics(bad, text) == {"hiclaw_sandbox_claim_secs_bucket"}
