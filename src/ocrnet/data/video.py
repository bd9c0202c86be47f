"""Video in and out through OpenCV's bundled FFmpeg: frames streamed one at a time.

`VideoReader` decodes a clip frame by frame (one frame in memory at a time, whatever the clip's
length), keeping every `every`-th frame within `start` .. `start + duration` seconds; frames
before the window are grabbed without conversion. A frame's index and time are the source's:
frame i is at i / fps seconds. `VideoWriter` writes an mp4v `.mp4` whole or not at all (in a
temporary folder beside the target, renamed into place when closed), the way every file the
tool writes appears.

Frames are BGR uint8, as `ocrnet.data.transforms.read_image` decodes images, so a frame runs
through exactly the path an image file does.

A damaged clip is reported in our one line only: OpenCV's own log is kept to errors while a
clip is opened and read (its `[ WARN ... cap.cpp ...]` lines are dropped), and FFmpeg's, inside
OpenCV, is quiet (`OPENCV_FFMPEG_LOGLEVEL`, which OpenCV reads once, when the process first uses
FFmpeg; set it yourself, e.g. 24 for FFmpeg's warnings, to see them).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ocrnet.errors import DataError, OcrnetError, OutputError
from ocrnet.fileio import prepare_folder, temp_suffix

#: What `predict` treats as a video rather than an image (any container FFmpeg reads works
#: when named explicitly; these suffixes decide only for inputs that are not images).
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg",
                            ".ts", ".wmv", ".flv", ".3gp"})


#: FFmpeg's log level inside OpenCV unless the environment sets one: AV_LOG_QUIET.
FFMPEG_LOG_LEVEL = "-8"


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[Any]:
    """OpenCV's log kept to errors (FFmpeg's quiet) inside the block; the level is restored.
    Yields the cv2 module."""
    import cv2

    # Read by OpenCV at its first use of FFmpeg in the process, so set before any open.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", FFMPEG_LOG_LEVEL)
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(min(previous, cv2.utils.logging.LOG_LEVEL_ERROR))
    try:
        yield cv2
    finally:
        cv2.utils.logging.setLogLevel(previous)


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """True for an existing file whose suffix is a video container's."""
    p = Path(path)
    return p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()


@dataclass(frozen=True)
class VideoInfo:
    """What the container says: frames per second, size, and frame count (0 if unknown)."""

    path: str
    fps: float
    height: int
    width: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.frames and self.fps else 0.0


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its index in the source, its time in seconds, BGR uint8 pixels."""

    index: int
    time: float
    image: np.ndarray


class VideoReader:
    """Iterate the frames of `path` a window and a step select; a context manager.

    `every`: keep every N-th frame of the window (1: all). `start`, `duration`: the window in
    seconds (`duration` None: to the end). An unreadable file, or a clip (or window) without a
    frame, is a one-line `DataError` naming the file.
    """

    def __init__(self, path: str | os.PathLike[str], *, every: int = 1, start: float = 0.0,
                 duration: float | None = None) -> None:
        import cv2

        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise OcrnetError(f"--every must be a whole number of frames >= 1, got {every!r}")
        if not (math.isfinite(start) and start >= 0):
            raise OcrnetError(f"--start must be >= 0 seconds, got {start}")
        if duration is not None and not (math.isfinite(duration) and duration > 0):
            raise OcrnetError(f"--duration must be > 0 seconds, got {duration}")
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"video {self.path} does not exist or is not a file")
        with _quiet_opencv():
            self._cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
            fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not self._cap.isOpened() or not fps > 0:
            self._cap.release()
            raise DataError(f"cannot read video {self.path}: not a video OpenCV's FFmpeg can "
                            "decode (or it is damaged)")
        self.info = VideoInfo(str(self.path), fps, int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                              int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                              max(0, int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))))
        self.every, self.start, self.duration = every, float(start), duration
        # Frame i is at i / fps: the window's first and (exclusive) last frame indices; the
        # epsilon keeps 2.0 s at 10 fps on frame 20 despite float rounding.
        self.first = math.ceil(self.start * fps - 1e-6)
        self.stop = None if duration is None else math.ceil((self.start + duration) * fps - 1e-6)

    def planned(self) -> int | None:
        """How many frames iteration yields, from the container's count (None if unknown)."""
        end = self.info.frames or None
        if self.stop is not None:
            end = self.stop if end is None else min(end, self.stop)
        return None if end is None else max(0, -(-(end - self.first) // self.every))

    def __iter__(self) -> Iterator[Frame]:
        index, yielded = 0, 0
        while self.stop is None or index < self.stop:
            wanted = index >= self.first and (index - self.first) % self.every == 0
            with _quiet_opencv():
                grabbed = self._cap.grab()  # decodes; the BGR conversion waits for retrieve()
                ok, image = self._cap.retrieve() if grabbed and wanted else (grabbed, None)
            if not ok:
                break
            if wanted:
                yield Frame(index, index / self.info.fps, image)
                yielded += 1
            index += 1
        if not yielded:
            self._no_frames(index)

    def _no_frames(self, seen: int) -> None:
        if seen == 0:
            raise DataError(f"video {self.path} has no frames OpenCV's FFmpeg can decode")
        raise DataError(f"video {self.path} has no frames from --start {self.start:g} s "
                        f"(it ends at {seen / self.info.fps:.3g} s)")

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoWriter:
    """An mp4v `.mp4` at `fps` and (height, width) `size`, renamed into place on `close`.

    Frames are BGR uint8 of that size. On an exception inside `with`, or `abort()`, nothing
    appears at `path`. OpenCV picks the container from the file's suffix, so the frames go to
    a file of the target's name inside a temporary folder (named as `ocrnet.fileio`'s
    temporaries, so a crashed run's leftovers are recognised and cleaned).
    """

    def __init__(self, path: str | os.PathLike[str], fps: float,
                 size: tuple[int, int]) -> None:
        import cv2

        self.path = Path(path)
        prepare_folder(self.path.parent)
        self._tmp = self.path.parent / f".{self.path.name}.tmp-{temp_suffix()}"
        self._tmp.mkdir()
        self._inner = self._tmp / self.path.name
        self.size = (int(size[0]), int(size[1]))
        fourcc = cv2.VideoWriter_fourcc(*"mp4v")
        with _quiet_opencv():
            self._writer = cv2.VideoWriter(str(self._inner), cv2.CAP_FFMPEG, fourcc, float(fps),
                                           (self.size[1], self.size[0]))
        if not self._writer.isOpened():
            self.abort()
            raise OutputError(f"cannot write video {self.path}: OpenCV's FFmpeg has no mp4v "
                              "encoder for it")
        self.frames = 0

    def write(self, frame_bgr: np.ndarray) -> None:
        if frame_bgr.shape[:2] != self.size:
            raise ValueError(f"frame of size {frame_bgr.shape[:2]} in a video of {self.size}")
        self._writer.write(np.ascontiguousarray(frame_bgr))
        self.frames += 1

    def close(self) -> Path:
        """Finish the file and move it to `path`; returns `path`."""
        self._writer.release()
        try:
            os.replace(self._inner, self.path)
        except OSError as err:
            self.abort()
            raise OutputError(f"cannot write video {self.path}: {err.strerror or err}") from None
        shutil.rmtree(self._tmp, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        """Drop what was written; nothing appears at `path`."""
        with contextlib.suppress(Exception):
            self._writer.release()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
