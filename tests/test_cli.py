"""The command line: help texts, and every bad argument gives exit 2 with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from superposition.cli import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["reproduce", "toy", "probe"])
def test_help_has_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0
    assert "example:" in out
    assert f"superposition {command}" in out


def test_module_entry_point() -> None:
    import superposition

    src = str(Path(superposition.__file__).resolve().parents[1])  # installed or not
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "superposition", "--version"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("superposition ")


def _error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert "Traceback" not in err
    return lines[0]


def test_missing_text_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["probe", "--texts", str(tmp_path / "nope.txt")], capsys)
    assert code == 2
    assert "cannot read --texts" in _error_line(err)


def test_empty_text_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    code, _, err = run(["probe", "--texts", str(empty), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "has no text: expected one text per line" in _error_line(err)
    assert not (tmp_path / "o").exists(), "nothing is written when the input is bad"


def test_unknown_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = tmp_path / "t.txt"
    texts.write_text("hello world\n")
    missing = str(tmp_path / "no-such-model")
    code, _, err = run(["probe", "--texts", str(texts), "--model", missing], capsys)
    assert code == 2
    assert "no-such-model" in _error_line(err)


def test_layer_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = tmp_path / "t.txt"
    texts.write_text("hello world\n")
    out = tmp_path / "o"
    code, _, err = run(["probe", "--texts", str(texts), "--layer", "6", "--out", str(out)], capsys)
    assert code == 2
    line = _error_line(err)
    assert "layer 6" in line
    assert "6 layers" in line
    assert not out.exists()


def test_bad_toy_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["toy", "--probability", "1.5"], capsys)
    assert code == 2
    line = _error_line(err)
    assert "feature_probability must be in (0, 1], got" in line
    assert "1.5" in line
    code, _, err = run(["toy", "--activation", "sigmoid"], capsys)
    assert code == 2
    assert "invalid choice" in err


def test_toy_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "toy"
    code, stdout, _ = run(
        [
            "toy",
            "--features",
            "5",
            "--hidden",
            "2",
            "--probability",
            "1",
            "0.05",
            "--steps",
            "50",
            "--out",
            str(out),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, stdout
    assert {p.name for p in out.iterdir()} >= {
        "model.safetensors",
        "weights.png",
        "geometry.png",
        "directions.png",
    }
    from superposition import ToyModel

    model = ToyModel.load(out / "model.safetensors")
    assert (model.n_features, model.n_hidden, model.n_instances) == (5, 2, 2)


def test_probe_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = tmp_path / "t.txt"
    texts.write_text("The cat sat on the mat.\nWhat is 25 plus 17?\n")
    out = tmp_path / "probe"
    code, stdout, err = run(["probe", "--texts", str(texts), "--out", str(out)], capsys)
    assert code == 0, err
    from superposition import Activations

    acts = Activations.load(out / "activations.safetensors")
    assert acts.values.shape[1] == 1536
    assert acts.values.shape[0] == len(acts.tokens)
    assert {f"fig{i}" for i in range(4, 8)} <= {p.name[:4] for p in out.glob("*.png")}
    assert "1536 neurons" in stdout


def test_reproduce_checks_model_and_layer_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    code, _, err = run(["reproduce", "--layer", "-7", "--out", str(out)], capsys)
    assert code == 2
    assert "layer -7 is out of range" in _error_line(err)
    code, _, err = run(
        ["reproduce", "--model", str(tmp_path / "missing"), "--out", str(out)], capsys
    )
    assert code == 2
    assert "missing" in _error_line(err)
    assert not out.exists(), "a rejected run writes nothing"
