"""Reading checkpoints: the official mmseg file unchanged, bare state dicts, `module.` prefixes.

`torch.load(weights_only=True)` is always tried first: it refuses to execute code from the file.
mmseg's `meta` can hold objects (numpy scalars, config dicts) that the safe loader rejects; for
those we retry with an allow-list of plain numpy types, and only `trust_checkpoint=True` falls
back to full unpickling, which runs whatever code the file contains.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ocrnet.errors import CheckpointError
from ocrnet.fileio import atomic_write_bytes, sha256_file
from ocrnet.model.variants import VARIANTS

_MAX_LISTED = 12


def _safe_globals() -> list[Any]:
    """numpy objects that old checkpoints carry in `meta`; none of them run code on load.

    Pickles written under numpy 1.x name `numpy.core.multiarray.*`; numpy 2 moved those to
    `numpy._core`, so each is registered under both names.
    """
    import numpy as np

    multiarray = getattr(np, "_core", None) or np.core  # type: ignore[attr-defined]
    multiarray = multiarray.multiarray
    allowed: list[Any] = [np.dtype, np.ndarray]
    allowed += [type(np.dtype(t)) for t in ("f4", "f8", "i8", "i4", "u1", "bool")]
    for name in ("_reconstruct", "scalar"):
        func = getattr(multiarray, name, None)
        if func is not None:
            allowed += [func, (func, f"numpy.core.multiarray.{name}")]
    return allowed


#: A legacy (pre-zip) torch file starts with this pickled int; `torch.load` checks it first.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def _checkpoint_format(path: Path) -> str | None:
    """'zip' or 'legacy' when the file is laid out as a torch checkpoint, else None.

    Decided from the container alone, before unpickling anything: random bytes or some other
    pickle are "not a checkpoint", never advice to trust them.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_LEGACY_MAGIC))
        if head.startswith(_LEGACY_MAGIC):
            return "legacy"
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
            if any(n.endswith("/data.pkl") for n in names):
                return "zip"
    except (OSError, zipfile.BadZipFile, ValueError):
        return None
    return None


def read_checkpoint(path: str | Path, *, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Load a checkpoint file into a dict without executing code unless told to trust it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (give the path of a .pth file)")
    if _checkpoint_format(path) is None:
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (neither a torch zip archive nor a legacy torch "
            "file); check the path, or download or copy the file again"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:  # torch raises anything from KeyError to RuntimeError
        if not _is_unpickling_refusal(first):
            raise _unreadable(path, first) from None
        try:
            with torch.serialization.safe_globals(_safe_globals()):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as second:
            if not _is_unpickling_refusal(second):
                raise _unreadable(path, second) from None
            if not trust_checkpoint:
                raise CheckpointError(
                    f"checkpoint {path} holds Python objects that cannot be loaded safely "
                    f"({_refused_global(second)}); if you trust the file's origin, pass "
                    "--trust-checkpoint (trust_checkpoint=True) to unpickle it fully"
                ) from None
            try:
                obj = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as third:
                raise _unreadable(path, third) from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(obj).__name__}, expected a dict with 'state_dict' "
            "or a state dict"
        )
    return dict(obj)


def _is_unpickling_refusal(err: BaseException) -> bool:
    """True when the safe loader refused a global it does not allow (a real checkpoint with
    Python objects in it), as opposed to a corrupt file."""
    text = str(err)
    return ("Unsupported global" in text or "Unsupported class" in text
            or "is not an allowed global" in text)


def _refused_global(err: BaseException) -> str:
    for line in str(err).splitlines():
        if "Unsupported" in line or "allowed global" in line:
            return line.strip().split(" was not ")[0].removeprefix("WeightsUnpickler error: ")[:200]
    return _first_line(err)


def _first_line(err: BaseException) -> str:
    lines = [ln for ln in str(err).splitlines() if ln.strip()]
    return lines[0][:200] if lines else type(err).__name__


def _unreadable(path: Path, err: BaseException) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} cannot be read ({type(err).__name__}: {_first_line(err)}); "
        "the file may be truncated or not a torch checkpoint: download or copy it again"
    )


def extract_state_dict(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, with `module.` (DataParallel) prefixes removed."""
    state: Any = ckpt
    for wrapper in ("state_dict", "model"):
        if wrapper in ckpt:
            state = ckpt[wrapper]
            break
    if not isinstance(state, Mapping):
        raise CheckpointError("checkpoint's 'state_dict' is not a dict of tensors")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        out[key[len("module."):] if key.startswith("module.") else key] = value
    return out


def detect_variant(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Name of the variant whose shapes match (hr18s/hr18/hr48), from widths and depths."""
    for name in VARIANTS:
        expected = _expected_shapes(name)
        if expected.keys() == _model_keys(state_dict) and all(
            tuple(state_dict[k].shape) == shape
            for k, shape in expected.items()
            if not k.endswith(("conv_seg.weight", "conv_seg.bias"))  # any class count
        ):
            return name
    raise CheckpointError(
        "checkpoint does not match any OCRNet variant (" + ", ".join(VARIANTS) + "): "
        "is it an OCRNet-HRNet checkpoint from mmsegmentation?"
    )


def num_classes_of(state_dict: Mapping[str, torch.Tensor]) -> int:
    weight = state_dict.get("decode_head.1.conv_seg.weight")
    if weight is None:
        raise CheckpointError("checkpoint has no 'decode_head.1.conv_seg.weight': not an OCRNet")
    return int(weight.shape[0])


def _model_keys(state_dict: Mapping[str, torch.Tensor]) -> set[str]:
    return {k for k in state_dict if not k.endswith("num_batches_tracked")}


_SHAPES_CACHE: dict[str, dict[str, tuple[int, ...]]] = {}


def _expected_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    if variant not in _SHAPES_CACHE:
        from ocrnet.model.segmentor import OCRNet  # not ocrnet.model: that imports this module
        from ocrnet.model.variants import get_variant

        with torch.device("meta"):
            model = OCRNet(get_variant(variant), num_classes=19)
        _SHAPES_CACHE[variant] = {
            k: tuple(v.shape) for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")
        }
    return _SHAPES_CACHE[variant]


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                           source: str = "checkpoint") -> None:
    """Copy tensors into `model`; any missing / unexpected / mis-shaped key is one clear error."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in own]
    misshaped = [
        f"{k}: {tuple(state_dict[k].shape)} in file, {tuple(own[k].shape)} in model"
        for k in own if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    if missing or unexpected or misshaped:
        parts = []
        for title, keys in (("missing", missing), ("unexpected", unexpected),
                            ("mis-shaped", misshaped)):
            if keys:
                shown = "; ".join(keys[:_MAX_LISTED])
                more = f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
                parts.append(f"{len(keys)} {title}: {shown}{more}")
        raise CheckpointError(f"{source} does not fit the model: " + " | ".join(parts))
    model.load_state_dict({k: v for k, v in state_dict.items()}, strict=False)


def load_checkpoint(model: nn.Module, path: str | Path, *, trust_checkpoint: bool = False) -> dict:
    """Load an mmseg-layout checkpoint (or bare state dict) into `model`, strictly.

    Returns the checkpoint's `meta` (empty if none).
    """
    ckpt = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    state = extract_state_dict(ckpt)
    load_state_dict_strict(model, state, source=f"checkpoint {path}")
    meta = ckpt.get("meta")
    return dict(meta) if isinstance(meta, Mapping) else {}


def describe_checkpoint(path: str | Path, *, trust_checkpoint: bool = False) -> dict[str, Any]:
    """What `ocrnet inspect` prints: variant, parameter count, classes, config text."""
    ckpt = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    state = extract_state_dict(ckpt)
    variant = detect_variant(state)
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), Mapping) else {}
    params = sum(
        v.numel() for k, v in state.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    classes = meta.get("CLASSES") or (meta.get("dataset_meta") or {}).get("classes")
    config = meta.get("config")
    return {
        "file": str(path),
        "sha256": sha256_file(path),
        "variant": variant,
        "parameters": params,
        "tensors": len(state),
        "num_classes": num_classes_of(state),
        "classes": ", ".join(classes) if classes else "(not recorded; Cityscapes order assumed)",
        "meta_keys": ", ".join(sorted(meta)) if meta else "(no meta)",
        "config": config if isinstance(config, str) else None,
    }


def save_checkpoint(path: str | Path, model: nn.Module, meta: Mapping[str, Any] | None = None,
                    **extra: Any) -> None:
    """Save in mmseg's layout (`{'meta', 'state_dict', ...}`), atomically."""
    path = Path(path)
    buf = io.BytesIO()
    # contiguous: a channels_last model's weights would otherwise keep NHWC strides on disk
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save({"meta": dict(meta or {}), "state_dict": state, **extra}, buf)
    atomic_write_bytes(path, buf.getvalue())
