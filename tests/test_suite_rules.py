"""The suite's own rules (tests/conftest.py): in CI a missing extra fails instead of skipping."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).parent

_NEEDS_AN_EXTRA = """
import pytest

def test_in_a_test():
    pytest.importorskip("ocrnet_no_such_extra")

def test_plain():
    assert True
"""

_MODULE_NEEDS_AN_EXTRA = """
import pytest

pytest.importorskip("ocrnet_no_such_extra")

def test_never_collected():
    assert True
"""


def _run(folder: Path, ci: str | None, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-o", "addopts=", "-rfs", *args, str(folder)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    return proc.stdout


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    for name in ("conftest.py", "_engine_helpers.py"):
        shutil.copy(_TESTS / name, tmp_path / name)
    (tmp_path / "test_a.py").write_text(_NEEDS_AN_EXTRA)
    (tmp_path / "test_b.py").write_text(_MODULE_NEEDS_AN_EXTRA)
    return tmp_path


def test_a_missing_extra_skips_locally_and_fails_in_ci(suite: Path) -> None:
    assert _run(suite, None).splitlines()[-1].startswith("1 passed, 2 skipped")
    # A module skipped whole is a collection error (which stops a run, loudly, naming it); a
    # test skipping itself fails, and the others still run.
    said = _run(suite, "true", "--continue-on-collection-errors")
    assert said.splitlines()[-1].startswith("1 failed, 1 passed, 1 error"), said
    assert "CI=true: a missing extra fails here" in said and "ocrnet_no_such_extra" in said
    assert "test_in_a_test" in said and "test_b.py" in said
