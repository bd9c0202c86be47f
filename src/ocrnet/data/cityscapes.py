"""Cityscapes: the 19 evaluation classes, their palette, and the official labelIds <-> trainIds table.

The table follows `cityscapesscripts.helpers.labels` (id, trainId) exactly; every id whose trainId
is 255 or -1 there is ignored (255) here.
"""

from __future__ import annotations

import numpy as np

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
