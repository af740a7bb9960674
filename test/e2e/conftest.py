"""pytest fixtures for the worker-controller end-to-end tests.

The test bed (test/cluster/up.sh) must be up and its env file sourced; test/e2e/run.sh does
both. Fixtures: ``tb`` (the env), ``api`` (admin ApiClient), ``core``, ``custom``,
``namespace`` (a fresh namespace per test module), ``s3`` (boto3 client), ``runtime`` (the
played agent-runtime's control API, bed.Runtime), ``user_api(token)`` factory.
"""

from __future__ import annotations

import os
import random
import string
import sys
import time
from types import SimpleNamespace
from typing import Callable

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bed  # noqa: E402

E2E_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(E2E_DIR, "..", ".."))

REQUIRED_ENV = [
    "WC_TESTBED", "KUBECONFIG", "WC_APISERVER_URL", "WC_CA_FILE", "WC_ADMIN_TOKEN",
    "WC_S3_ENDPOINT", "WC_S3_BUCKET", "WC_S3_ACCESS_KEY", "WC_S3_SECRET_KEY", "WC_S3_REGION", "WC_TESTBIN",
]


def wait_for(pred: Callable[[], object], timeout: float = 10.0, interval: float = 0.1, what: str = "condition"):
    """Poll ``pred`` until it returns a truthy value (returned) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except ApiException as e:
            last = e
            if e.status not in (404, 409):
                raise
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def wait_port_free(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    """Wait until a killed server's port can really be bound again. A SIGKILLed Go server's
    process looks gone (its thread-group leader turns zombie) while its other threads are still
    exiting and holding the listening socket; restarting it in that window fails with 'address
    already in use'."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"port {port} still in use {timeout}s after its server was killed")
            time.sleep(0.05)
        finally:
            s.close()


def argv_port(argv: list, flag: str) -> int:
    """The value of `--flag N` or `--flag=N` (or `--address :N`) in a command line."""
    for i, a in enumerate(argv):
        v = a[len(flag) + 1:] if a.startswith(flag + "=") else argv[i + 1] if a == flag and i + 1 < len(argv) else None
        if v is not None:
            return int(v.rsplit(":", 1)[-1])
    raise ValueError(f"{flag} not in {argv}")


def unique(prefix: str) -> str:
    return f"{prefix}-{''.join(random.choices(string.ascii_lowercase + string.digits, k=6))}"


@pytest.fixture(scope="session")
def tb():
    missing = [k for k in REQUIRED_ENV if not os.environ.get(k)]
    if missing:
        pytest.exit(f"test bed env missing {missing}: run via test/e2e/run.sh after test/cluster/up.sh", 2)
    return SimpleNamespace(**{k: v for k, v in os.environ.items() if k.startswith("WC_") or k == "KUBECONFIG"})


@pytest.fixture(scope="session")
def api(tb):
    return config.new_client_from_config(config_file=tb.KUBECONFIG)


@pytest.fixture(scope="session")
def core(api):
    return client.CoreV1Api(api)


@pytest.fixture(scope="session")
def custom(api):
    return client.CustomObjectsApi(api)


def make_api(tb, token: str | None = None, cert: str | None = None, key: str | None = None) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = tb.WC_APISERVER_URL
    cfg.ssl_ca_cert = tb.WC_CA_FILE
    cfg.verify_ssl = True
    if token:
        cfg.api_key = {"authorization": f"Bearer {token}"}
    if cert:
        cfg.cert_file, cfg.key_file = cert, key
    return client.ApiClient(cfg)


@pytest.fixture(scope="session")
def user_api(tb):
    """Factory: an ApiClient authenticated with a bearer token (or a client cert)."""
    made = []

    def factory(token=None, cert=None, key=None):
        c = make_api(tb, token, cert, key)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()


def make_namespace(core, base: str) -> str:
    """A fresh namespace, once kube-controller-manager has given it its "default"
    ServiceAccount (the Pods of a warm pool run as it; ServiceAccount admission is on)."""
    name = unique(f"e2e-{base}"[:44].strip("-"))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"wc-e2e": "true"})))
    wait_for(lambda: core.read_namespaced_service_account("default", name), 30, what=f"ServiceAccount {name}/default")
    return name


def drop_namespace(core, name: str) -> None:
    """Delete and do not wait: the namespace controller finalizes it once every Worker's
    finalizer is gone (a Worker whose controller has stopped keeps it Terminating)."""
    try:
        core.delete_namespace(name)
    except ApiException:
        pass


@pytest.fixture(scope="module")
def namespace(core, request):
    """A fresh namespace per test module."""
    name = make_namespace(core, request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")[:40].strip("-"))
    yield name
    drop_namespace(core, name)


@pytest.fixture(scope="session")
def s3(tb):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=tb.WC_S3_ENDPOINT,
        region_name=tb.WC_S3_REGION,
        aws_access_key_id=tb.WC_S3_ACCESS_KEY,
        aws_secret_access_key=tb.WC_S3_SECRET_KEY,
        verify=tb.WC_CA_FILE,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="session")
def runtime(tb):
    """The played agent-runtime: what each sandbox received (/init, mounts, file bytes)."""
    return bed.Runtime(tb)


def pytest_configure(config):
    config.addinivalue_line("markers", "runs_last: run after every other test (a long wait that the others overlap)")


def pytest_collection_modifyitems(session, config, items):
    """Tests marked runs_last go to the end, whatever their file is called."""
    items.sort(key=lambda it: it.get_closest_marker("runs_last") is not None)


def pytest_sessionfinish(session, exitstatus):
    """A passing session leaves no controller work directories behind in /tmp (they hold test
    ServiceAccount tokens); a failing one keeps them for their logs."""
    harness = sys.modules.get("controller_harness")
    if harness is not None and exitstatus == 0:
        harness.remove_workdirs()
