"""up.sh / down.sh on a second, independent bed (own WC_TESTBED, own ports): idempotent,
recovers from a crashed bed, and down.sh leaves no process and no listening port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from types import SimpleNamespace

import pytest

from conftest import REPO_ROOT

UP = os.path.join(REPO_ROOT, "test", "cluster", "up.sh")
DOWN = os.path.join(REPO_ROOT, "test", "cluster", "down.sh")
RUN = os.path.join(REPO_ROOT, "test", "e2e", "run.sh")
COMPONENTS = ("etcd", "kube-apiserver", "minio", "kube-controller-manager", "kube-scheduler", "kwok", "openkruise",
              "agent-sandbox", "agent-runtime")


def sh(cmd, bed, timeout=300, cwd="/"):
    keep = ("WC_CACHE", "WC_TESTBIN_JOBS", "WC_KRUISE_DIR", "WC_AGENT_SANDBOX_DIR")
    env = {k: v for k, v in os.environ.items() if (not k.startswith("WC_") or k in keep) and k != "KUBECONFIG"}
    env["WC_TESTBED"] = str(bed)
    t0 = time.monotonic()
    p = subprocess.run([cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return p, time.monotonic() - t0


def read_env(bed) -> dict:
    out = subprocess.run(["bash", "-c", f"source {bed}/env && env -0"], capture_output=True, check=True).stdout
    return dict(kv.split("=", 1) for kv in out.decode().split("\0") if "=" in kv)


def pids(bed) -> dict:
    return {c: int(open(os.path.join(bed, f"{c}.pid")).read()) for c in COMPONENTS}


def ports(bed) -> list[int]:
    return [int(x) for x in open(os.path.join(bed, "ports")).read().split()]


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def readyz(env: dict) -> str:
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", env["WC_CA_FILE"], "-H",
                        f"Authorization: Bearer {env['WC_ADMIN_TOKEN']}", env["WC_APISERVER_URL"] + "/readyz"],
                       capture_output=True, text=True)
    return r.stdout.strip()


@pytest.fixture
def bed(tmp_path_factory):
    b = tmp_path_factory.mktemp("second-bed") / "bed"
    yield b
    if b.exists():  # never leave a bed behind, even if the test failed
        sh(DOWN, b)


def test_second_bed_up_idempotent_down_clean(tb, bed):
    p, took = sh(UP, bed)
    assert p.returncode == 0, p.stderr
    env = read_env(bed)
    assert env["WC_TESTBED"] == str(bed)
    assert readyz(env) == "ok"
    my_ports, my_pids = ports(bed), pids(bed)
    # etcd, peer, api, s3, s3 console, OpenKruise health, the agent-runtime's control port,
    # agent-sandbox health
    assert len(set(my_ports)) == 8 and all(listening(x) for x in my_ports[:4] + my_ports[5:])
    main_env_ports = {int(tb.WC_APISERVER_PORT), int(tb.WC_S3_PORT)}
    assert not main_env_ports & set(my_ports), "second bed must not reuse the main bed's ports"

    # up again: no-op success, fast, same processes
    p2, took2 = sh(UP, bed, cwd=str(bed.parent))
    assert p2.returncode == 0, p2.stderr
    assert "already up" in p2.stderr
    assert took2 < 10
    assert pids(bed) == my_pids

    p3, _ = sh(DOWN, bed)
    assert p3.returncode == 0, p3.stderr
    assert not bed.exists()
    assert not any(alive(x) for x in my_pids.values()), my_pids
    assert not any(listening(x) for x in my_ports), my_ports

    p4, _ = sh(DOWN, bed)  # idempotent
    assert p4.returncode == 0 and "not up" in p4.stderr

    # the main bed is untouched
    assert readyz({"WC_CA_FILE": tb.WC_CA_FILE, "WC_ADMIN_TOKEN": tb.WC_ADMIN_TOKEN,
                   "WC_APISERVER_URL": tb.WC_APISERVER_URL}) == "ok"


def test_up_recovers_from_crashed_bed(bed):
    p, _ = sh(UP, bed)
    assert p.returncode == 0, p.stderr
    old = pids(bed)
    os.kill(old["kube-apiserver"], signal.SIGKILL)
    p2, _ = sh(UP, bed)
    assert p2.returncode == 0, p2.stderr
    assert "tearing it down" in p2.stderr
    new = pids(bed)
    assert all(alive(x) for x in new.values())
    assert not any(alive(old[c]) for c in COMPONENTS if c != "kube-apiserver")
    assert readyz(read_env(bed)) == "ok"
    p3, _ = sh(DOWN, bed)
    assert p3.returncode == 0, p3.stderr
    assert not any(alive(x) for x in new.values())


def test_run_sh_fails_clearly_without_bed(tmp_path):
    p, _ = sh(RUN, tmp_path / "no-bed", timeout=600)
    assert p.returncode == 2
    assert "not up" in p.stderr


def test_down_refuses_foreign_directory(tmp_path):
    d = tmp_path / "not-a-bed"
    d.mkdir()
    (d / "precious").write_text("keep me")
    p, _ = sh(DOWN, d)
    assert p.returncode != 0
    assert (d / "precious").read_text() == "keep me"


def test_warm_testbin_cache_never_runs_go(tb, tmp_path):
    """With the binaries cached, testbin.sh answers in well under a second with no Go toolchain."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    go = fake_bin / "go"
    go.write_text("#!/bin/sh\necho go must not run >&2\nexit 99\n")
    go.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "WC_CACHE", "TMPDIR")}
    env["PATH"] = f"{fake_bin}:/usr/bin:/bin"
    t0 = time.monotonic()
    p = subprocess.run([os.path.join(REPO_ROOT, "test", "cluster", "testbin.sh")], env=env,
                       capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == tb.WC_TESTBIN
    assert "go must not run" not in p.stderr
    assert took < 5


def test_serviceaccount_admission_is_on(tb, core, namespace):
    """ServiceAccount admission is on, as in any real cluster: a Pod naming a missing
    ServiceAccount is refused until it exists (kube-controller-manager makes "default")."""
    from kubernetes import client

    from conftest import unique

    def pod(name):
        return client.V1Pod(metadata=client.V1ObjectMeta(name=name), spec=client.V1PodSpec(
            service_account_name="nobody", automount_service_account_token=False,
            containers=[client.V1Container(name="c", image="registry.invalid/c:1")]))

    with pytest.raises(client.ApiException) as e:
        core.create_namespaced_pod(namespace, pod(unique("no-sa")))
    assert e.value.status == 403 and "serviceaccount" in e.value.body.lower()
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody")))
    created = core.create_namespaced_pod(namespace, pod(unique("with-sa")))
    assert created.spec.service_account_name == "nobody"
