"""Regenerate the golden logits from genuine mmsegmentation (never imported by ocrnet itself).

    bash tools/mmseg_reference/setup_venv.sh /tmp/mmseg_venv
    /tmp/mmseg_venv/bin/python tests/golden/make_golden.py

Writes tests/golden/{variant}_logits.npz (input, logits, seed) and tests/golden/mmseg_keys.txt.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from randomize import randomized_state_dict  # noqa: E402

# (variant, mmseg config, input shape, seed)
CASES = [
    ("hr18", "ocrnet_hr18_4xb2-160k_cityscapes-512x1024.py", (1, 3, 97, 161), 1),
    ("hr18", "ocrnet_hr18_4xb2-160k_cityscapes-512x1024.py", (2, 3, 40, 72), 2),
    ("hr18s", "ocrnet_hr18s_4xb2-160k_cityscapes-512x1024.py", (1, 3, 75, 130), 3),
    ("hr48", "ocrnet_hr48_4xb2-160k_cityscapes-512x1024.py", (1, 3, 41, 67), 4),
]


def build_mmseg(config_name: str, keep_preprocessor: bool = False) -> torch.nn.Module:
    """mmseg's model, BN for SyncBN; without its data preprocessor unless asked (the goldens
    feed normalized tensors; make_golden_modes.py's TTA case feeds images)."""
    import mmseg
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(os.path.join(os.path.dirname(mmseg.__file__), ".mim/configs/ocrnet",
                                       config_name))
    cfg.model.pretrained = None
    cfg.model.backbone.norm_cfg = dict(type="BN", requires_grad=True)
    for head in cfg.model.decode_head:
        head.norm_cfg = dict(type="BN", requires_grad=True)
    if not keep_preprocessor:
        cfg.model.data_preprocessor = None
    return MODELS.build(cfg.model).eval()


def main() -> None:
    warnings.filterwarnings("ignore")
    keys_written = False
    for variant, config, shape, seed in CASES:
        model = build_mmseg(config)
        state = randomized_state_dict(model.state_dict(), seed)
        model.load_state_dict(state, strict=True)
        if variant == "hr18" and not keys_written:
            lines = [f"{k} {tuple(v.shape)}" for k, v in model.state_dict().items()]
            (HERE / "mmseg_hr18_keys.txt").write_text("\n".join(lines) + "\n")
            keys_written = True
        gen = torch.Generator().manual_seed(1000 + seed)
        x = torch.randn(shape, generator=gen)
        metas = [dict(img_shape=shape[2:], ori_shape=shape[2:], pad_shape=shape[2:])] * shape[0]
        with torch.no_grad():
            logits = model.encode_decode(x, metas)
        name = f"{variant}_{'x'.join(map(str, shape))}.npz"
        np.savez_compressed(HERE / name, input=x.numpy(), logits=logits.numpy(), seed=seed)
        print(name, tuple(logits.shape), float(logits.abs().max()), float(logits.std()))


if __name__ == "__main__":
    main()
