"""Golden bytes of generated scenes: a refactor of `ocrnet.data.synthetic` must change no pixel.

The demo model was trained and scored on these scenes, so a silent change in the generator would
change the demo's numbers. The hashes pin the files `write_dataset` writes (PNG bytes and the
manifest), at the test size and at the demo's 256x512, plus the raw arrays of sixteen more scenes
so every drawer line (each vehicle kind and its visible side, sign style, pole kind) runs.

When a change of the scenes is intended, bump `GENERATOR_VERSION` and refresh the table with
    .venv/bin/python tests/test_synthetic_golden.py
then paste its output over GOLDEN below.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np

from ocrnet.data.synthetic import generate_scene, write_dataset

REFRESH = "refresh with `.venv/bin/python tests/test_synthetic_golden.py` if the change is intended"

# (name, write_dataset arguments): two seeds at a small size, and the demo's first val image
# (pipeline.DEMO_DATA: 256x512, seed 0).
DATASETS = (
    ("seed0-64x128", {"train": 2, "val": 1, "size": (64, 128), "seed": 0}),
    ("seed1-64x128", {"train": 2, "val": 1, "size": (64, 128), "seed": 1}),
    ("demo-256x512", {"train": 0, "val": 1, "size": (256, 512), "seed": 0}),
)
SCENES = 16  # extra scenes hashed as arrays: seeds [9, 0, i] at 128x256

GOLDEN: dict[str, str] = {
    "seed0-64x128/gtFine/train/synthA/synthA_000000_000019_gtFine_labelIds.png":
        "e4e282d0168cd3a7c665380a5bfec59e6aae4bb41ebce78aecc441b5b5ddd04d",
    "seed0-64x128/gtFine/train/synthA/synthA_000000_000019_gtFine_labelTrainIds.png":
        "23800d8f4b16d614fc0a49cc8e1665c6583c7fe4126ac72c24192ef44c6de3c5",
    "seed0-64x128/gtFine/train/synthB/synthB_000000_000019_gtFine_labelIds.png":
        "2cfcab510c650120bfebfa74fbb8caf4df2b9ecdaf14c688af8753ab288e7ea1",
    "seed0-64x128/gtFine/train/synthB/synthB_000000_000019_gtFine_labelTrainIds.png":
        "e1f8e518a173a218addb36243aa4a2acff7e3402f54aa44fd963720b9e3ddd77",
    "seed0-64x128/gtFine/val/synthD/synthD_000000_000019_gtFine_labelIds.png":
        "a95af7157731273ee54a9c50f6a73b72b6a237b1e1a36a651f270aa4e2e413a6",
    "seed0-64x128/gtFine/val/synthD/synthD_000000_000019_gtFine_labelTrainIds.png":
        "561d6cb6d24fed618f74233837d15e6e3a1754e74962f13879f9e0c2593c66a2",
    "seed0-64x128/leftImg8bit/train/synthA/synthA_000000_000019_leftImg8bit.png":
        "7278a83d8dc6015df21f3fa90df26af8a57b8d86ec077d439353d85217c2ca28",
    "seed0-64x128/leftImg8bit/train/synthB/synthB_000000_000019_leftImg8bit.png":
        "49926f410172aa39ab27dbe83ea92cae3e9737beb641d6b30ed3d5ff3f854aac",
    "seed0-64x128/leftImg8bit/val/synthD/synthD_000000_000019_leftImg8bit.png":
        "5acb6216733cffc8fabd4bc04012b6e6a0f55197264399487620dea03043a44c",
    "seed0-64x128/synthetic.json":
        "c4123de11f61ec8ad682152f2ae6d85aa162e17140478078ea06bcbcd512ecc5",
    "seed1-64x128/gtFine/train/synthA/synthA_000000_000019_gtFine_labelIds.png":
        "cdbb8bd66fdeb9f8bc88cc2f2a2cd774814d5d6807a84cc43b4720cfb555a5ed",
    "seed1-64x128/gtFine/train/synthA/synthA_000000_000019_gtFine_labelTrainIds.png":
        "fdf9d41e8bcc17702ab27a57f6062c36bb969dc39d9caf6a08c1eaac8a0b5d02",
    "seed1-64x128/gtFine/train/synthB/synthB_000000_000019_gtFine_labelIds.png":
        "504a8c375859585af53da67af53f2393f6f35df0895b957ef7b9a3b9068c1db8",
    "seed1-64x128/gtFine/train/synthB/synthB_000000_000019_gtFine_labelTrainIds.png":
        "ab9b7f74a3e94a240b85a2144cabeac43d53ce2cfc30cab6f9a4b9c7740e8cdf",
    "seed1-64x128/gtFine/val/synthD/synthD_000000_000019_gtFine_labelIds.png":
        "370a2fb43f9417b41b0c0cd7bb0f68b0c5b2c15511f29b36c82ba6327227bcaf",
    "seed1-64x128/gtFine/val/synthD/synthD_000000_000019_gtFine_labelTrainIds.png":
        "f72fb95e745f67c1b29148c7080502f0cff792e102df5319d0432cf5663e3a7a",
    "seed1-64x128/leftImg8bit/train/synthA/synthA_000000_000019_leftImg8bit.png":
        "bcefac327fb05992d33cdf774a4bb9b48a91119a11e229bb47b4cc7c375f5675",
    "seed1-64x128/leftImg8bit/train/synthB/synthB_000000_000019_leftImg8bit.png":
        "6ea46759e061b95b5525a05a26bbcd398c6143443402d20b6f369d69132b0ce4",
    "seed1-64x128/leftImg8bit/val/synthD/synthD_000000_000019_leftImg8bit.png":
        "96e5f1cc149d828fe6966656465364055b5ad00ee93ce84ddee2314175f77819",
    "seed1-64x128/synthetic.json":
        "de70fa175444b8589d802a36d340e36bafe46ac95ea5f6b09f73478077020b13",
    "demo-256x512/gtFine/val/synthD/synthD_000000_000019_gtFine_labelIds.png":
        "cf10b33e41a729b2d25edd8abc3860b6f10bb836a10a5f31124d00d13e18a6d8",
    "demo-256x512/gtFine/val/synthD/synthD_000000_000019_gtFine_labelTrainIds.png":
        "bce7bea3502bf473506a4e76d502957eacfa90589b53cfe67680d842daabb846",
    "demo-256x512/leftImg8bit/val/synthD/synthD_000000_000019_leftImg8bit.png":
        "290e03ba67d6aba13896cc47f74745eed2f965bb0c0aa151ff6611864c2109b1",
    "demo-256x512/synthetic.json":
        "dfa8154f5b72fc8882f8c374c34d4b6523ab79e81014c3dc4e32cbf29a859e58",
    "scenes[9,0,0..15]-128x256":
        "0173314ccc0cb989403256ed25f4314edc960077050756393f1846bcead0a800",
}


def digests() -> dict[str, str]:
    """sha256 of every file the datasets above write, and of the extra scenes' arrays."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, kwargs in DATASETS:
            root = Path(tmp, name)
            write_dataset(root, workers=1, progress=False, **kwargs)
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                out[f"{name}/{path.relative_to(root).as_posix()}"] = hashlib.sha256(
                    path.read_bytes()).hexdigest()
    h = hashlib.sha256()
    for index in range(SCENES):
        for array in generate_scene(np.random.default_rng([9, 0, index]), 128, 256):
            h.update(np.ascontiguousarray(array).tobytes())
    out[f"scenes[9,0,0..{SCENES - 1}]-128x256"] = h.hexdigest()
    return out


def test_generated_bytes_unchanged() -> None:
    got = digests()
    assert sorted(got) == sorted(GOLDEN), f"the set of written files changed; {REFRESH}"
    changed = [name for name in GOLDEN if got[name] != GOLDEN[name]]
    assert not changed, f"generated scenes changed: {changed}; {REFRESH}"


if __name__ == "__main__":
    table = digests()
    sys.stdout.write("GOLDEN: dict[str, str] = {\n")
    for key, value in table.items():
        sys.stdout.write(f'    "{key}":\n        "{value}",\n')
    sys.stdout.write("}\n")
