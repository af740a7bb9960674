"""The chart's deployment knobs people expect from an operator chart (issue 19, item 5):
scheduling (nodeSelector, tolerations, affinity, topologySpreadConstraints, priorityClassName),
imagePullSecrets, podAnnotations, podLabels, resources, an optional PodDisruptionBudget, an
optional Prometheus Operator ServiceMonitor, and an optional ConfigMap holding the Grafana
dashboard for Grafana's sidecar (issue 19 item 2).

Pure: only the helm binary and the repository's chart; no API server. Each value set lands
where it belongs, nothing new appears when none is set, `helm lint --strict` passes both ways,
and values.schema.json rejects each value of the wrong type.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

import ops_support as ops

NS, RELEASE, FULLNAME = "hiclaw", "rel", "rel-worker-controller"
SELECTOR = ops.chart_selector(RELEASE)
FULL = ops.chart_knobs(RELEASE)        # every deployment knob set, as a user's values file would

NEW_POD_KEYS = ("nodeSelector", "tolerations", "affinity", "topologySpreadConstraints", "priorityClassName",
                "imagePullSecrets")


def helm() -> str:
    """The test bed's helm (v3.22.0): $WC_TESTBIN, else the cache test/cluster/testbin.sh fills."""
    if os.environ.get("WC_TESTBIN"):
        cand = os.path.join(os.environ["WC_TESTBIN"], "helm")
        if os.access(cand, os.X_OK):
            return cand
    r = ops.run([os.path.join(ops.REPO_ROOT, "test/cluster/testbin.sh"), "--print"])
    cand = os.path.join(r.stdout.strip(), "helm")
    if r.returncode != 0 or not os.access(cand, os.X_OK):
        pytest.fail("helm not found: run test/cluster/testbin.sh")
    return cand


def values_file(tmp_path, values: dict, name: str = "values.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return str(path)


def template(args: list[str]) -> subprocess.CompletedProcess:
    return ops.run([helm(), "template", RELEASE, ops.CHART, "--namespace", NS, *args])


def render(args: list[str]) -> list[dict]:
    r = template(args)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def lint(args: list[str]) -> None:
    r = ops.run([helm(), "lint", "--strict", ops.CHART, "--namespace", NS, *args])
    assert r.returncode == 0, r.stdout + r.stderr


def pod_spec(docs: list[dict]) -> dict:
    return ops.one(docs, "Deployment")["spec"]["template"]["spec"]


def empties(node, path: str = "") -> list[str]:
    """Paths of null, {} and [] values (a key rendered with nothing under it)."""
    out = []
    if node is None or node == {} or node == []:
        return [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += empties(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += empties(v, f"{path}/{i}")
    return out


# ---- (a) every value set ----------------------------------------------------------------

def test_every_value_lands_where_it_belongs(tmp_path):
    f = values_file(tmp_path, FULL)
    lint(["-f", f])
    docs = render(["-f", f])
    dep = ops.one(docs, "Deployment")
    tmpl = dep["spec"]["template"]
    pod = tmpl["spec"]
    (c,) = pod["containers"]

    # scheduling: verbatim in the Pod spec
    assert pod["nodeSelector"] == FULL["nodeSelector"]
    assert pod["tolerations"] == FULL["tolerations"]
    assert pod["affinity"] == FULL["affinity"]
    assert pod["priorityClassName"] == "hiclaw-critical"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    # a spread constraint without labelSelector counts the controller's own Pods; one with a
    # labelSelector is left as given
    zone, host = pod["topologySpreadConstraints"]
    assert zone == {**FULL["topologySpreadConstraints"][0], "labelSelector": {"matchLabels": SELECTOR}}
    assert host == FULL["topologySpreadConstraints"][1]
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": 2, "memory": "512Mi"}}

    # podLabels added and allowed to replace an informational label, never a selector label
    labels = tmpl["metadata"]["labels"]
    assert labels["team"] == "agents" and labels["app.kubernetes.io/component"] == "hiclaw-controller"
    assert dep["spec"]["selector"]["matchLabels"] == SELECTOR
    assert {k: labels[k] for k in SELECTOR} == SELECTOR
    assert "evil" not in yaml.safe_dump(docs) and "other" not in labels.values()
    # podAnnotations added; the chart's checksum is not replaceable
    ann = tmpl["metadata"]["annotations"]
    assert ann["example.com/owner"] == "platform"
    assert ann["checksum/worker-deps"] != "hijacked" and len(ann["checksum/worker-deps"]) == 16

    # the hardened defaults hold with every knob set
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}

    # the PodDisruptionBudget covers exactly the Deployment's Pods
    pdb = ops.one(docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["metadata"]["name"] == FULLNAME and pdb["metadata"]["namespace"] == NS
    assert pdb["spec"] == {"selector": {"matchLabels": SELECTOR}, "minAvailable": 1}

    # the ServiceMonitor scrapes the metrics Service's port "metrics", which exists although
    # metrics.service.enabled is false
    svc = ops.one(docs, "Service")
    assert svc["metadata"]["name"] == f"{FULLNAME}-metrics" and svc["metadata"]["namespace"] == NS
    assert [p["name"] for p in svc["spec"]["ports"]] == ["metrics"]
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    assert "metrics" in [p["name"] for p in c["ports"]]
    sm = ops.one(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["name"] == FULLNAME and sm["metadata"]["namespace"] == "monitoring"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NS]}
    sel = sm["spec"]["selector"]["matchLabels"]
    assert sel.items() <= svc["metadata"]["labels"].items()        # it selects the metrics Service
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s",
                                        "scrapeTimeout": "10s"}]

    # the Grafana dashboard, for the sidecar: its label and folder annotation, the chart's labels
    cm = ops.one(docs, "ConfigMap")
    assert cm["metadata"]["name"] == f"{FULLNAME}-dashboard" and cm["metadata"]["namespace"] == NS
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1" and cm["metadata"]["labels"]["team"] == "agents"
    assert cm["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert cm["metadata"]["annotations"] == {"grafana_folder": "HiClaw"}


def test_pdb_takes_min_available_or_max_unavailable_not_both(tmp_path):
    def pdb_spec(pdb: dict) -> dict:
        docs = render(["-f", values_file(tmp_path, {"podDisruptionBudget": pdb})])
        return {k: v for k, v in ops.one(docs, "PodDisruptionBudget")["spec"].items() if k != "selector"}

    assert pdb_spec({"enabled": True}) == {"minAvailable": 1}          # the default for 2 replicas
    assert pdb_spec({"enabled": True, "minAvailable": 0}) == {"minAvailable": 0}   # 0 is a value, not unset
    assert pdb_spec({"enabled": True, "minAvailable": "50%"}) == {"minAvailable": "50%"}
    assert pdb_spec({"enabled": True, "maxUnavailable": 1}) == {"maxUnavailable": 1}
    assert pdb_spec({"enabled": True, "maxUnavailable": 0}) == {"maxUnavailable": 0}
    assert pdb_spec({"enabled": True, "maxUnavailable": "25%"}) == {"maxUnavailable": "25%"}
    r = template(["-f", values_file(tmp_path, {"podDisruptionBudget": {"enabled": True, "minAvailable": 1,
                                                                       "maxUnavailable": 1}})])
    assert r.returncode != 0 and "not both" in r.stderr
    # settings without enabled render nothing
    docs = render(["-f", values_file(tmp_path, {"podDisruptionBudget": {"minAvailable": 1}})])
    assert not ops.kinds(docs, "PodDisruptionBudget")


def test_service_monitor_alone_and_without_metrics(tmp_path):
    lint(["--set", "serviceMonitor.enabled=true"])
    docs = render(["--set", "serviceMonitor.enabled=true"])
    sm = ops.one(docs, "ServiceMonitor")
    assert sm["metadata"]["namespace"] == NS                           # default: the release namespace
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics"}]   # no empty interval keys
    assert ops.one(docs, "Service")["spec"]["ports"][0]["name"] == "metrics"
    assert not empties(sm) and not empties(ops.one(docs, "Service"))
    # nothing to scrape: refused, naming why
    r = template(["--set", "serviceMonitor.enabled=true", "--set", "controller.metricsAddr="])
    assert r.returncode != 0 and "controller.metricsAddr" in r.stderr
    # the metrics Service alone (the existing switch) makes no ServiceMonitor
    docs = render(["--set", "metrics.service.enabled=true"])
    assert ops.one(docs, "Service") and not ops.kinds(docs, "ServiceMonitor")


DASHBOARD = os.path.join(ops.CHART, "dashboards", "worker-controller.json")


def test_grafana_dashboard_configmap_holds_the_dashboard_file(tmp_path):
    """The ConfigMap carries chart/dashboards/worker-controller.json byte for byte (the file
    test_metrics.py checks against the binary's /metrics), labelled for the sidecar by default,
    in the release namespace unless told otherwise."""
    lint(["--set", "grafanaDashboard.enabled=true"])
    docs = render(["--set", "grafanaDashboard.enabled=true"])
    cm = ops.one(docs, "ConfigMap")
    assert cm["metadata"]["namespace"] == NS
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "annotations" not in cm["metadata"] and not empties(cm)
    with open(DASHBOARD) as f:
        text = f.read()
    assert list(cm["data"]) == ["worker-controller.json"]
    assert cm["data"]["worker-controller.json"] == text.rstrip("\n")
    dash = json.loads(cm["data"]["worker-controller.json"])
    assert dash["uid"] == "hiclaw-worker-controller" and dash["panels"]
    # another namespace and label value (a sidecar configured otherwise); nothing else changes
    docs2 = render(["-f", values_file(tmp_path, {"grafanaDashboard": {
        "enabled": True, "namespace": "monitoring", "labels": {"grafana_dashboard": "hiclaw"}}})])
    cm2 = ops.one(docs2, "ConfigMap")
    assert cm2["metadata"]["namespace"] == "monitoring" and cm2["metadata"]["labels"]["grafana_dashboard"] == "hiclaw"
    assert [d for d in docs2 if d["kind"] != "ConfigMap"] == [d for d in docs if d["kind"] != "ConfigMap"]


# ---- (b) nothing set --------------------------------------------------------------------

def test_defaults_render_nothing_new():
    lint([])
    docs = render([])
    assert sorted(d["kind"] for d in docs) == ["Deployment", "Role", "RoleBinding", "ServiceAccount"]
    assert not ops.kinds(docs, "PodDisruptionBudget", "ServiceMonitor", "Service", "ConfigMap")
    dep = ops.one(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    for k in NEW_POD_KEYS:
        assert k not in pod, k
    meta = dep["spec"]["template"]["metadata"]
    assert list(meta["annotations"]) == ["checksum/worker-deps"]
    assert meta["labels"] == {**dep["metadata"]["labels"]}            # the chart's labels, nothing else
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                                                  "limits": {"cpu": "1", "memory": "256Mi"}}
    for d in docs:
        assert not empties(d), (d["kind"], empties(d))
    # empty values given explicitly render the same as none
    assert render(["--set", "priorityClassName=", "--set", "podDisruptionBudget.enabled=false",
                   "--set", "serviceMonitor.enabled=false", "--set", "grafanaDashboard.enabled=false"]) == docs


# ---- values.schema.json -----------------------------------------------------------------

# (values, the schema path helm must name)
WRONG = [
    ({"nodeSelector": ["kubernetes.io/os=linux"]}, "/nodeSelector"),
    ({"nodeSelector": {"disk": 1}}, "/nodeSelector/disk"),
    ({"nodeSelector": {"ssd": True}}, "/nodeSelector/ssd"),
    ({"tolerations": {"key": "dedicated"}}, "/tolerations"),
    ({"tolerations": ["dedicated"]}, "/tolerations/0"),
    ({"tolerations": [{"key": "a", "operator": "Maybe"}]}, "/tolerations/0/operator"),
    ({"tolerations": [{"key": "a", "operator": "Exists", "tolerationSeconds": "30"}]}, "/tolerations/0/tolerationSeconds"),
    ({"tolerations": [{"key": "a", "effects": "NoSchedule"}]}, "/tolerations/0"),
    ({"affinity": []}, "/affinity"),
    ({"affinity": {"nodeAfinity": {}}}, "/affinity"),
    ({"affinity": {"podAntiAffinity": "spread"}}, "/affinity/podAntiAffinity"),
    ({"topologySpreadConstraints": {"maxSkew": 1}}, "/topologySpreadConstraints"),
    ({"topologySpreadConstraints": [{"maxSkew": "1", "topologyKey": "z", "whenUnsatisfiable": "DoNotSchedule"}]},
     "/topologySpreadConstraints/0/maxSkew"),
    ({"topologySpreadConstraints": [{"topologyKey": "z", "whenUnsatisfiable": "DoNotSchedule"}]},
     "/topologySpreadConstraints/0"),
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "z", "whenUnsatisfiable": "Never"}]},
     "/topologySpreadConstraints/0/whenUnsatisfiable"),
    ({"priorityClassName": 5}, "/priorityClassName"),
    ({"priorityClassName": {"name": "high"}}, "/priorityClassName"),
    ({"priorityClassName": "High Priority"}, "/priorityClassName"),
    ({"imagePullSecrets": "regcred"}, "/imagePullSecrets"),
    ({"imagePullSecrets": ["regcred"]}, "/imagePullSecrets/0"),
    ({"imagePullSecrets": [{"secret": "regcred"}]}, "/imagePullSecrets/0"),
    ({"podAnnotations": ["a=b"]}, "/podAnnotations"),
    ({"podAnnotations": {"replicas": 2}}, "/podAnnotations/replicas"),
    ({"podLabels": "team=agents"}, "/podLabels"),
    ({"podLabels": {"critical": True}}, "/podLabels/critical"),
    ({"podLabels": {"team": "two words"}}, "/podLabels/team"),
    ({"podLabels": {"bad key!": "x"}}, "/podLabels"),
    ({"resources": ["cpu"]}, "/resources"),
    ({"resources": {"limit": {"cpu": "1"}}}, "/resources"),
    ({"resources": {"limits": {"cpu": "lots"}}}, "/resources/limits/cpu"),
    ({"resources": {"requests": "100m"}}, "/resources/requests"),
    ({"podDisruptionBudget": True}, "/podDisruptionBudget"),
    ({"podDisruptionBudget": {"enabled": "yes"}}, "/podDisruptionBudget/enabled"),
    ({"podDisruptionBudget": {"minAvailable": "one"}}, "/podDisruptionBudget/minAvailable"),
    ({"podDisruptionBudget": {"minAvailable": "1"}}, "/podDisruptionBudget/minAvailable"),
    ({"podDisruptionBudget": {"minAvailable": 1.5}}, "/podDisruptionBudget/minAvailable"),
    ({"podDisruptionBudget": {"minAvailable": True}}, "/podDisruptionBudget/minAvailable"),
    ({"podDisruptionBudget": {"maxUnavailable": -1}}, "/podDisruptionBudget/maxUnavailable"),
    ({"podDisruptionBudget": {"maxUnavailable": [1]}}, "/podDisruptionBudget/maxUnavailable"),
    ({"podDisruptionBudget": {"minAvaliable": 1}}, "/podDisruptionBudget"),
    ({"serviceMonitor": True}, "/serviceMonitor"),
    ({"serviceMonitor": {"enabled": "true"}}, "/serviceMonitor/enabled"),
    ({"serviceMonitor": {"interval": 30}}, "/serviceMonitor/interval"),
    ({"serviceMonitor": {"interval": "30 seconds"}}, "/serviceMonitor/interval"),
    ({"serviceMonitor": {"scrapeTimeout": 10}}, "/serviceMonitor/scrapeTimeout"),
    ({"serviceMonitor": {"scrapeTimeout": "10sec"}}, "/serviceMonitor/scrapeTimeout"),
    ({"serviceMonitor": {"labels": ["release=kps"]}}, "/serviceMonitor/labels"),
    ({"serviceMonitor": {"labels": {"release": 1}}}, "/serviceMonitor/labels/release"),
    ({"serviceMonitor": {"namespace": 5}}, "/serviceMonitor/namespace"),
    ({"serviceMonitor": {"namespace": "Monitoring_NS"}}, "/serviceMonitor/namespace"),
    ({"serviceMonitor": {"port": "metrics"}}, "/serviceMonitor"),
    ({"grafanaDashboard": True}, "/grafanaDashboard"),
    ({"grafanaDashboard": {"enabled": "yes"}}, "/grafanaDashboard/enabled"),
    ({"grafanaDashboard": {"labels": ["grafana_dashboard=1"]}}, "/grafanaDashboard/labels"),
    ({"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}, "/grafanaDashboard/labels/grafana_dashboard"),
    ({"grafanaDashboard": {"annotations": {"grafana_folder": 2}}}, "/grafanaDashboard/annotations/grafana_folder"),
    ({"grafanaDashboard": {"namespace": "Monitoring_NS"}}, "/grafanaDashboard/namespace"),
    ({"grafanaDashboard": {"folder": "HiClaw"}}, "/grafanaDashboard"),
]


@pytest.mark.parametrize("values,path", WRONG, ids=[f"{p}:{yaml.safe_dump(v, default_flow_style=True).strip()}"
                                                      for v, p in WRONG])
def test_schema_rejects_a_wrong_type(tmp_path, values, path):
    r = template(["-f", values_file(tmp_path, values)])
    assert r.returncode != 0, f"accepted {values}"
    assert "don't meet the specifications of the schema" in r.stderr, r.stderr
    assert f"at '{path}" in r.stderr, r.stderr


@pytest.mark.parametrize("flag,path", [
    ("tolerations=NoSchedule", "/tolerations"),
    ("nodeSelector=linux", "/nodeSelector"),
    ("priorityClassName=5", "/priorityClassName"),
    ("podDisruptionBudget.minAvailable=x", "/podDisruptionBudget/minAvailable"),
    ("serviceMonitor.interval=30", "/serviceMonitor/interval"),
    ("grafanaDashboard.enabled=maybe", "/grafanaDashboard/enabled"),
])
def test_schema_rejects_a_wrong_type_given_with_set(flag, path):
    r = template(["--set", flag])
    assert r.returncode != 0 and f"at '{path}" in r.stderr, r.stderr
