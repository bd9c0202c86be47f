"""The work layer: its kernels against engines with known answers, and ONE contract every
executor passes (same records, same tally, same skip list, same errors). A new executor is one
more row in `EXECUTORS`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from _fakes import ConstantEngine, OracleEngine, make_cityscapes
from ocrnet.data.cityscapes import TRAIN_TO_LABEL, discover
from ocrnet.errors import BadFileError, OcrnetError
from ocrnet.work.batching import batch_labels
from ocrnet.work.kernels import PredictKernel, ScoreKernel
from ocrnet.work.local import LocalExecutor
from ocrnet.work.plan import EvalOptions, PredictItem, PredictOptions
from ocrnet.work.tally import Tally, from_wire, to_wire


def corrupt(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")


# --- kernels, known answers ----------------------------------------------------------------
def test_score_kernel_counts_every_labelled_pixel_once_and_skips_in_place(
        tmp_path: Path) -> None:
    labels = make_cityscapes(tmp_path, cities={"aachen": 5})
    samples = discover(tmp_path, "val")
    corrupt(samples[2].image)  # mid-batch: the kernel must still name index 2
    kernel = ScoreKernel(EvalOptions(scale=(64, 32), batch_size=2,
                                     save_predictions=tmp_path / "saved"))
    (tmp_path / "saved").mkdir()
    engine = OracleEngine()
    assert kernel.setup(engine, "oracle") == {"scale": [64, 32], "scale_source": "given"}
    got = list(kernel.run(engine, list(enumerate(samples)), workers=2))
    assert [i for i, _ in got] == [0, 1, 2, 3, 4]
    assert "skipped" in got[2][1] and got[2][1]["path"] == str(samples[2].image)
    for index, record in got:
        if index == 2:
            continue
        label = labels[samples[index].stem]
        cm = record["cm"]
        # The oracle reads the truth back: a diagonal matrix of the label's own counts.
        assert (np.diag(cm.matrix) == np.bincount(label[label != 255], minlength=19)).all()
        assert cm.matrix.sum() == np.diag(cm.matrix).sum() == cm.total
        saved = cv2.imread(str(tmp_path / "saved" / f"{samples[index].stem}_pred_labelIds.png"),
                           cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(saved[label != 255], TRAIN_TO_LABEL[label][label != 255])


def test_predict_kernel_writes_the_engine_labels_and_refuses_other_classes(
        tmp_path: Path) -> None:
    class FiveClasses(ConstantEngine):
        @property
        def metadata(self) -> dict[str, Any]:
            return {"model": {"num_classes": 5}}

    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((24, 40, 3), np.uint8))
    item = PredictItem(image, tmp_path / "a")
    kernel = PredictKernel(PredictOptions(format="cityscapes", color=True, scale=(40, 24)))
    kernel.setup(ConstantEngine(7), "seven")
    ((index, record),) = kernel.run(ConstantEngine(7), [(4, item)])
    assert index == 4 and (record["height"], record["width"]) == (24, 40)
    pred = cv2.imread(record["labels"], cv2.IMREAD_UNCHANGED)
    assert (pred == TRAIN_TO_LABEL[7]).all()  # trainId 7 (traffic sign) is labelId 20
    with pytest.raises(OcrnetError, match=r"5 classes.*--format trainids"):
        kernel.setup(FiveClasses(0), "five.onnx")


def test_batch_labels_is_the_engine_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(2, 3, 8, 12)).astype(np.float32)
    got = batch_labels(OracleEngine(), batch, [(16, 24), (8, 12)], "logits")
    want = OracleEngine().labels_at(batch, [(16, 24), (8, 12)], "logits")
    assert all((a == b).all() for a, b in zip(got, want, strict=True))


class StaticOracle(OracleEngine):
    """The oracle as a static batch-2 package at 32x64: any other batch shape is refused."""

    def __init__(self) -> None:
        super().__init__()
        self._metadata = {"input_shape": [2, 3, 32, 64]}
        self.calls: list[int] = []

    def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> Any:
        if batch.shape != (2, 3, 32, 64):
            raise OcrnetError(f"built for input 2x3x32x64, got {batch.shape}")
        self.calls.append(len(batch))
        return super()._infer_impl(batch, want_logits)


@pytest.mark.parametrize("n", [1, 3, 4])
def test_a_static_batch_runs_any_number_of_images(n: int) -> None:
    batch = np.random.default_rng(n).normal(size=(n, 3, 32, 64)).astype(np.float32)
    sizes = [(32 + i, 64) for i in range(n)]
    engine = StaticOracle()
    got = batch_labels(engine, batch, sizes, "logits")
    want = [OracleEngine().labels_at(batch[i:i + 1], [sizes[i]], "logits")[0] for i in range(n)]
    assert len(got) == n and all((a == b).all() for a, b in zip(got, want, strict=True))
    assert engine.calls == [2] * ((n + 1) // 2)  # padded or sliced, never another shape


def test_kernels_decode_a_static_packages_own_batch(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, cities={"aachen": 3}, size=(32, 64))
    samples = discover(tmp_path, "val")
    kernel, engine = ScoreKernel(EvalOptions(batch_size=1)), StaticOracle()
    kernel.setup(engine, "static")
    assert sorted(i for i, _ in kernel.run(engine, list(enumerate(samples)))) == [0, 1, 2]
    assert engine.calls == [2, 2]  # two calls for three images, not three padded ones


def test_batch_labels_is_the_one_caller_of_labels_at() -> None:
    """Kernels, serve and the run report's samples all turn batches into labels through
    `batch_labels` (static padding, test-time modes): no module outside the engines calls
    `Engine.labels_at` itself."""
    import ast

    import ocrnet

    root = Path(ocrnet.__file__).parent
    callers = {p.relative_to(root).as_posix()
               for p in root.rglob("*.py")
               for node in ast.walk(ast.parse(p.read_text()))
               if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
               and node.func.attr == "labels_at"}
    assert {c for c in callers if not c.startswith("engines/")} == {"work/batching.py"}


def test_records_cross_the_wire_exactly() -> None:
    from ocrnet.metrics import image_confusion

    rng = np.random.default_rng(1)
    cm = image_confusion(rng.integers(0, 30, (9, 9)).astype(np.uint8),
                         rng.integers(0, 19, (9, 9)).astype(np.uint8))
    back = from_wire(to_wire({"cm": cm}))["cm"]
    assert (back.matrix == cm.matrix).all() and (back.missed == cm.missed).all()


# --- one contract for every executor ---------------------------------------------------------
def _local() -> Any:
    return LocalExecutor(threads=1, workers=2)


def _ray() -> Any:
    from ocrnet.jobs.executor import RayExecutor

    return RayExecutor("auto", workers=2, threads=1)


EXECUTORS = {"local": _local, "ray": _ray}


@pytest.fixture(params=list(EXECUTORS))
def executor(request: pytest.FixtureRequest) -> Any:
    if request.param == "ray":
        pytest.importorskip("ray")
        request.getfixturevalue("ray_cluster")
    return EXECUTORS[request.param]()


@pytest.fixture(scope="module")
def package() -> Path:
    from _engine_helpers import demo_package

    return demo_package("openvino", "fp32", (1, 3, 128, 256))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 val scenes at 128x256; the 3rd image is corrupt."""
    from ocrnet.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("work-scenes")
    write_dataset(root, train=0, val=5, size=(128, 256), workers=0, progress=False)
    corrupt(discover(root, "val")[2].image)
    return root


@pytest.fixture(scope="module")
def reference(package: Path, scenes: Path, tmp_path_factory: pytest.TempPathFactory,
              ) -> tuple[dict[int, dict[str, Any]], dict[str, bytes]]:
    """The kernel run directly over one open engine: what every executor must reproduce."""
    from ocrnet.engines import open_model

    saved = tmp_path_factory.mktemp("work-reference")
    kernel = ScoreKernel(EvalOptions(save_predictions=saved))
    with open_model(package, threads=1) as engine:
        kernel.setup(engine, str(package))
        records = dict(kernel.run(engine, list(enumerate(discover(scenes, "val")))))
    return records, _files(saved)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_executor_contract(executor: Any, package: Path, scenes: Path, tmp_path: Path,
                           reference: tuple[dict[int, dict[str, Any]], dict[str, bytes]]
                           ) -> None:
    samples = discover(scenes, "val")
    want, want_files = reference
    saved = tmp_path / "saved"
    saved.mkdir()
    tally = Tally(skip_bad=True)
    info = executor.run(package, ScoreKernel(EvalOptions(save_predictions=saved)), samples,
                        desc="eval", progress=False, on_record=tally.add)
    assert info["model"] == str(package) and info["scale"] == [256, 128]
    assert [s.path for s in tally.skipped_in_order()] == [str(samples[2].image)]
    assert sorted(tally.scored) == [0, 1, 3, 4]
    for index, cm in tally.scored_in_order():
        assert (cm.matrix == want[index]["cm"].matrix).all()
        assert (cm.missed == want[index]["cm"].missed).all()
    assert _files(saved) == want_files  # the same labelIds PNGs, byte for byte
    # The same errors: a bad file without skip_bad names it ...
    with pytest.raises(BadFileError, match=samples[2].image.name):
        executor.run(package, ScoreKernel(EvalOptions()), samples, desc="eval",
                     progress=False, on_record=Tally(skip_bad=False).add)
    # ... and an output that cannot be written stops the run with the line naming it.
    blocked = tmp_path / "blocked"
    (blocked / f"{samples[0].stem}_pred_labelIds.png").mkdir(parents=True)
    with pytest.raises(OcrnetError, match=f"{samples[0].stem}_pred_labelIds"):
        executor.run(package, ScoreKernel(EvalOptions(save_predictions=blocked)), samples[:2],
                     desc="eval", progress=False, on_record=Tally(skip_bad=True).add)

