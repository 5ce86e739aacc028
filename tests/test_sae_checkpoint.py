"""Checkpoints and resume of ``SparseAutoencoder.fit`` (``checkpoint=``, ``resume=``).

The reference everywhere is an uninterrupted run with the same arguments and no checkpoint
options, computed in this process: a resumed run must end on the same parameters and the same
history, bit for bit (CPU). Runs are "killed" in a subprocess (``os._exit`` right after a
checkpoint is written, so nothing is cleaned up) or, for the atomicity tests, by a failing
writer in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import superposition as sp
from superposition.sae import SparseAutoencoder, SyntheticFeatures

D_IN, D_SAE, BATCH, STEPS = 16, 32, 64, 23
KINDS = {"topk": {"k": 3}, "jumprelu": {}, "batchtopk": {"k": 3}}
# log_every=3 with 23 steps: the last step (22) is recorded because it is the last, and a
# checkpoint after step 10 (done=10) falls on an unrecorded step (9).
FIT = {"samples": BATCH * STEPS, "batch_size": BATCH, "log_every": 3}


def _truth() -> SyntheticFeatures:
    return SyntheticFeatures(D_SAE, D_IN, firing_probability=0.1, seed=0)


def _source(name: str) -> torch.Tensor | SyntheticFeatures:
    if name == "tensor":  # 1000 rows: 15 batches an epoch, so the run crosses an epoch
        return _truth().sample(1000, torch.Generator().manual_seed(5))
    return _truth()


def _sae(kind: str, d_sae: int = D_SAE) -> SparseAutoencoder:
    return SparseAutoencoder(D_IN, d_sae, kind=kind, seed=0, **KINDS.get(kind, {}))  # type: ignore[arg-type]


def _history(sae: SparseAutoencoder) -> tuple[list[Any], ...]:
    h = sae.history
    assert h is not None
    return h.steps, h.samples, h.mse, h.fvu, h.l0, h.dead


def _same_run(got: SparseAutoencoder, want: SparseAutoencoder) -> None:
    assert torch.equal(got.params, want.params)
    assert torch.equal(got.threshold, want.threshold)
    assert torch.equal(got.scale, want.scale)
    assert _history(got) == _history(want)
    assert got.fitted


class _Crash(Exception):
    """A writer failing (or the process dying) at a chosen moment."""


def _env() -> dict[str, str]:
    src = str(Path(sp.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return env | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


# The killed run: the same helpers, imported from this file, with the checkpoint writer
# wrapped to end the process (no cleanup, no finally) right after its second checkpoint.
KILLED = """
import os, sys
sys.path.insert(0, {tests!r})
import superposition.sae.train as T
import test_sae_checkpoint as t
write, n = T._write_checkpoint, [0]
def write_then_die(*a, **k):
    write(*a, **k)
    n[0] += 1
    if n[0] == 2:
        os._exit(17)
T._write_checkpoint = write_then_die
t._sae({kind!r}).fit(t._source({source!r}), **t.FIT, checkpoint={ck!r}, checkpoint_every=5)
"""


@pytest.mark.parametrize(
    ("kind", "source"),
    [("topk", "tensor"), ("topk", "synthetic"), ("jumprelu", "tensor"), ("batchtopk", "synthetic")],
)
def test_a_killed_run_resumed_from_its_checkpoint_ends_where_an_uninterrupted_run_ends(
    tmp_path: Path, kind: str, source: str
) -> None:
    ck = str(tmp_path / "ck")
    script = KILLED.format(tests=str(Path(__file__).parent), kind=kind, source=source, ck=ck)
    done = subprocess.run(
        [sys.executable, "-c", script], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 17, done.stderr
    meta = json.loads((tmp_path / "ck.json").read_text())
    assert meta["step"] == 10  # killed after its second checkpoint, 13 steps short
    assert meta["history"]["steps"] == [0, 3, 6, 9]
    want = _sae(kind).fit(_source(source), **FIT)
    got = _sae(kind).fit(_source(source), **FIT, resume=ck)
    _same_run(got, want)
    # The resumed run took the remaining steps itself: it recorded steps past the checkpoint.
    assert got.history is not None
    assert got.history.steps[-1] == STEPS - 1


def test_a_checkpointed_run_trains_exactly_like_one_without(tmp_path: Path) -> None:
    want = _sae("topk").fit(_source("tensor"), **FIT)
    got = _sae("topk").fit(_source("tensor"), **FIT, checkpoint=tmp_path / "ck", checkpoint_every=4)
    _same_run(got, want)
    # The last checkpoint is the end of the run; resuming from it changes nothing.
    meta = json.loads((tmp_path / "ck.json").read_text())
    assert (meta["step"], meta["seen"]) == (STEPS, BATCH * STEPS)
    assert meta["history"]["fvu"] == want.history.fvu  # type: ignore[union-attr]
    _same_run(_sae("topk").fit(_source("tensor"), **FIT, resume=tmp_path / "ck"), want)


def test_resume_from_a_step_whose_numbers_were_not_recorded_and_source_runs_dry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An iterable that runs dry right after the checkpoint: the last step's numbers, not
    recorded before the checkpoint, must still end the history (they were saved with it)."""
    import superposition.sae.train as T

    write = T._write_checkpoint

    def write_then_crash(*args: Any, **kwargs: Any) -> None:
        write(*args, **kwargs)
        raise _Crash

    def chunks() -> Any:
        g = torch.Generator().manual_seed(3)
        return (torch.randn(40, D_IN, generator=g) for _ in range(16))  # 640 rows: 10 batches

    fit = {**FIT, "log_every": 4}
    with pytest.warns(RuntimeWarning, match="ran out"):
        want = _sae("topk").fit(chunks(), **fit)
    monkeypatch.setattr(T, "_write_checkpoint", write_then_crash)
    with pytest.raises(_Crash):  # killed after the checkpoint of step 10, before the end
        _sae("topk").fit(chunks(), **fit, checkpoint=tmp_path / "ck", checkpoint_every=10)
    monkeypatch.undo()
    meta = json.loads((tmp_path / "ck.json").read_text())
    assert meta["step"] == 10
    assert meta["history"]["steps"] == [0, 4, 8]
    assert meta["pending"][0] == 9
    with pytest.warns(RuntimeWarning, match="ran out"):
        got = _sae("topk").fit(chunks(), **fit, resume=tmp_path / "ck")
    _same_run(got, want)
    assert want.history is not None
    assert want.history.steps == [0, 4, 8, 9]


def test_resume_replays_the_stream_from_the_generator_state_the_run_began_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint holds the generator's state at the start of the run, so a resumed
    run's stream does not depend on the state of the generator it is given (documented)."""
    import superposition.sae.train as T

    write = T._write_checkpoint

    def write_then_crash(*args: Any, **kwargs: Any) -> None:
        write(*args, **kwargs)
        raise _Crash

    x = _source("tensor")
    want = _sae("topk").fit(x, **FIT, generator=torch.Generator().manual_seed(7))
    monkeypatch.setattr(T, "_write_checkpoint", write_then_crash)
    with pytest.raises(_Crash):
        _sae("topk").fit(
            x,
            **FIT,
            generator=torch.Generator().manual_seed(7),
            checkpoint=tmp_path / "ck",
            checkpoint_every=6,
        )
    monkeypatch.undo()
    other = torch.Generator().manual_seed(99)
    _same_run(_sae("topk").fit(x, **FIT, generator=other, resume=tmp_path / "ck"), want)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ck")
    _sae("topk").fit(_source("tensor"), **FIT, checkpoint=folder / "ck", checkpoint_every=10)
    return folder / "ck"


@pytest.mark.parametrize(
    ("sae", "fit", "match"),
    [
        ({"d_sae": 48}, {}, r"an SAE with d_sae=32 there but 48 here"),
        ({"kind": "relu"}, {}, r"kind='topk' there but 'relu' here.*k=3 there but None here"),
        ({}, {"samples": BATCH * 20}, r"a fit with samples=1472 there but 1280 here"),
        ({}, {"batch_size": 32}, r"batch_size=64 there but 32 here"),
        ({}, {"lr": 1e-3}, r"lr=0.004 there but 0.001 here"),
        ({}, {"source": "tensor500"}, r"a source rows=1000 there but 500 here"),
        ({}, {"source": "synthetic"}, r"type='Tensor' there but 'SyntheticFeatures' here"),
    ],
)
def test_resume_refuses_another_sae_or_other_fit_arguments_and_changes_nothing(
    checkpoint: Path, sae: dict[str, Any], fit: dict[str, Any], match: str
) -> None:
    model = _sae(sae.get("kind", "topk"), sae.get("d_sae", D_SAE))
    before = model.params.detach().clone(), model.scale.clone()
    files = _snapshot(checkpoint.parent)
    name = fit.pop("source", "tensor")
    source = _source("tensor")[:500] if name == "tensor500" else _source(name)
    with pytest.raises(ValueError, match=f"cannot resume from .*{match}.*resume with the SAE"):
        model.fit(
            source, **{**FIT, **fit}, resume=checkpoint, checkpoint=checkpoint, checkpoint_every=2
        )
    assert torch.equal(model.params, before[0])
    assert torch.equal(model.scale, before[1])
    assert not model.fitted
    assert model.history is None
    assert _snapshot(checkpoint.parent) == files


def test_checkpoint_arguments_are_checked_before_any_work(tmp_path: Path) -> None:
    model = _sae("topk")
    x = _source("tensor")
    with pytest.raises(ValueError, match="checkpoint_every=5 needs checkpoint="):
        model.fit(x, **FIT, checkpoint_every=5)
    with pytest.raises(ValueError, match="checkpoint_every must be a positive int, got 0"):
        model.fit(x, **FIT, checkpoint=tmp_path / "ck", checkpoint_every=0)
    with pytest.raises(FileNotFoundError, match=r"its folder .*missing.* does not exist"):
        model.fit(x, **FIT, checkpoint=tmp_path / "missing" / "ck")
    with pytest.raises(FileNotFoundError, match=r"cannot resume from .*does not exist"):
        model.fit(x, **FIT, resume=tmp_path / "ck")
    sp.SparseAutoencoder(D_IN, D_SAE, k=3).save(tmp_path / "sae")
    with pytest.raises(ValueError, match=r"not a checkpoint of SparseAutoencoder\.fit"):
        model.fit(x, **FIT, resume=tmp_path / "sae")
    assert not model.fitted
    assert model.history is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae.json", "sae.safetensors"]


def test_a_crash_while_writing_the_tensors_leaves_the_previous_checkpoint_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second checkpoint's tensor file is half written when the writer fails: the first
    checkpoint stays as it was (both files), no temporary file is left, and it resumes."""
    import safetensors.torch

    real, calls = safetensors.torch.save_file, [0]

    def half_then_crash(tensors: Any, filename: str, metadata: Any = None) -> None:
        calls[0] += 1
        if calls[0] < 2:
            return real(tensors, filename, metadata=metadata)
        Path(filename).write_bytes(b"\x00" * 100)  # a torn write
        raise _Crash

    monkeypatch.setattr(safetensors.torch, "save_file", half_then_crash)
    x = _source("tensor")
    with pytest.raises(_Crash):
        _sae("topk").fit(x, **FIT, checkpoint=tmp_path / "ck", checkpoint_every=5)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.json", "ck.safetensors"]
    assert json.loads((tmp_path / "ck.json").read_text())["step"] == 5
    _same_run(_sae("topk").fit(x, **FIT, resume=tmp_path / "ck"), _sae("topk").fit(x, **FIT))


def test_a_crash_between_the_two_files_leaves_a_usable_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the tensor file of the second checkpoint and before its JSON: the tensor
    file (which carries the state in its header) is the new one, and resuming from it is
    exact; the JSON sidecar is one checkpoint behind, and whole."""
    from superposition import _io

    real, calls = _io.atomic_write, [0]

    def crash_on_second(path: Any, data: Any) -> Path:
        calls[0] += 1
        if calls[0] == 2:
            raise _Crash
        return real(path, data)

    monkeypatch.setattr(_io, "atomic_write", crash_on_second)
    x = _source("tensor")
    with pytest.raises(_Crash):
        _sae("jumprelu").fit(x, **FIT, checkpoint=tmp_path / "ck", checkpoint_every=5)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.json", "ck.safetensors"]
    assert json.loads((tmp_path / "ck.json").read_text())["step"] == 5
    got = _sae("jumprelu").fit(x, **FIT, resume=tmp_path / "ck")
    _same_run(got, _sae("jumprelu").fit(x, **FIT))


# --------------------------------------------------------------------------- two gloo ranks

RANKS = """
import datetime, json, os, sys
from pathlib import Path
import torch, torch.distributed as dist
sys.path.insert(0, {tests!r})
import superposition.sae.train as T
import test_sae_checkpoint as t
rank, mode, out = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method="file://" + str(out / (mode + ".store")), rank=rank,
                        world_size=2, timeout=datetime.timedelta(seconds=60))
write, n = T._write_checkpoint, [0]
def logged(*a, **k):
    write(*a, **k)
    n[0] += 1
    with open(out / f"writes{{rank}}", "a") as f:
        f.write(f"{{n[0]}}\\n")
    if mode == "killed" and n[0] == 2:
        os._exit(17)
    if mode == "fails":
        raise OSError("no space left on device")
T._write_checkpoint = logged
fit = dict(t.FIT, batch_size=t.BATCH // 2)
if mode == "killed":
    t._sae("topk").fit(t._source("synthetic"), **fit, checkpoint=out / "ck", checkpoint_every=5)
elif mode == "fails":
    try:
        t._sae("topk").fit(t._source("synthetic"), **fit, checkpoint=out / "no", checkpoint_every=5)
    except Exception as err:
        (out / f"error{{rank}}").write_text(f"{{type(err).__name__}}: {{err}}")
else:
    want = t._sae("topk").fit(t._source("synthetic"), **fit)
    got = t._sae("topk").fit(t._source("synthetic"), **fit, resume=out / "ck")
    if rank == 0:
        want.save(out / "want")
        got.save(out / "got")
        (out / "histories.json").write_text(json.dumps([t._history(want), t._history(got)]))
dist.destroy_process_group()
"""


def _ranks(mode: str, out: Path) -> list[subprocess.Popen[str]]:
    env = _env() | {"GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}
    script = RANKS.format(tests=str(Path(__file__).parent))
    return [
        subprocess.Popen(
            [sys.executable, "-c", script, str(r), mode, str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]


def test_two_ranks_rank_zero_alone_writes_and_a_resumed_run_ends_where_an_uninterrupted_one_ends(
    tmp_path: Path,
) -> None:
    killed = _ranks("killed", tmp_path)
    # Rank 0 dies after its second checkpoint; rank 1 then waits for it in a collective.
    _, err = killed[0].communicate(timeout=180)
    assert killed[0].returncode == 17, err
    killed[1].kill()
    killed[1].communicate()
    assert (tmp_path / "writes0").read_text().split() == ["1", "2"]
    assert not (tmp_path / "writes1").exists()
    assert json.loads((tmp_path / "ck.json").read_text())["step"] == 10
    from conftest import finish_ranks

    resumed = _ranks("resumed", tmp_path)
    hang = "a resumed rank was still running after 180 s: a hang"
    for code, err in finish_ranks(resumed, time.monotonic() + 180, hang):
        assert code == 0, err
    want, got = SparseAutoencoder.load(tmp_path / "want"), SparseAutoencoder.load(tmp_path / "got")
    for name in ("W_enc", "W_dec", "b_enc", "b_dec", "scale", "threshold"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    h_want, h_got = json.loads((tmp_path / "histories.json").read_text())
    assert h_got == h_want
    assert h_want[0][-1] == STEPS - 1
    # The resumed run wrote no checkpoint (it was not asked to), on either rank.
    assert (tmp_path / "writes0").read_text().split() == ["1", "2"]


def test_two_ranks_a_failed_checkpoint_write_on_rank_zero_stops_both_with_its_message(
    tmp_path: Path,
) -> None:
    from conftest import finish_ranks

    procs = _ranks("fails", tmp_path)
    deadline = time.monotonic() + 50  # well inside the ranks' 60 s collective timeout
    hang = "rank 1 was still waiting for rank 0 after 50 s: a hang"
    for code, err in finish_ranks(procs, deadline, hang):
        assert code == 0, err
    assert (tmp_path / "error0").read_text() == "OSError: no space left on device"
    assert "no space left on device" in (tmp_path / "error1").read_text()
    assert "rank 0" in (tmp_path / "error1").read_text()
