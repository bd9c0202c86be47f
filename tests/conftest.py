"""Session-wide fixtures.

`engine_artifacts` (autouse): the folder of the shared artifacts `_engine_helpers` builds once per
session; OCRNET_EXPORT_CACHE points into it, so builds from one checkpoint with the same export
options export once per run.

In CI (`CI=true`), a test or module skipped because an import failed (`pytest.importorskip`:
a missing extra such as serve, ray, onnxruntime or openvino) fails instead: a CI image without
the extra would otherwise pass while testing nothing of it.

`ray_cluster`: the ONE Ray instance of a test session, started on first use and shut down at the
end. It is a two-node `ray.cluster_utils.Cluster` (two nodes of 1 CPU, 2 CPUs in all) so that
the Ray tests also show work landing on both nodes; every Ray job in the suite runs on it
through its existing connection. `make test` runs the suite inside a loopback-only network
namespace (tools/loopback_only.sh), where every Ray address is 127.0.0.1.

`serve_servers` (`serve_main`, `serve_tight`): the two `ocrnet serve` subprocesses that
test_serve, test_serve_v2 and test_serve_page all ask for alike, started once on first use
(tests/_serve_helpers.py: the package, the options) and stopped at the end of the session.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

import _engine_helpers
from ocrnet import export_cache


def _missing_import(report: pytest.CollectReport | pytest.TestReport) -> str | None:
    """The skip reason if `report` is a skip for a failed import (importorskip), else None."""
    if not report.skipped or not isinstance(report.longrepr, tuple):
        return None
    reason = str(report.longrepr[2])
    return reason if "could not import" in reason else None


def _fail_in_ci(report: pytest.CollectReport | pytest.TestReport) -> None:
    reason = _missing_import(report) if _engine_helpers.IN_CI else None
    if reason is not None:
        report.outcome = "failed"
        report.longrepr = f"CI=true: a missing extra fails here instead of skipping ({reason})"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    _fail_in_ci(outcome.get_result())  # a module-level importorskip


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _fail_in_ci(outcome.get_result())  # importorskip in a test or a fixture


@pytest.fixture(scope="session", autouse=True)
def engine_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The folder of the run's shared artifacts (`_engine_helpers`: the random-weight
    checkpoint, its ONNX export, packages built from it), made once and left to pytest's own
    temporary-folder policy instead of an atexit hook. Under pytest-xdist every worker uses the
    same folder (beside the workers' own), so each artifact is built once per run."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.getbasetemp().parent / "engine-artifacts"
        folder.mkdir(exist_ok=True)
    else:
        folder = tmp_path_factory.mktemp("engine-artifacts")
    _engine_helpers.use_workdir(folder)
    # Builds from a checkpoint reuse one export per key across the run (and its subprocesses).
    os.environ[export_cache.ENV] = str(folder / "exports")
    yield _engine_helpers


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # pragma: no cover - a test leaked a connection
        ray.shutdown()
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="session")
def serve_servers() -> Iterator[tuple[Any, Any]]:
    """`serve_main` and `serve_tight`, started together (they load while predict's files for
    the comparisons are made)."""
    pytest.importorskip("fastapi")
    pytest.importorskip("openvino")
    pytest.importorskip("httpx")
    from _serve_helpers import MAIN_OPTIONS, TIGHT_OPTIONS, Server, package, started

    main, tight = Server(package(), *MAIN_OPTIONS), Server(package(), *TIGHT_OPTIONS)
    with started(main, tight):
        yield main, tight


@pytest.fixture(scope="session")
def serve_main(serve_servers: tuple[Any, Any]) -> Any:
    """`ocrnet serve` with `_serve_helpers.MAIN_OPTIONS`: shared, so a test must not stop it."""
    return serve_servers[0]


@pytest.fixture(scope="session")
def serve_tight(serve_servers: tuple[Any, Any]) -> Any:
    """`ocrnet serve` with `_serve_helpers.TIGHT_OPTIONS` (waits end by the timeout): shared."""
    return serve_servers[1]


#: Test files that use the run's one Ray instance: one xdist worker runs them all.
RAY_FILES = {"test_jobs.py", "test_serve_ray.py", "test_shipping.py", "test_work.py"}
SERVE_FIXTURES = {"serve_servers", "serve_main", "serve_tight"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With `--dist loadgroup` (make test): the Ray files share one worker (one Ray
    instance), and so do the tests of the shared servers; the tests of a file that use a
    module-scoped fixture (a server, a package) share one worker, so that fixture is made once,
    as without xdist; every other test goes wherever a worker is free (session artifacts are
    shared across workers anyway)."""
    for item in items:
        if item.path.name in RAY_FILES:
            item.add_marker(pytest.mark.xdist_group("ray"))
        elif SERVE_FIXTURES & set(item.fixturenames):  # one worker starts the shared servers
            item.add_marker(pytest.mark.xdist_group("serve"))
        elif _uses_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.path.name))


def _uses_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:  # not a Python test function: keep it with its file
        return True
    return any(d.scope in ("module", "class", "package")
               for defs in info.name2fixturedefs.values() for d in defs)
