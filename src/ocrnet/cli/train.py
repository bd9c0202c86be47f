"""`ocrnet train --data-root DIR --out-dir DIR`: mmseg losses, resumable checkpoints."""

from __future__ import annotations

import argparse

from ocrnet.cli.options import add_trust, non_negative_int, positive_float, positive_int
from ocrnet.shapes import scale_arg, size_arg


def register(sub: argparse._SubParsersAction) -> None:
    # Defaults live in ocrnet.train.TrainConfig alone (not imported here: it pulls in torch);
    # options the user leaves out are simply not passed.
    p = sub.add_parser("train", help="train OCRNet on a Cityscapes-layout dataset (mmseg losses)",
                       argument_default=argparse.SUPPRESS)
    p.add_argument("--data-root", required=True, help="Cityscapes-layout root (train split used)")
    p.add_argument("--out-dir", required=True, help="checkpoints go here (latest.pth, final.pth)")
    p.add_argument("--variant", help="hr18s, hr18 (default) or hr48")
    p.add_argument("--iters", type=positive_int, help="iterations (default 1000)")
    p.add_argument("--batch-size", type=positive_int, help="images per iteration (default 8)")
    p.add_argument("--crop", type=size_arg, metavar="HxW",
                   help="random crop HEIGHTxWIDTH (default 256x256)")
    p.add_argument("--scale", type=scale_arg, metavar="WxH",
                   help="base keep-ratio scale WIDTHxHEIGHT before --ratio (default 512x256)")
    p.add_argument("--ratio", nargs=2, type=positive_float, metavar=("MIN", "MAX"),
                   help="random rescale range (default 0.5 2.0)")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], help="default adamw")
    p.add_argument("--lr", type=positive_float, help="peak learning rate (default 2e-3)")
    p.add_argument("--weight-decay", type=float, help="default 1e-2")
    p.add_argument("--warmup-iters", type=non_negative_int,
                   help="linear warm-up iterations (default 50)")
    p.add_argument("--seed", type=int, help="data order and augmentation seed (default 0)")
    p.add_argument("--checkpoint-interval", type=positive_int,
                   help="save latest.pth every N (default 100)")
    p.add_argument("--val-interval", type=positive_int,
                   help="validate every N iterations (default: end)")
    p.add_argument("--val-limit", type=positive_int, help="val images per validation (default 50)")
    p.add_argument("--threads", type=positive_int, help="torch threads (default: torch's)")
    p.add_argument("--init", help="start from these weights (fine-tune); the optimizer starts "
                                  "fresh. Ignored when resuming from latest.pth")
    p.add_argument("--amp", choices=["fp32", "bf16"],
                   help="forward precision: fp32 (default) or bf16 autocast (~2x faster on "
                        "CPUs with AVX-512 BF16; the loss stays fp32)")
    p.add_argument("--no-resume", action="store_true", help="start over even if latest.pth exists")
    p.add_argument("--no-progress", action="store_true")
    add_trust(p, package=False)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ocrnet.model import model_from_checkpoint
    from ocrnet.train import TrainConfig, train, validate

    opts = dict(vars(args))
    for name in ("handler", "verb", "no_resume", "no_progress", "trust_checkpoint"):
        opts.pop(name, None)
    if "crop" in opts:
        opts["crop"] = tuple(opts["crop"])  # (H, W)
    if "scale" in opts:
        opts["scale"] = tuple(opts["scale"])  # (W, H)
    if "ratio" in opts:
        opts["ratio_range"] = tuple(opts.pop("ratio"))
    cfg = TrainConfig(**opts)
    final = train(cfg, resume=not getattr(args, "no_resume", False),
                  progress=not getattr(args, "no_progress", False),
                  trust_checkpoint=getattr(args, "trust_checkpoint", False))
    result = validate(model_from_checkpoint(final), cfg.data_root, scale=cfg.scale)
    print(json.dumps({"checkpoint": str(final), "val_mIoU": result["mIoU"]}))
    scale = "x".join(map(str, cfg.scale))
    print(f"next: ocrnet eval {final} --data-root {cfg.data_root} --scale {scale}")
    return 0
