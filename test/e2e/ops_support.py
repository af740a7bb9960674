"""Helpers for test_ops.py: the Helm chart, controllers run as the chart's ServiceAccount, the
empty-root (scratch image) run, JSON log parsing, HTTP probes and promtool."""

from __future__ import annotations

import json
import re
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from typing import Optional

import yaml

E2E_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(E2E_DIR, "..", ".."))
CHART = os.path.join(REPO_ROOT, "chart")


def binary() -> str:
    return os.environ.get("WC_BINARY") or os.path.join(REPO_ROOT, "worker-controller")


def helm(tb) -> str:
    for cand in (os.path.join(tb.WC_TESTBIN, "helm"),
                 os.path.expanduser("~/.cache/worker-controller/testbin/helm-v3.22.0/helm")):
        if os.access(cand, os.X_OK):
            return cand
    raise RuntimeError("helm not found in $WC_TESTBIN (test/cluster/testbin.sh builds it)")


def run(argv, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 60)
    return subprocess.run(argv, **kw)


def helm_template(tb, namespace: str, release: str = "wc", sets: Optional[dict] = None,
                  chart: str = CHART) -> list[dict]:
    argv = [helm(tb), "template", release, chart, "--namespace", namespace, "--include-crds"]
    for k, v in (sets or {}).items():
        argv += ["--set", f"{k}={v}"]
    r = run(argv)
    assert r.returncode == 0, f"helm template failed: {r.stderr}"
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def chart_selector(release: str) -> dict:
    """The labels the chart's Deployment, metrics Service and PodDisruptionBudget select on."""
    return {"app.kubernetes.io/name": "worker-controller", "app.kubernetes.io/instance": release}


def chart_knobs(release: str) -> dict:
    """Values setting every deployment knob of the chart (scheduling, Pod metadata, resources,
    PodDisruptionBudget, ServiceMonitor, Grafana dashboard), as a user's values file would. The podLabels include
    two that try to take over the selector labels, and a podAnnotation the chart's checksum."""
    selector = chart_selector(release)
    return {
        "imagePullSecrets": [{"name": "regcred"}, {"name": "mirror"}],
        "podAnnotations": {"example.com/owner": "platform", "checksum/worker-deps": "hijacked"},
        "podLabels": {"team": "agents", "app.kubernetes.io/component": "hiclaw-controller",
                      "app.kubernetes.io/name": "evil", "app.kubernetes.io/instance": "other"},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": 2, "memory": "512Mi"}},
        "nodeSelector": {"kubernetes.io/os": "linux", "node-role.example.com/infra": "true"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"},
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 30}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                "labelSelector": {"matchLabels": selector}}}]}},
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
            {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": {"team": "agents"}}, "minDomains": 2}],
        "priorityClassName": "hiclaw-critical",
        "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
        "serviceMonitor": {"enabled": True, "namespace": "monitoring", "interval": "30s", "scrapeTimeout": "10s",
                           "labels": {"release": "kube-prometheus-stack"}},
        "grafanaDashboard": {"enabled": True, "labels": {"grafana_dashboard": "1", "team": "agents"},
                             "annotations": {"grafana_folder": "HiClaw"}},
    }


def kinds(docs: list[dict], *ks: str) -> list[dict]:
    return [d for d in docs if d.get("kind") in ks]


def one(docs: list[dict], kind: str) -> dict:
    found = kinds(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kubectl_apply_docs(tb, docs: list[dict]) -> None:
    text = "---\n".join(yaml.safe_dump(d) for d in docs)
    env = dict(os.environ, KUBECONFIG=tb.KUBECONFIG)
    r = run([os.path.join(tb.WC_TESTBIN, "kubectl"), "apply", "--server-side", "--force-conflicts",
             "--field-manager", "e2e-ops", "-f", "-"], input=text, env=env)
    assert r.returncode == 0, f"kubectl apply failed: {r.stderr}"


def kubectl_dry_run_docs(tb, docs: list[dict]) -> subprocess.CompletedProcess:
    """Server-side dry-run create of docs: the API server validates and admits them, stores nothing."""
    text = "---\n".join(yaml.safe_dump(d) for d in docs)
    env = dict(os.environ, KUBECONFIG=tb.KUBECONFIG)
    return run([os.path.join(tb.WC_TESTBIN, "kubectl"), "create", "--dry-run=server", "-o", "name", "-f", "-"],
               input=text, env=env)


def rule_set(rules: list[dict]) -> set:
    """(group, resource, verb) triples of a rule list."""
    out = set()
    for r in rules:
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                for v in r.get("verbs", []):
                    out.add((g, res, v))
    return out


def render_rbac_rules(extra: list[str]) -> set:
    r = run([binary(), "render-rbac", *extra])
    assert r.returncode == 0, r.stderr
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    return rule_set(one(docs, "Role")["rules"])


def write_secret_file(path: str, text: str, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)


# ---- controller processes ---------------------------------------------------------------

class Proc:
    """A controller process whose stdout+stderr go to a log file."""

    def __init__(self, argv: list[str], env: dict, log_path: str, cwd: str = "/"):
        self.argv, self.env, self.log_path, self.cwd = argv, env, log_path, cwd
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Proc":
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     cwd=self.cwd, close_fds=True)
        logf.close()
        return self

    def text(self) -> str:
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.text().splitlines() if line.strip()]

    def count(self, msg: str) -> int:
        return sum(1 for line in self.text().splitlines() if f'"msg":"{msg}"' in line.replace(": ", ":"))

    def wait_msg(self, msg: str, timeout: float, n: int = 1) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recs = [r for r in self._safe_records() if r.get("msg") == msg]
            if len(recs) >= n:
                return recs[n - 1]
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"controller exited rc={self.proc.returncode} before logging {msg!r}:\n"
                                     f"{self.text()[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"controller did not log {msg!r} within {timeout}s:\n{self.text()[-3000:]}")

    def _safe_records(self) -> list[dict]:
        out = []
        for line in self.text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=35)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def controller_env(namespace: str, name: str, leader_elect: bool, extra: Optional[dict] = None) -> dict:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",
        "HICLAW_K8S_NAMESPACE": namespace,
        "HICLAW_CONTROLLER_NAME": name,
        "HICLAW_SANDBOX_ENABLED": "false",
        "HICLAW_LEADER_ELECT": "true" if leader_elect else "false",
        "HICLAW_LOG_FORMAT": "json",
        "HICLAW_METRICS_ADDR": "127.0.0.1:0",
        "HICLAW_HEALTH_ADDR": "127.0.0.1:0",
    }
    env.update(extra or {})
    return env


def addr_of(p: Proc, what: str, timeout: float = 20.0) -> str:
    """The HOST:PORT the controller logged for 'serving metrics' / 'serving health probes'."""
    return p.wait_msg(what, timeout)["addr"]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# ---- the scratch image's filesystem -----------------------------------------------------

def make_scratch_root(root: str, token: str, ca_file: str, namespace: str) -> str:
    """An empty root holding only /worker-controller and the ServiceAccount mount, owned by
    root and read-only for the user 65532 that runs in it (the image's USER)."""
    sa = os.path.join(root, "var/run/secrets/kubernetes.io/serviceaccount")
    os.makedirs(sa)
    shutil.copy2(binary(), os.path.join(root, "worker-controller"))
    os.chmod(os.path.join(root, "worker-controller"), 0o555)
    write_secret_file(os.path.join(sa, "token"), token, 0o444)
    shutil.copy(ca_file, os.path.join(sa, "ca.crt"))
    write_secret_file(os.path.join(sa, "namespace"), namespace, 0o444)
    os.chmod(os.path.join(sa, "ca.crt"), 0o444)
    for dirpath, dirnames, _ in os.walk(root):
        os.chmod(dirpath, 0o555)
    return root


# ---- promtool ---------------------------------------------------------------------------

def promtool() -> Optional[str]:
    """The cached promtool (test/cluster/promtool.sh builds it), or None."""
    r = run([os.path.join(REPO_ROOT, "test/cluster/promtool.sh"), "--print"])
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None


def build_promtool(timeout: float = 900) -> Optional[str]:
    r = run([os.path.join(REPO_ROOT, "test/cluster/promtool.sh")], timeout=timeout)
    return r.stdout.strip() if r.returncode == 0 else None


def metric_value(text: str, name: str, labels: str = "") -> float:
    """Sum of the samples of one metric (optionally only those whose label text contains labels)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        key, _, val = line.rpartition(" ")
        if key.split("{")[0] != name or labels not in key:
            continue
        total += float(val)
    return total


_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABELS = r'\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*,?)?\}'
_SAMPLE = re.compile(rf"^({_NAME})({_LABELS})? ([-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|NaN|[-+]?Inf))( -?[0-9]+)?$")


def check_exposition(text: str) -> list[str]:
    """A strict reading of the Prometheus text format 0.0.4 (what promtool's parser enforces,
    plus its lint rules that matter here): HELP/TYPE before samples and once per family,
    sample names belong to the declared family, valid names/labels/values, counters end in
    _total, histogram buckets cumulative with le="+Inf" equal to _count. Returns problems."""
    problems, types, helps, seen_samples = [], {}, set(), set()
    buckets: dict = {}
    counts: dict = {}
    if not text.endswith("\n"):
        problems.append("does not end with a newline")
    for n, line in enumerate(text.splitlines(), 1):
        if not line:
            problems.append(f"line {n}: empty line")
            continue
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            if len(parts) < 4 or not re.fullmatch(_NAME, parts[2]):
                problems.append(f"line {n}: malformed {line!r}")
                continue
            fam = parts[2]
            if parts[1] == "HELP":
                if fam in helps:
                    problems.append(f"line {n}: second HELP for {fam}")
                helps.add(fam)
            else:
                if fam in types:
                    problems.append(f"line {n}: second TYPE for {fam}")
                if fam in seen_samples:
                    problems.append(f"line {n}: TYPE for {fam} after its samples")
                if parts[3] not in ("counter", "gauge", "histogram", "summary", "untyped"):
                    problems.append(f"line {n}: unknown type {parts[3]}")
                if parts[3] == "counter" and not fam.endswith("_total"):
                    problems.append(f"line {n}: counter {fam} should end in _total")
                types[fam] = parts[3]
            continue
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            problems.append(f"line {n}: not a valid sample: {line!r}")
            continue
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        fam = name
        for suf in ("_bucket", "_sum", "_count"):
            if name.endswith(suf) and types.get(name[: -len(suf)]) in ("histogram", "summary"):
                fam = name[: -len(suf)]
        if fam not in types:
            problems.append(f"line {n}: sample {name} has no TYPE")
        seen_samples.add(fam)
        if types.get(fam) == "histogram":
            other = re.sub(r',?le="[^"]*"', "", labels)
            if name.endswith("_bucket"):
                le = re.search(r'le="([^"]*)"', labels)
                if not le:
                    problems.append(f"line {n}: bucket without le")
                    continue
                buckets.setdefault((fam, other), []).append((float(le.group(1).replace("+Inf", "inf")), float(value)))
            elif name.endswith("_count"):
                counts[(fam, labels)] = float(value)
    for (fam, other), bs in buckets.items():
        les = [b[0] for b in bs]
        if les != sorted(les) or les[-1] != float("inf"):
            problems.append(f"{fam}{other}: buckets not ascending to +Inf")
        vals = [b[1] for b in bs]
        if any(b > a for a, b in zip(vals[1:], vals)):
            problems.append(f"{fam}{other}: buckets not cumulative")
        c = counts.get((fam, other.replace("{,", "{") if other != "{}" else ""), counts.get((fam, other)))
        if c is not None and vals and vals[-1] != c:
            problems.append(f"{fam}{other}: +Inf bucket {vals[-1]} != _count {c}")
    for fam in types:
        if fam not in helps:
            problems.append(f"{fam}: no HELP")
    return problems
