"""Check `ocrnet serve`'s /v2 with KServe's own `InferenceRESTClient` (protocol v2), unmodified.

kserve pins psutil<6, protobuf<7, pandas<3 and python-dateutil<3, below what ocrnet's venv has,
so it is not a test extra: run this from a separate venv that has only kserve, against a running
server:

    python3 -m venv /tmp/kserve-venv && /tmp/kserve-venv/bin/pip install kserve
    ocrnet predict PKG street.png --out pred/      # predict's labels for the same image
    ocrnet serve PKG --port 8000 &
    /tmp/kserve-venv/bin/python tools/check_kserve_client.py http://127.0.0.1:8000 MODEL \\
        street.png pred/street_labelTrainIds.png

It checks readiness (server, model) as the client reads them, then infers with binary and with
JSON outputs, and compares `labels` with predict's PNG pixels byte for byte. Exit 0: all agree.
"""

from __future__ import annotations

import asyncio
import sys

import numpy as np


async def check(url: str, model: str, image: bytes, want: np.ndarray) -> None:
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from kserve.protocol.infer_type import RequestedOutput

    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=120))
    try:
        assert await client.is_server_live(url), "server not live"
        assert await client.is_server_ready(url), "server not ready"
        assert await client.is_model_ready(url, model), "model not ready"
        for binary in (True, False):
            tensor = InferInput("image", [1], "BYTES")
            tensor.set_data_from_numpy(np.array([image], dtype=np.object_), binary_data=True)
            request = InferRequest(model, [tensor], request_outputs=[
                RequestedOutput("labels", parameters={"binary_data": binary})])
            response = await client.infer(url, request, model_name=model)
            labels = next(o for o in response.outputs if o.name == "labels").as_numpy()
            assert labels.shape == (1, *want.shape), labels.shape
            assert labels.astype(np.uint8).tobytes() == want.tobytes(), "labels differ"
            print(f"kserve InferenceRESTClient, {'binary' if binary else 'JSON'} labels: "
                  f"{labels.shape} equal to predict's")
    finally:
        await client.close()


def main() -> int:
    from PIL import Image  # a dependency of kserve

    url, model, image_path, labels_png = sys.argv[1:5]
    want = np.asarray(Image.open(labels_png))  # predict's 8-bit grayscale trainIds
    with open(image_path, "rb") as f:
        asyncio.run(check(url, model, f.read(), want))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
