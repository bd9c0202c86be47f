"""The trainer learns, checkpoints in mmseg's layout, and resumes where a killed run stopped."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ocrnet.data.synthetic import write_dataset
from ocrnet.model import build_model, load_checkpoint
from ocrnet.train import (
    TrainConfig,
    learning_rate,
    make_training_sample,
    segmentation_loss,
    train,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, train=4, val=2, size=(64, 128), seed=3, workers=1, progress=False)
    return root


def _config(dataset, out, **kw):
    base = dict(data_root=str(dataset), out_dir=str(out), variant="hr18s", iters=3, batch_size=2,
                crop=(32, 64), scale=(128, 64), ratio_range=(0.75, 1.25), warmup_iters=1,
                checkpoint_interval=1, workers=1, val_limit=2)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_matches_mmseg_definition():
    logits = torch.randn(2, 19, 4, 4)
    target = torch.randint(0, 19, (2, 8, 8))
    target[0, 0, :] = 255
    up = torch.nn.functional.interpolate(logits, size=(8, 8), mode="bilinear",
                                         align_corners=False)
    per_pixel = torch.nn.functional.cross_entropy(up, target, ignore_index=255, reduction="none")
    # mmseg averages over all pixels, ignored ones counting as zero (avg_non_ignore=False)
    assert torch.allclose(segmentation_loss(logits, target), per_pixel.sum() / target.numel())


def test_poly_schedule_with_warmup():
    cfg = TrainConfig(data_root="", out_dir="", iters=100, lr=0.01, min_lr=1e-4, warmup_iters=10)
    assert learning_rate(cfg, 0) == pytest.approx(0.1 * 0.01, rel=1e-6)
    assert learning_rate(cfg, 50) == pytest.approx((0.01 - 1e-4) * 0.5**0.9 + 1e-4)
    assert learning_rate(cfg, 100) == pytest.approx(1e-4)


def test_training_sample_is_cropped_padded_and_reproducible(dataset):
    from ocrnet.data.cityscapes import discover

    cfg = _config(dataset, "unused", crop=(96, 160))
    sample = discover(dataset, "train")[0]
    img1, lab1 = make_training_sample(sample, cfg, np.random.default_rng(7))
    img2, lab2 = make_training_sample(sample, cfg, np.random.default_rng(7))
    assert img1.shape == (3, 96, 160) and lab1.shape == (96, 160)
    assert np.array_equal(img1, img2) and np.array_equal(lab1, lab2)
    assert (lab1 == 255).any()  # the image is smaller than the crop: padding is ignored


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = build_model("hr18s").train()
    images = torch.randn(2, 3, 32, 32)
    target = (images[:, 0] > 0).long() * 13  # a learnable two-class pattern
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        ocr, aux = model.forward_heads(images)
        loss = segmentation_loss(ocr, target) + 0.4 * segmentation_loss(aux, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_killed_run_resumes_to_the_same_weights(dataset, tmp_path):
    torch.set_num_threads(1)  # bitwise-stable CPU reductions for the comparison
    straight = train(_config(dataset, tmp_path / "a"), progress=False)
    stopped = train(_config(dataset, tmp_path / "b"), progress=False, stop_at=1)
    assert stopped.name == "latest.pth"
    resumed = train(_config(dataset, tmp_path / "b"), progress=False)
    a, b = build_model("hr18s"), build_model("hr18s")
    meta = load_checkpoint(a, straight)
    load_checkpoint(b, resumed)
    assert meta["iter"] == 3 and "config" in meta
    for key, value in a.state_dict().items():
        assert torch.allclose(value.float(), b.state_dict()[key].float(), atol=1e-5), key


def test_fine_tune_from_weights_in_bf16(dataset, tmp_path):
    """--init starts from a checkpoint's weights (not from scratch), --amp bf16 trains and saves
    plain contiguous fp32 weights that load anywhere."""
    from ocrnet.model import save_checkpoint

    torch.manual_seed(123)  # weights unlike the seed-0 initialisation train() starts from
    init = tmp_path / "init.pth"
    save_checkpoint(init, build_model("hr18s"))
    tuned = train(_config(dataset, tmp_path / "b", iters=1, lr=1e-4, init=str(init), amp="bf16"),
                  progress=False)
    start, end = build_model("hr18s"), build_model("hr18s")
    load_checkpoint(start, init)
    meta = load_checkpoint(end, tuned)
    assert '"amp": "bf16"' in meta["config"]
    state = torch.load(tuned, weights_only=False)["state_dict"]
    assert all(v.is_contiguous() and v.dtype == torch.float32
               for v in state.values() if v.is_floating_point())
    torch.manual_seed(0)
    scratch = build_model("hr18s").state_dict()
    key = "backbone.conv1.weight"
    moved = float((end.state_dict()[key] - start.state_dict()[key]).abs().max())
    assert 0 < moved < 1e-3  # it trained, a small step from the given weights...
    assert float((end.state_dict()[key] - scratch[key]).abs().max()) > 1e-2  # ...not scratch


def test_unknown_amp_is_an_error(dataset, tmp_path):
    from ocrnet.errors import OcrnetError

    with pytest.raises(OcrnetError, match="valid: fp32, bf16"):
        train(_config(dataset, tmp_path, amp="fp16"), progress=False)
