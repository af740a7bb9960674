"""Issue 6 — the sandbox Worker's token is refreshed in place (SPEC 7).

HICLAW_SANDBOX_TOKEN_TTL=600 (the API server's minimum): the controller must write a new token
over token/token once less than a third of the lifetime remains (~400 s after the first write),
before the old one expires, without touching the claim or the Sandbox — and it must do so while
a switch to the pod backend is blocked (the guard keeps the sandbox it protects alive, token
included: issue 15 item 7). The scenario is started
early (sandbox_support.refresh_scenario, from an autouse fixture of test_sandbox_backend.py) so
the wait overlaps the other tests, and runs last (the runs_last marker). Bounded at 480 s after
the start.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client

import controller_harness as ch
import sandbox_support as sx

BOUND_S = 480


@pytest.mark.runs_last
def test_token_refreshed_before_expiry_sandbox_untouched(tb, api, custom, runtime):
    sc = sx.refresh_scenario(tb, api)
    assert sc.ready.wait(120), "refresh scenario setup did not finish"
    assert sc.error is None, sc.error + "\n" + (sc.ctl.log_tail() if sc.ctl else "")
    init = sc.initial
    keys = sx.deps_keys(sc.ns, sc.worker)
    old_issued, old_expires = int(init["meta"]["hiclaw-issued"]), int(init["meta"]["hiclaw-expires"])
    assert sc.TTL - 30 <= old_expires - old_issued <= sc.TTL + 30
    waited_from = time.monotonic()
    head = None
    deadline = sc.started + BOUND_S
    while time.monotonic() < deadline:
        h = sx.s3_head(sc.s3, tb.WC_S3_BUCKET, keys["token"])
        if h is not None and h["ETag"] != init["etag"]:
            head = h
            break
        assert sc.ctl.running(), (f"the refresh scenario's controller exited (rc {sc.ctl.proc.returncode}) "
                                  f"during the wait, nothing will refresh:\n{sc.ctl.log_tail(8)}")
        time.sleep(2)
    print(f"refresh test: waited {time.monotonic() - waited_from:.0f}s here, "
          f"{time.monotonic() - sc.started:.0f}s since the scenario started")
    assert head is not None, (f"token not rewritten within {BOUND_S}s of the start (issued {old_issued}, "
                              f"expires {old_expires}, now {time.time():.0f})\n{sc.ctl.log_tail()}")
    new_issued, new_expires = int(head["Metadata"]["hiclaw-issued"]), int(head["Metadata"]["hiclaw-expires"])
    # refreshed when < 1/3 of the lifetime remained, and before the old token expired
    assert new_issued >= old_expires - (old_expires - old_issued) // 3 - 2, (old_issued, old_expires, new_issued)
    assert new_issued < old_expires
    assert new_expires > old_expires
    token = sx.s3_get(sc.s3, tb.WC_S3_BUCKET, keys["token"]).decode()
    assert token != init["token"]
    rv = sx.token_review(api, token, "hiclaw-controller")
    assert rv["status"]["authenticated"] is True
    # the running sandbox reads the new token through its mount, with nothing remounted
    sname = init["sandbox_name"]
    assert runtime.file(sc.ns, sname, "/var/run/secrets/hiclaw/token") == token.encode()
    assert len(runtime.incarnations(sc.ns, sname)) == 1, "the sandbox was restarted for a token refresh"
    assert rv["status"]["user"]["username"] == f"system:serviceaccount:{sc.ns}:{sx.sa_name(sc.worker)}"
    # the Sandbox and the claim: same objects, never deleted, claim untouched
    sbx = sx.sandboxes_of(custom, sc.ns, sc.worker)
    assert [s["metadata"]["uid"] for s in sbx] == [init["sandbox_uid"]]
    assert not sbx[0]["metadata"].get("deletionTimestamp")
    claim = sx.get_claim(custom, sc.ns, sx.claim_name(sc.worker))
    assert claim["metadata"]["uid"] == init["claim_uid"]
    # the controller wrote nothing to the claim or the Sandbox (OpenKruise may keep its own status)
    writes = [w for w in ch.audit_writes(tb, init["audit_offset"], namespace=sc.ns)
              if w["user"] == sc.ctl.username and w["resource"] in ("sandboxclaims", "sandboxes")]
    assert writes == [], f"the refresh touched the claim or the Sandbox: {writes}"
    for r in sc.recorders:
        assert not [e for e in r.events if e[1] == "DELETED"], "a claim or Sandbox was deleted"
    sw = [e for e in sc.recorders[1].events if e[2]["metadata"]["uid"] == init["sandbox_uid"] and e[1] == "MODIFIED"]
    assert not [e for e in sw if e[2]["metadata"].get("deletionTimestamp") or e[2]["spec"].get("paused")]
    assert sx.get_claim(custom, sc.ns, sx.claim_name(sc.worker))
    wk = custom.get_namespaced_custom_object("hiclaw.io", "v1beta1", sc.ns, "workers", sc.worker)
    assert wk["status"]["phase"] == "Running"
    # all along under the blocked switch to the pod backend: no Pod, the sandbox kept and refreshed
    assert ch.condition(wk, "Synced")["reason"] == "BackendSwitchBlocked"
    assert ch.condition(wk, "Ready")["status"] == "True"
    assert ch.worker_pods(client.CoreV1Api(api), sc.ns, sc.worker) == []
    assert "refreshed worker-deps token" in sc.ctl.log_text()
