"""Golden outputs of mmseg's slide and TTA (ms+flip) test modes, from genuine mmseg 1.2.2.

    bash tools/mmseg_reference/setup_venv.sh /tmp/mmseg_venv
    /tmp/mmseg_venv/bin/python tests/golden/make_golden_modes.py

Reads the inputs of the fixtures `make_golden.py` wrote (same hr18 random weights per seed) and
writes tests/golden/modes/hr18_modes.npz (in a subfolder: test_model.py takes every *.npz beside
it for a whole-mode case). Per case it keeps 4 of the 19 channels (the tile arithmetic and the
merge are per channel; the softmax behind aug's mean uses all 19) plus the argmax over all 19,
which keeps the file at ~200 KB:

- slide: `EncoderDecoder.inference` with `test_cfg=dict(mode='slide', crop_size, stride)` on
  the fixture's normalized input: two crop/stride settings, an image smaller than the crop,
  an odd size (45x67);
- aug: the config's own `tta_pipeline` (LoadImageFromFile, TestTimeAug of Resize(scale_factor=r,
  keep_ratio=True) x RandomFlip prob 0 / 1; LoadAnnotations left out, there is no label) on a PNG
  made from a fixture input, each view through the model's `test_step` (data preprocessor,
  `postprocess_result`'s un-flip and resize), the views' softmax averaged as
  `SegTTAModel.merge_preds` does, and the labels from `SegTTAModel.test_step` itself.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_golden import build_mmseg  # noqa: E402
from randomize import randomized_state_dict  # noqa: E402

CONFIG = "ocrnet_hr18_4xb2-160k_cityscapes-512x1024.py"
CHANNELS = (0, 5, 11, 18)
MEAN = np.array([123.675, 116.28, 103.53], np.float32).reshape(3, 1, 1)  # RGB
STD = np.array([58.395, 57.12, 57.375], np.float32).reshape(3, 1, 1)
# name -> (fixture, image index, rows, cols, crop HxW, stride HxW)
SLIDE = {
    "slide_a": ("hr18_2x3x40x72.npz", 0, 40, 72, (32, 48), (16, 24)),
    "slide_b": ("hr18_2x3x40x72.npz", 1, 40, 72, (24, 40), (20, 30)),
    "slide_small": ("hr18_2x3x40x72.npz", 0, 40, 72, (48, 96), (32, 64)),
    "slide_odd": ("hr18_1x3x97x161.npz", 0, 45, 67, (32, 48), (20, 28)),
}
AUG = ("hr18_2x3x40x72.npz", 1, (0.75, 1.5))


def fixture(name: str) -> tuple[np.ndarray, int]:
    data = np.load(HERE / name)
    return data["input"], int(data["seed"])


def model_for(seed: int, with_preprocessor: bool = False) -> torch.nn.Module:
    model = build_mmseg(CONFIG, keep_preprocessor=with_preprocessor)
    model.load_state_dict(randomized_state_dict(model.state_dict(), seed), strict=True)
    return model


def slide_case(name: str, out: dict[str, np.ndarray]) -> None:
    from mmengine.config import ConfigDict

    file, index, rows, cols, crop, stride = SLIDE[name]
    inputs, seed = fixture(file)
    x = torch.from_numpy(np.ascontiguousarray(inputs[index:index + 1, :, :rows, :cols]))
    model = model_for(seed)
    model.test_cfg = ConfigDict(mode="slide", crop_size=crop, stride=stride)
    metas = [dict(img_shape=(rows, cols), ori_shape=(rows, cols), pad_shape=(rows, cols))]
    with torch.no_grad():
        logits = model.inference(x, metas)[0].numpy()
    out[f"{name}/input"] = x[0].numpy()
    out[f"{name}/crop"] = np.array(crop)
    out[f"{name}/stride"] = np.array(stride)
    out[f"{name}/seed"] = np.array(seed)
    out[f"{name}/logits"] = logits[list(CHANNELS)]
    out[f"{name}/labels"] = logits.argmax(0).astype(np.uint8)
    print(name, logits.shape, float(np.abs(logits).max()))


def aug_case(out: dict[str, np.ndarray]) -> None:
    import cv2
    from mmengine.config import Config
    from mmengine.dataset import Compose, pseudo_collate
    from mmseg.models.segmentors import SegTTAModel

    file, index, ratios = AUG
    inputs, seed = fixture(file)
    rgb = np.clip(np.rint(inputs[index] * STD + MEAN), 0, 255).astype(np.uint8)
    bgr = np.ascontiguousarray(rgb[::-1].transpose(1, 2, 0))
    cfg = Config.fromfile(_config_path())
    pipeline = cfg.tta_pipeline
    steps = pipeline[1]["transforms"]
    steps[0] = [dict(type="Resize", scale_factor=r, keep_ratio=True) for r in ratios]
    pipeline[1]["transforms"] = [s for s in steps if s[0]["type"] != "LoadAnnotations"]
    model = model_for(seed, with_preprocessor=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "aug.png")
        cv2.imwrite(path, bgr)
        batch = pseudo_collate([Compose(pipeline)(dict(img_path=path))])
    views = [{k: v[i] for k, v in batch.items()} for i in range(len(batch["inputs"]))]
    with torch.no_grad():
        logits = [model.test_step(v)[0].seg_logits.data for v in views]
        probs = sum(lg.softmax(dim=0) for lg in logits) / len(logits)  # merge_preds' mean
        labels = SegTTAModel(module=model).test_step(batch)[0].pred_sem_seg.data[0]
    assert torch.equal(labels, probs.argmax(0)), "merge_preds disagrees with its own mean"
    out["aug/image"] = bgr
    out["aug/ratios"] = np.array(ratios)
    out["aug/seed"] = np.array(seed)
    out["aug/shapes"] = np.array([tuple(v["inputs"][0].shape[1:]) for v in views])
    out["aug/probs"] = probs.numpy()[list(CHANNELS)]
    out["aug/labels"] = labels.numpy().astype(np.uint8)
    print("aug", tuple(probs.shape), out["aug/shapes"].tolist())


def _config_path() -> str:
    import os

    import mmseg

    return os.path.join(os.path.dirname(mmseg.__file__), ".mim/configs/ocrnet", CONFIG)


def main() -> None:
    warnings.filterwarnings("ignore")
    out: dict[str, np.ndarray] = {"channels": np.array(CHANNELS)}
    for name in SLIDE:
        slide_case(name, out)
    aug_case(out)
    (HERE / "modes").mkdir(exist_ok=True)
    np.savez_compressed(HERE / "modes" / "hr18_modes.npz", **out)


if __name__ == "__main__":
    main()
