"""`ocrnet serve`'s Open Inference Protocol v2, driven by the real, unmodified `tritonclient.http`
(its defaults: binary tensor data; and `binary_data=False`: JSON), on 127.0.0.1. Labels are
compared with the PNGs `ocrnet predict` wrote for the same images and package (the serve tests'
package, images and predict run, made once per process: tests/_serve_helpers.py), on the
session's shared servers (conftest.py's `serve_main`, named MODEL_NAME, and `serve_tight`)."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("openvino")
httpx = pytest.importorskip("httpx")
triton = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

from _engine_helpers import shared, workdir  # noqa: E402
from _serve_helpers import MODEL_NAME as NAME  # noqa: E402
from _serve_helpers import Server, expected, images, package  # noqa: E402

SAME_SIZE = ("a.png", "b.jpg", "c.bmp")  # 64x128; d.png is 32x64


@pytest.fixture(scope="module")
def server(serve_main: Server) -> Server:
    return serve_main


def client(server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(f"127.0.0.1:{server.port}", network_timeout=120)


def predicted(name: str, kind: str = "labels") -> np.ndarray:
    return cv2.imdecode(np.frombuffer(expected()[name, kind], np.uint8), cv2.IMREAD_UNCHANGED)


def fractions(name: str) -> np.ndarray:
    summary = json.loads(expected()[name, "json"])
    return np.array([c["fraction"] for c in summary["classes"]], np.float32)


def encoded(*names: str) -> np.ndarray:
    return np.array([images()[n].read_bytes() for n in names], dtype=np.object_)


def test_health_metadata_and_readiness_read_by_tritonclient(server: Server) -> None:
    c = client(server)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready(NAME) and c.is_model_ready(NAME, "1")
    assert not c.is_model_ready("other")
    meta = c.get_model_metadata(NAME)
    assert meta["name"] == NAME and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    outputs = {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]}
    assert outputs == {"labels": ("UINT8", [-1, -1, -1]), "labelids": ("UINT8", [-1, -1, -1]),
                       "class_fractions": ("FP32", [-1, 19]),
                       "confidence": ("UINT8", [-1, -1, -1])}
    assert "binary_tensor_data" in c.get_server_metadata()["extensions"]
    assert httpx.get(f"{server.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}
    with pytest.raises(InferenceServerException) as err:
        c.get_model_metadata(NAME, "2")
    assert err.value.status() == "404" and NAME in err.value.message()


def test_infer_with_tritonclient_defaults_binary_equals_predict(server: Server) -> None:
    image = triton.InferInput("image", [len(SAME_SIZE)], "BYTES")
    image.set_data_from_numpy(encoded(*SAME_SIZE))  # binary_data=True by default
    result = client(server).infer(NAME, [image], request_id="r1")
    response = result.get_response()
    assert response["id"] == "r1" and response["model_version"] == "1"
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    labels = result.as_numpy("labels")
    assert labels.dtype == np.uint8 and labels.shape == (3, 64, 128)
    for i, name in enumerate(SAME_SIZE):
        assert labels[i].tobytes() == predicted(name).tobytes(), name
        np.testing.assert_array_equal(result.as_numpy("class_fractions")[i], fractions(name))
    assert result.as_numpy("labelids") is None  # only on request
    # The half-size image: labels at its own size, as predict writes them.
    small = triton.InferInput("image", [1], "BYTES")
    small.set_data_from_numpy(encoded("d.png"))
    out = client(server).infer(NAME, [small], model_version="1",
                               outputs=[triton.InferRequestedOutput("labelids")])
    assert out.as_numpy("labelids")[0].tobytes() == predicted("d.png", "labelids").tobytes()


def test_infer_json_data_with_pixels_equals_predict(server: Server) -> None:
    bgr = np.stack([cv2.imread(str(images()[n]), cv2.IMREAD_COLOR) for n in ("a.png", "c.bmp")])
    image = triton.InferInput("image", list(bgr.shape), "UINT8")
    image.set_data_from_numpy(bgr, binary_data=False)
    outputs = [triton.InferRequestedOutput(n, binary_data=False)
               for n in ("labels", "labelids", "class_fractions")]
    result = client(server).infer(NAME, [image], outputs=outputs)
    assert all("data" in o for o in result.get_response()["outputs"])  # JSON, not binary
    for i, name in enumerate(("a.png", "c.bmp")):
        assert result.as_numpy("labels")[i].tobytes() == predicted(name).tobytes()
        assert result.as_numpy("labelids")[i].tobytes() == \
            predicted(name, "labelids").tobytes()
        np.testing.assert_array_equal(result.as_numpy("class_fractions")[i], fractions(name))
    image.set_data_from_numpy(bgr)  # the same pixels as binary tensor data (read-only buffer)
    labels = client(server).infer(NAME, [image]).as_numpy("labels")
    assert labels.tobytes() == b"".join(predicted(n).tobytes() for n in ("a.png", "c.bmp"))


@shared
def predicted_confidence() -> dict[str, np.ndarray]:
    """Image name -> the confidence PNG `ocrnet predict --confidence` wrote, decoded."""
    from ocrnet.predict import predict

    out = workdir() / "serve-v2-predict-confidence"
    results = predict(package(), [str(p) for p in images().values()], out,
                      confidence=True, progress=False, overwrite=True)
    return {Path(r["image"]).name: cv2.imread(r["confidence"], cv2.IMREAD_UNCHANGED)
            for r in results}


def test_confidence_output_equals_predicts_confidence_png(server: Server) -> None:
    """`confidence` runs predict's step (whole mode, with confidence): its pixels are those of
    predict's PNG, and the labels sent beside it are predict's labels."""
    names = SAME_SIZE[:2]  # each image runs as its own (padded) batch: two keep it short
    image = triton.InferInput("image", [len(names)], "BYTES")
    image.set_data_from_numpy(encoded(*names))
    outputs = [triton.InferRequestedOutput(n) for n in ("confidence", "labels")]
    result = client(server).infer(NAME, [image], outputs=outputs)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["confidence", "labels"]
    conf, labels = result.as_numpy("confidence"), result.as_numpy("labels")
    assert conf.dtype == np.uint8 and conf.shape == (2, 64, 128)
    for i, name in enumerate(names):
        assert conf[i].tobytes() == predicted_confidence()[name].tobytes(), name
        assert labels[i].tobytes() == predicted(name).tobytes(), name
    assert conf.min() >= 13  # p >= 1/19
    # outputs as JSON data, an upscaled image (logits resized back), class_fractions beside it
    small = triton.InferInput("image", [1], "BYTES")
    small.set_data_from_numpy(encoded("d.png"))
    outputs = [triton.InferRequestedOutput(n, binary_data=False)
               for n in ("class_fractions", "confidence")]
    out = client(server).infer(NAME, [small], outputs=outputs)
    assert out.as_numpy("confidence")[0].tobytes() == predicted_confidence()["d.png"].tobytes()
    np.testing.assert_array_equal(out.as_numpy("class_fractions")[0], fractions("d.png"))
    mixed = _bytes_input(images()["a.png"].read_bytes(), images()["d.png"].read_bytes())
    mixed[0]["outputs"] = [{"name": "confidence"}]
    assert "confidence is one [N, H, W]" in assert_v2_error(_infer_raw(server, *mixed), 400)


def test_model_name_must_fit_in_a_url() -> None:
    from ocrnet.errors import ArgumentError
    from ocrnet.serve.config import ServeConfig

    assert ServeConfig(model_name="street").model_name == "street"
    for bad in ("", "a/b"):
        with pytest.raises(ArgumentError, match="model_name"):
            ServeConfig(model_name=bad)


def test_curl_style_request_one_image_after_the_json_header(server: Server) -> None:
    """The README's curl example: the JSON header, then the image's bytes as they are."""
    header = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES"}],
                         "outputs": [{"name": "labels", "parameters": {"binary_data": True}}]})
    response = httpx.post(f"{server.url}/v2/models/{NAME}/infer",
                          content=header.encode() + images()["a.png"].read_bytes(),
                          headers={"Inference-Header-Content-Length": str(len(header))},
                          timeout=60)  # httpx's default 5 s is too short on a busy machine
    assert response.status_code == 200, response.text
    size = int(response.headers["inference-header-content-length"])
    head = json.loads(response.content[:size])
    assert head["outputs"][0]["shape"] == [1, 64, 128]
    assert response.content[size:] == predicted("a.png").tobytes()


def _infer_raw(server: Server, header: dict, blob: bytes = b"") -> httpx.Response:
    head = json.dumps(header).encode()
    return httpx.post(f"{server.url}/v2/models/{NAME}/infer", content=head + blob,
                      headers={"Inference-Header-Content-Length": str(len(head))}, timeout=60)


def _bytes_input(*items: bytes) -> tuple[dict, bytes]:
    blob = b"".join(struct.pack("<I", len(x)) + x for x in items)
    spec = {"name": "image", "datatype": "BYTES", "shape": [len(items)],
            "parameters": {"binary_data_size": len(blob)}}
    return {"inputs": [spec]}, blob


def assert_v2_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    payload = response.json()
    assert set(payload) == {"error"} and payload["error"], payload
    return str(payload["error"])


def test_errors_answer_the_protocols_shape_with_v1s_codes(server: Server) -> None:
    assert_v2_error(_infer_raw(server, *_bytes_input(b"not an image")), 415)
    big = cv2.imencode(".png", np.zeros((2100, 2000, 3), np.uint8))[1].tobytes()
    assert "--max-pixels" in assert_v2_error(_infer_raw(server, *_bytes_input(big)), 413)
    assert_v2_error(httpx.post(f"{server.url}/v2/models/{NAME}/infer", content=b"x" * (2 << 20)),
                    413)
    assert_v2_error(httpx.post(f"{server.url}/v2/models/{NAME}/infer", content=b"{nope"), 400)
    header, blob = _bytes_input(images()["a.png"].read_bytes())
    header["outputs"] = [{"name": "logits"}]
    assert "logits" in assert_v2_error(_infer_raw(server, header, blob), 400)
    assert_v2_error(_infer_raw(server, *_bytes_input(*[b"x"] * 5)), 400)  # > max_batch_size
    mixed = _bytes_input(images()["a.png"].read_bytes(), images()["d.png"].read_bytes())
    assert "size" in assert_v2_error(_infer_raw(server, *mixed), 400)
    assert_v2_error(httpx.post(f"{server.url}/v2/models/other/infer", content=b"{}"), 404)
    with pytest.raises(InferenceServerException) as err:  # the client reads our error
        bad = triton.InferInput("image", [1], "BYTES")
        bad.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
        client(server).infer(NAME, [bad])
    assert err.value.status() == "415" and "cannot decode" in err.value.message()


def test_full_queue_503_and_waiting_too_long_504(serve_tight: Server) -> None:
    tight = serve_tight
    name = package().name  # the default model name: the package folder's
    header, blob = _bytes_input(images()["a.png"].read_bytes())
    head = json.dumps(header).encode()

    async def post_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as http:
            return await asyncio.gather(*(http.post(
                f"{tight.url}/v2/models/{name}/versions/1/infer", content=head + blob,
                headers={"Inference-Header-Content-Length": str(len(head))}) for _ in range(3)))

    answers = asyncio.run(post_all())
    assert sorted(r.status_code for r in answers) == [503, 504, 504]
    for r in answers:
        assert_v2_error(r, r.status_code)
    busy = next(r for r in answers if r.status_code == 503)
    assert int(busy.headers["retry-after"]) >= 1
    assert tight.metric("ocrnet_queue_depth") == 0


def test_wire_format_both_ways_without_a_server() -> None:
    """`v2_tensors` alone: JSON base64 BYTES, length-prefixed binary BYTES, and the answers to
    malformed bodies (each a 400 naming the problem)."""
    from ocrnet.serve.errors import HttpError
    from ocrnet.serve.v2_tensors import encode_response, parse_request

    spec = {"name": "image", "datatype": "BYTES", "shape": [2], "data": ["YWI=", "Yw=="]}
    parsed = parse_request(json.dumps({"inputs": [spec], "id": 7}).encode(), None)
    assert parsed.inputs[0].data == [b"ab", b"c"] and parsed.id == "7"
    header, blob = _bytes_input(b"ab", b"c")
    head = json.dumps({**header, "parameters": {"binary_data_output": True},
                       "outputs": [{"name": "labels"},
                                   {"name": "x", "parameters": {"binary_data": False}}]})
    parsed = parse_request(head.encode() + blob, str(len(head)))
    assert parsed.inputs[0].data == [b"ab", b"c"]
    assert (parsed.binary_default, parsed.outputs) == (True, {"labels": None, "x": False})
    for body, length, problem in (
            (head.encode() + blob + b"!", str(len(head)), "after the inputs"),
            (head.encode() + blob[:-1], str(len(head)), "beyond"),
            (head.encode() + blob, "12x", "not a byte count"),
            (json.dumps({"inputs": [{**spec, "data": ["%%"]}]}).encode(), None, "base64"),
            (json.dumps({"inputs": [{"name": "image", "datatype": "UINT8", "shape": [2],
                                     "data": [1, 300]}]}).encode(), None, "not UINT8")):
        with pytest.raises(HttpError, match=problem) as err:
            parse_request(body, length)
        assert err.value.status == 400
    labels = np.arange(6, dtype=np.uint8).reshape(1, 2, 3)
    content, size = encode_response({"model_name": "m"}, [
        ("labels", "UINT8", labels, True),
        ("class_fractions", "FP32", np.ones((1, 2), np.float32), False)])
    assert size is not None and content[size:] == labels.tobytes()
    outputs = json.loads(content[:size])["outputs"]
    assert outputs[0]["parameters"] == {"binary_data_size": 6} and outputs[1]["data"] == [1, 1]


@pytest.mark.parametrize("error", [None, "boom"])
def test_not_ready_and_not_live_answer_the_protocols_error_shape(error: str | None) -> None:
    """Regression: /v2/health/ready answered {"ready": false, "error"} while the engine loaded
    (the fuzz test caught it under load): every v2 error is {"error"} alone."""
    import threading
    from types import SimpleNamespace

    from ocrnet.serve import v2

    service = SimpleNamespace(ready=threading.Event(), error=error)
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(service=service)))
    answer = asyncio.run(v2.ready(request))  # type: ignore[arg-type]
    assert answer.status_code == 503 and set(json.loads(answer.body)) == {"error"}
    if error:
        answer = asyncio.run(v2.live(request))  # type: ignore[arg-type]
        assert answer.status_code == 500 and set(json.loads(answer.body)) == {"error"}
