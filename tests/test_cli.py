"""The command line: help texts, and every bad argument gives exit 2 with one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from superposition.cli import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["reproduce", "toy", "probe", "units"])
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
    stats = json.loads((out / "stats.json").read_text())
    assert stats["model"] == acts.model_name == "sentence-transformers/all-MiniLM-L6-v2"


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


def test_no_arguments_prints_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([], capsys)
    assert code == 2
    assert err.startswith("usage: superposition")
    for command in ("reproduce", "toy", "probe"):
        assert command in err


def test_toy_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["toy", "--help"], capsys)
    assert code == 0
    flat = " ".join(out.split())
    for default in ("(default: 20)", "(default: 5)", "(default: relu)", "(default: 0.7)"):
        assert default in flat
    assert "(default: 10000)" in flat
    assert "(default: 1 0.1 0.01)" in flat


def test_quick_help_gives_two_different_durations(capsys: pytest.CaptureFixture[str]) -> None:
    from superposition.cli import reproduce as cli

    _, out, _ = run(["reproduce", "--help"], capsys)
    flat = " ".join(out.split())
    assert cli.QUICK_TIME != cli.FULL_TIME
    assert f"{cli.QUICK_TIME} instead of {cli.FULL_TIME} for the full run" in flat
    assert "about a minute" not in flat


def _texts(tmp_path: Path) -> Path:
    texts = tmp_path / "t.txt"
    texts.write_text("hello world\n")
    return texts


@pytest.mark.parametrize("command", ["reproduce", "toy", "probe", "units"])
def test_out_is_an_existing_file(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "taken"
    taken.write_text("mine")
    extra = ["--texts", str(_texts(tmp_path))] if command == "probe" else []
    for out, why in ((taken, "a file of that name exists"), (taken / "sub", "is a file")):
        code, _, err = run([command, *extra, "--out", str(out)], capsys)
        assert code == 2
        line = _error_line(err)
        assert f"cannot create the output folder {str(out)!r}" in line
        assert why in line
        assert "Errno" not in line
    assert taken.read_text() == "mine"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_out_where_no_folder_can_be_made(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["toy", "--out", "/proc/superposition-x"], capsys)
    assert code == 2
    line = _error_line(err)
    assert "cannot create the output folder '/proc/superposition-x': making a folder in" in line
    assert "Errno" not in line


def test_an_unknown_model_name_fails_in_one_line_without_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("from_pretrained was called: the hub would be retried")

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", refuse)
    out = tmp_path / "o"
    argv = ["probe", "--texts", str(_texts(tmp_path)), "--model", "no-such-org/no-such-model"]
    code, _, err = run([*argv, "--out", str(out)], capsys)
    assert code == 2
    line = _error_line(err)
    assert "'no-such-org/no-such-model' is neither a local folder nor" in line
    assert "HF_HUB_OFFLINE=1" in line
    assert not out.exists()


def test_probe_all_layers(
    tmp_path: Path, tiny_bert_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = tmp_path / "t.txt"
    texts.write_text("The cat sat on the mat.\nHi\n")
    out = tmp_path / "probe"
    argv = ["probe", "--texts", str(texts), "--model", str(tiny_bert_folder), "--layer", "all"]
    code, stdout, err = run([*argv, "--out", str(out), "--keep-padding"], capsys)
    assert code == 0, err
    assert len(stdout.strip().splitlines()) == 2
    from superposition import Activations

    for layer in (0, 1):
        acts = Activations.load(out / f"layer{layer}" / "activations.safetensors")
        assert acts.layer == layer
        assert acts.n_tokens == 2 * 9  # "The cat sat on the mat." is 9 tokens; "Hi" padded
        stats = json.loads((out / f"layer{layer}" / "stats.json").read_text())
        assert stats["n_pad_tokens"] == int(acts.is_pad.sum()) == 9 - 3
        assert (out / f"layer{layer}" / "fig4_cosine_heatmap.png").is_file()


def test_probe_progress_and_no_progress(
    tmp_path: Path, tiny_bert_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = tmp_path / "t.txt"
    texts.write_text("".join(f"text number {i}\n" for i in range(6)))
    argv = ["probe", "--texts", str(texts), "--model", str(tiny_bert_folder), "--batch-size", "1"]
    code, _, err = run([*argv, "--out", str(tmp_path / "a")], capsys)
    assert code == 0
    assert "6/6" in err  # six batches: the bar shows by default
    code, _, err = run([*argv, "--out", str(tmp_path / "b"), "--no-progress"], capsys)
    assert code == 0
    assert err == ""


@pytest.mark.parametrize(
    ("flag", "expect"),
    [
        # (full_double_descent, units, full_units, sae)
        ([], (False, True, False, None)),
        (["--full-double-descent"], (True, True, False, None)),
        (["--no-units"], (False, False, False, None)),
        (["--full-units", "--sae", "sae-dir"], (False, True, True, Path("sae-dir"))),
    ],
)
def test_reproduce_passes_its_options_to_the_config(
    flag: list[str],
    expect: tuple[bool, bool, bool, Path | None],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import superposition.report as report

    seen: list[report.ReproduceConfig] = []

    def fake(cfg: report.ReproduceConfig) -> dict[str, object]:
        seen.append(cfg)
        raise ValueError("stop here")

    monkeypatch.setattr(report, "reproduce", fake)
    code, _, err = run(["reproduce", "--out", str(tmp_path / "o"), *flag], capsys)
    assert code == 2
    assert "stop here" in err
    assert [(c.full_double_descent, c.units, c.full_units, c.sae) for c in seen] == [expect]


def test_reproduce_rejects_an_sae_of_another_width_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import superposition as sp

    sae_dir = tmp_path / "sae"
    sae_dir.mkdir()
    sp.SparseAutoencoder(100, 200, k=4, seed=0).save(sae_dir / "sae")
    out = tmp_path / "o"
    code, _, err = run(["reproduce", "--quick", "--sae", str(sae_dir), "--out", str(out)], capsys)
    assert code == 2
    assert "reads 100 neurons but layer 0 has 1536" in err
    assert not out.exists()


# --------------------------------------------------------------------------- superposition sae


def test_sae_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["sae", "--help"], ["sae", "train", "--help"], ["sae", "eval", "--help"]):
        code, out, _ = run(argv, capsys)
        assert code == 0
        assert "superposition sae train" in out


def test_sae_train_and_eval(
    tmp_path: Path, tiny_bert_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = tmp_path / "t.jsonl"
    lines = [f"The cat number {i} sat on mat {i % 7} while it rained." for i in range(30)]
    texts.write_text("".join(json.dumps({"body": t}) + "\n" for t in lines))
    out = tmp_path / "sae"
    argv = ["sae", "train", "--model", str(tiny_bert_folder), "--corpus", str(texts)]
    argv += ["--text-column", "body", "--d-sae", "96", "--k", "4", "--batch-size", "64"]
    argv += ["--samples", "1000", "--eval-texts", "5", "--out", str(out), "--no-progress"]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    assert "training (not held-out) tokens" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["samples"] == 1000
    assert metrics["d_in"] == 48
    assert metrics["d_sae"] == 96
    assert metrics["eval"]["n_texts"] == 5
    assert metrics["eval"]["l0"] <= 4
    assert metrics["held_out"] is False
    from superposition import SparseAutoencoder

    sae = SparseAutoencoder.load(out / "sae")
    assert sae.k == 4
    assert sae.fitted

    code, stdout, err = run(["sae", "eval", "--sae", str(out), "--eval-texts", "3"], capsys)
    assert code == 0, err
    result = json.loads(stdout[stdout.index("{") :])
    assert result["n_texts"] == 3
    assert set(result["fidelity"]["effects"]) == {"sae", "zero", "mean"}


def test_transcoder_train_writes_a_transcoder_of_the_mlp(
    tmp_path: Path, tiny_bert_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`transcoder train` captures mlp_in and mlp_out in one pass, trains, saves, and measures
    the prediction of mlp_out on the evaluation texts as an independent recomputation does,
    and the model with the transcoder in place of the MLP."""
    from superposition import ActivationProbe, Transcoder, load_model
    from superposition.sae import split_corpus

    code, out, _ = run(["transcoder", "train", "--help"], capsys)
    assert code == 0
    assert "superposition transcoder train" in out
    texts = tmp_path / "t.txt"
    texts.write_text("".join(f"The cat number {i} sat on mat {i % 7}.\n" for i in range(30)))
    out_dir = tmp_path / "tc"
    argv = ["transcoder", "train", "--model", str(tiny_bert_folder), "--corpus", str(texts)]
    argv += ["--d-sae", "64", "--k", "4", "--batch-size", "64", "--samples", "2000", "--skip"]
    argv += ["--eval-texts", "5", "--out", str(out_dir), "--no-progress"]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    assert "training (not held-out) tokens" in stdout
    metrics = json.loads((out_dir / "metrics.json").read_text())
    model, tok = load_model(str(tiny_bert_folder))
    width = model.config.hidden_size
    assert (metrics["d_in"], metrics["d_out"], metrics["d_sae"]) == (width, width, 64)
    assert metrics["skip"] is True
    assert set(metrics["eval"]["fidelity"]["effects"]) == {"sae", "zero", "mean"}
    tc = Transcoder.load(out_dir / "transcoder")
    assert (tc.skip, tc.k, tc.layer, tc.fitted) == (True, 4, 0, True)
    _, eval_texts, _ = split_corpus(str(texts), eval_texts=5)
    probe = ActivationProbe(model, layer=0, site=["mlp_in", "mlp_out"], tokenizer=tok)
    x, y = (a.values for a in probe.run(list(eval_texts)))
    assert metrics["eval"]["fvu"] == pytest.approx(tc.evaluate(x, y).fvu, rel=1e-5)
    assert metrics["eval"]["n_tokens"] == x.shape[0]


def test_sae_train_resumes_a_killed_run_from_its_checkpoint(
    tmp_path: Path,
    tiny_bert_folder: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--checkpoint-every writes OUT/checkpoint.*; a run killed after its first checkpoint and
    continued with --resume saves the SAE an uninterrupted run saves."""
    import superposition.sae.train as T
    from superposition import SparseAutoencoder

    texts = tmp_path / "t.txt"
    texts.write_text("".join(f"The cat number {i} sat on mat {i % 7}.\n" for i in range(20)))
    base = ["sae", "train", "--model", str(tiny_bert_folder), "--corpus", str(texts)]
    base += ["--d-sae", "64", "--k", "4", "--batch-size", "32", "--samples", "320"]
    base += ["--eval-texts", "2", "--no-progress"]
    code, _, err = run([*base, "--out", str(tmp_path / "whole")], capsys)
    assert code == 0, err
    assert not (tmp_path / "whole" / "checkpoint.json").exists()

    class Killed(Exception):
        pass

    write = T._write_checkpoint

    def write_then_die(*args: object, **kwargs: object) -> None:
        write(*args, **kwargs)  # type: ignore[arg-type]
        raise Killed

    out = tmp_path / "parts"
    monkeypatch.setattr(T, "_write_checkpoint", write_then_die)
    with pytest.raises(Killed):
        run([*base, "--out", str(out), "--checkpoint-every", "4"], capsys)
    monkeypatch.undo()
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 4
    assert not (out / "sae.safetensors").exists()
    steps: list[int] = []

    def write_and_note(path: object, tensors: object, meta: dict[str, int]) -> None:
        steps.append(meta["step"])
        write(path, tensors, meta)  # type: ignore[arg-type]

    monkeypatch.setattr(T, "_write_checkpoint", write_and_note)
    code, _, err = run([*base, "--out", str(out), "--checkpoint-every", "4", "--resume"], capsys)
    assert code == 0, err
    assert steps == [8, 10]  # it went on from step 4, and wrote the end
    assert json.loads((out / "metrics.json").read_text())["resumed"] is True
    got, want = (
        SparseAutoencoder.load(out / "sae"),
        SparseAutoencoder.load(tmp_path / "whole" / "sae"),
    )
    for name in ("W_enc", "W_dec", "b_enc", "b_dec", "scale"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name


def test_sae_train_rejects_bad_arguments_before_any_work(
    tmp_path: Path, tiny_bert_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = _texts(tmp_path)
    out = tmp_path / "o"
    base = ["sae", "train", "--model", str(tiny_bert_folder), "--out", str(out)]
    cases = [
        (["--corpus", str(tmp_path / "missing.txt")], "does not exist"),
        (["--corpus", str(texts), "--k", "200", "--d-sae", "100"], "k must be at most d_sae=100"),
        (["--corpus", str(texts), "--samples", "0"], "--samples must be a positive int"),
        (["--corpus", str(texts), "--eval-texts", "0"], "--eval-texts must be a positive int"),
        (["--corpus", str(texts), "--checkpoint-every", "0"], "--checkpoint-every must be a"),
        (["--corpus", str(texts), "--resume"], "train with --checkpoint-every N first"),
    ]
    for extra, message in cases:
        code, _, err = run([*base, *extra], capsys)
        assert code == 2
        assert message in _error_line(err)
    assert not out.exists()
    code, _, err = run(["sae", "eval", "--sae", str(tmp_path)], capsys)
    assert code == 2
    assert "holds no sae.safetensors" in _error_line(err)


# --------------------------------------------------------------------------- superposition units


def test_units_writes_tables_records_figure_and_comparison(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import superposition as sp
    from superposition.units import UnitStatistics

    out = tmp_path / "u"
    argv = ["units", "--texts", "24", "--rotation", "--coherence-units", "4", "--no-progress"]
    code, stdout, err = run([*argv, "--out", str(out)], capsys)
    assert code == 0, err
    names = {p.name for p in out.iterdir()}
    assert names == {
        "neurons.csv",
        "neurons.json",
        "neurons.units.safetensors",
        "neurons.units.json",
        "rotated_neurons.csv",
        "rotated_neurons.json",
        "rotated_neurons.units.safetensors",
        "rotated_neurons.units.json",
        "scores.png",
        "comparison.json",
        "explorer.html",
    }
    assert '"label":"rotated"' in (out / "explorer.html").read_text("utf-8")
    rows = (out / "neurons.csv").read_text().splitlines()
    assert len(rows) == 1 + 1536
    doc = json.loads((out / "neurons.json").read_text())
    coherence = [v for v in doc["columns"]["context_coherence"] if v is not None]
    assert len(coherence) == 4
    # The saved records give back the table's numbers.
    stats = UnitStatistics.load(out / "neurons.units.safetensors")
    table = sp.score_units(stats)
    assert doc["columns"]["token_diversity"] == table.to_dict()["token_diversity"]
    assert stats.categories == ["sherlock_holmes", "war_and_peace"]
    assert "neurons: 1536 units, median token diversity" in stdout


def test_explore_writes_one_page_of_neurons_and_sae_latents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import superposition as sp

    sae = sp.SparseAutoencoder(1536, 64, k=4, seed=0)
    (tmp_path / "sae").mkdir()
    sae.save(tmp_path / "sae" / "sae")
    corpus = tmp_path / "texts.jsonl"
    rows = [{"body": f"The {w} sat on the mat near the {w}s."} for w in ("cat", "dog", "owl")]
    corpus.write_text("\n".join(json.dumps(r) for r in rows))
    page = tmp_path / "p.html"
    argv = ["explore", "--sae", str(tmp_path / "sae"), "--corpus", str(corpus)]
    argv += ["--text-column", "body", "--coherence-units", "0", "--no-progress"]
    code, stdout, err = run([*argv, "--out", str(page)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.html", "sae", "texts.jsonl"]
    text = page.read_text("utf-8")
    assert '"label":"neuron","n":1536' in text
    assert '"label":"latent","n":64' in text
    assert "1536 neurons, 64 SAE latents" in stdout
    code, _, err = run(["explore", "--out", str(tmp_path / "nowhere" / "p.html")], capsys)
    assert code == 2
    assert "does not exist" in err
    code, _, err = run(["explore", "--out", str(tmp_path / "p.txt")], capsys)
    assert code == 2
    assert "must be an .html file" in err


def test_explore_shows_transcoder_latents_beside_the_neurons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import superposition as sp

    tc = sp.Transcoder(384, 384, 48, k=4, seed=0)  # MiniLM's MLP: 384 in, 384 out
    (tmp_path / "tc").mkdir()
    tc.save(tmp_path / "tc" / "transcoder")
    corpus = tmp_path / "texts.txt"
    corpus.write_text("The cat sat on the mat.\nThe dog sat on the log.\n")
    page = tmp_path / "p.html"
    argv = ["explore", "--transcoder", str(tmp_path / "tc"), "--corpus", str(corpus)]
    code, stdout, err = run(
        [*argv, "--coherence-units", "0", "--no-progress", "--out", str(page)], capsys
    )
    assert code == 0, err
    text = page.read_text("utf-8")
    assert '"label":"tc latent","n":48' in text
    # Its directions over the neurons come through the MLP's output projection: loadings shown.
    assert "neurons its decoder direction loads on most" in text
    assert "48 transcoder latents" in stdout
    wrong = sp.Transcoder(100, 384, 48, k=4, seed=0)
    wrong.save(tmp_path / "tc" / "transcoder")
    code, _, err = run([*argv, "--out", str(tmp_path / "q.html")], capsys)
    assert code == 2
    assert "maps 100 -> 384 values but layer 0's MLP maps 384 -> 384" in err
    assert not (tmp_path / "q.html").exists()


def test_units_rejects_bad_arguments_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "u"
    code, _, err = run(["units", "--texts", "0", "--out", str(out)], capsys)
    assert code == 2
    assert "--texts must be a positive int" in err
    code, _, err = run(["units", "--sae", str(tmp_path), "--out", str(out)], capsys)
    assert code == 2
    assert "holds no sae.safetensors" in err
    assert not out.exists()
