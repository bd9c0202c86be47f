"""`ocrnet.quiet`: dependency chatter is dropped around export and quantization, ours is not."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from ocrnet.quiet import LOGGER_LEVELS, quiet_dependencies

#: What `make demo` printed between its own progress before the fix (one of each kind).
NOISE = ("torchvision is not installed", "FutureWarning", "INFO:nncf", "WARNING:root",
         "pre-processing before quantization")

#: A subprocess (a fresh process, as a user runs it: the dependencies' handlers write to the
#: real stdout/stderr, which pytest's in-process capture cannot see once another test imported
#: them): export a tiny model with the attention ops NNCF talks about, calibrate it to int8 on
#: both backends, then warn as ocrnet would inside the same scope.
SCRIPT = textwrap.dedent("""
    import logging, sys, warnings
    from pathlib import Path
    import torch
    from torch import nn
    from ocrnet.build import build_package
    from ocrnet.data.synthetic import write_dataset
    from ocrnet.export import export_onnx
    from ocrnet.quiet import quiet_dependencies

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 5, 1)

        def forward(self, x):
            f = torch.relu(self.stem(x))
            q = f.flatten(2)
            attn = torch.softmax(q.transpose(1, 2) @ q, -1)
            return self.head(f + (q @ attn.transpose(1, 2)).view(f.shape))

    work = Path(sys.argv[1])
    write_dataset(work / "synth", train=1, val=0, size=(32, 64), workers=0, progress=False)
    export_onnx(Tiny(), work / "tiny.onnx", shape=(1, 3, 32, 64))
    for backend in ("onnxruntime", "openvino"):
        build_package(work / "tiny.onnx", work / backend, backend=backend, precision="int8",
                      calib_dir=work / "synth", calib_count=1)
    with quiet_dependencies():
        logging.getLogger("ocrnet.build").warning("ocrnet logger warning shows")
        warnings.warn_explicit("ocrnet future warning shows", FutureWarning, "ocrnet/x.py", 1,
                               module="ocrnet.x")
    print("done")
""")


# A fresh process exports and calibrates (~15 s CPU); the in-process tests guard the filters.
@pytest.mark.slow
def test_export_and_calibration_print_no_dependency_noise(tmp_path: Path) -> None:
    pytest.importorskip("nncf")
    pytest.importorskip("onnxruntime")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True,
                         text=True, env=env, timeout=600, check=False)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "done" in run.stdout
    assert [n for n in NOISE if n in out.replace("FutureWarning: ocrnet future", "")] == [], out
    assert "ocrnet logger warning shows" in out and "ocrnet future warning shows" in out


def test_scope_drops_dependency_warnings_keeps_ours() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_dependencies():
            for module in ("torch.utils._pytree", "copyreg", "ocrnet.export"):
                warnings.warn_explicit(f"from {module}", FutureWarning, "f.py", 1, module=module)
            warnings.warn_explicit("deprecated", DeprecationWarning, "f.py", 2, module="nncf")
            warnings.warn_explicit("a user warning", UserWarning, "f.py", 3, module="torch")
        warnings.warn_explicit("after", FutureWarning, "f.py", 4, module="copyreg")
    assert [str(w.message) for w in seen] == ["from ocrnet.export", "a user warning", "after"]


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_scope_drops_root_and_registry_chatter_then_restores(
        caplog: pytest.LogCaptureFixture) -> None:
    # torch's exporter logger does not propagate to caplog's root handler: watch it directly
    registry, recorder = logging.getLogger(next(iter(LOGGER_LEVELS))), _Recorder()
    registry.addHandler(recorder)
    before = registry.level
    try:
        with caplog.at_level(logging.INFO), quiet_dependencies():
            logging.getLogger().warning("root chatter")  # what ONNX Runtime's quantizer does
            registry.warning("torchvision is not installed. Skipping torchvision::nms")
            registry.error("an exporter error still shows")
            logging.getLogger("ocrnet.build").warning("ours")
            logging.getLogger().error("a root error still shows")
        registry.warning("after the scope")
    finally:
        registry.removeHandler(recorder)
    assert recorder.messages == ["an exporter error still shows", "after the scope"]
    assert registry.level == before and not logging.getLogger().filters
    ours = [r.getMessage() for r in caplog.records if r.name in ("root", "ocrnet.build")]
    assert ours == ["ours", "a root error still shows"]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        logging.getLogger().warning("root, outside the scope")
    assert [r.getMessage() for r in caplog.records] == ["root, outside the scope"]
