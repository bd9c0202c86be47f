"""Winograd F(4x4, 3x3): the same function as the convolution it replaces, in every graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import _engine_helpers as h
from ocrnet.errors import OcrnetError
from ocrnet.model import model_from_checkpoint
from ocrnet.model.winograd import WinogradConv3x3, eligible, with_winograd
from ocrnet.package import Package


@pytest.mark.parametrize(("height", "width"), [(16, 24), (13, 22), (1, 5)])
def test_matches_the_convolution_in_float64(height: int, width: int) -> None:
    torch.manual_seed(0)
    weight, bias = torch.randn(7, 5, 3, 3), torch.randn(7)
    x = torch.randn(2, 5, height, width)
    want = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    got = WinogradConv3x3(weight, bias)(x).double()
    assert got.shape == want.shape  # sizes that are not multiples of the tile are cropped back
    assert float((got - want).norm() / want.norm()) < 1e-5


def test_folds_the_batchnorm_after_it() -> None:
    torch.manual_seed(1)
    conv, bn = nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
    bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2), bn.weight.data.normal_()
    bn.bias.data.normal_()
    plain = nn.Sequential(conv, bn).eval()
    x = torch.randn(1, 6, 12, 20)
    with torch.no_grad():
        want, got = plain(x), WinogradConv3x3.from_conv_bn(conv, bn)(x)
    assert float((got - want).norm() / want.norm()) < 1e-5


def test_only_plain_wide_3x3_convolutions_are_eligible() -> None:
    assert eligible(nn.Conv2d(256, 256, 3, padding=1))
    assert not eligible(nn.Conv2d(64, 64, 3, padding=1))  # too narrow to pay for the transforms
    assert not eligible(nn.Conv2d(256, 256, 3, padding=1, stride=2))
    assert not eligible(nn.Conv2d(256, 256, 1))
    assert not eligible(nn.Conv2d(256, 256, 3, padding=2, dilation=2))


def test_ocrnet_rewrite_is_the_ocr_bottleneck_and_keeps_the_logits() -> None:
    model = model_from_checkpoint(h.checkpoint())
    rewritten, names = with_winograd(model)
    assert names == ["decode_head.1.bottleneck.conv"]
    assert isinstance(model.decode_head[1].bottleneck.conv, nn.Conv2d)  # original untouched
    x = torch.from_numpy(h.batch())
    with torch.no_grad():
        want, got = model(x), rewritten(x)
    assert float((got - want).norm() / want.norm()) < 1e-5
    assert bool((got.argmax(1) == want.argmax(1)).all())


@pytest.fixture(scope="module")
def winograd_fp32() -> Package:
    """The one Winograd build of this file: fp32 from the checkpoint at a static shape, where
    `build` chooses the rewrite itself (ONNX Runtime fp32 keeps the exported graph as is)."""
    from ocrnet.build import build_package

    return build_package(h.checkpoint(), h.workdir() / "winograd-onnxruntime-fp32",
                         backend="onnxruntime", shape=h.SHAPE)


def test_exported_graph_runs_and_matches_pytorch(tmp_path: Path, winograd_fp32: Package) -> None:
    from ocrnet.export import export_onnx, verify_onnx

    path = winograd_fp32.path / "model.onnx"
    groups = [a.i for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"
              for a in n.attribute if a.name == "group"]
    assert 36 in groups  # the 36 tile-position products
    verify = verify_onnx(model_from_checkpoint(h.checkpoint()), path, h.SHAPE)
    assert verify["checks"][0]["logits_rel_l2"] <= 1e-5
    assert verify["label_agreement"] >= 0.9999
    with pytest.raises(OcrnetError, match="static height and width"):
        export_onnx(h.checkpoint(), tmp_path / "d.onnx", shape=h.SHAPE, winograd=True,
                    dynamic=True)


def test_build_uses_it_for_float_precisions_only(tmp_path: Path, winograd_fp32: Package) -> None:
    from ocrnet.build import build_package
    from ocrnet.engines import open_model

    fp32 = winograd_fp32
    assert fp32.meta["graph_rewrites"] == {"winograd_f4x4_3x3": ["decode_head.1.bottleneck.conv"]}
    off = build_package(h.checkpoint(), tmp_path / "off", backend="onnxruntime", shape=h.SHAPE,
                        winograd=False)
    assert off.meta["graph_rewrites"] == {}
    labels, logits = h.reference()
    with open_model(fp32.path) as engine:
        out = engine.infer(h.batch(), return_logits=True)
    assert h.rel_l2(out.logits, logits) <= 1e-5
    assert np.mean(out.labels == labels) >= 0.9999
