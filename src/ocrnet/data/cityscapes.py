"""Cityscapes: the 19 classes, their palette, labelIds <-> trainIds, and dataset discovery.

The table follows `cityscapesscripts.helpers.labels` (id, trainId) exactly; every id whose trainId
is 255 or -1 there is ignored (255) here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ocrnet.data.images import DEFAULT_MAX_PIXELS, read_image
from ocrnet.errors import BadFileError, DataError

IGNORE_INDEX = 255

CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)

# mmseg's CityscapesDataset palette (RGB), one row per train id.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

# (labelId, trainId) for the 34 official labels plus 'license plate' (-1); 255 = ignored.
_LABEL_TABLE: tuple[tuple[int, int], ...] = (
    (0, 255), (1, 255), (2, 255), (3, 255), (4, 255), (5, 255), (6, 255),
    (7, 0), (8, 1), (9, 255), (10, 255), (11, 2), (12, 3), (13, 4), (14, 255), (15, 255),
    (16, 255), (17, 5), (18, 255), (19, 6), (20, 7), (21, 8), (22, 9), (23, 10), (24, 11),
    (25, 12), (26, 13), (27, 14), (28, 15), (29, 255), (30, 255), (31, 16), (32, 17), (33, 18),
)

#: labelId -> trainId for every uint8 value; ids not in the official table are marked -1 so that
#: callers can reject them (an unknown id is a corrupt label file, not something to ignore).
LABEL_TO_TRAIN = np.full(256, -1, dtype=np.int16)
for _label_id, _train_id in _LABEL_TABLE:
    LABEL_TO_TRAIN[_label_id] = _train_id
LABEL_TO_TRAIN[255] = 255  # some tools write 255 for "unlabeled"; treat as ignore
LABEL_TO_TRAIN[-1 & 0xFF] = 255  # 'license plate' (id -1) wraps to 255 in uint8 files

#: trainId -> labelId (what the official benchmark expects in submitted PNGs); 255 -> 0.
TRAIN_TO_LABEL = np.zeros(256, dtype=np.uint8)
for _label_id, _train_id in _LABEL_TABLE:
    if _train_id != 255:
        TRAIN_TO_LABEL[_train_id] = _label_id


# --- discovery -----------------------------------------------------------------------------
IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
#: What the official benchmark accepts for a prediction: `<city>_<seq>_<frame>_pred_labelIds.png`.
PRED_SUFFIX = "_pred_labelIds.png"

# How many offending files an error lists before it says "and N more".
_SHOW = 5


@dataclass(frozen=True)
class Sample:
    """One Cityscapes image and, when present, its ground truth.

    `stem` is `<city>_<seq>_<frame>`, the key the official scripts match predictions by.
    `label_format` says how `label` encodes classes: "trainIds" (0..18, 255 ignored) or
    "labelIds" (the official 0..33 ids, converted with `LABEL_TO_TRAIN` when read).
    """

    stem: str
    city: str
    image: Path
    label: Path | None = None
    label_format: str | None = None


def _listing(paths: Sequence[object]) -> str:
    shown = ", ".join(str(p) for p in paths[:_SHOW])
    more = f" and {len(paths) - _SHOW} more" if len(paths) > _SHOW else ""
    return shown + more


def _scan(folder: Path, suffixes: Sequence[str]) -> dict[str, dict[tuple[str, str], Path]]:
    """`<city>/<stem><suffix>` files under a split folder: suffix -> {(city, stem): path}.

    Listed with os.scandir rather than glob, which skips folders it cannot read without a
    word: an unreadable city folder is a `DataError` naming it, never a silently smaller
    dataset. A missing split folder is an empty result.
    """
    found: dict[str, dict[tuple[str, str], Path]] = {s: {} for s in suffixes}
    try:
        cities = sorted((e for e in os.scandir(folder) if e.is_dir()), key=lambda e: e.name)
    except FileNotFoundError:
        return found
    except OSError as err:
        raise DataError(f"cannot list {folder}: {err.strerror or err}; fix its permissions") \
            from None
    for city in cities:
        try:
            entries = sorted(e.name for e in os.scandir(city.path) if e.is_file())
        except OSError as err:
            raise DataError(f"cannot list the city folder {city.path}: {err.strerror or err}; "
                            "fix its permissions or move it out of the split") from None
        for name in entries:
            for suffix in suffixes:
                if name.endswith(suffix) and len(name) > len(suffix):
                    found[suffix][(city.name, name[: -len(suffix)])] = Path(city.path) / name
    return found


def _unique_stems(images: dict[tuple[str, str], Path], image_dir: Path) -> None:
    """Refuse one frame name in two city folders: predictions, saved files and per-image
    results are keyed by frame name, so either copy could be scored or written as the other."""
    seen: dict[str, Path] = {}
    clashes = []
    for (_city, stem), path in sorted(images.items()):
        if stem in seen:
            clashes.append(f"{seen[stem]} and {path}")
        seen.setdefault(stem, path)
    if clashes:
        raise DataError(
            f"{len(clashes)} frame name(s) appear in more than one city folder of {image_dir}: "
            f"{_listing(clashes)}; frame names must be unique across cities (official ones "
            "start with their city), so rename or remove the copies")


def discover(
    data_root: str | os.PathLike[str], split: str = "val", *, labels_required: bool = True
) -> list[Sample]:
    """Find the images of one split in the Cityscapes layout and pair them with their labels.

    Images are `leftImg8bit/{split}/{city}/*_leftImg8bit.png`; labels are
    `gtFine/{split}/{city}/*_gtFine_labelTrainIds.png`, or, where those were never generated,
    the official `*_gtFine_labelIds.png` (converted to train ids when read). Samples come back
    sorted by stem.

    With `labels_required=False` (prediction only) labels are attached where they exist and
    never required. Raises `DataError` for a missing root, an empty split, an image without a
    label or a label without an image.
    """
    root = Path(data_root)
    if not root.is_dir():
        raise DataError(
            f"data root {root} does not exist or is not a folder; pass the folder that holds "
            "leftImg8bit/ and gtFine/"
        )
    image_dir = root / "leftImg8bit" / split
    images = _images(root, image_dir)
    _unique_stems(images, image_dir)
    label_dir = root / "gtFine" / split
    found = _scan(label_dir, [TRAIN_IDS_SUFFIX, LABEL_IDS_SUFFIX])
    train_ids, label_ids = found[TRAIN_IDS_SUFFIX], found[LABEL_IDS_SUFFIX]

    def label_of(key: tuple[str, str]) -> tuple[Path | None, str | None]:
        # Paired by (city, frame), never by frame alone: a label in another city's folder is
        # not this image's label. labelTrainIds wins: it is what mmseg evaluates on, and it
        # is what cityscapesscripts' createTrainIdLabelImgs derives from labelIds anyway.
        if key in train_ids:
            return train_ids[key], "trainIds"
        if key in label_ids:
            return label_ids[key], "labelIds"
        return None, None

    samples = []
    for key in sorted(images, key=lambda k: (k[1], k[0])):
        label, fmt = label_of(key)
        samples.append(Sample(stem=key[1], city=key[0], image=images[key], label=label,
                              label_format=fmt))
    if labels_required:
        _check_pairs(samples, images, {**label_ids, **train_ids}, image_dir, label_dir)
    return samples


def _images(root: Path, image_dir: Path) -> dict[tuple[str, str], Path]:
    """(city, frame) -> image of one split; an empty split names the splits there are."""
    images = _scan(image_dir, [IMAGE_SUFFIX])[IMAGE_SUFFIX]
    if not images:
        found = sorted(p.name for p in (root / "leftImg8bit").glob("*") if p.is_dir())
        where = f"splits found: {', '.join(found)}" if found else "no leftImg8bit/ splits found"
        raise DataError(
            f"no images matching {image_dir}/<city>/*{IMAGE_SUFFIX} ({where}); check --data-root "
            "and --split"
        )
    return images


def _check_pairs(samples: list[Sample], images: dict[tuple[str, str], Path],
                 labels: dict[tuple[str, str], Path], image_dir: Path, label_dir: Path) -> None:
    """Every image has a label and every label an image, or a `DataError` listing them."""
    unpaired = [s.image for s in samples if s.label is None]
    if unpaired:
        raise DataError(
            f"{len(unpaired)} image(s) in {image_dir} have no label (*{TRAIN_IDS_SUFFIX} or "
            f"*{LABEL_IDS_SUFFIX} in {label_dir}): {_listing(unpaired)}; add the labels, remove "
            "the images, or predict without labels"
        )
    orphans = [p for key, p in sorted(labels.items()) if key not in images]
    if orphans:
        raise DataError(
            f"{len(orphans)} label(s) in {label_dir} have no image in {image_dir}: "
            f"{_listing(orphans)}; add the images or remove the labels"
        )


# --- label files -----------------------------------------------------------------------------
def label_ids_to_train_ids(label: np.ndarray, *, source: str | os.PathLike[str] = "") -> np.ndarray:
    """Official labelIds -> train ids (uint8, 255 ignored); unknown ids raise `DataError`."""
    train = LABEL_TO_TRAIN[label]
    if (train < 0).any():
        bad = sorted(int(v) for v in np.unique(label[train < 0]))
        raise DataError(
            f"{source or 'label image'} holds ids that are not Cityscapes labelIds: {bad[:10]}; "
            "expected the official 0..33 ids (is it a trainIds or colour image?)"
        )
    return train.astype(np.uint8)


def train_ids_to_label_ids(train: np.ndarray) -> np.ndarray:
    """Train ids -> official labelIds, the format the benchmark server expects (255 -> 0)."""
    return TRAIN_TO_LABEL[train]


def check_train_ids(label: np.ndarray, *, source: str | os.PathLike[str] = "") -> np.ndarray:
    """Return `label` if every value is a train id (0..18) or 255, else raise `DataError`."""
    bad_mask = (label >= len(CLASSES)) & (label != IGNORE_INDEX)
    if bad_mask.any():
        bad = sorted(int(v) for v in np.unique(label[bad_mask]))
        raise DataError(
            f"{source or 'label image'} holds values that are not train ids: {bad[:10]}; "
            f"expected 0..{len(CLASSES) - 1} or {IGNORE_INDEX} (is it a labelIds image named "
            "*_labelTrainIds.png?)"
        )
    return label


def read_label(
    path: str | os.PathLike[str], label_format: str = "trainIds", *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Read a label PNG as train ids (H, W) uint8; `label_format` is "trainIds" or "labelIds".

    Decoded with the file's own depth and channels (mmseg's `LoadAnnotations` reads
    'unchanged'); anything but single-channel 8-bit is rejected rather than guessed at. Size-
    checked from the header before decoding; unreadable or undecodable files raise
    `BadFileError` (which `--skip-bad` skips).
    """
    if label_format not in ("trainIds", "labelIds"):
        raise ValueError(f"label_format must be 'trainIds' or 'labelIds', got {label_format!r}")
    path = Path(path)
    label = read_image(path, max_pixels=max_pixels, flags=cv2.IMREAD_UNCHANGED)
    if label.ndim != 2 or label.dtype != np.uint8:
        raise BadFileError(
            path,
            f"label {path} is {label.dtype} with shape {label.shape}; expected a single-channel "
            "8-bit PNG of class ids"
        )
    if label_format == "labelIds":
        return label_ids_to_train_ids(label, source=path)
    return check_train_ids(label, source=path)
