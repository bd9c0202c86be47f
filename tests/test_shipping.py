"""The Ray node's model copy (`ocrnet.jobs.shipping`): verified on every use, fetched once per
node, never removed while a process holds it, and disk/permission errors in one line.

The shipping functions are called directly (threads and real processes on one "node" folder);
one test runs them on the session's two-node Ray cluster.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ocrnet.errors import OcrnetError, OutputError, PackageError
from ocrnet.jobs.shipping import (
    ShippedModel,
    let_go,
    materialize,
    read_model,
    release_model,
    remove_copy,
    ship_model,
)

NODE = "a1b2c3d4e5f6" + "0" * 44


def _package(out: Path, content: bytes = b"weights" * 1000) -> Path:
    from ocrnet.package import PackageWriter

    with PackageWriter(out) as writer:
        (writer.dir / "model.bin").write_bytes(content)
        writer.commit({"backend": "onnxruntime", "precision": "fp32"})
    return out


def _shipped(path: Path) -> ShippedModel:
    """What `ship_model` sends, with the bytes themselves in place of an object-store ref."""
    files, digest = read_model(path)
    return ShippedModel(path.name, str(path), path.is_dir(), digest, files,
                        sum(map(len, files.values())))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_a_planted_complete_copy_with_other_bytes_is_never_opened(tmp_path: Path,
                                                                   root: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(b"the shipped model")
    model = _shipped(source)
    # Someone who can write the cache plants a copy under the entry's name, marker and all.
    path, fetched = materialize(model, NODE, root=root)
    let_go(model, NODE, root=root)
    assert remove_copy(root, path.parent.name)
    planted = path.parent
    planted.mkdir(parents=True)
    path.write_bytes(b"an attacker's model")
    (planted / ".complete").write_text(model.digest + "\n")
    again, fetched = materialize(model, NODE, root=root)
    assert fetched and again == path
    assert again.read_bytes() == b"the shipped model"  # refetched, not trusted by its name
    _, fetched = materialize(model, NODE, root=root)
    assert not fetched  # a copy that verifies is used as is


@pytest.mark.parametrize("tamper", ["weights", "manifest", "extra file"])
def test_a_tampered_package_copy_is_refetched(tmp_path: Path, root: Path, tamper: str) -> None:
    model = _shipped(_package(tmp_path / "pkg"))
    path, fetched = materialize(model, NODE, root=root)
    assert fetched and (path / "model.bin").read_bytes() == b"weights" * 1000
    if tamper == "weights":
        (path / "model.bin").write_bytes(b"other weights")
    elif tamper == "manifest":  # a consistent package, just not the shipped one
        meta = json.loads((path / "ocrnet.json").read_text())
        (path / "model.bin").write_bytes(b"other weights")
        meta["files"]["model.bin"] = hashlib.sha256(b"other weights").hexdigest()
        (path / "ocrnet.json").write_text(json.dumps(meta))
    else:
        (path / "sitecustomize.py").write_text("import os\n")
    again, fetched = materialize(model, NODE, root=root)
    assert fetched and again == path
    assert (path / "model.bin").read_bytes() == b"weights" * 1000
    assert not (path / "sitecustomize.py").exists()


def test_bytes_that_do_not_match_the_shipped_sha256_are_refused_naming_the_node(
        tmp_path: Path, root: Path) -> None:
    source = tmp_path / "model.pth"
    source.write_bytes(b"checkpoint")
    model = _shipped(source)
    bad = ShippedModel(model.name, model.source, False, model.digest,
                       {model.name: b"corrupted in transit"})
    with pytest.raises(PackageError, match=f"node {NODE[:12]} with sha256 .*not opening it"):
        materialize(bad, NODE, root=root)
    assert not any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir())


def test_an_actor_names_the_node_once(tmp_path: Path, root: Path) -> None:
    from ocrnet.jobs.worker import error_line

    source = tmp_path / "model.pth"
    source.write_bytes(b"checkpoint")
    model = _shipped(source)
    bad = ShippedModel(model.name, model.source, False, model.digest, {model.name: b"other"})
    with pytest.raises(PackageError) as err:
        materialize(bad, NODE, root=root)
    line = error_line(err.value, NODE, "host-1")
    assert line.count(NODE[:12]) == 1 and line == f"{err.value} (host-1)"
    assert error_line(OcrnetError("no engine for it"), NODE, "host-1") == \
        f"no engine for it (Ray node {NODE[:12]}, host-1)"


def test_threads_on_one_node_fetch_once(tmp_path: Path, root: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(os.urandom(8 << 20))  # big enough that racing writers would overlap
    model = _shipped(source)
    start = threading.Barrier(4)
    results: list[tuple[Path, bool]] = []

    def take() -> None:
        start.wait()
        results.append(materialize(model, NODE, root=root))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4  # none failed (racing writers would)
    assert [fetched for _, fetched in results].count(True) == 1
    assert {path for path, _ in results} == {results[0][0]}
    assert results[0][0].read_bytes() == source.read_bytes()


_CHILD = """
import pickle, sys, time
from pathlib import Path
from ocrnet.jobs.shipping import materialize
model, node, root, ready, count = pickle.loads(Path(sys.argv[1]).read_bytes())
Path(ready, sys.argv[2]).touch()
while len(list(Path(ready).iterdir())) < count:  # start together
    time.sleep(0.005)
path, fetched = materialize(model, node, root=Path(root))
print(int(fetched), path, flush=True)
if sys.argv[2] == "0":
    Path(ready, "held").touch()
    sys.stdin.read()  # keep holding the copy until the test lets go
"""


def test_processes_on_one_node_fetch_once_and_a_held_copy_is_not_removed(
        tmp_path: Path, root: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(os.urandom(8 << 20))
    model = _shipped(source)
    ready = tmp_path / "ready"
    ready.mkdir()
    args = tmp_path / "args.pkl"
    args.write_bytes(pickle.dumps((model, NODE, str(root), str(ready), 3)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(args), str(i)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for i in range(3)]
    try:
        lines = [p.stdout.readline().split() for p in procs if p.stdout]
        assert all(len(line) == 2 for line in lines), lines  # each took the copy
        assert sum(int(fetched) for fetched, _ in lines) == 1
        assert len({path for _, path in lines}) == 1
        path = Path(lines[0][1])
        for p in procs[1:]:
            assert p.wait(timeout=60) == 0  # these let go by exiting
        while not (ready / "held").exists():
            time.sleep(0.01)
        assert not remove_copy(root, path.parent.name)  # process 0 still holds it
        assert path.read_bytes() == source.read_bytes()
    finally:
        for p in procs:
            if p.stdin:
                p.stdin.close()
        for p in procs:
            p.wait(timeout=60)
            if p.stdout:
                p.stdout.close()
    assert remove_copy(root, path.parent.name)  # nobody holds it now
    assert not path.exists()


def test_a_copy_in_use_survives_another_jobs_sweep(tmp_path: Path, root: Path) -> None:
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(b"model a")
    b.write_bytes(b"model b")
    model_a, model_b = _shipped(a), _shipped(b)
    path_a, _ = materialize(model_a, NODE, root=root)
    path_b, _ = materialize(model_b, NODE, root=root)  # sweeps copies nobody holds
    assert path_a.read_bytes() == b"model a"  # held by this process: kept
    let_go(model_a, NODE, root=root)
    materialize(model_b, NODE, root=root)
    assert not path_a.exists() and path_b.read_bytes() == b"model b"
    let_go(model_b, NODE, root=root)


def test_a_cache_folder_we_cannot_write_is_one_line(tmp_path: Path, root: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(b"model")
    model = _shipped(source)
    root.mkdir(mode=0o700)
    if os.geteuid() == 0:  # root writes anywhere: a folder another user owns is the case
        os.chown(root, 12345, 12345)
        match = "another user|not a folder of this user"
    else:
        root.chmod(0o500)
        match = "[Pp]ermission denied"
    try:
        with pytest.raises(OcrnetError, match=match) as err:
            materialize(model, NODE, root=root)
    finally:
        root.chmod(0o700)
    assert "\n" not in str(err.value) and NODE[:12] in str(err.value) and str(root) in str(
        err.value)


def test_a_full_or_missing_disk_is_one_output_error(tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(b"model")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder's parent should be")
    with pytest.raises(OutputError) as err:
        materialize(_shipped(source), NODE, root=blocker / "cache")
    assert "\n" not in str(err.value) and NODE[:12] in str(err.value)


@pytest.mark.ray
def test_on_the_cluster_each_node_fetches_once(ray_cluster: Any, tmp_path: Path) -> None:
    """Through the object store, on both nodes: two takers per node (threads of one task, so
    the test starts no extra worker processes), one fetch each."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    source = tmp_path / "model.onnx"
    source.write_bytes(os.urandom(1 << 20))
    shipped = ship_model(ray, source)

    @ray.remote(num_cpus=0)
    def take_twice(model: ShippedModel) -> tuple[str, list[bool], list[str]]:
        from concurrent.futures import ThreadPoolExecutor

        node = ray.get_runtime_context().get_node_id()
        with ThreadPoolExecutor(2) as pool:
            got = list(pool.map(lambda _: materialize(model, node), range(2)))
        digests = [hashlib.sha256(path.read_bytes()).hexdigest() for path, _ in got]
        let_go(model, node)
        return node, [fetched for _, fetched in got], digests

    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    refs = [take_twice.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        n, soft=False)).remote(shipped) for n in nodes]
    for node, fetched, digests in ray.get(refs, timeout=120):
        assert sorted(fetched) == [False, True], node
        assert digests == [shipped.digest] * 2
    release_model(ray, shipped)
