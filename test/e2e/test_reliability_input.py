"""Issue 9, hostile Worker objects: whatever a Worker holds (within what the API server
accepts), the controller answers with a valid Pod or with a clear InvalidSpec status and
Warning Event — never a crash, never a bad Pod — and keeps serving the other Workers.

Cases: a Worker near the API server's object size limit (a ~1.3 MiB soul), 1,000 env
entries, invalid quantities, invalid image names, invalid labels, an invalid workerName; the
API server may refuse some of them itself (schema patterns), which is fine too: what matters
is that nothing the controller creates is invalid and the controller keeps running.
"""

from __future__ import annotations

import json
import time

import pytest
from kubernetes.client.rest import ApiException

import controller_harness as h


@pytest.fixture(scope="module")
def ctl(tb, core, namespace):
    with h.controller_for(tb, core, namespace, f"ctl-{h.unique_suffix()}", env={"HICLAW_CONCURRENCY": "4"}) as c:
        yield c


def _still_serving(ctl, custom, core, ns):
    """A fresh, valid Worker converges: the controller is alive and not wedged."""
    assert ctl.running(), ctl.log_tail()
    ok = h.unique_name("canary")
    h.create_worker(custom, ns, ok)
    h.wait_phase(custom, ns, ok, "Running", timeout=30)
    h.delete_worker(custom, ns, ok)


def test_worker_near_object_size_limit(ctl, api, core, custom, namespace):
    """A ~1.3 MiB soul (etcd's default request limit is 1.5 MiB): stored by the API server,
    streamed through the watch (8 MiB event bound), preserved untouched, and a normal Pod."""
    ns, name = namespace, h.unique_name("huge")
    unit = "You are a very verbose agent. 你好 \"quoted\" \\ "
    # etcd refuses a request over 1.5 MiB (the whole object, in UTF-8 bytes): stay just under
    soul = unit * ((1300 * 1024) // len(unit.encode()))
    h.create_worker(custom, ns, name, soul=soul)
    w = h.wait_phase(custom, ns, name, "Running", timeout=60)
    assert w["spec"]["soul"] == soul
    assert h.condition(w, "Synced")["status"] == "True"
    pod = h.get_pod(core, ns, name)
    assert pod is not None and pod.metadata.deletion_timestamp is None
    # the soul does not shape the Pod (and is not copied into it)
    assert "verbose agent" not in json.dumps(api.sanitize_for_serialization(pod))
    # a Worker over the limit is the API server's to refuse; the controller never sees it
    too_big = h.unique_name("toobig")
    with pytest.raises(ApiException) as ei:
        h.create_worker(custom, ns, too_big, soul="x" * (3 * 1024 * 1024 + 10))
    assert ei.value.status in (413, 422, 500), ei.value.status
    _still_serving(ctl, custom, core, ns)


def test_worker_with_1000_env_entries(ctl, api, core, custom, namespace):
    ns, name = namespace, h.unique_name("env1k")
    env = {f"VAR_{i:04d}": f"value-{i}-'\"$(x)`y`" for i in range(1000)}
    h.create_worker(custom, ns, name, env=env)
    h.wait_phase(custom, ns, name, "Running", timeout=60)
    pod = h.get_pod_dict(api, core, ns, name)
    em = h.env_map(pod)
    for k, v in env.items():  # every '$' written as '$$': the kubelet's $(VAR) expansion gives v back
        assert em[k]["value"] == v.replace("$", "$$"), k
    # one more entry changes the spec hash: exactly one new Pod, still all values
    env["VAR_1000"] = "new"
    old_uid = pod["metadata"]["uid"]
    h.patch_worker(custom, ns, name, {"spec": {"env": {"VAR_1000": "new"}}})
    h.wait_pod(core, ns, name, lambda p: p is not None and p.metadata.uid != old_uid
               and p.metadata.deletion_timestamp is None, timeout=60)
    h.wait_phase(custom, ns, name, "Running", timeout=60)
    em = h.env_map(h.get_pod_dict(api, core, ns, name))
    assert em["VAR_1000"]["value"] == "new" and len([k for k in em if k.startswith("VAR_")]) == 1001
    _still_serving(ctl, custom, core, ns)


HOSTILE = [
    ("cpu-word", {"resources": {"limits": {"cpu": "lots"}}}, "lots"),
    ("mem-two-dots", {"resources": {"requests": {"memory": "1.5.5Gi"}}}, "1.5.5Gi"),
    ("mem-negative", {"resources": {"limits": {"memory": "-1Gi"}}}, "-1Gi"),
    ("cpu-huge-exp", {"resources": {"limits": {"cpu": "1e400"}}}, "1e400"),
    ("req-over-limit", {"resources": {"requests": {"cpu": "4"}, "limits": {"cpu": "1"}}}, "must not exceed"),
    ("image-space", {"image": "registry.e2e/bad image:1"}, "bad image"),
    ("image-newline", {"image": "registry.e2e/x:1\nevil: true"}, "spec.image"),
    ("image-tab", {"image": "\tregistry.e2e/x:1"}, "spec.image"),
    ("label-key", {"labels": {"-bad-key": "v"}}, "-bad-key"),
    ("label-value-long", {"labels": {"k": "v" * 64}}, "spec.labels"),
    ("label-value-chars", {"labels": {"k": "a b"}}, "spec.labels"),
    ("label-prefix", {"labels": {"Bad.Prefix/k": "v"}}, "spec.labels"),
    ("workername-slash", {"workerName": "../../etc"}, "spec.workerName"),
]


@pytest.mark.parametrize("case,bad,needle", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_spec_is_invalidspec_or_refused(ctl, api, core, custom, namespace, case, bad, needle):
    ns, name = namespace, h.unique_name("bad")
    try:
        h.create_worker(custom, ns, name, **bad)
    except ApiException as e:
        # The CRD schema refused it: the controller never sees it. Fine, as long as it is a 422.
        assert e.status == 422, (e.status, e.body)
        _still_serving(ctl, custom, core, ns)
        return
    w = h.wait_condition(custom, ns, name, "Synced", "False", "InvalidSpec", timeout=30)
    msg = h.condition(w, "Synced")["message"]
    assert needle in msg, msg
    assert w["status"].get("message") == msg
    evs = h.wait_for_value(lambda: h.events_for(api, ns, name, "InvalidSpec"), 15, "InvalidSpec Event")
    assert evs[0]["type"] == "Warning" and needle in evs[0]["note"]
    time.sleep(1.0)
    assert h.get_pod(core, ns, name) is None, "a Pod was created for an invalid spec"
    assert not h.worker_pods(core, ns, name)
    _still_serving(ctl, custom, core, ns)
    # one Event per generation, not one per reconcile
    time.sleep(2.0)
    assert len(h.events_for(api, ns, name, "InvalidSpec")) == 1


def test_flood_of_hostile_workers_does_not_starve_good_ones(ctl, api, core, custom, namespace):
    """30 invalid Workers created at once, interleaved with 10 valid ones: the valid ones all
    converge, the invalid ones all say InvalidSpec, no Pod for any invalid one."""
    ns = namespace
    bad = [h.unique_name("flood-bad") for _ in range(30)]
    good = [h.unique_name("flood-ok") for _ in range(10)]
    for i, n in enumerate(bad):
        h.create_worker(custom, ns, n, resources={"limits": {"memory": f"{i}.{i}.{i}Mi"}})
        if i % 3 == 0:
            h.create_worker(custom, ns, good[i // 3])
    for n in good:
        h.wait_phase(custom, ns, n, "Running", timeout=60)
    for n in bad:
        h.wait_condition(custom, ns, n, "Synced", "False", "InvalidSpec", timeout=60)
        assert h.get_pod(core, ns, n) is None
    assert ctl.running()
