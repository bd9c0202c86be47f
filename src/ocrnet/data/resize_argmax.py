"""Labels of bilinearly upsampled logits without the C full-size planes: byte for byte what
mmseg's `resize(logits, size).argmax(0)` gives (torch, `align_corners=False`), in row bands.

Where it applies (`applies`): each output side is a power of two (2, 4, 8, ...) times the
input side, as OCRNet's 1/4-resolution logits are at any input whose sides are multiples of 4,
and the logits are finite. Then torch's source coordinate of an output pixel,
`(dst + 0.5) / r - 0.5`, is exact in binary floating point, and so is that coordinate shifted
by whole source cells: a window of the output that torch computes from the matching window of
the input (the same kernel, the explicit scale r, the leading rows and columns torch would
clamp at the window's edge dropped) holds the very floats of the whole-image resize.

How it saves the work: an interior output pixel is a convex combination of the logits at the
four corners of its source cell (weights in [0, 1] summing to exactly 1), up to a few float32
roundings. Where one class's smallest corner exceeds every other class's largest corner, with
a margin of 32 ulps for those roundings, that class is the argmax of every pixel of the cell,
whatever its weights: the cell's r x r pixels are labelled without interpolating. The other
cells (along class boundaries; about 10% on the demo model) are computed by torch, packed side
by side into one strip per band of cell rows (a band where most cells are undecided is
computed whole), and the borders, r/2 pixels wide, where torch clamps coordinates, by four
small windows. Working set: one band, sized to stay in the L2 cache.

`ocrnet.data.transforms.logits_to_labels` calls this where it applies, else its per-channel
path (other ratios, non-finite or huge logits, tiny images).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import pairwise

import numpy as np

# torch picks a different bilinear kernel (channels-last, other roundings) when the output's
# height + width is at most this, so every window here is made larger than that; it does too
# for exactly 3 channels on one thread, so no window has 3 (and 3-class logits are not banded).
_SMALL_OUTPUT = 128
# Beyond this the resize's arithmetic could overflow to inf (and 0 * inf to NaN): those logits
# go to the per-channel path, which keeps np.argmax's NaN rules.
_HUGE = 1e30
_MARGIN = np.float32(2.0 ** -19)  # 32 ulps of the largest corner: the roundings take < 5
_TINY = np.float32(2.0 ** -120)  # and an absolute floor for subnormal corners
_BAND_BYTES = 1 << 19  # corner bounds of one band of cells: about one core's L2
# torch runs an op on the calling thread up to this many output elements (ATen's GRAIN_SIZE):
# the windows stay below it, and the bands run on Python threads instead.
_GRAIN = 32768


def power_of_two_ratio(n_in: int, n_out: int) -> int | None:
    """r where `n_out == r * n_in` and r is a power of two >= 2, else None."""
    if n_in <= 0 or n_out % n_in:
        return None
    r = n_out // n_in
    return r if r >= 2 and r & (r - 1) == 0 else None


def applies(logits: np.ndarray, size: tuple[int, int]) -> bool:
    """Whether `resized_argmax` gives `logits` (C, h, w) at `size`: power-of-two ratios on
    both sides, an output large enough for torch's general kernel, finite moderate values."""
    channels, h, w = logits.shape[-3:]
    if h < 2 or w < 2 or channels == 3:  # torch would take another kernel for some windows
        return False
    if power_of_two_ratio(h, size[0]) is None or power_of_two_ratio(w, size[1]) is None:
        return False
    if size[0] + size[1] <= _SMALL_OUTPUT or logits.size == 0:
        return False
    # NaN and inf fail both comparisons (a NaN maximum propagates).
    return bool(np.max(logits) < _HUGE) and bool(np.min(logits) > -_HUGE)


def resized_argmax(logits: np.ndarray, size: tuple[int, int], *,
                   threads: int | None = None) -> np.ndarray:
    """(C, h, w) logits -> (H, W) uint8: `resize_logits(logits, size).argmax(0)` exactly,
    for arguments where `applies` is true (the caller checks). The bands run on `threads`
    Python threads (default: torch's intra-op thread count), each torch call small enough
    that torch runs it on the calling thread."""
    import torch

    x = np.ascontiguousarray(logits, dtype=np.float32)
    channels, h, w = x.shape
    height, width = int(size[0]), int(size[1])
    ratios = (height // h, width // w)
    out = np.empty((height, width), np.uint8)
    everything = np.arange(channels)
    tasks: list[Callable[[], None]] = [
        partial(_exact, x, ratios, rows, cols, everything, out)
        for rows, cols in _borders(height, width, *ratios)]
    step = max(1, _BAND_BYTES // (3 * 4 * channels * max(1, w - 1)))
    tasks += [partial(_band, x, ratios, (i0, min(i0 + step, h - 1)), out)
              for i0 in range(0, h - 1, step)]
    workers = max(1, threads or torch.get_num_threads())
    if workers == 1 or len(tasks) == 1:
        for task in tasks:
            task()
    else:  # numpy and torch release the GIL: the bands run side by side
        with ThreadPoolExecutor(workers, thread_name_prefix="ocrnet-argmax") as pool:
            for done in [pool.submit(task) for task in tasks]:
                done.result()
    return out


def _borders(height: int, width: int, ry: int, rx: int) -> list[tuple[tuple[int, int], ...]]:
    """(rows, cols) of the four strips where torch clamps a coordinate to the image: the
    first and last r/2 rows (whole width), then the first and last r/2 columns between them."""
    inner = (ry // 2, height - ry // 2)
    strips = [((0, ry // 2), (0, width)), ((height - ry // 2, height), (0, width)),
              (inner, (0, rx // 2)), (inner, (width - rx // 2, width))]
    return [(r, c) for r, c in strips if r[1] > r[0] and c[1] > c[0]]


def _axis(start: int, stop: int, n_in: int, r: int) -> tuple[int, int, int, int]:
    """For output [start, stop) along one axis: the source range [s, e], the first kept local
    output index and the local output count torch computes.

    The window starts at source index s = floor of the first output's coordinate, so the
    local coordinates are the global ones less s (exact: r is a power of two) and none is
    clamped; it ends at the last output's upper neighbour, so torch's "is there a next
    source index" test answers as for the whole image."""
    first = (start + 0.5) / r - 0.5
    s = int(first) if first > 0 else 0
    last = max((stop - 0.5) / r - 0.5, 0.0)
    e = min(int(last) + 1, n_in - 1)
    if s == e and s > 0:  # never one source index: a 1 x 1 window of more than 3 channels
        s -= 1  # is "channels-last" to torch, which then takes another kernel
    count = stop - r * s
    if count == e - s + 1:  # torch copies an axis whose in and out sizes agree: compute one more
        count += 1
    return s, e, start - r * s, count


def _resize(part: np.ndarray, out_size: tuple[int, int], ratios: tuple[int, int]) -> np.ndarray:
    """torch's bilinear resize of (k, m, n) float32 to (k, *out_size) at the explicit scale
    `ratios` (not m/out), widened where needed so torch keeps its general kernel."""
    import torch

    ky, kx = out_size
    if ky + kx <= _SMALL_OUTPUT:  # extra columns (the caller drops them)
        kx = _SMALL_OUTPUT + 1 - ky
        kx += kx == part.shape[2]  # and never torch's same-size copy
    tensor = torch.from_numpy(np.ascontiguousarray(part))[None]
    return torch.ops.aten.upsample_bilinear2d.default(
        tensor, [ky, kx], False, float(ratios[0]), float(ratios[1]))[0].numpy()


def _exact(x: np.ndarray, ratios: tuple[int, int], rows: tuple[int, int],
           cols: tuple[int, int], channels: np.ndarray, out: np.ndarray) -> None:
    """Labels of output rows x cols among `channels` (ascending), computed from the whole-image
    resize's own floats: windows of the source, each small enough for one torch thread."""
    h, w = x.shape[1:]
    tall = rows[1] - rows[0] >= cols[1] - cols[0]
    across = (cols if tall else rows)[1] - (cols if tall else rows)[0]
    piece = max(16, _GRAIN // (len(channels) * (across + max(ratios))))
    a, b = rows if tall else cols
    for start in range(a, b, piece):
        part = (start, min(start + piece, b))
        r, c = (part, cols) if tall else (rows, part)
        sy, ey, jy, ky = _axis(*r, h, ratios[0])
        sx, ex, jx, kx = _axis(*c, w, ratios[1])
        values = _resize(x[channels, sy:ey + 1, sx:ex + 1], (ky, kx), ratios)
        best = first_argmax(values[:, jy:jy + r[1] - r[0], jx:jx + c[1] - c[0]])
        out[r[0]:r[1], c[0]:c[1]] = channels.astype(np.uint8)[best]  # wraps as argmax's cast


def first_argmax(values: np.ndarray) -> np.ndarray:
    """np.argmax over axis 0 of finite values as uint8 (ties: the first), without the
    transposed copy np.argmax makes for a leading axis."""
    best = values.max(axis=0)
    labels = np.zeros(best.shape, np.uint8)
    mask = np.empty(best.shape, bool)
    for c in range(values.shape[0] - 1, -1, -1):  # the lowest channel writes last
        np.equal(values[c], best, out=mask)
        np.putmask(labels, mask, c & 0xFF)  # as argmax().astype(np.uint8) wraps
    return labels


def cell_labels(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corners (C, n + 1, w) -> the n x (w - 1) cells between them: the class whose lowest
    corner (less the margin) is above every other class's highest corner (plus it), where
    there is one, `decided` where there is, and the classes that can win an undecided cell
    (ascending): only they need computing there."""
    upper, lower = corners[:, :-1], corners[:, 1:]
    vlo, vhi = np.minimum(upper, lower), np.maximum(upper, lower)
    lo = np.minimum(vlo[:, :, :-1], vlo[:, :, 1:])
    hi = np.maximum(vhi[:, :, :-1], vhi[:, :, 1:])
    margin = np.maximum(np.abs(lo), np.abs(hi))
    margin *= _MARGIN
    margin += _TINY
    lo -= margin
    hi += margin
    # The class holding the highest lower bound always reaches it; where another one does
    # too, the cell is undecided.
    reach = hi >= lo.max(axis=0)
    decided = reach.sum(axis=0) == 1
    labels = reach.argmax(axis=0).astype(np.uint8)
    candidates = np.flatnonzero(reach[:, ~decided].any(axis=1))
    return labels, decided, candidates


def _band(x: np.ndarray, ratios: tuple[int, int], cells: tuple[int, int],
          out: np.ndarray) -> None:
    """Label the interior pixels of cell rows [i0, i1): decided cells by their class, the
    undecided ones exactly, among the classes that can win them."""
    (ry, rx), (i0, i1) = ratios, cells
    labels, decided, candidates = cell_labels(x[:, i0:i1 + 1])
    if len(candidates) == 3:  # a fourth (which cannot win) keeps torch on its general kernel
        candidates = np.union1d(candidates, np.setdiff1d(np.arange(len(x)), candidates)[:1])
    rows = slice(ry // 2 + ry * i0, ry // 2 + ry * i1)
    out[rows, rx // 2:out.shape[1] - rx // 2] = np.repeat(np.repeat(labels, ry, 0), rx, 1)
    if decided.all():
        return
    padded = np.zeros((i1 - i0, decided.shape[1] + 1), np.int8)  # no run crosses a row's end
    padded[:, :-1] = ~decided
    edges = np.flatnonzero(np.diff(padded.ravel(), prepend=0))
    row, first = np.divmod(edges[0::2], padded.shape[1])
    _runs(x, ratios, (i0 + row, first, edges[1::2] - edges[0::2]), candidates, out)


def _runs(x: np.ndarray, ratios: tuple[int, int], runs: tuple[np.ndarray, ...],
          channels: np.ndarray, out: np.ndarray) -> None:
    """The pixels of runs of undecided cells (cell row, first cell, length), exactly: each run
    brings its 2 x (L + 1) corners into one strip, side by side, and torch resizes the strip
    a few runs at a time (one torch thread each). A run's pixels take the same source values,
    indices and weights there as in the whole image (each run starts on a whole source cell);
    the pixels between runs mix two runs and are dropped."""
    (ry, rx), (row, first, length) = ratios, runs
    place = np.concatenate(([0], np.cumsum(length + 1)))  # each run's first strip column
    total = int(place[-1])
    col_of = np.repeat(first - place[:-1], length + 1) + np.arange(total)
    row_of = np.repeat(row, length + 1)[None, :] + np.arange(2)[:, None]
    strip = x[channels[:, None, None], row_of[None], col_of[None, None]]  # (k, 2, total)
    span = rx * length  # every run pixel: its column in the strip, its place in the image
    pixel = np.concatenate(([0], np.cumsum(span)))
    within = np.arange(int(pixel[-1])) - np.repeat(pixel[:-1], span)
    src_col = np.repeat(rx * place[:-1] + rx // 2, span) + within
    dst = (np.repeat(ry // 2 + ry * row, span) * out.shape[1]
           + np.repeat(rx // 2 + rx * first, span) + within)
    names = channels.astype(np.uint8)  # wraps as argmax().astype(np.uint8)
    flat = out.reshape(-1)
    limit = max(1, _GRAIN // (len(channels) * (3 * ry // 2) * rx))  # strip columns per call
    group = (place[1:] - 1) // limit
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(group)) + 1, [len(length)]))
    for a, b in pairwise(bounds):
        p0, p1 = int(place[a]), int(place[b])
        # Local rows ry/2 .. 3ry/2 - 1 are the cells'; torch clamps the first ry/2.
        values = _resize(strip[:, :, p0:p1], (3 * ry // 2, rx * (p1 - p0)), ratios)
        labels = names[first_argmax(values[:, ry // 2:ry // 2 + ry])]
        q = slice(int(pixel[a]), int(pixel[b]))
        cols = src_col[q] - rx * p0
        for u in range(ry):
            flat[dst[q] + u * out.shape[1]] = labels[u, cols]
