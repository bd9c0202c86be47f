"""A minimal, honest trainer for OCRNet on a Cityscapes-layout dataset.

What mmseg does for this model, at a scale a CPU can run: loss = CE(OCR logits) + 0.4 x CE(FCN
logits), both upsampled to the label size, ignore 255, averaged over all pixels (mmseg's
`avg_non_ignore=False`); SGD or AdamW with a linear warm-up and a poly schedule; random
keep-ratio rescale, crop (mmseg's `cat_max_ratio`), flip and photometric distortion. Checkpoints
use mmseg's layout (`meta`, `state_dict`, `optimizer`), so `load_checkpoint` reads them and a
killed run resumes from the last one with the same data order.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ocrnet.data.cityscapes import CLASSES, IGNORE_INDEX, PALETTE, Sample, discover, read_label
from ocrnet.data.loader import Loader
from ocrnet.data.transforms import normalize, read_image, rescale_size
from ocrnet.errors import ArgumentError, CheckpointError, OcrnetError, check_int
from ocrnet.fileio import prepare_folder
from ocrnet.metrics import ConfusionMatrix
from ocrnet.model import build_model, extract_state_dict, read_checkpoint, save_checkpoint
from ocrnet.model.checkpoint import load_state_dict_strict

AMP_MODES = ("fp32", "bf16")  # TrainConfig.amp: the forward pass's precision


@dataclass
class TrainConfig:
    data_root: str
    out_dir: str
    variant: str = "hr18"
    iters: int = 1000
    batch_size: int = 8
    crop: tuple[int, int] = (256, 256)  # (H, W)
    scale: tuple[int, int] = (512, 256)  # (long, short) base size of the keep-ratio resize
    ratio_range: tuple[float, float] = (0.5, 2.0)
    optimizer: str = "adamw"  # "sgd" (mmseg's) or "adamw" (converges faster from scratch)
    lr: float = 2e-3
    weight_decay: float = 1e-2
    momentum: float = 0.9
    power: float = 0.9
    min_lr: float = 1e-5
    warmup_iters: int = 50
    aux_weight: float = 0.4
    seed: int = 0
    checkpoint_interval: int = 100
    val_interval: int = 0  # 0: validate only at the end
    val_limit: int = 50
    threads: int | None = None
    workers: int = 2
    init: str | None = None  # weights to start from (mmseg's load_from); optimizer starts fresh
    amp: str = "fp32"  # "bf16": autocast forward in bfloat16 (about 2x faster on AVX-512 BF16)
    history: list[dict[str, Any]] = field(default_factory=list)


def check_config(cfg: TrainConfig) -> None:
    """Refuse settings that cannot train (or would write an untrained `final.pth`), before any
    work: the same `ArgumentError` from Python and from the CLI."""
    check_int(cfg.iters, "iters")
    check_int(cfg.batch_size, "batch_size")
    check_int(cfg.workers, "workers")
    check_int(cfg.checkpoint_interval, "checkpoint_interval")
    check_int(cfg.val_interval, "val_interval", minimum=0)
    check_int(cfg.val_limit, "val_limit")
    check_int(cfg.warmup_iters, "warmup_iters", minimum=0)
    if cfg.threads is not None:
        check_int(cfg.threads, "threads")
    for name in ("crop", "scale"):
        value = getattr(cfg, name)
        if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                  for v in value):
            raise ArgumentError(f"{name} must be two positive integers, got {value!r}")
    for name in ("lr", "min_lr", "weight_decay", "momentum", "power", "aux_weight"):
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ArgumentError(f"{name} must be a finite number >= 0, got {value!r}")
    if not cfg.lr > 0:
        raise ArgumentError(f"lr must be > 0, got {cfg.lr!r}")
    low, high = cfg.ratio_range
    if not 0 < low <= high:
        raise ArgumentError(f"ratio_range must be 0 < low <= high, got {cfg.ratio_range!r}")


# --- augmentation (numpy/cv2, one rng per sample so runs are reproducible) --------------------
def _random_resize(img: np.ndarray, label: np.ndarray, cfg: TrainConfig,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    ratio = rng.uniform(*cfg.ratio_range)
    target = (int(cfg.scale[0] * ratio), int(cfg.scale[1] * ratio))
    h, w = img.shape[:2]
    new_w, new_h = rescale_size(w, h, target)
    img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    return img, label


def _random_crop(img: np.ndarray, label: np.ndarray, crop: tuple[int, int],
                 rng: np.random.Generator, cat_max_ratio: float = 0.75) -> tuple[np.ndarray, ...]:
    """mmseg's RandomCrop: retry up to 10 times while one class fills > cat_max_ratio."""
    h, w = img.shape[:2]
    ch, cw = min(crop[0], h), min(crop[1], w)
    for _ in range(10):
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        patch = label[y0:y0 + ch, x0:x0 + cw]
        _, counts = np.unique(patch[patch != IGNORE_INDEX], return_counts=True)
        if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
            break
    return img[y0:y0 + ch, x0:x0 + cw], label[y0:y0 + ch, x0:x0 + cw]


def _photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation and hue jitter (mmseg PhotoMetricDistortion ranges)."""
    out = img.astype(np.float32)
    if rng.random() < 0.5:
        out += rng.uniform(-32, 32)
    if rng.random() < 0.5:
        out *= rng.uniform(0.5, 1.5)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV).astype(np.float32)
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.5), 0, 255)
        if rng.random() < 0.5:
            hsv[..., 0] = (hsv[..., 0] + rng.integers(-18, 19)) % 180
        out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
    return out


def make_training_sample(sample: Sample, cfg: TrainConfig,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(3, H, W) normalized image and (H, W) int64 label, padded to the crop size."""
    img = read_image(sample.image)
    label = read_label(sample.label, sample.label_format or "trainIds")
    img, label = _random_resize(img, label, cfg, rng)
    img, label = _random_crop(img, label, cfg.crop, rng)
    if rng.random() < 0.5:
        img, label = img[:, ::-1], label[:, ::-1]
    chw = normalize(_photometric(np.ascontiguousarray(img), rng))
    ch, cw = cfg.crop
    # mmseg pads after normalisation: image with 0, label with the ignore index
    padded = np.zeros((3, ch, cw), np.float32)
    padded[:, : chw.shape[1], : chw.shape[2]] = chw
    target = np.full((ch, cw), IGNORE_INDEX, np.int64)
    target[: label.shape[0], : label.shape[1]] = label
    return padded, target


def _batches(samples: list[Sample], cfg: TrainConfig, start_iter: int
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batch i depends only on (seed, i): resuming at any iteration gives the same data."""

    def build(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch_len = len(samples) // cfg.batch_size or 1
        epoch, pos = divmod(i, epoch_len)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(samples))
        picks = [order[(pos * cfg.batch_size + k) % len(samples)] for k in range(cfg.batch_size)]
        items = [make_training_sample(samples[j], cfg, np.random.default_rng([cfg.seed, i, k]))
                 for k, j in enumerate(picks)]
        return (torch.from_numpy(np.stack([a for a, _ in items])),
                torch.from_numpy(np.stack([b for _, b in items])))

    with ThreadPoolExecutor(max(1, cfg.workers)) as pool:
        pending = [pool.submit(build, i) for i in range(start_iter, min(start_iter + 2, cfg.iters))]
        for i in range(start_iter, cfg.iters):
            batch = pending.pop(0).result()
            if i + 2 < cfg.iters:
                pending.append(pool.submit(build, i + 2))
            yield batch


# --- loss, schedule, optimizer --------------------------------------------------------------
def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mmseg CrossEntropyLoss: logits resized to the label, ignore 255, mean over all pixels."""
    logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    per_pixel = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="none")
    return per_pixel.mean()


def learning_rate(cfg: TrainConfig, it: int) -> float:
    """Linear warm-up, then mmseg's PolyLR: (lr - min_lr) * (1 - it/iters)^power + min_lr."""
    poly = (cfg.lr - cfg.min_lr) * (1 - it / cfg.iters) ** cfg.power + cfg.min_lr
    if it < cfg.warmup_iters:
        return poly * (0.1 + 0.9 * it / cfg.warmup_iters)
    return poly


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise OcrnetError(f"unknown optimizer {cfg.optimizer!r}; valid: sgd, adamw")


# --- validation -------------------------------------------------------------------------------
@torch.no_grad()
def validate(model: torch.nn.Module, data_root: str, *, scale: tuple[int, int],
             limit: int | None = None, split: str = "val") -> dict[str, Any]:
    """mIoU of the model on a split, with eval preprocessing (logits resized back, argmax)."""
    was_training = model.training
    model.eval()
    samples = discover(data_root, split)[:limit]
    confusion = ConfusionMatrix(len(CLASSES))
    for batch in Loader(samples, batch_size=1, scale=scale):
        logits = model(torch.from_numpy(batch.images))
        for k, label in enumerate(batch.labels):
            up = F.interpolate(logits[k:k + 1], size=label.shape, mode="bilinear",
                               align_corners=False)
            confusion.update(up.argmax(1)[0].numpy().astype(np.uint8), label)
    model.train(was_training)
    return confusion.results(CLASSES).to_json()


# --- the loop ---------------------------------------------------------------------------------
def train(cfg: TrainConfig, *, resume: bool = True, progress: bool = True,
          stop_at: int | None = None, trust_checkpoint: bool = False) -> Path:
    """Train, checkpointing to `out_dir/latest.pth`; returns the final checkpoint's path.

    `trust_checkpoint` allows full unpickling of `cfg.init` (it runs code from that file).

    `stop_at` ends this run early after that iteration (saving `latest.pth`), as a kill would;
    a later call with `resume=True` carries on with the same schedule and data order.
    """
    from tqdm import tqdm

    check_config(cfg)
    out = prepare_folder(cfg.out_dir)  # before any work: a bad --out-dir fails now
    samples = discover(cfg.data_root, "train")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = _initial_model(cfg, trust_checkpoint)
    optimizer = _optimizer(model, cfg)
    latest = out / "latest.pth"
    start = _resume(latest, model, optimizer, cfg) if resume and latest.exists() else 0
    model.train()
    bar = tqdm(total=cfg.iters, initial=start, desc="train", unit="it", disable=not progress,
               dynamic_ncols=True)
    started = time.perf_counter()
    running: float | None = None
    for it, (images, target) in enumerate(_batches(samples, cfg, start), start=start):
        lr = learning_rate(cfg, it)
        loss = _step(model, optimizer, images, target, cfg, lr, it)
        running = loss if running is None else 0.9 * running + 0.1 * loss
        bar.set_postfix(loss=f"{running:.3f}", lr=f"{lr:.2e}")
        bar.update(1)
        done = it + 1
        record: dict[str, Any] | None = None
        if cfg.val_interval and done % cfg.val_interval == 0 and done < cfg.iters:
            result = validate(model, cfg.data_root, scale=cfg.scale, limit=cfg.val_limit)
            record = {"iter": done, "loss": running, "mIoU": result["mIoU"]}
            bar.write(f"iter {done}: loss {running:.3f}, val mIoU {result['mIoU']:.2f}")
        elif done % 10 == 0:
            record = {"iter": done, "loss": running}
        if record:
            cfg.history.append(record)
        if done % cfg.checkpoint_interval == 0 or done in (cfg.iters, stop_at):
            _save(latest, model, optimizer, cfg, done, time.perf_counter() - started)
        if done == stop_at:
            bar.close()
            return latest
    bar.close()
    final = out / "final.pth"
    _save(final, model, None, cfg, cfg.iters, time.perf_counter() - started)
    return final


def _initial_model(cfg: TrainConfig, trust_checkpoint: bool) -> torch.nn.Module:
    """A fresh model, or `cfg.init`'s weights; NHWC for bf16."""
    if cfg.amp not in AMP_MODES:
        raise OcrnetError(f"unknown --amp {cfg.amp!r}; valid: {', '.join(AMP_MODES)}")
    model = build_model(cfg.variant, num_classes=len(CLASSES))
    if cfg.init:
        init = read_checkpoint(cfg.init, trust_checkpoint=trust_checkpoint)
        load_state_dict_strict(model, extract_state_dict(init), source=cfg.init)
    if cfg.amp == "bf16":
        # oneDNN's bf16 convolutions are fastest with NHWC activations and weights
        model = model.to(memory_format=torch.channels_last)
    return model


def _resume(latest: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            cfg: TrainConfig) -> int:
    """Load `latest.pth` into the model and optimizer; the iteration to carry on from."""
    ckpt = read_checkpoint(latest)
    load_state_dict_strict(model, extract_state_dict(ckpt), source=str(latest))
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
        meta = ckpt["meta"]
        start = int(meta["iter"])
        cfg.history = list(json.loads(meta.get("history", "[]")))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(
            f"{latest} is not a training checkpoint this tool can resume from ({err!r}); "
            "move it away or train with --no-resume") from None
    return start


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
          target: torch.Tensor, cfg: TrainConfig, lr: float, it: int) -> float:
    """One optimisation step at learning rate `lr`; the loss."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    if cfg.amp == "bf16":
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
        ocr_logits, aux_logits = model.forward_heads(images)
    # the loss (and its softmax) in fp32 whatever the forward ran in
    loss = segmentation_loss(ocr_logits.float(), target)
    loss = loss + cfg.aux_weight * segmentation_loss(aux_logits.float(), target)
    if not math.isfinite(loss.item()):
        raise OcrnetError(f"training diverged at iteration {it} (loss {loss.item()}); "
                          "lower --lr")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def _save(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
          cfg: TrainConfig, it: int, seconds: float) -> None:
    config = {k: v for k, v in asdict(cfg).items() if k != "history"}
    meta = {
        "iter": it,
        "config": json.dumps(config, indent=1),
        "CLASSES": CLASSES,
        "PALETTE": [list(c) for c in PALETTE],
        "history": json.dumps(cfg.history),
        "train_seconds_this_run": round(seconds, 1),
        "torch": str(torch.__version__),
        "host_cpus": os.cpu_count(),
    }
    extra = {"optimizer": optimizer.state_dict()} if optimizer is not None else {}
    save_checkpoint(path, model, meta, **extra)
