"""Tensors of the Open Inference Protocol v2 (REST) on the wire: JSON `data` and the binary
tensor data extension, both ways. No FastAPI here: bytes in, arrays out, and back.

A request body is a JSON object, or (binary extension) a JSON object of
`Inference-Header-Content-Length` bytes followed by the inputs' raw bytes, in input order, each
of the size its `parameters.binary_data_size` gives (or its shape implies). A `BYTES` tensor's
elements are each a 4-byte little-endian length and that many bytes; in JSON `data` they are
base64 strings here (an encoded image is not text). A single `BYTES` input with neither size nor
length prefix is one element, the whole rest of the body (OpenVINO Model Server's rule, which
makes `curl` requests easy). Malformed requests raise `HttpError(400, ...)`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ocrnet.serve.errors import HttpError

#: v2 datatype -> numpy dtype (fixed-size types only; BYTES is handled apart).
DTYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
          "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
          "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}


@dataclass
class Tensor:
    """One input: `data` is an array of `shape`, or for BYTES a list of the elements."""

    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray | list[bytes]


@dataclass
class InferRequest:
    inputs: list[Tensor]
    #: Requested output name -> binary (True / False), or None where the request left it open.
    outputs: dict[str, bool | None]
    binary_default: bool
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def _bad(message: str) -> HttpError:
    return HttpError(400, message)


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """The inference request in `body` (`header_length`: the Inference-Header-Content-Length)."""
    if header_length is None:
        head, rest = body, b""
    else:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise _bad(f"Inference-Header-Content-Length {header_length!r} is not a byte count "
                       f"within the body's {len(body)} bytes")
        head, rest = body[:int(header_length)], body[int(header_length):]
    try:
        request = json.loads(head)
    except (ValueError, UnicodeDecodeError) as err:
        raise _bad(f"the inference request is not JSON: {err}") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise _bad("the inference request must be a JSON object with an 'inputs' list")
    params = request.get("parameters") or {}
    if not isinstance(params, dict):
        raise _bad("'parameters' must be an object")
    inputs, offset = [], 0
    single = len(request["inputs"]) == 1
    for spec in request["inputs"]:
        tensor, offset = _input(spec, rest, offset, single)
        inputs.append(tensor)
    if offset != len(rest):
        raise _bad(f"the body has {len(rest) - offset} bytes after the inputs' binary data")
    outputs: dict[str, bool | None] = {}
    for spec in request.get("outputs") or []:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise _bad("each requested output must be an object with a 'name'")
        binary = (spec.get("parameters") or {}).get("binary_data")
        outputs[spec["name"]] = None if binary is None else bool(binary)
    request_id = request.get("id")
    return InferRequest(inputs, outputs, bool(params.get("binary_data_output", False)),
                        None if request_id is None else str(request_id), params)


def _input(spec: Any, rest: bytes, offset: int, single: bool) -> tuple[Tensor, int]:
    if not isinstance(spec, dict):
        raise _bad("each input must be an object with 'name', 'shape', 'datatype'")
    name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise _bad("each input needs a 'name' and a 'datatype' (strings)")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool)
                                              and d >= 0 for d in shape):
        raise _bad(f"input {name!r}: 'shape' must be a list of non-negative integers")
    if datatype != "BYTES" and datatype not in DTYPES:
        raise _bad(f"input {name!r}: unknown datatype {datatype!r}")
    count = math.prod(shape)
    size = (spec.get("parameters") or {}).get("binary_data_size")
    if "data" in spec:
        return Tensor(name, datatype, shape, _from_json(name, datatype, shape, spec["data"])), \
            offset
    if size is None and datatype != "BYTES":
        size = count * np.dtype(DTYPES[datatype]).itemsize
    if size is None:  # BYTES without a size: the whole rest is one element (OVMS)
        if not (single and count == 1):
            raise _bad(f"input {name!r}: BYTES binary data needs 'binary_data_size' unless it is "
                       "the only input, of shape [1]")
        return Tensor(name, datatype, shape, [rest[offset:]]), len(rest)
    if not isinstance(size, int) or size < 0 or offset + size > len(rest):
        raise _bad(f"input {name!r}: binary_data_size {size!r} is beyond the body's "
                   f"{len(rest) - offset} remaining bytes")
    raw = rest[offset:offset + size]
    if datatype == "BYTES":
        return Tensor(name, datatype, shape, _split_bytes(name, raw, count)), offset + size
    itemsize = np.dtype(DTYPES[datatype]).itemsize
    if size != count * itemsize:
        raise _bad(f"input {name!r}: {size} bytes of {datatype} do not fill shape {shape}")
    return Tensor(name, datatype, shape,
                  np.frombuffer(raw, DTYPES[datatype]).reshape(shape)), offset + size


def _split_bytes(name: str, raw: bytes, count: int) -> list[bytes]:
    """The elements of a BYTES tensor's binary data (each: uint32 LE length, then the bytes)."""
    items, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise _bad(f"input {name!r}: BYTES data ends inside an element's length")
        (length,) = struct.unpack_from("<I", raw, at)
        if at + 4 + length > len(raw):
            raise _bad(f"input {name!r}: a BYTES element claims {length} bytes, more than left")
        items.append(raw[at + 4:at + 4 + length])
        at += 4 + length
    if len(items) != count:
        raise _bad(f"input {name!r}: {len(items)} BYTES elements for a shape of {count}")
    return items


def _from_json(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray | list[bytes]:
    count = math.prod(shape)
    if datatype == "BYTES":
        flat = data if isinstance(data, list) else [data]
        if len(flat) != count or not all(isinstance(x, str) for x in flat):
            raise _bad(f"input {name!r}: BYTES data must be {count} base64 strings")
        try:
            return [base64.b64decode(x, validate=True) for x in flat]
        except (binascii.Error, ValueError):
            raise _bad(f"input {name!r}: BYTES data in JSON must be base64 strings") from None
    try:
        array = np.asarray(data, dtype=DTYPES[datatype])
    except (ValueError, TypeError, OverflowError) as err:
        raise _bad(f"input {name!r}: data is not {datatype}: {err}") from None
    if array.size != count:
        raise _bad(f"input {name!r}: {array.size} values for shape {shape}")
    return array.reshape(shape)


def encode_response(header: dict[str, Any], outputs: list[tuple[str, str, np.ndarray, bool]]
                    ) -> tuple[bytes, int | None]:
    """The response body for `outputs` (name, datatype, array, binary) and, if any output is
    binary, the length of its JSON part (for Inference-Header-Content-Length)."""
    entries, blobs = [], []
    for name, datatype, array, binary in outputs:
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = np.ascontiguousarray(array).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.ravel().tolist()
        entries.append(entry)
    head = json.dumps({**header, "outputs": entries}, separators=(",", ":")).encode()
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)
