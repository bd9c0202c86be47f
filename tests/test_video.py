"""Video in and out (ocrnet.data.video): streamed frames, the window and step, one-line errors,
the writer's whole-or-nothing file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ocrnet.data.video import VideoReader, VideoWriter, is_video_file
from ocrnet.errors import DataError, OcrnetError

FPS = 10.0
SIZE = (48, 80)  # HxW


def write_clip(path: Path, frames: int, fps: float = FPS) -> Path:
    """A clip of generated street scenes (the demo's generator), one scene per frame."""
    from ocrnet.data.synthetic import generate_scene

    bgr = [np.ascontiguousarray(generate_scene(seed, *SIZE)[0][:, :, ::-1]) for seed in range(3)]
    with VideoWriter(path, fps, SIZE) as out:
        for i in range(frames):
            out.write(bgr[i % 3])
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("video") / "clip.mp4", 25)


def test_reads_every_frame_with_index_time_and_size(clip: Path):
    with VideoReader(clip) as reader:
        assert (reader.info.fps, reader.info.height, reader.info.width) == (FPS, *SIZE)
        assert reader.planned() == 25
        frames = list(reader)
    assert [f.index for f in frames] == list(range(25))
    assert frames[7].time == pytest.approx(0.7)
    assert frames[0].image.shape == (*SIZE, 3) and frames[0].image.dtype == np.uint8
    assert is_video_file(clip) and not is_video_file(clip.with_name("missing.mp4"))


def test_window_and_step(clip: Path):
    reader = VideoReader(clip, every=3, start=1.0, duration=1.2)
    # frames 10..21 (1.0 s <= t < 2.2 s), every third: 10, 13, 16, 19
    assert [f.index for f in reader] == [10, 13, 16, 19]
    assert reader.planned() == 4
    past_end = VideoReader(clip, start=1.0 + 0.5)
    assert [f.index for f in past_end][:1] == [15]


def test_decoded_frames_are_stable(clip: Path):
    """Two decodes give the same pixels (what 'predict on a frame saved as PNG' relies on)."""
    first = [f.image for f in VideoReader(clip, every=8)]
    again = [f.image for f in VideoReader(clip, every=8)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: d / "missing.mp4", "does not exist"),
    (lambda d: _bytes(d / "junk.mp4", b"not a video" * 20), "cannot read video"),
])
def test_unreadable_video_is_one_line(tmp_path: Path, make, message: str):
    path = make(tmp_path)
    with pytest.raises(DataError, match=message) as err:
        VideoReader(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_no_frames_in_the_window(clip: Path):
    with pytest.raises(DataError, match=r"no frames from --start 9 s \(it ends at 2\.5 s\)"):
        list(VideoReader(clip, start=9))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"every": 0}, "--every"), ({"start": -1.0}, "--start"), ({"duration": 0.0}, "--duration"),
])
def test_bad_options(clip: Path, kwargs: dict, message: str):
    with pytest.raises(OcrnetError, match=message):
        VideoReader(clip, **kwargs)


def test_writer_leaves_nothing_on_error(tmp_path: Path):
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError), VideoWriter(target, FPS, SIZE) as out:
        out.write(np.zeros((*SIZE, 3), np.uint8))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="frame of size"), VideoWriter(target, FPS, SIZE) as out:
        out.write(np.zeros((10, 10, 3), np.uint8))
    assert not target.exists()


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
