"""`predict` on a video: frames through the image kernel, overlay clip, per-frame PNGs and JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ocrnet.data.video import VideoReader
from test_video import write_clip


@pytest.fixture(scope="module")
def engine():
    from _engine_helpers import checkpoint
    from ocrnet.engines import open_model

    with open_model(checkpoint()) as opened:
        yield opened


def test_frames_equal_predict_on_the_frame_as_png(tmp_path: Path, engine):
    from ocrnet.predict import predict
    from ocrnet.predict_video import predict_video
    from ocrnet.visualize import write_png

    clip = write_clip(tmp_path / "clip.mp4", 6)
    # --scale at the clip's size: mmseg's 2048x1024 would upscale these small frames
    record = predict_video(engine, clip, tmp_path / "out", every=2, overlay=True, frames=True,
                           confidence=True, progress=False, scale="80x48")
    assert [r["index"] for r in record["frames"]] == [0, 2, 4]
    assert record["mode"] == "whole" and record["summary"]["frames"] == 3
    assert json.loads(Path(record["json"]).read_text())["frames"][1]["index"] == 2
    assert abs(sum(record["frames"][0]["fractions"]) - 1) < 1e-4
    # the frame decoded from the clip (lossless PNG) through predict gives the same label bytes
    frame = next(f for f in VideoReader(clip) if f.index == 2)
    png = write_png(tmp_path / "frame.png", frame.image[:, :, ::-1])
    (result,) = predict(engine, png, tmp_path / "png", progress=False, scale="80x48")
    assert Path(result["labels"]).read_bytes() == \
        Path(record["frames"][1]["labels"]).read_bytes()
    conf = Path(record["frames"][1]["confidence"])
    assert conf.name == "clip_000002_confidence.png"
    with VideoReader(record["overlay"]) as out:
        assert (out.info.height, out.info.width) == (48, 80) and out.info.fps == 5.0
        assert len(list(out)) == 3


def test_slide_on_video_and_a_bad_clip(tmp_path: Path, engine):
    from ocrnet.errors import DataError
    from ocrnet.predict_video import predict_video

    clip = write_clip(tmp_path / "clip.mp4", 2)
    record = predict_video(engine, clip, tmp_path / "out", mode="slide", crop="32x48",
                           stride="16x24", progress=False, scale="80x48")
    assert record["crop"] == "32x48" and len(record["frames"]) == 2
    assert not list((tmp_path / "out").glob("*.png"))  # no --frames: only the JSON
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(DataError, match=r"cannot read video .*bad\.mp4"):
        predict_video(engine, bad, tmp_path / "out2", progress=False)
    assert np.isfinite(record["summary"]["seconds"])


def test_a_broken_clip_prints_our_one_line_only(tmp_path: Path):
    """Regression: OpenCV printed FFmpeg's `moov atom not found` and its own `[ WARN ...
    cap.cpp ...]` to stderr before our error. A fresh process, as FFmpeg's level is read once."""
    from _engine_helpers import checkpoint

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\0" * 64)
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENCV_FFMPEG_LOGLEVEL", "OPENCV_FFMPEG_DEBUG", "OPENCV_LOG_LEVEL")}
    done = subprocess.run([sys.executable, "-m", "ocrnet", "predict", str(checkpoint()),
                           str(bad), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, env=env)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert "WARN" not in done.stderr and f"cannot read video {bad}" in lines[0]
