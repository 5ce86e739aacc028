"""Killed and resumed (issue 26): ``sae train`` and ``transcoder train`` with checkpoints,
``SIGKILL``ed during a training step, during a checkpoint write, during the final save and
during an activation-cache shard write, then run again with the same command plus ``--resume``
(or, killed before the first checkpoint, the same command again, after ``--resume`` is refused
in one line). The run that finishes saves the SAE, the final checkpoint (parameters, Adam's
moments, history) and the metrics an uninterrupted run saves, bit for bit; no temporary file of
a killed write is left in ``--out`` or in the cache; the cache holds the shards an
uninterrupted run writes, byte for byte.

Each run is a real process that really dies: it is forked from a fork server that has already
imported torch, transformers and superposition (a fresh interpreter takes ~5 s to import them,
the run itself ~1 s), runs the command line's ``main``, and kills itself with ``SIGKILL`` at a
chosen point, found by counting calls, never by timing: the Nth training step (after its
gradients, before its update) or the Nth write of a file of a given name (inside
:func:`superposition._io.atomic_path`, after the temporary file is written and cut to half its
size, as a write in progress is, before it is moved into place).
"""

from __future__ import annotations

import json
import multiprocessing
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import superposition

# A run of the command line in a forked process, killed at the chosen point. ``kill`` is None
# (no kill), ("step", n): the nth training step, or ("write", pattern, n): the nth write of a
# file whose name matches the glob ``pattern``.
CHILD = r"""
import contextlib, fnmatch, os, signal, sys
from pathlib import Path

fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.dup2(fd, 1)
os.dup2(fd, 2)
import superposition
from superposition import _io
from superposition.cli._main import main
from superposition.sae import gradients, store

if superposition.__file__ != expected:
    print("imported", superposition.__file__, "not", expected)
    sys.exit(3)
calls = 0


def die():
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


if kill is not None and kill[0] == "step":
    real_gradients = gradients.Step.gradients

    def stepped(self, *args, **kwargs):
        global calls
        out = real_gradients(self, *args, **kwargs)
        calls += 1
        if calls == kill[1]:
            die()  # mid-step: the gradients are computed, the parameters not yet updated
        return out

    gradients.Step.gradients = stepped
elif kill is not None:
    real_atomic_path = _io.atomic_path

    @contextlib.contextmanager
    def atomic_path(path):
        global calls
        hit = False
        if fnmatch.fnmatch(Path(path).name, kill[1]):
            calls += 1
            hit = calls == kill[2]
        with real_atomic_path(path) as temp:
            yield temp
            if hit:  # written but not moved into place: cut it short, as a write in progress
                os.truncate(temp, temp.stat().st_size // 2)
                die()

    _io.atomic_path = atomic_path  # what atomic_write and the checkpoint writer call
    store.atomic_path = atomic_path  # the cache's shards
sys.exit(main(argv))
"""

TEXTS = "".join(f"The cat number {i} sat on mat {i % 7}.\n" for i in range(600))
# 598 training texts: cache shards of 256 texts (~2800 tokens) each; 63 steps of 64 tokens
# read two of them; checkpoints after steps 16, 32 and 48 and at the end (63).
ARGS = ["--d-sae", "64", "--k", "4", "--batch-size", "64", "--samples", "4000"]
ARGS += ["--eval-texts", "2", "--no-progress", "--checkpoint-every", "16"]
OUT_FILES = {"checkpoint.json", "checkpoint.safetensors", "metrics.json"}


@dataclass(frozen=True)
class Runner:
    """Runs ``superposition <argv>`` in a forked process; the exit status, or ``-9`` when it
    was killed."""

    context: Any
    folder: Path
    pids: list[int] = field(default_factory=list)  # of the runs so far

    def __call__(self, argv: list[str], kill: tuple[Any, ...] | None = None) -> tuple[int, str]:
        log = self.folder / f"run-{len(self.pids)}.log"
        scope = {"argv": argv, "kill": kill, "log": str(log), "expected": superposition.__file__}
        proc = self.context.Process(target=exec, args=(CHILD, scope))
        proc.start()
        self.pids.append(proc.pid)
        proc.join(timeout=240)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
            pytest.fail(f"superposition {' '.join(argv)} hung; its output:\n{log.read_text()}")
        code: int = proc.exitcode
        return code, log.read_text()


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        [
            "superposition.cli._main",
            "superposition.sae",
            "superposition.probe",
            "transformers.modeling_utils",
            "transformers.models.bert.modeling_bert",
        ]
    )
    yield Runner(context, tmp_path_factory.mktemp("killed-logs"))
    from multiprocessing import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)  # a private method of the stdlib's
    if stop is not None:
        stop()  # the server, and the memory of the libraries it imported, go now


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("killed-corpus") / "texts.txt"
    path.write_text(TEXTS)
    return path


def _command(name: str, model: Path, corpus: Path, out: Path, cache: Path | None) -> list[str]:
    argv = [name, "train", "--model", str(model), "--corpus", str(corpus), *ARGS]
    argv += ["--out", str(out)] + ([] if cache is None else ["--cache", str(cache)])
    return argv


@pytest.fixture(scope="module")
def uninterrupted(
    runner: Runner, tiny_bert_folder: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, bool], tuple[Path, Path | None]]:
    """``(out, cache)`` of a run that nobody killed, by ``(command, cached)``."""
    runs = {}
    for name, cached in (("sae", False), ("sae", True), ("transcoder", True)):
        root = tmp_path_factory.mktemp(f"whole-{name}")
        cache = root / "cache" if cached else None
        code, log = runner(_command(name, tiny_bert_folder, corpus, root / "out", cache))
        assert code == 0, log
        runs[name, cached] = (root / "out", cache)
    return runs


def _strays(folder: Path) -> list[str]:
    """The temporary files of atomic_path (".NAME.HOST-PID-HEX.tmpSUFFIX") in ``folder``."""
    return sorted(p.name for p in folder.glob(".*.tmp*"))


def _metrics(out: Path) -> dict[str, Any]:
    metrics = json.loads((out / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in ("seconds", "resumed")}


# Each case: the command, whether it caches, and where successive runs are killed (each run
# resumes the one before, or starts again when no checkpoint was written yet; the calls are
# counted from the start of each run); then one run that nobody kills finishes.
CASES: dict[str, tuple[str, bool, list[tuple[Any, ...]]]] = {
    "sae-before-any-checkpoint": (
        "sae",
        False,
        [("step", 5), ("write", "checkpoint.safetensors", 1)],
    ),
    "sae-checkpoints-and-final-save": (
        "sae",
        False,
        [
            ("write", "checkpoint.safetensors", 2),  # mid-run: resumes from step 16
            ("write", "checkpoint.json", 2),  # the sidecar of step 48, after its tensors
            ("write", "checkpoint.safetensors", 1),  # the last one, of step 63
            ("write", "sae.safetensors", 1),  # the SAE, after the last checkpoint
        ],
    ),
    "sae-cache-shards": (
        "sae",
        True,
        [
            ("write", "shard-00000.safetensors", 1),
            ("write", "manifest.json", 1),  # shard 0 is in place, unlisted
            ("write", "shard-00001.safetensors", 1),  # after the checkpoint of step 16
        ],
    ),
    "transcoder-cache": (
        "transcoder",
        True,
        [
            ("step", 20),
            ("write", "shard-00001.safetensors", 1),
            ("write", "checkpoint.safetensors", 2),
        ],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_killed_run_resumes_to_the_uninterrupted_result(
    case: str,
    runner: Runner,
    tiny_bert_folder: Path,
    corpus: Path,
    tmp_path: Path,
    uninterrupted: dict[tuple[str, bool], tuple[Path, Path | None]],
) -> None:
    name, cached, kills = CASES[case]
    out, cache = tmp_path / "out", (tmp_path / "cache" if cached else None)
    command = _command(name, tiny_bert_folder, corpus, out, cache)
    for kill in kills:
        resume = (out / "checkpoint.safetensors").exists()
        code, log = runner([*command, "--resume"] if resume else command, kill)
        assert code == -9, f"the run was not killed at {kill}:\n{log}"
        if kill[0] == "write":  # it died holding its temporary file, cut short
            folder = cache if kill[1].startswith(("shard", "manifest")) else out
            assert folder is not None
            mark = re.compile(rf"\.{re.escape(kill[1])}\.[0-9a-f]{{8}}-{runner.pids[-1]}-")
            assert any(mark.match(name) for name in _strays(folder)), _strays(folder)
    if not (out / "checkpoint.safetensors").exists():
        code, log = runner([*command, "--resume"])  # refused, in one line, before any work
        assert code == 2, log
        assert "does not exist; train with --checkpoint-every N first" in log, log
        code, log = runner(command)
    else:
        code, log = runner([*command, "--resume"])
    assert code == 0, log

    whole, whole_cache = uninterrupted[name, cached]
    saved = {f"{name}.safetensors", f"{name}.json"}
    assert {p.name for p in out.iterdir()} == OUT_FILES | saved  # and no temporary file
    for file in sorted(OUT_FILES - {"metrics.json"} | saved):
        # The parameters, Adam's moments, the history: bit-identical.
        assert (out / file).read_bytes() == (whole / file).read_bytes(), file
    assert _metrics(out) == _metrics(whole)
    if cache is not None:
        assert whole_cache is not None
        # The cache a later run reads: the shards of the uninterrupted run, no temporary file,
        # no lock.
        assert sorted(p.name for p in cache.iterdir()) == sorted(
            p.name for p in whole_cache.iterdir()
        )
        for shard in whole_cache.iterdir():
            assert shard.read_bytes() == (cache / shard.name).read_bytes(), shard.name
