"""`ocrnet serve`'s Open Inference Protocol v2 under load, and what JSON costs against binary.

    sh tools/loopback_only.sh .venv/bin/python benchmarks/serve_v2.py --package PKG

`load_v2` is serve_load.py's v2 row: closed-loop clients, each a real `tritonclient.http` client
on its own thread sending one encoded image (`BYTES [1]`, binary tensor data, the client's
defaults) and waiting for `labels`. Run alone, this script measures one 1024x2048 scene sent
(a) as PNG bytes with binary outputs, (b) as PNG bytes with JSON outputs, (c) as UINT8 pixels,
binary both ways, (d) as UINT8 pixels, JSON both ways: client-side latency (median of
--repeat), request and response bytes. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve_client import Server, latency_summary


def _client(url: str) -> object:
    import tritonclient.http as triton

    return triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=300)


def load_v2(url: str, model: str, images: list[bytes], *, concurrency: int, requests: int,
            seconds: float) -> dict:
    """Closed loop over v2 with tritonclient's binary data; the same keys as serve_load's
    `load` (img/s, p50/p90/p99 ms, errors)."""
    import tritonclient.http as triton

    latencies: list[float] = []
    errors = [0]
    counter = iter(range(requests))
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker() -> None:
        client = _client(url)
        wanted = [triton.InferRequestedOutput("labels")]  # binary_data=True: the default
        while time.monotonic() < stop_at:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            image = triton.InferInput("image", [1], "BYTES")
            image.set_data_from_numpy(np.array([images[i % len(images)]], dtype=np.object_))
            t0 = time.perf_counter()
            try:
                client.infer(model, [image], outputs=wanted)
            except Exception:  # an error answer or a connection error, counted, not raised
                with lock:
                    errors[0] += 1
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"requests": len(latencies) + errors[0], "ok": len(latencies), "errors": errors[0],
            "wall_s": wall, "img_s": len(latencies) / wall,
            **latency_summary([x * 1000 for x in latencies])}


def json_cost(url: str, model: str, bgr: np.ndarray, repeat: int) -> list[dict]:
    """One image over v2 four ways: latency (median ms), request and response bytes."""
    import cv2
    import httpx
    import tritonclient.http as triton

    png = cv2.imencode(".png", bgr)[1].tobytes()
    client = _client(url)
    rows = []
    for what, pixels, binary_in, binary_out in (
            ("PNG bytes in (binary), labels out binary", False, True, True),
            ("PNG bytes in (binary), labels out JSON", False, True, False),
            ("UINT8 pixels, binary both ways", True, True, True),
            ("UINT8 pixels, JSON both ways", True, False, False)):
        if pixels:
            data = bgr[None]
            image = triton.InferInput("image", list(data.shape), "UINT8")
        else:
            data = np.array([png], dtype=np.object_)
            image = triton.InferInput("image", [1], "BYTES")
        image.set_data_from_numpy(data, binary_data=binary_in)
        outputs = [triton.InferRequestedOutput("labels", binary_data=binary_out)]
        request, header = client.generate_request_body([image], outputs=outputs)
        raw = httpx.post(f"{url}/v2/models/{model}/infer", content=request, timeout=300,
                         headers={} if header is None else
                         {"Inference-Header-Content-Length": str(header)})
        assert raw.status_code == 200, raw.text
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = client.infer(model, [image], outputs=outputs)
            labels = result.as_numpy("labels")
            times.append((time.perf_counter() - t0) * 1000)
        assert labels.shape == (1, *bgr.shape[:2])
        response = result.get_response()
        rows.append({"what": what, "median_ms": statistics.median(times),
                     "request_bytes": len(request), "response_bytes": len(raw.content),
                     "response_json_outputs": "data" in response["outputs"][0]})
    client.close()
    return rows


def main() -> int:
    from ocrnet.data.synthetic import generate_scene

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--package", required=True, help="an engine package (static or dynamic)")
    p.add_argument("--size", default="1024x2048", help="HxW of the scene")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    h, w = (int(x) for x in args.size.split("x"))
    scene = generate_scene(7, h, w)
    rgb = scene[0] if isinstance(scene, tuple) else scene
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    load = os.getloadavg()[0]
    with Server(Path(args.package)) as server:
        rows = json_cost(server.url, Path(args.package).name, bgr, args.repeat)
        server.stop()
    print(f"{h}x{w} scene, package {args.package}, median of {args.repeat}; 1-min load average "
          f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (a shared, loaded "
          "machine: compare the rows with each other, not across runs)\n")
    print("| request | median ms | request bytes | response bytes |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['median_ms']:.0f} | {r['request_bytes']:,} | "
              f"{r['response_bytes']:,} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
