"""Scenes written as a dataset in the exact Cityscapes layout, in parallel, every file atomically.

Image `i` of a split is scene `np.random.default_rng([seed, split_id, i])`, so any number of
worker processes, in any order, gives byte-identical files; a killed run leaves no half-written
PNG (each file is encoded in memory, written to a temporary name in its folder and renamed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ocrnet import defaults, shapes
from ocrnet.data.cityscapes import CLASSES, IGNORE_INDEX, LABEL_TO_TRAIN
from ocrnet.data.synthetic.scene import GENERATOR_VERSION, MIN_SIZE, generate_scene
from ocrnet.errors import DataError
from ocrnet.fileio import atomic_write_bytes, atomic_write_text

#: Cities per split; images are spread over them in contiguous blocks like the real dataset.
CITIES: dict[str, tuple[str, ...]] = {
    "train": ("synthA", "synthB", "synthC"),
    "val": ("synthD", "synthE"),
}
_SPLIT_IDS = {"train": 0, "val": 1}


def parse_size(text: str | Sequence[int]) -> shapes.Size:
    """Parse an image size written `HxW` (height first, e.g. `256x512`) into (height, width),
    each side at least `MIN_SIZE` pixels; `ShapeError` (a `DataError`) otherwise."""
    return shapes.parse_size(text, minimum=MIN_SIZE)


@dataclass(frozen=True)
class SynthResult(Mapping[str, Any]):
    """What `write_dataset` wrote. Also readable as the dict it used to be (`result["root"]`),
    so callers written against that keep working; `to_json()` gives exactly that dict."""

    root: str
    manifest: str  # path of synthetic.json
    counts: dict[str, int]  # images per split
    images: dict[str, list[str]]  # image paths per split, sorted
    class_pixels: dict[str, int]  # pixels per train class over all splits

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "manifest": self.manifest, "counts": dict(self.counts),
                "images": {s: list(v) for s, v in self.images.items()},
                "class_pixels": dict(self.class_pixels)}

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    @classmethod
    def _keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class _SceneTask:
    """One image to generate and write; picklable, for the worker processes."""

    split: str
    index: int
    root: str
    city: str
    stem: str
    height: int
    width: int
    seed: int


def _names(split: str, count: int) -> list[tuple[str, str]]:
    """(city, stem) per image: contiguous blocks per city, frame 19 like real gtFine files."""
    cities = CITIES[split]
    out = []
    for i in range(count):
        c = i * len(cities) // count
        seq = i - (c * count + len(cities) - 1) // len(cities)
        city = cities[c]
        out.append((city, f"{city}_{seq:06d}_000019"))
    return out


def _write_png(path: Path, array: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise DataError(f"could not encode {path} as PNG")
    atomic_write_bytes(path, buf.tobytes())


def _write_one(task: _SceneTask) -> tuple[str, np.ndarray]:
    """Generate and write one scene; return its image path and its train-id histogram."""
    cv2.setNumThreads(1)  # one image per process: threads would just fight over the cores
    image, label_ids = generate_scene(
        np.random.default_rng([task.seed, _SPLIT_IDS[task.split], task.index]),
        task.height, task.width)
    train_ids = LABEL_TO_TRAIN[label_ids].astype(np.uint8)
    img_path = Path(task.root, "leftImg8bit", task.split, task.city,
                    f"{task.stem}_leftImg8bit.png")
    gt_dir = Path(task.root, "gtFine", task.split, task.city)
    _write_png(img_path, image[..., ::-1])  # cv2 encodes BGR
    _write_png(gt_dir / f"{task.stem}_gtFine_labelIds.png", label_ids)
    _write_png(gt_dir / f"{task.stem}_gtFine_labelTrainIds.png", train_ids)
    return str(img_path), np.bincount(train_ids.ravel(), minlength=256)


def _run(tasks: list[_SceneTask], workers: int | None,
         progress: bool) -> dict[tuple[str, int], tuple[str, np.ndarray]]:
    """Every task's result by (split, index), in this process or a pool of `workers`."""
    if workers is None:
        workers = os.cpu_count() or 1
    workers = max(1, min(int(workers), len(tasks) or 1))

    from tqdm import tqdm

    results: dict[tuple[str, int], tuple[str, np.ndarray]] = {}
    bar = tqdm(total=len(tasks), desc="synth", unit="img", disable=not progress)
    if workers == 1:
        for t in tasks:
            results[(t.split, t.index)] = _write_one(t)
            bar.update()
    else:
        import multiprocessing as mp

        # spawn, not fork: the parent may hold torch/OpenMP threads, which fork can deadlock.
        with mp.get_context("spawn").Pool(workers) as pool:
            for t, res in zip(tasks, pool.imap(_write_one, tasks, chunksize=4), strict=True):
                results[(t.split, t.index)] = res
                bar.update()
    bar.close()
    return results


def _manifest(seed: int, height: int, width: int, counts: dict[str, int],
              per_split: dict[str, np.ndarray]) -> dict[str, Any]:
    """synthetic.json: the parameters and the per-class pixel counts of each split."""
    return {
        "format": "ocrnet-synthetic", "generator_version": GENERATOR_VERSION, "seed": int(seed),
        "size": [height, width], "counts": counts,
        "cities": {s: list(CITIES[s]) for s in counts},
        "class_pixels": {s: {name: int(per_split[s][i]) for i, name in enumerate(CLASSES)}
                         | {"ignore": int(per_split[s][IGNORE_INDEX])} for s in counts},
    }


def _checked(root: str | os.PathLike[str], train: int, val: int,
             size: Sequence[int]) -> tuple[Path, dict[str, int], int, int]:
    """The output root (created), the counts per split and the size, or a `DataError`."""
    height, width = parse_size(size)
    counts = {"train": int(train), "val": int(val)}
    for split, n in counts.items():
        if n < 0:
            raise DataError(f"--{split} must be >= 0 images, got {n}")
    root_path = Path(root)
    if root_path.exists() and not root_path.is_dir():
        raise DataError(f"{root_path} exists and is not a directory; pick another --out")
    root_path.mkdir(parents=True, exist_ok=True)
    return root_path, counts, height, width


def write_dataset(root: str | os.PathLike[str], *, train: int = defaults.SYNTH_TRAIN,
                  val: int = defaults.SYNTH_VAL, size: tuple[int, int] = defaults.SYNTH_SIZE,
                  seed: int = defaults.SYNTH_SEED, workers: int | None = None,
                  progress: bool = True) -> SynthResult:
    """Write a synthetic dataset in the Cityscapes layout under `root`.

    Files: `leftImg8bit/{split}/{city}/{city}_{seq:06d}_000019_leftImg8bit.png` (RGB) and,
    beside them under `gtFine/`, `..._gtFine_labelIds.png` (official ids) and
    `..._gtFine_labelTrainIds.png` (train ids, 255 = ignore), plus `synthetic.json` recording
    the parameters and the per-class pixel counts. Image `i` of a split depends only on
    (seed, split, i, size), so any number of workers gives byte-identical files.

    Args:
        root: output directory (created; existing files with the same names are overwritten).
        train, val: number of images per split.
        size: (height, width) in pixels.
        seed: base seed.
        workers: processes to use; None = all CPU cores, 0 or 1 = in this process.
        progress: show a tqdm progress bar.

    Returns:
        a `SynthResult`: root, manifest path, counts per split, image paths per split, and
        pixels per class over all splits (`to_json()` gives them as a dict).
    """
    root_path, counts, height, width = _checked(root, train, val, size)
    tasks = [_SceneTask(split, i, str(root_path), city, stem, height, width, int(seed))
             for split, n in counts.items() for i, (city, stem) in enumerate(_names(split, n))]
    results = _run(tasks, workers, progress)

    per_split = {s: np.zeros(256, np.int64) for s in counts}
    images: dict[str, list[str]] = {s: [] for s in counts}
    for (split, _), (path, hist) in sorted(results.items()):
        images[split].append(path)
        per_split[split] += hist
    manifest_path = root_path / "synthetic.json"
    manifest = _manifest(seed, height, width, counts, per_split)
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    total = sum(per_split.values())
    return SynthResult(
        root=str(root_path), manifest=str(manifest_path), counts=counts,
        images={s: sorted(v) for s, v in images.items()},
        class_pixels={name: int(total[i]) for i, name in enumerate(CLASSES)})
