"""Issue 14 — a fleet of sandbox Workers through the real OpenKruise agents controller.

20 sandbox Workers created at once: every one reaches Running through a real claim; each
sandbox received its own env file and token at the SPEC's paths (read back from the played
agent-runtime, which performed the mounts from S3); Sleeping (HICLAW_SANDBOX_PAUSE=true) pauses
every Sandbox through OpenKruise and Running resumes it (new Pod, /init again, mounts again);
deleting the Workers leaves no claim, Sandbox, Pod, ServiceAccount or worker-deps object, and
the controller deleted each of them itself (the audit log says who did).
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from kubernetes import client
from kubernetes.client.rest import ApiException

import bed
import controller_harness as ch
import sandbox_support as sx
from conftest import drop_namespace, make_namespace, unique

N = 20
AUDIENCE = "hiclaw-controller"


def _source(env_bytes: bytes) -> dict:
    """What `set -a; . file` gives a shell: the variables the worker image will see."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "env")
        with open(path, "wb") as f:
            f.write(env_bytes)
        p = subprocess.run(["/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "/bin/sh", "-c", 'set -a; . "$1"; env -0', "sh",
                            path], capture_output=True, cwd=d, timeout=20)
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    return {k.decode(): v.decode() for k, v in (kv.split(b"=", 1) for kv in p.stdout.split(b"\0") if b"=" in kv)}


def _all(custom, ns, names, pred, timeout, what):
    def ok():
        ws = {w["metadata"]["name"]: w for w in ch.list_workers(custom, ns)}
        return all(n in ws and pred(ws[n]) for n in names) and ws
    return ch.wait_for_value(ok, timeout, what, interval=0.5)


def _phase(p):
    return lambda w: (w.get("status") or {}).get("phase") == p


def test_twenty_sandbox_workers_claim_pause_resume_and_delete(tb, api, core, custom, s3, runtime):
    ns = make_namespace(core, "sbx-fleet")
    ctl = sx.sandbox_controller(tb, core, ns, {"HICLAW_SANDBOX_PAUSE": "true", "HICLAW_SANDBOX_PREWARM_SIZE": "4",
                                               "HICLAW_SANDBOX_CLAIM_TIMEOUT": "3m"})
    names = [f"fleet-{i:02d}-{unique('w')[-4:]}" for i in range(N)]
    creds = {n: {"WORKER_MATRIX_TOKEN": f"mtx-{n}-{unique('s')}", "WORKER_GATEWAY_KEY": f"gw-{n}",
                 "WORKER_MINIO_PASSWORD": f"pw-{n}-{unique('s')}"} for n in names}
    try:
        for n in names:
            core.create_namespaced_secret(ns, client.V1Secret(metadata=client.V1ObjectMeta(name=f"hiclaw-creds-{n}"),
                                                              string_data=creds[n]))
        for n in names:  # at once: no waiting between creates
            ch.create_worker(custom, ns, n, backendRuntime="sandbox", image=f"registry.example/worker:{n}")
        ws = _all(custom, ns, names, _phase("Running"), 240, f"{N} sandbox Workers Running")

        # one claim and one Sandbox each, all distinct, no pod-backend instance anywhere
        sandboxes = {}
        for n in names:
            st = ws[n]["status"]
            assert st["backendRuntime"] == "sandbox" and st["instance"]["kind"] == "Sandbox", st
            assert [c["metadata"]["name"] for c in sx.claims_of(custom, ns, n)] == [sx.claim_name(n)]
            sb = sx.sandboxes_of(custom, ns, n)
            assert [s["metadata"]["name"] for s in sb] == [st["instance"]["name"]], (n, sb)
            sandboxes[n] = st["instance"]["name"]
        assert len(set(sandboxes.values())) == N
        assert ch.worker_pods(core, ns) == []

        # what each sandbox received, at the SPEC's paths, with its own Worker's bytes
        for n in names:
            sname, keys = sandboxes[n], sx.deps_keys(ns, n)
            inc = runtime.wait_mounted(ns, sname)
            spod = bed.sandbox_pod(core, ns, sname)
            assert inc["uid"] == spod.metadata.uid and spod.spec.containers[0].image == f"registry.example/worker:{n}"
            env_bytes = runtime.snapshot(ns, sname, "/mnt/hiclaw/env/env")
            assert env_bytes == sx.s3_get(s3, tb.WC_S3_BUCKET, keys["env"])
            env = _source(env_bytes)
            assert env["HICLAW_WORKER_NAME"] == n and env["HICLAW_WORKER_MATRIX_TOKEN"] == creds[n]["WORKER_MATRIX_TOKEN"]
            assert env["HICLAW_FS_SECRET_KEY"] == creds[n]["WORKER_MINIO_PASSWORD"]
            token = runtime.snapshot(ns, sname, "/var/run/secrets/hiclaw/token")
            assert token == sx.s3_get(s3, tb.WC_S3_BUCKET, keys["token"])
            rv = sx.token_review(api, token.decode(), AUDIENCE)
            assert rv["status"]["authenticated"] is True
            assert rv["status"]["user"]["username"] == f"system:serviceaccount:{ns}:{sx.sa_name(n)}"
        assert runtime.errors() == []

        # Sleeping: OpenKruise pauses every Sandbox (its Pod goes); the claims stay
        for n in names:
            ch.patch_worker(custom, ns, n, {"spec": {"state": "Sleeping"}})
        _all(custom, ns, names, _phase("Sleeping"), 180, f"{N} Workers Sleeping")
        for n in names:
            sb = sx.get_sandbox(custom, ns, sandboxes[n])
            assert sb["spec"]["paused"] is True and sb["status"]["phase"] == "Paused", (n, sb["status"])
            assert bed.sandbox_pod(core, ns, sandboxes[n]) is None
            assert sx.get_claim(custom, ns, sx.claim_name(n)) is not None

        # Running: each resumed in a new Pod, initialised again and every mount made again
        for n in names:
            ch.patch_worker(custom, ns, n, {"spec": {"state": "Running"}})
        ws = _all(custom, ns, names, _phase("Running"), 240, f"{N} Workers Running again")
        for n in names:
            assert ws[n]["status"]["instance"]["name"] == sandboxes[n]
            incs = runtime.incarnations(ns, sandboxes[n])
            assert len(incs) >= 2 and incs[-1]["inits"][-1]["skipRefresh"] is True, (n, incs)
            last = runtime.wait_mounted(ns, sandboxes[n])
            assert runtime.snapshot(ns, sandboxes[n], "/mnt/hiclaw/env/env") == \
                sx.s3_get(s3, tb.WC_S3_BUCKET, sx.deps_keys(ns, n)["env"]), last

        # deletion: nothing left, and the controller deleted what it made
        mark = ch.audit_offset(tb)
        for n in names:
            ch.delete_worker(custom, ns, n)

        def none_left():
            return not ch.list_workers(custom, ns)
        ch.wait_for_value(none_left, 180, f"{N} Workers deleted")
        assert sx.list_kind(custom, ns, sx.CLAIMS, worker="") == []
        assert sx.list_kind(custom, ns, sx.SANDBOXES, worker="") == []
        assert [s.metadata.name for s in core.list_namespaced_service_account(ns, label_selector="hiclaw.io/worker").items] == []
        assert sx.s3_list(s3, tb.WC_S3_BUCKET, sx.deps_prefix(ns)) == []
        ch.wait_for_value(lambda: ch.worker_pods(core, ns, sandbox_pods=True) == [], 60, "the sandboxes' Pods gone")
        for n in names:
            assert set(ch.deleted_by(tb, mark, "sandboxclaims", ns, sx.claim_name(n))) == {ctl.username}, n
            assert set(ch.deleted_by(tb, mark, "sandboxes", ns, sandboxes[n])) == {ctl.username}, n
            assert set(ch.deleted_by(tb, mark, "serviceaccounts", ns, sx.sa_name(n))) == {ctl.username}, n
        assert ctl.running(), ctl.log_tail()
    finally:
        ctl.close()
        drop_namespace(core, ns)
