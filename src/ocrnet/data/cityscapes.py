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


def _stems(folder: Path, suffix: str) -> dict[str, Path]:
    """`<city>/<stem><suffix>` files under a split folder, keyed by stem."""
    return {p.name[: -len(suffix)]: p for p in folder.glob(f"*/*{suffix}") if p.is_file()}


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
    images = _stems(image_dir, IMAGE_SUFFIX)
    if not images:
        found = sorted(p.name for p in (root / "leftImg8bit").glob("*") if p.is_dir())
        where = f"splits found: {', '.join(found)}" if found else "no leftImg8bit/ splits found"
        raise DataError(
            f"no images matching {image_dir}/<city>/*{IMAGE_SUFFIX} ({where}); check --data-root "
            "and --split"
        )

    label_dir = root / "gtFine" / split
    train_ids = _stems(label_dir, TRAIN_IDS_SUFFIX)
    label_ids = _stems(label_dir, LABEL_IDS_SUFFIX)

    def label_of(stem: str) -> tuple[Path | None, str | None]:
        # labelTrainIds wins: it is what mmseg evaluates on, and it is what
        # cityscapesscripts' createTrainIdLabelImgs derives from labelIds anyway.
        if stem in train_ids:
            return train_ids[stem], "trainIds"
        if stem in label_ids:
            return label_ids[stem], "labelIds"
        return None, None

    samples = []
    for stem in sorted(images):
        label, fmt = label_of(stem)
        city = images[stem].parent.name
        samples.append(Sample(stem=stem, city=city, image=images[stem], label=label,
                              label_format=fmt))
    if not labels_required:
        return samples

    unpaired = [s.image for s in samples if s.label is None]
    if unpaired:
        raise DataError(
            f"{len(unpaired)} image(s) in {image_dir} have no label (*{TRAIN_IDS_SUFFIX} or "
            f"*{LABEL_IDS_SUFFIX} in {label_dir}): {_listing(unpaired)}; add the labels, remove "
            "the images, or predict without labels"
        )
    orphans = [p for stem, p in sorted({**label_ids, **train_ids}.items()) if stem not in images]
    if orphans:
        raise DataError(
            f"{len(orphans)} label(s) in {label_dir} have no image in {image_dir}: "
            f"{_listing(orphans)}; add the images or remove the labels"
        )
    return samples


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
