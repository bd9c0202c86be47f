"""Pack a trained demo checkpoint for shipping: fp16 weights (restored to fp32 on load) and a
model card whose numbers are measured here, on the generated validation scenes.

    python tools/pack_demo_model.py runs/demo_train/final.pth --data-root data/synth

Writes src/ocrnet/assets/ocrnet_hr18_synthetic_demo.pth and demo_model.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ocrnet.model import build_model, load_checkpoint, model_from_checkpoint, read_checkpoint
from ocrnet.model.checkpoint import file_sha256
from ocrnet.pipeline import DEMO_CHECKPOINT, DEMO_DATA, DEMO_SCALE
from ocrnet.train import validate

CARD = DEMO_CHECKPOINT.with_name("demo_model.json")


def _started_from(init: str | None) -> dict | None:
    """What a fine-tuned model (`ocrnet train --init`) started from. When that is the shipped demo
    model, or the checkpoint the current card was packed from, the card's training (with its own
    `started_from`) is kept, so every stage stays on record; otherwise the checkpoint's own."""
    if not init:
        return None
    info = {"checkpoint": init, "sha256": file_sha256(Path(init))}
    previous = json.loads(CARD.read_text()) if CARD.exists() else None
    meta = read_checkpoint(init)["meta"]
    config = json.loads(meta["config"])
    if previous and (previous["sha256"] == info["sha256"]
                     or (previous["training"]["config"] == config
                         and previous["training"]["iterations"] == meta["iter"])):
        return {**info, "val_mIoU": previous["val_mIoU"], "training": previous["training"]}
    return {**info, "training": {"config": config, "iterations": meta["iter"],
                                 "history": json.loads(meta.get("history", "[]"))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="final.pth from `ocrnet train`")
    parser.add_argument("--data-root", required=True, help="the synthetic dataset it trained on")
    parser.add_argument("--train-command", default="make demo-model")
    parser.add_argument("--note", default="", help="anything a reader of the card should know")
    args = parser.parse_args()

    trained = read_checkpoint(args.checkpoint)
    meta = trained["meta"]
    config = json.loads(meta["config"])
    started_from = _started_from(config.get("init"))
    model = model_from_checkpoint(args.checkpoint)
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save({"meta": {"CLASSES": meta["CLASSES"], "PALETTE": meta["PALETTE"],
                         "config": meta["config"], "iter": meta["iter"],
                         "note": "ocrnet demo model: trained on synthetic scenes, not Cityscapes"},
                "state_dict": half}, DEMO_CHECKPOINT)

    shipped = build_model("hr18")
    load_checkpoint(shipped, DEMO_CHECKPOINT)
    started = time.perf_counter()
    result = validate(shipped.eval(), args.data_root, scale=DEMO_SCALE)
    first10 = validate(shipped.eval(), args.data_root, scale=DEMO_SCALE, limit=10)
    history = json.loads(meta.get("history", "[]"))
    card = {
        "file": DEMO_CHECKPOINT.name,
        "sha256": file_sha256(DEMO_CHECKPOINT),
        "variant": "hr18",
        "parameters": sum(p.numel() for p in shipped.parameters()),
        "storage": "fp16 weights, restored to fp32 on load; the numbers below are of the "
                   "restored fp32 model",
        "data": {"generator": "ocrnet synth", **DEMO_DATA, "train": 1500,
                 "note": "synthetic street scenes in the Cityscapes layout; not real images"},
        "eval_scale": list(DEMO_SCALE),
        "val_mIoU": result["mIoU"], "val_aAcc": result["aAcc"], "val_mAcc": result["mAcc"],
        "val_classes": result["classes"],
        "val_first10_mIoU": first10["mIoU"],  # recomputed by tests/test_demo_model.py
        "val_seconds": round(time.perf_counter() - started, 1),
        "training": {"command": args.train_command, "config": config,
                     "iterations": meta["iter"],
                     "seconds": meta.get("train_seconds_this_run"),
                     "host": "2-core x86-64 CPU (AVX-512), no GPU",
                     "final_loss": history[-1]["loss"] if history else None,
                     "history": history, "note": args.note},
    }
    if started_from is not None:
        card["training"]["started_from"] = started_from
    CARD.write_text(json.dumps(card, indent=1) + "\n")
    print(json.dumps({k: card[k] for k in ("file", "val_mIoU", "parameters")}))


if __name__ == "__main__":
    main()
