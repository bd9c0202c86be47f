"""The Cityscapes label ids the generator paints, looked up by class name from the shared table.

Scenes are painted in official label ids (not train ids) so that the ignored classes
(`unlabeled`, `ego vehicle`, `static`, `dynamic`, `guard rail`) appear as they do in real gtFine
files and the evaluation's id mapping is exercised.
"""

from __future__ import annotations

from ocrnet.data.cityscapes import CLASSES, TRAIN_TO_LABEL

# Official label id of each train class, looked up by name from the shared table.
_ID = {name: int(TRAIN_TO_LABEL[i]) for i, name in enumerate(CLASSES)}
ROAD, SIDEWALK, BUILDING, WALL, FENCE = (_ID[n] for n in
                                         ("road", "sidewalk", "building", "wall", "fence"))
POLE, LIGHT, SIGN, VEG, TERRAIN, SKY = (_ID[n] for n in ("pole", "traffic light", "traffic sign",
                                                         "vegetation", "terrain", "sky"))
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN = (_ID[n] for n in ("person", "rider", "car", "truck",
                                                          "bus", "train"))
MOTORCYCLE, BICYCLE = _ID["motorcycle"], _ID["bicycle"]
# Official Cityscapes ids whose trainId is 255: the evaluation must ignore them.
UNLABELED, EGO_VEHICLE, STATIC, DYNAMIC, GUARD_RAIL = 0, 1, 4, 5, 14
