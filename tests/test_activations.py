"""Activations (access, metrics, save/load) and StreamingStatistics (update, merge, finalise)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from superposition import metrics
from superposition.probe import Activations, StreamingStatistics


def make(n_texts: int = 3, per_text: int = 4, neurons: int = 5, seed: int = 0) -> Activations:
    g = torch.Generator().manual_seed(seed)
    n = n_texts * per_text
    return Activations(
        torch.nn.functional.gelu(torch.randn(n, neurons, generator=g)),
        tokens=[f"tok{i}é" for i in range(n)],
        token_ids=torch.arange(n) + 100,
        text_index=torch.arange(n_texts).repeat_interleave(per_text),
        position=torch.arange(per_text).repeat(n_texts),
        layer=3,
        module_name="encoder.layer.3.output.dense",
        model_name="tiny",
    )


def test_for_text_is_a_view_of_one_texts_rows() -> None:
    acts = make()
    one = acts.for_text(1)
    assert one.tokens == ["tok4é", "tok5é", "tok6é", "tok7é"]
    assert one.text_index.tolist() == [0, 0, 0, 0]
    assert one.values.data_ptr() == acts.values[4].data_ptr()
    assert acts.for_text(-1).token_ids.tolist() == [108, 109, 110, 111]
    assert (acts.n_tokens, acts.n_neurons, acts.n_texts, len(acts)) == (12, 5, 3, 12)


def test_metrics_are_those_of_the_values() -> None:
    acts = make()
    torch.testing.assert_close(acts.cosine_distance(), metrics.cosine_distance(acts.values))
    torch.testing.assert_close(
        acts.cosine_similarity(center=True), metrics.cosine_similarity(acts.values, center=True)
    )
    # an independent Pearson computation
    torch.testing.assert_close(
        acts.cosine_similarity(center=True),
        torch.from_numpy(np.corrcoef(acts.to_numpy().T)).float(),
        atol=1e-5,
        rtol=1e-5,
    )
    assert acts.stats(threshold=0.5).threshold == 0.5
    assert isinstance(acts.to_numpy(), np.ndarray)
    assert acts.to_numpy().dtype == np.float32


def test_save_and_load_round_trip_exactly(tmp_path: Path) -> None:
    acts = make()
    path = acts.save(tmp_path / "acts.safetensors")
    assert (tmp_path / "acts.json").is_file()
    back = Activations.load(path)
    assert torch.equal(back.values, acts.values)
    for name in ("token_ids", "text_index", "position"):
        assert torch.equal(getattr(back, name), getattr(acts, name))
    assert back.tokens == acts.tokens
    assert (back.layer, back.module_name, back.model_name) == (3, acts.module_name, "tiny")
    assert repr(back) == repr(acts)


def test_load_never_unpickles(tmp_path: Path) -> None:
    torch.save({"values": torch.ones(1, 1)}, tmp_path / "acts.safetensors")
    (tmp_path / "acts.json").write_text("{}")
    with pytest.raises(Exception, match=r"(?i)header|safetensor|invalid|deserializ"):
        Activations.load(tmp_path / "acts.safetensors")


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"written by Activations.save"):
        Activations.load(tmp_path / "missing.safetensors")
    path = make().save(tmp_path / "a.safetensors")
    meta = json.loads((tmp_path / "a.json").read_text())
    meta["format"] = "something else"
    (tmp_path / "a.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="is not a saved Activations"):
        Activations.load(path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"values": torch.ones(3)}, r"values must be a \[n_tokens, n_neurons\] tensor, got \(3,\)"),
        ({"token_ids": torch.zeros(2)}, r"token_ids must be a \[12\] tensor to match values"),
        ({"tokens": ["a"]}, "tokens must have 12 entries to match values, got 1"),
        ({"text_index": torch.arange(12).flip(0)}, "text_index must be non-decreasing"),
    ],
)
def test_inconsistent_fields(change: dict[str, Any], match: str) -> None:
    acts = make()
    fields = {
        "values": acts.values,
        "tokens": acts.tokens,
        "token_ids": acts.token_ids,
        "text_index": acts.text_index,
        "position": acts.position,
    }
    with pytest.raises(ValueError, match=match):
        Activations(**{**fields, **change})


def test_for_text_out_of_range() -> None:
    with pytest.raises(IndexError, match=r"text 3 is out of range for 3 texts \(valid: -3..2\)"):
        make().for_text(3)


# --------------------------------------------------------------------------- streaming


def _assert_stats_equal(acc: StreamingStatistics, X: torch.Tensor) -> None:
    want = metrics.neuron_statistics(X, threshold=acc.threshold)
    got = acc.finalise()
    assert got.count == X.shape[0]
    for name in ("mean", "variance", "frequency", "kurtosis"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), atol=1e-4, rtol=1e-4)
    for center in (False, True):
        torch.testing.assert_close(
            acc.cosine_similarity(center=center),
            metrics.cosine_similarity(X, center=center),
            atol=1e-5,
            rtol=1e-5,
        )


@given(
    n=st.integers(2, 40),
    d=st.integers(1, 6),
    cut=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
def test_streaming_equals_materialised_and_merge_equals_one_pass(
    n: int, d: int, cut: float, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    X = torch.nn.functional.gelu(torch.randn(n, d, generator=g) * 3)
    # A column varying less than float32 round-off of the others is "dead" to the float32
    # materialised path but not to the float64 accumulator; that edge is not what is tested.
    k = int(cut * n)
    one = StreamingStatistics(threshold=0.1)
    for start in range(0, n, 7):
        one.update(X[start : start + 7])
    _assert_stats_equal(one, X)
    halves = (
        StreamingStatistics(threshold=0.1)
        .update(X[:k])
        .merge(StreamingStatistics(threshold=0.1).update(X[k:]))
    )
    _assert_stats_equal(halves, X)
    torch.testing.assert_close(halves.gram, one.gram, atol=1e-9, rtol=1e-9)


def test_streaming_cosine_of_a_neuron_deep_in_a_gelu_tail() -> None:
    """float32 activations of 1e-22 (GELU(-10)) square to below float32's range: the float64
    accumulator and the in-memory path (which scales each neuron) both keep the direction."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, generator=g)
    X = torch.stack([x, x * 7.6e-23, torch.randn(50, generator=g)], dim=1)
    acc = StreamingStatistics().update(X[:20]).update(X[20:])
    for center in (False, True):
        streamed = acc.cosine_similarity(center=center)
        torch.testing.assert_close(streamed, metrics.cosine_similarity(X, center=center))
        assert float(streamed[0, 1]) == pytest.approx(1.0, abs=1e-6)


def test_merge_leaves_its_inputs_unchanged() -> None:
    a = StreamingStatistics().update(torch.ones(2, 3))
    b = StreamingStatistics().update(torch.ones(4, 3))
    merged = a.merge(b)
    assert (a.count, b.count, merged.count) == (2, 4, 6)
    assert a.merge(StreamingStatistics()).count == 2


def test_memory_does_not_grow_with_tokens() -> None:
    acc = StreamingStatistics(8)
    sizes = {t.numel() for t in (acc._moments, acc._active, acc._comoment) if t is not None}
    for _ in range(5):
        acc.update(torch.randn(1000, 8))
    assert {t.numel() for t in (acc._moments, acc._active, acc._comoment) if t is not None} == sizes


def test_save_load_and_merge_shards(tmp_path: Path) -> None:
    X = torch.randn(30, 4)
    a = StreamingStatistics(layer=2).update(X[:10]).save(tmp_path / "a.safetensors")
    b = StreamingStatistics(layer=2).update(X[10:]).save(tmp_path / "b.safetensors")
    merged = StreamingStatistics.load(a).merge(StreamingStatistics.load(b))
    assert merged.layer == 2
    _assert_stats_equal(merged, X)


def test_streaming_errors() -> None:
    acc = StreamingStatistics()
    with pytest.raises(ValueError, match="no tokens have been accumulated yet; call update"):
        acc.finalise()
    with pytest.raises(
        ValueError, match=r"floating-point \[tokens, neurons\] tensor, got shape \(3,\)"
    ):
        acc.update(torch.ones(3))
    acc.update(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"X must have 3 neurons .*got shape \(2, 4\)"):
        acc.update(torch.ones(2, 4))
    with pytest.raises(ValueError, match="X must be finite"):
        acc.update(torch.tensor([[1.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match=r"cannot merge accumulators of 3 and 4 neurons"):
        acc.merge(StreamingStatistics().update(torch.ones(1, 4)))
    with pytest.raises(ValueError, match=r"with threshold=0\.0, gram=True and threshold=1\.0"):
        acc.merge(StreamingStatistics(threshold=1.0))
    with pytest.raises(TypeError, match="can only merge a StreamingStatistics, got int"):
        acc.merge(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="made with gram=False"):
        StreamingStatistics(gram=False).update(torch.ones(2, 2)).cosine_similarity()
    with pytest.raises(ValueError, match="n_neurons must be a positive int or None, got 0"):
        StreamingStatistics(0)


def test_load_rejects_other_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"x": torch.ones(1)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="is not a saved StreamingStatistics"):
        StreamingStatistics.load(tmp_path / "x.safetensors")


def test_concat_of_every_text_rebuilds_the_whole() -> None:
    acts = make()
    pad = torch.zeros(acts.n_tokens, dtype=torch.bool)
    pad[-1] = True
    acts = dataclasses.replace(acts, is_pad=pad)
    back = Activations.concat([acts.for_text(i) for i in range(acts.n_texts)])
    assert torch.equal(back.values, acts.values)
    for name in ("token_ids", "text_index", "position", "is_pad"):
        assert torch.equal(getattr(back, name), getattr(acts, name)), name
    assert back.tokens == acts.tokens
    assert repr(back) == repr(acts)


def test_concat_refuses_parts_of_different_neurons() -> None:
    acts = make()
    other = dataclasses.replace(acts, values=acts.values[:, :2].contiguous())
    with pytest.raises(ValueError, match=r"same neurons .*parts\[1\] has"):
        Activations.concat([acts, other])
    with pytest.raises(ValueError, match="at least one"):
        Activations.concat([])


def test_save_load_keeps_float64_and_every_field(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    X = 100 + 0.01 * torch.randn(600, 3, generator=g, dtype=torch.float64)
    for keep_gram in (True, False):
        acc = StreamingStatistics(threshold=100.0, gram=keep_gram).update(X)
        back = StreamingStatistics.load(acc.save(tmp_path / f"s{keep_gram}"))
        assert (back.count, back.dtype, back.keep_gram) == (600, torch.float64, keep_gram)
        for name in ("mean", "variance", "frequency", "skewness", "kurtosis"):
            got, want = getattr(back.finalise(), name), getattr(acc.finalise(), name)
            assert got.dtype == torch.float64
            assert torch.equal(got, want), name
        if keep_gram:
            assert torch.equal(back.comoment, acc.comoment)
            assert torch.equal(back.pearson(), acc.pearson())


def test_load_rejects_the_old_power_sum_format(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    old = {"format": "superposition.StreamingStatistics/1", "count": "2", "threshold": "0.0"}
    tensors = {"sums": torch.zeros(4, 3, dtype=torch.float64), "active": torch.zeros(3)}
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=old)
    with pytest.raises(
        ValueError,
        match=r"old format 'superposition\.StreamingStatistics/1', which kept raw power sums.*"
        r"reads only 'superposition\.StreamingStatistics/2'; stream the activations again",
    ):
        StreamingStatistics.load(tmp_path / "old.safetensors")


def test_a_rejected_first_batch_leaves_no_state() -> None:
    acc = StreamingStatistics()
    with pytest.raises(ValueError, match="X must be finite"):
        acc.update(torch.tensor([[1.0, float("nan")]]))
    assert (acc.n_neurons, acc.count) == (None, 0)
    assert acc.update(torch.ones(2, 5)).n_neurons == 5


def test_float64_in_float64_out_and_float32_stays_float32() -> None:
    X = torch.randn(20, 3, dtype=torch.float64)
    for dtype in (torch.float32, torch.float64):
        acc = StreamingStatistics().update(X.to(dtype))
        assert acc.finalise().kurtosis.dtype == dtype
        assert acc.cosine_similarity().dtype == acc.pearson().dtype == dtype
        assert metrics.neuron_statistics(X.to(dtype)).kurtosis.dtype == dtype
    mixed = StreamingStatistics().update(X[:10].float()).merge(StreamingStatistics().update(X[10:]))
    assert mixed.finalise().mean.dtype == torch.float64
