"""The command line as a whole: light `--help`, values refused up front, hints that run."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import _engine_helpers as h
from ocrnet.cli import VERBS, main

HEAVY = ("cv2", "torch", "openvino", "onnxruntime", "ocrnet.engines")


@pytest.mark.parametrize("argv", [["--help"], *([verb, "--help"] for verb in VERBS)])
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    code = ("import sys\nfrom ocrnet.cli import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit:\n    pass\n"
            f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip().splitlines()[-1] == "HEAVY []", done.stdout[-500:]


@pytest.mark.parametrize("argv", [
    ["eval", "M", "--data-root", "D", "--workers", "-1"],
    ["eval", "M", "--data-root", "D", "--batch-size", "0"],
    ["eval", "M", "--data-root", "D", "--scale", "1024"],
    ["predict", "M", "in.png", "--out", "o", "--opacity", "1.5"],
    ["predict", "M", "in.png", "--out", "o", "--workers", "0"],
    ["train", "--data-root", "D", "--out-dir", "o", "--iters", "0"],
    ["train", "--data-root", "D", "--out-dir", "o", "--batch-size", "0"],
    ["train", "--data-root", "D", "--out-dir", "o", "--crop", "axb"],
    ["synth", "--out", "o", "--size", "256"],
    ["synth", "--out", "o", "--train", "-3"],
    ["build", "M", "--out", "o", "--shape", "1x1x64x64"],
    ["build", "M", "--out", "o", "--calib-count", "0"],
    ["export", "M", "--out", "o.onnx", "--shape", "64x64x3"],
    ["bench", "M", "--shape", "1x3x64"],
    ["bench", "M", "--shape", "4x3x64x128", "--batch", "1", "8"],  # two batch sizes: which?
    ["compare", "M", "--images", "d", "--count", "0"],
    ["run", "--limit", "0"],
    ["run", "--bench-duration", "-1"],
])
def test_nonsense_values_are_one_line_errors(argv: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Refused while parsing, before any file is touched: one line naming the option, exit 1."""
    assert main(argv) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    option = next(a for a in argv if a.startswith("--") and a not in ("--data-root", "--out",
                                                                       "--out-dir", "--images"))
    assert line.startswith(f"ocrnet {argv[0]}: error: ")
    assert option.removeprefix("--").replace("-", " ") in line.replace("_", " "), line


@pytest.mark.parametrize("argv", [["build", "M", "--out", "o"], ["export", "M", "--out", "o"],
                                  ["bench", "M"]])
def test_shape_is_one_grammar(argv: list[str]) -> None:
    """--shape is NxCxHxW wherever it appears, with HxW short for 1x3xHxW."""
    from ocrnet.cli import build_parser

    parse = build_parser().parse_args
    assert parse([*argv, "--shape", "64x128"]).shape == (1, 3, 64, 128)
    assert parse([*argv, "--shape", "1x3x64x128"]).shape == (1, 3, 64, 128)
    assert parse([*argv, "--shape", "2x3x64x128"]).shape == (2, 3, 64, 128)


def test_missing_options_stay_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "pkg"])
    assert exit_info.value.code == 2 and "--data-root" in capsys.readouterr().err


def test_eval_names_the_model_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "a.pth", "--checkpoint", "b.pth", "--data-root", str(tmp_path)]) == 1
    assert "name the model once" in capsys.readouterr().err
    assert main(["eval", "--data-root", str(tmp_path)]) == 1
    assert "name a MODEL" in capsys.readouterr().err


def test_output_under_a_regular_file_is_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["inspect", str(h.checkpoint()), "--json", str(blocker / "out.json")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(blocker) in err
    assert blocker.read_text() == "not a folder"


def _hints(text: str) -> list[list[str]]:
    """The commands after `next:`, split as a shell would (alternatives joined by `or`)."""
    commands = []
    for line in text.splitlines():
        if line.startswith("next:"):
            for part in line.removeprefix("next:").split("   or   "):
                argv = shlex.split(part)
                assert argv[0] == "ocrnet", line
                commands.append(argv[1:])
    return commands


def test_next_hints_run_as_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """build -> (eval, bench) and predict -> eval: each printed command runs as printed.

    The package is static 1x3x64x128 and so are the images: eval and predict default their
    resize limit to the package's own input size (mmseg's 2048x1024 would not fit it).
    """
    data = h.calib_root()  # a Cityscapes-layout set of 64x128 scenes
    pkg = tmp_path / "pkg"
    assert main(["build", str(h.onnx_file()), "--out", str(pkg)]) == 0
    hints = _hints(capsys.readouterr().out)
    assert [argv[0] for argv in hints] == ["bench", "eval"]
    for argv in hints:
        argv = [str(data) if a == "CITYSCAPES_ROOT" else a for a in argv]
        if argv[0] == "bench":
            argv += ["--iterations", "2", "--warmup", "0"]  # the hint's defaults take ~10 s
        assert main(argv) == 0, argv
        out = capsys.readouterr().out
        if argv[0] == "eval":
            assert "the package's own input size" in out

    images = sorted((data / "leftImg8bit" / "val").rglob("*.png"))
    assert main(["predict", str(pkg), str(images[0]), "--out", str(tmp_path / "pred"),
                 "--no-progress"]) == 0
    (hint,) = _hints(capsys.readouterr().out)
    hint = [str(data) if a == "CITYSCAPES_ROOT" else a for a in hint]
    assert main([*hint, "--no-progress"]) == 0


@pytest.mark.parametrize("verb", ["eval", "predict", "inspect"])
def test_a_bad_json_path_fails_before_any_work(verb: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = {"eval": ["eval", "never-opened.pth", "--data-root", str(tmp_path)],
            "predict": ["predict", "never-opened.pth", str(tmp_path), "--out", str(tmp_path)],
            "inspect": ["inspect", "never-opened.pth"]}[verb]
    assert main([*argv, "--json", str(blocker / "out.json")]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert str(blocker) in line and "never-opened" not in line  # the model was never opened
