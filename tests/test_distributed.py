"""Streaming under torch.distributed: two gloo processes on the CPU must give what one process
gives over the same corpus (exactly where the merge is exact), with uneven and empty shares,
and a failure on one rank must end both.

The ranks are real processes (this file run as a script, see ``_worker``), rendezvousing
through a file store in ``tmp_path`` (no port to race for) with a timeout on every
collective. Every comparison is against a single process over the whole corpus, computed here
from the same saved model. The model runs one text per batch in both: a token's activations
then come from identical computations whichever rank runs its text, so "exact" below means
bit for bit, with no tolerance to hide a wrong merge (larger batches change the float
rounding of attention a little, which says nothing about the reduction).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

import superposition as sp
from superposition.distributed import reduce_statistics, reduce_units, shard
from superposition.units import UnitBasis, UnitStatistics, collect_units, score_units

FFN = 48  # the tiny BERT's MLP width (conftest)
# 19 texts: odd, so rank 0 gets 10 and rank 1 gets 9, and rank 0's share spans two of the
# stream's chunks (8 batches each) so the chunk offsets are mapped to corpus indices too.
TEXTS = [
    f"{w} {i}: the {a} cat sat on the {b} mat while {c} birds sang"
    for i, (w, a, b, c) in enumerate(
        zip(
            [f"word{j}" for j in range(19)],
            ["black", "white", "big", "small"] * 5,
            ["red", "green", "blue"] * 7,
            ["two", "many", "no", "loud", "quiet"] * 4,
            strict=False,
        )
    )
]
LABELS = ["odd" if i % 3 else "even" for i in range(len(TEXTS))]
SETTINGS = {"top_k": 4, "samples": 3, "window": 2}
# Generous: the ranks import torch and transformers (seconds each on a busy 2-core machine).
WAIT_S = 240


# --------------------------------------------------------------------------- the ranks


def _probe(
    model_dir: str, progress: bool | None = None, layer: Any = 0, site: Any = "neurons"
) -> Any:
    model, tokenizer = sp.load_model(model_dir)
    return sp.ActivationProbe(
        model, layer=layer, site=site, tokenizer=tokenizer, batch_size=1, progress=progress
    )


def _bases() -> list[Any]:
    return [None, UnitBasis.rotation(FFN, seed=0)]


# SAEs: 300 steps of 128 rows, as 2 ranks x 64 or 1 process x 128.
SAE_KINDS = {"topk": {"k": 4}, "relu": {"l1": 1e-3}, "jumprelu": {"l0": 1e-3}}
SAE_STEPS, SAE_BATCH = 300, 128


def _fit_saes(rank: int, size: int) -> dict[str, Any]:
    """The SAEs every test fits, from 2 ranks or from one process: a synthetic source drawn
    alike on every rank (each keeps its slice of a batch), and a stream of each rank's own."""
    from superposition.sae import SparseAutoencoder, SyntheticFeatures

    truth = SyntheticFeatures(64, 16, firing_probability=0.05, seed=0)
    batch = SAE_BATCH // size
    out = {}
    for kind, extra in SAE_KINDS.items():
        sae = SparseAutoencoder(16, 64, kind=kind, seed=0, **extra)  # type: ignore[arg-type]
        out[kind] = sae.fit(truth, samples=SAE_STEPS * SAE_BATCH, batch_size=batch)
    x = torch.randn(SAE_STEPS * SAE_BATCH, 16, generator=torch.Generator().manual_seed(1)) + 1
    own = (x[t : t + SAE_BATCH][rank * batch : (rank + 1) * batch] for t in range(0, len(x), 128))
    sae = SparseAutoencoder(16, 64, k=4, seed=0)
    out["own"] = sae.fit(own, samples=SAE_STEPS * SAE_BATCH, batch_size=batch)
    # Transcoders: rows [x | y], each side scaled on its own (from every rank's first rows
    # when each rank reads its own), and a skip transcoder's linear path averaged too.
    from superposition.sae import SyntheticMLP, Transcoder

    mlp = SyntheticMLP(64, 16, 12, firing_probability=0.05, skip=0.5, noise=0.3, seed=0)
    tc = Transcoder(16, 12, 64, k=4, skip=True, seed=0)
    out["tc"] = tc.fit(mlp, samples=SAE_STEPS * SAE_BATCH, batch_size=batch)
    rows = mlp.rows(SAE_STEPS * SAE_BATCH, torch.Generator().manual_seed(2))
    mine = slice(rank * batch, (rank + 1) * batch)
    own = (rows[t : t + SAE_BATCH][mine] for t in range(0, len(rows), SAE_BATCH))
    tc = Transcoder(16, 12, 64, kind="jumprelu", l0=1e-3, seed=0)
    out["tc_own"] = tc.fit(own, samples=SAE_STEPS * SAE_BATCH, batch_size=batch)
    return out


class _Tally:
    """An accumulator of one's own (a sum and a count) that follows the Mergeable protocol:
    ``distributed.reduce`` must merge it without knowing its class."""

    def __init__(self, total: torch.Tensor, n: int) -> None:
        self.total, self.n = total, n

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"total": self.total}, {"n": self.n}

    @classmethod
    def from_state(
        cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any], source: str
    ) -> _Tally:
        return cls(tensors["total"], meta["n"])

    def merge(self, other: _Tally) -> _Tally:
        return _Tally(self.total + other.total, self.n + other.n)


def _worker(mode: str, rank: int, size: int, store: str, model_dir: str, out: str) -> None:
    """One rank: stream the corpus every way the library allows and save what comes back."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    seconds = 8 if mode.startswith("hang") else 60 if mode == "main" else 20
    timeout = datetime.timedelta(seconds=seconds)
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=size, timeout=timeout
    )
    folder = Path(out)
    try:
        if mode == "crash" and rank == 1:
            raise SystemExit("rank 1 stops before the collective")
        if mode == "bad_text":
            from superposition.sae import SparseAutoencoder

            def batches() -> Any:  # rank 1's fifth batch holds a NaN
                for t in range(20):
                    yield torch.full((8, 4), math.nan if (rank, t) == (1, 4) else 1.0 + t)

            try:
                SparseAutoencoder(4, 8, k=2, seed=0).fit(batches(), samples=160, batch_size=8)
            except Exception as err:
                (folder / f"sae{rank}.txt").write_text(f"{type(err).__name__}: {err}")
            probe = _probe(model_dir)
            probe.stream([*TEXTS[:3], 42, *TEXTS[3:]])  # index 3: on rank 1's share
            return
        if mode.startswith("hang"):  # rank 1 hangs mid-way: its model, or its SAE's source
            hangs = rank == 1
            if mode == "hang_fit":
                from superposition.sae import SparseAutoencoder

                def batches() -> Any:
                    for t in range(50):
                        if hangs and t == 3:
                            time.sleep(3600)
                        yield torch.rand(8, 4)

                SparseAutoencoder(4, 8, k=2, seed=0).fit(batches(), samples=400, batch_size=8)
                return
            probe = _probe(model_dir)
            if hangs and mode == "hang_killed":  # not a hang: killed outright, mid-stream
                probe.model.register_forward_pre_hook(lambda *_: os.kill(os.getpid(), 9))
            elif hangs:
                probe.model.register_forward_pre_hook(lambda *_: time.sleep(3600))
            if mode in ("hang_stream", "hang_killed"):
                probe.stream(TEXTS)
            else:
                collect_units(probe, TEXTS, **SETTINGS)
            return
        probe = _probe(model_dir, progress=True)
        if mode == "crash":
            probe.stream(TEXTS)
            return
        probe.stream(TEXTS).save(folder / f"list{rank}")
        probe.stream(sp.load_corpus(TEXTS), gram=False).save(folder / f"corpus{rank}")
        probe.stream(t for t in TEXTS).save(folder / f"generator{rank}")
        probe.stream(TEXTS[:1]).save(folder / f"one{rank}")
        enc = probe.get_tokenizer()(TEXTS[:3], padding=True, return_tensors="pt")
        probe.stream(dict(enc)).save(folder / f"pretokenized{rank}")
        both = _probe(model_dir, layer=[0, 1]).stream(TEXTS)
        for stats in both:
            stats.save(folder / f"layer{stats.layer}_{rank}")
        units = collect_units(probe, TEXTS, _bases(), categories=LABELS, **SETTINGS)
        for i, u in enumerate(units):
            u.save(folder / f"units{i}_{rank}")
        collect_units(probe, TEXTS[:1], **SETTINGS).save(folder / f"units_one{rank}")
        with _probe(model_dir, site=["neurons", "resid_post"]).capture(TEXTS) as batches:
            captured = [(c.text_index, c.position, c["resid_post"]) for c in batches]
        torch.save(captured, folder / f"capture{rank}.pt")
        try:  # a capture shared between ranks is read inside its with block
            next(iter(probe.capture(TEXTS)))
            outside = ""
        except RuntimeError as err:
            outside = str(err)
        for name, sae in _fit_saes(rank, size).items():
            sae.save(folder / f"sae_{name}{rank}")
            (folder / f"sae_{name}{rank}.fvu").write_text(json.dumps(sae.history.fvu))
        # Without all_ranks only rank 0 gets a result; the others get None.
        local = sp.StreamingStatistics().update(torch.full((2, 3), float(rank + 1)))
        only0 = reduce_statistics(local)
        units0 = reduce_units(UnitStatistics(3) if rank == 0 else None)
        tally = sp.distributed.reduce(
            _Tally(torch.full((2,), rank + 1.0), rank + 1), all_ranks=True
        )
        assert tally is not None
        try:  # rank 1 streamed with another threshold: no rank may wait for the other
            reduce_statistics(sp.StreamingStatistics(threshold=rank).update(torch.ones(2, 3)))
            mismatch = ""
        except ValueError as err:
            mismatch = str(err)
        flags = {
            "world": list(sp.distributed.world()),
            "reduced_count": None if only0 is None else only0.count,
            "units_none": units0 is None,
            "tally": [tally.total.tolist(), tally.n],
            "mismatch": mismatch,
            "outside": outside,
        }
        (folder / f"flags{rank}.json").write_text(json.dumps(flags))
        # Both ranks are alive and done: neither closes its connections while the other may
        # still be finishing the last collective (a gloo context torn down mid-exchange can
        # abort the peer; pytorch/gloo#155). Seen once in CI as rank 0's SIGABRT after every
        # result was written.
        dist.barrier()
    finally:
        dist.destroy_process_group()


@contextmanager
def _one_thread() -> Iterator[None]:
    """The single-process reference runs with one thread, as each rank does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _launch(mode: str, tmp: Path, model_dir: str) -> list[subprocess.Popen[str]]:
    out = tmp / mode
    out.mkdir()
    src = str(Path(sp.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["GLOO_SOCKET_IFNAME"] = env.get("GLOO_SOCKET_IFNAME", "lo")
    store = str(tmp / f"{mode}.store")
    return [
        subprocess.Popen(
            [sys.executable, __file__, mode, str(r), "2", store, model_dir, str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> str:
    from conftest import tiny_model

    folder = tmp_path_factory.mktemp("tiny-bert")
    tiny_model("bert")[0].save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, model_dir: str) -> dict[str, Any]:
    """All three two-rank runs at once (the failing ones mostly wait), then their results."""
    tmp = tmp_path_factory.mktemp("dist")
    started = {mode: _launch(mode, tmp, model_dir) for mode in ("main", "bad_text", "crash")}
    from conftest import finish_ranks

    deadline = time.monotonic() + WAIT_S
    hang = f"a rank was still running after {WAIT_S} s: a hang"
    done = {mode: finish_ranks(procs, deadline, hang) for mode, procs in started.items()}
    return {"dir": tmp / "main", **done}


@pytest.fixture(scope="module")
def main_run(runs: dict[str, Any]) -> Path:
    for rank, (code, err) in enumerate(runs["main"]):
        assert code == 0, f"rank {rank} failed:\n{err[-3000:]}"
    folder: Path = runs["dir"]
    return folder


# --------------------------------------------------------------------------- comparisons


def _same_statistics(got: sp.StreamingStatistics, want: sp.StreamingStatistics) -> None:
    assert got.count == want.count  # exact
    a, b = got.finalise(), want.finalise()
    assert torch.equal(a.frequency, b.frequency)  # from exact activity counts
    for name in ("mean", "variance", "skewness", "kurtosis"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), equal_nan=True)
    assert got.keep_gram == want.keep_gram
    if want.keep_gram:
        torch.testing.assert_close(got.comoment, want.comoment, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(got.cosine_similarity(), want.cosine_similarity())


def _same_units(got: UnitStatistics, want: UnitStatistics) -> None:
    for x, y in (
        (got.top_arrays(), want.top_arrays()),
        (got.sample_arrays(), want.sample_arrays()),
    ):
        for k in x:  # exact: values, corpus text indices, positions, token windows
            torch.testing.assert_close(x[k], y[k], rtol=0, atol=0, equal_nan=True, msg=k)
    assert got.count == want.count
    assert torch.equal(got.max_activation, want.max_activation)
    assert torch.equal(got.category_tokens, want.category_tokens)
    assert torch.equal(got.histogram, want.histogram)
    torch.testing.assert_close(got.category_mass, want.category_mass)
    _same_statistics(got.stats, want.stats)
    a, b = score_units(got), score_units(want)
    assert a.columns.keys() == b.columns.keys()
    for k in a.columns:
        exact = k in ("unit", "max_activation", "density", "token_diversity")
        tol = {"rtol": 0.0, "atol": 0.0} if exact else {}
        torch.testing.assert_close(a.columns[k], b.columns[k], equal_nan=True, **tol, msg=k)


@pytest.mark.parametrize("rank", [0, 1])
def test_streaming_statistics_equal_one_process(main_run: Path, model_dir: str, rank: int) -> None:
    with _one_thread():
        probe = _probe(model_dir)
        want = probe.stream(TEXTS, distributed=False)
        want_no_gram = probe.stream(TEXTS, gram=False)
        want_one = probe.stream(TEXTS[:1])
        enc = probe.get_tokenizer()(TEXTS[:3], padding=True, return_tensors="pt")
        want_pre = probe.stream(dict(enc))
        layers = _probe(model_dir, layer=[0, 1]).stream(TEXTS)
    load = sp.StreamingStatistics.load
    _same_statistics(load(main_run / f"list{rank}"), want)
    _same_statistics(load(main_run / f"generator{rank}"), want)
    _same_statistics(load(main_run / f"corpus{rank}"), want_no_gram)
    # One text, two ranks: rank 1 streams nothing and still takes part.
    _same_statistics(load(main_run / f"one{rank}"), want_one)
    _same_statistics(load(main_run / f"pretokenized{rank}"), want_pre)
    for stats in layers:
        _same_statistics(load(main_run / f"layer{stats.layer}_{rank}"), stats)


@pytest.mark.parametrize("rank", [0, 1])
def test_unit_records_and_scores_equal_one_process(
    main_run: Path, model_dir: str, rank: int
) -> None:
    with _one_thread():
        probe = _probe(model_dir)
        want = collect_units(probe, TEXTS, _bases(), categories=LABELS, **SETTINGS)
        want_one = collect_units(probe, TEXTS[:1], **SETTINGS)
    for i, w in enumerate(want):
        got = UnitStatistics.load(main_run / f"units{i}_{rank}")
        _same_units(got, w)
    # The records name texts of the whole corpus, from both ranks' shares.
    texts = UnitStatistics.load(main_run / f"units0_{rank}").top_arrays()["text_index"]
    assert {t % 2 for t in texts[texts >= 0].tolist()} == {0, 1}
    _same_units(UnitStatistics.load(main_run / f"units_one{rank}"), want_one)


def test_capture_gives_each_rank_its_share_with_corpus_indices(
    main_run: Path, model_dir: str
) -> None:
    """Each rank captures texts ``rank, rank + 2, ...``, indexed in the whole corpus, and its
    rows equal one process's capture of those texts."""
    shares = [torch.load(main_run / f"capture{r}.pt") for r in range(2)]
    seen: list[int] = []
    for rank, batches in enumerate(shares):
        texts = sorted({int(t) for text_index, _, _ in batches for t in text_index})
        assert texts == list(range(rank, len(TEXTS), 2))
        seen += texts
    assert sorted(seen) == list(range(len(TEXTS)))
    one = _probe(model_dir, site="resid_post").run(TEXTS)
    for batches in shares:
        for text_index, position, rows in batches:
            for t in text_index.unique().tolist():
                mine = rows[text_index == t]
                torch.testing.assert_close(mine, one.for_text(t).values, rtol=1e-4, atol=1e-5)
                assert position[text_index == t].tolist() == list(range(mine.shape[0]))
    flags = [json.loads((main_run / f"flags{r}.json").read_text()) for r in range(2)]
    assert all("iterate a capture inside its with block" in f["outside"] for f in flags)


def test_results_reach_rank_zero_only_unless_asked(main_run: Path) -> None:
    flags = [json.loads((main_run / f"flags{r}.json").read_text()) for r in range(2)]
    assert [f["world"] for f in flags] == [[0, 2], [1, 2]]
    assert [f["reduced_count"] for f in flags] == [4, None]
    assert [f["units_none"] for f in flags] == [False, True]


def test_any_mergeable_accumulator_reduces_and_a_misfit_stops_every_rank(main_run: Path) -> None:
    flags = [json.loads((main_run / f"flags{r}.json").read_text()) for r in range(2)]
    assert [f["tally"] for f in flags] == [[[3.0, 3.0], 3]] * 2
    want = "rank 1's StreamingStatistics cannot be merged into those of the ranks before it: "
    assert want in flags[0]["mismatch"]
    assert flags[1]["mismatch"].startswith("rank 0 failed while merging the ranks' results: ")
    assert want in flags[1]["mismatch"]
    assert "threshold=1.0" in flags[1]["mismatch"]


def test_the_accumulators_follow_the_state_protocol() -> None:
    from superposition.distributed import Mergeable

    s = sp.StreamingStatistics().update(torch.randn(5, 3))
    u = UnitStatistics(3)
    assert isinstance(s, Mergeable)
    assert isinstance(u, Mergeable)
    back = sp.StreamingStatistics.from_state(*s.state_dict(), "s")
    _same_statistics(back, s)
    empty = sp.StreamingStatistics(gram=False, threshold=0.5)
    again = sp.StreamingStatistics.from_state(*empty.state_dict(), "empty")
    assert (again.count, again.keep_gram, again.threshold) == (0, False, 0.5)
    assert UnitStatistics.from_state(*u.state_dict(), "u").n_units == 3
    tensors, meta = s.state_dict()
    with pytest.raises(ValueError, match=r"expected the tensors \['active', 'comoment', 'mom"):
        sp.StreamingStatistics.from_state({"moments": tensors["moments"]}, meta, "rank 1")


def test_only_rank_zero_shows_a_progress_bar(runs: dict[str, Any], main_run: Path) -> None:
    (_, err0), (_, err1) = runs["main"]
    assert "probe: " in err0
    assert "probe: " not in err1


def test_a_bad_text_on_one_rank_stops_both_with_its_message(runs: dict[str, Any]) -> None:
    (code0, err0), (code1, err1) = runs["bad_text"]
    assert code0 != 0
    assert code1 != 0
    # Rank 1 raises its own error; rank 0 raises the same type, naming rank 1 and the message.
    assert "TypeError: texts must contain only strings, got int at index 3: 42" in err1
    assert "TypeError: rank 1 of 2 failed, so every rank stops: TypeError: texts must" in err0


def test_data_parallel_sae_equals_one_process_with_the_whole_batch(main_run: Path) -> None:
    from superposition.sae import SparseAutoencoder, Transcoder

    for name, want in _fit_saes(0, 1).items():
        load = Transcoder.load if name.startswith("tc") else SparseAutoencoder.load
        got = [load(main_run / f"sae_{name}{r}") for r in range(2)]
        assert torch.equal(got[0].params, got[1].params), "the ranks' parameters drifted apart"
        # Row by row the gradients are the same sums in another order; JumpReLU's
        # straight-through kernel (a window on pre - θ) turns round-off into a little more.
        tol = 5e-3 if want.kind == "jumprelu" else 1e-5
        torch.testing.assert_close(got[0].params, want.params, rtol=0, atol=tol, msg=name)
        torch.testing.assert_close(got[0].scale, want.scale, msg=name)
        if isinstance(want, Transcoder):
            torch.testing.assert_close(got[0].output_scale, want.output_scale, msg=name)
        fvu = json.loads((main_run / f"sae_{name}0.fvu").read_text())
        torch.testing.assert_close(
            torch.tensor(fvu), torch.tensor(want.history.fvu), rtol=1e-3, atol=0
        )


def test_a_bad_batch_on_one_rank_stops_the_data_parallel_fit_everywhere(
    runs: dict[str, Any],
) -> None:
    folder = runs["dir"].parent / "bad_text"
    errors = [(folder / f"sae{r}.txt").read_text() for r in range(2)]
    assert errors[1] == "ValueError: source batch must be finite, got NaN or inf in shape (8, 4)"
    assert errors[0].startswith("ValueError: rank 1 of 2 failed, so every rank stops: ")
    assert "source batch must be finite, got NaN or inf in shape (8, 4); fix the error" in errors[0]


def test_a_rank_that_dies_before_a_collective_does_not_hang_the_other(
    runs: dict[str, Any],
) -> None:
    (code0, err0), (code1, err1) = runs["crash"]
    assert code1 != 0
    assert "rank 1 stops before the collective" in err1
    assert code0 != 0, f"rank 0 should fail once rank 1 is gone:\n{err0[-2000:]}"


# --------------------------------------------------------------------------- the command line

CLI_UNITS = ["--top-k", "4", "--coherence-units", "5", "--rotation", "--no-progress"]


def _torchrun() -> tuple[list[str], dict[str, str]]:
    """The command that launches ``superposition`` on 2 local ranks, and its environment."""
    src = str(Path(sp.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["GLOO_SOCKET_IFNAME"] = env.get("GLOO_SOCKET_IFNAME", "lo")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, "--nproc-per-node", "2", "-m", "superposition"], env


@pytest.fixture(scope="module")
def torchrun(tmp_path_factory: pytest.TempPathFactory, model_dir: str) -> dict[str, Any]:
    """`units` and `stream` launched by torchrun with two ranks (both at once), and the same
    commands in this process; one text per batch in both, as above."""
    from superposition.cli import main

    tmp = tmp_path_factory.mktemp("torchrun")
    corpus = tmp / "corpus.txt"
    corpus.write_text("\n".join(TEXTS) + "\n")
    common = ["--model", model_dir, "--corpus", str(corpus), "--batch-size", "1"]
    argv = {
        "units": ["units", *common, *CLI_UNITS],
        "stream": ["stream", *common],  # with its progress bar
    }
    launcher, env = _torchrun()
    procs = {
        name: subprocess.Popen(
            [*launcher, *args, "--out", str(tmp / f"{name}-2")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in argv.items()
    }
    with _one_thread():
        for name, args in argv.items():
            assert main([*args, "--out", str(tmp / f"{name}-1"), "--no-progress"]) == 0
    done = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            for p in procs.values():
                p.kill()
            pytest.fail(f"torchrun {name} was still running after {WAIT_S} s")
        assert proc.returncode == 0, f"torchrun {name} failed:\n{err[-3000:]}"
        done[name] = (out, err)
    return {"dir": tmp, **done}


HANGS = ("stream", "units", "fit", "killed")  # killed: SIGKILLed mid-stream, not hung


@pytest.fixture(scope="module")
def hung(tmp_path_factory: pytest.TempPathFactory, model_dir: str) -> dict[str, Any]:
    """Rank 1 hangs inside ``stream``, ``collect_units`` (its model sleeps) or a data-parallel
    SAE ``fit`` (its source sleeps), or is SIGKILLed inside ``stream``, the four pairs at once;
    for each, rank 0's exit status, its output and how long it waited. A launcher (torchrun)
    then stops the hung rank, which this does by hand."""
    tmp = tmp_path_factory.mktemp("hang")
    start = time.monotonic()
    procs = {where: _launch(f"hang_{where}", tmp, model_dir) for where in HANGS}
    out = {}
    try:
        for where, (rank0, rank1) in procs.items():
            _, err0 = rank0.communicate(timeout=WAIT_S)
            out[where] = (rank0.returncode, err0, time.monotonic() - start, rank1.poll())
    finally:
        for _, rank1 in procs.values():
            rank1.kill()
            rank1.communicate()
    return out


@pytest.mark.parametrize("where", HANGS)
def test_a_hung_rank_makes_the_others_fail_within_the_timeout(
    hung: dict[str, Any], where: str
) -> None:
    """Rank 0 must not wait for ever but fail, saying so, once the process group's timeout
    (8 s here) runs out."""
    code, err0, waited, rank1 = hung[where]
    assert rank1 == (-9 if where == "killed" else None)  # hung ranks are still running
    assert code != 0
    assert waited < 8 + 60, f"rank 0 took {waited:.0f} s to give up"  # start-up and one timeout
    # A dead rank's closed connection or, where gloo does not notice it, the timeout.
    died = "lost its connection to another rank" in err0 and "that rank died" in err0
    waited_out = "rank 0 of 2 waited for the other ranks" in err0
    assert waited_out or (where == "killed" and died), err0[-2000:]
    if waited_out:
        assert "a rank hung, died or fell far behind" in err0


def test_torchrun_units_equals_one_process(torchrun: dict[str, Any]) -> None:
    tmp = torchrun["dir"]
    out, _ = torchrun["units"]
    assert out.count("saved to") == 1  # rank 0 alone reports and writes
    for stem in ("neurons", "rotated_neurons"):
        _same_units(
            UnitStatistics.load(tmp / "units-2" / f"{stem}.units"),
            UnitStatistics.load(tmp / "units-1" / f"{stem}.units"),
        )
        got = json.loads((tmp / "units-2" / f"{stem}.json").read_text())["columns"]
        want = json.loads((tmp / "units-1" / f"{stem}.json").read_text())["columns"]
        assert got.keys() == want.keys()
        assert "context_coherence" in got
        for k in got:
            a, b = (torch.tensor([math.nan if x is None else x for x in c[k]]) for c in (got, want))
            exact = k in ("unit", "max_activation", "density", "token_diversity")
            tol = {"rtol": 0.0, "atol": 0.0} if exact else {}
            torch.testing.assert_close(a, b, equal_nan=True, **tol, msg=k)
    assert (tmp / "units-2" / "scores.png").is_file()


def test_torchrun_stream_equals_one_process_with_one_progress_bar(
    torchrun: dict[str, Any],
) -> None:
    tmp = torchrun["dir"]
    out, err = torchrun["stream"]
    assert out.count("saved to") == 1
    load = sp.StreamingStatistics.load
    _same_statistics(load(tmp / "stream-2" / "stats"), load(tmp / "stream-1" / "stats"))
    # Each bar draws itself once at 0 when it starts: one bar, from rank 0.
    assert len(re.findall(r"probe:\s+0(?:%|text)", err)) == 1, err


def test_torchrun_sae_train_shares_the_corpus_and_writes_once(
    tmp_path: Path, model_dir: str
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS * 4) + "\n")
    out = tmp_path / "sae"
    argv = ["sae", "train", "--model", model_dir, "--corpus", str(corpus), "--d-sae", "96"]
    argv += ["--k", "4", "--batch-size", "32", "--samples", "640", "--eval-texts", "4"]
    argv += ["--checkpoint-every", "5", "--out", str(out)]
    launcher, env = _torchrun()
    done = subprocess.run(
        [*launcher, *argv], env=env, capture_output=True, text=True, timeout=WAIT_S
    )
    failures = [line for line in done.stderr.splitlines() if "superposition sae train:" in line]
    assert done.returncode == 0, "\n".join(failures) or done.stderr[-3000:]
    assert done.stdout.count("trained in") == 1  # rank 0 alone evaluates and reports
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["ranks"], metrics["samples"], metrics["batch_size"]) == (2, 640, 32)
    assert metrics["eval"]["l0"] <= 4
    sae = sp.SparseAutoencoder.load(out / "sae")
    assert sae.fitted
    # 640 samples in steps of 2 ranks x 32 rows: 10 steps, checkpointed by rank 0 at 5 and 10
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["step"] == 10
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.json",
        "checkpoint.safetensors",
        "metrics.json",
        "sae.json",
        "sae.safetensors",
    ]


def test_commands_that_cannot_share_their_work_refuse_torchrun(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from superposition.cli import main

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["toy", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "superposition toy does not share its work between ranks" in err
    assert "run it as one process" in err


# --------------------------------------------------------------------------- one process


def test_shard_gives_every_item_once() -> None:
    for n in (0, 1, 2, 7):
        items = list(range(n))
        for size in (1, 2, 3):
            parts = [shard(items, r, size) for r in range(size)]
            assert sorted(x for p in parts for x in p) == items
            for r, p in enumerate(parts):
                assert p == [j * size + r for j in range(len(p))]
    corpus = sp.load_corpus(["a", "b", "c", "d", "e"])
    assert list(shard(corpus.head(4), 1, 2)) == ["b", "d"]
    assert list(shard(iter("abcde"), 2, 3)) == ["c"]
    rows = {"input_ids": torch.arange(10).reshape(5, 2), "attention_mask": torch.ones(5, 2)}
    assert shard(rows, 0, 2)["input_ids"][:, 0].tolist() == [0, 4, 8]


def test_shard_splits_hugging_face_datasets() -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": list("abcde")})
    assert shard(ds, 1, 2)["text"] == ["b", "d"]  # interleaved, like a list
    stream = ds.to_iterable_dataset()  # one file: split example by example
    assert [row["text"] for row in shard(stream, 0, 2)] == ["a", "c", "e"]


def test_shard_rejects_what_it_cannot_split() -> None:
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, 2\), got 2"):
        shard(["a"], 2, 2)
    with pytest.raises(ValueError, match="world_size must be a positive int, got 0"):
        shard(["a"], 0, 0)
    with pytest.raises(TypeError, match="got a single str"):
        shard("abc", 0, 2)
    with pytest.raises(ValueError, match="already share 1 of 2 of a corpus; pass the whole"):
        shard(sp.load_corpus(["a", "b"]).shard(1, 2), 0, 2)


def test_distributed_true_without_a_process_group_says_how_to_start_one(
    bert: torch.nn.Module, tokenizer: Any
) -> None:
    probe = sp.ActivationProbe(bert, tokenizer=tokenizer)
    with pytest.raises(RuntimeError, match=r"needs an initialised torch\.distributed process"):
        probe.stream(["a cat"], distributed=True)
    with pytest.raises(RuntimeError, match="launch with torchrun"):
        collect_units(probe, ["a cat"], distributed=True)
    with pytest.raises(TypeError, match="distributed must be True, False or None, got 'yes'"):
        probe.stream(["a cat"], distributed="yes")  # type: ignore[arg-type]


if __name__ == "__main__":
    import faulthandler

    # A rank that aborts in native code (a rare "terminate called without an active
    # exception" at shutdown, under CI load) then names the Python line it was on.
    faulthandler.enable()
    _worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:7])
