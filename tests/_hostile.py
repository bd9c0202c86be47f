"""Shared by the tests/test_hostile_*.py files: the property-test settings and a tiny package."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, settings

PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def tiny_package(out: Path, content: bytes = b"weights", **kw: object) -> Path:
    """A committed package of one file (no engine can open it): what --overwrite may replace."""
    from ocrnet.package import PackageWriter

    with PackageWriter(out, **kw) as writer:  # type: ignore[arg-type]
        (writer.dir / "model.bin").write_bytes(content)
        writer.commit({"backend": "onnxruntime", "precision": "fp32"})
    return out
