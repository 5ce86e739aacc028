"""Units: bases, streamed top contexts and samples (exact merges), the score table, and the
scores' known answers on real corpus tokens."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import superposition as sp
from conftest import tiny_model
from superposition.units import (
    UnitBasis,
    UnitStatistics,
    UnitTable,
    collect_units,
    context_embedder,
    context_rows,
    score_units,
)

# --------------------------------------------------------------------------- helpers


def _random_corpus(
    g: torch.Generator, n_texts: int, units: int, *, levels: int = 4
) -> dict[str, torch.Tensor]:
    """Rows of ``n_texts`` texts (grouped, in position order) with values from a few levels,
    so ties are everywhere."""
    lengths = torch.randint(1, 9, (n_texts,), generator=g)
    text = torch.arange(n_texts).repeat_interleave(lengths)
    pos = torch.cat([torch.arange(int(n)) for n in lengths])
    R = text.shape[0]
    return {
        "values": torch.randint(-1, levels, (R, units), generator=g).float() / 2,
        "text_index": text,
        "position": pos,
        "token_ids": torch.randint(0, 50, (R,), generator=g),
        "category": torch.randint(0, 3, (R,), generator=g),
    }


def _feed(stats: UnitStatistics, data: dict[str, torch.Tensor], texts: list[int]) -> None:
    """Update with the rows of ``texts``, one text group per call."""
    for t in texts:
        rows = data["text_index"] == t
        stats.update(
            data["values"][rows],
            text_index=data["text_index"][rows],
            position=data["position"][rows],
            token_ids=data["token_ids"][rows],
            category=data["category"][rows] if stats.categories is not None else None,
        )


def _equal(a: UnitStatistics, b: UnitStatistics) -> None:
    for x, y in ((a.top_arrays(), b.top_arrays()), (a.sample_arrays(), b.sample_arrays())):
        for k in x:
            assert torch.equal(x[k], y[k]) or (
                x[k].is_floating_point() and torch.equal(x[k].nan_to_num(-7), y[k].nan_to_num(-7))
            ), k
    assert a.count == b.count
    assert torch.equal(a.histogram, b.histogram)
    assert torch.equal(a.category_tokens, b.category_tokens)
    torch.testing.assert_close(a.category_mass, b.category_mass)
    torch.testing.assert_close(a.density, b.density)


def _mix32(h: int) -> int:
    return h & 0xFFFFFFFF


def _priority(text: int, pos: int) -> int:
    """The documented sampling priority, in plain Python integers (no overflow possible)."""
    h = _mix32(text * 0x5BD1E995 + pos * 0x27D4EB2F)
    h ^= h >> 15
    h = _mix32(h * 0x2C1B3C6D)
    h ^= h >> 12
    h = _mix32(h * 0x297A2D39)
    h ^= h >> 15
    return h & 0x7FFFFFFF


# --------------------------------------------------------------------------- exact streaming


@pytest.mark.parametrize("seed", range(4))
def test_top_contexts_and_samples_equal_brute_force(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    data = _random_corpus(g, 40, 5)
    stats = UnitStatistics(5, top_k=6, samples=4, window=(2, 1))
    _feed(stats, data, list(range(40)))
    V, T, P = data["values"], data["text_index"].tolist(), data["position"].tolist()
    ids = data["token_ids"].tolist()
    for u in range(5):
        col = V[:, u].tolist()
        rows = sorted(range(len(T)), key=lambda r: (-col[r], T[r], P[r]))[:6]
        got = stats.top(u)
        assert [(c.value, c.text_index, c.position) for c in got] == [
            (col[r], T[r], P[r]) for r in rows
        ]
        for c, r in zip(got, rows, strict=True):
            window = [q for q in range(r - 2, r + 2) if 0 <= q < len(T) and T[q] == T[r]]
            assert c.token_ids == [ids[q] for q in window]
            assert c.values == [col[q] for q in window]
            assert c.token_ids[c.center] == ids[r]
        active = [r for r in range(len(T)) if col[r] > 0]
        want = sorted(active, key=lambda r: (_priority(T[r], P[r]), T[r], P[r]))[:4]
        got_s = {(c.text_index, c.position) for c in stats.samples(u)}
        assert got_s == {(T[r], P[r]) for r in want}


@pytest.mark.parametrize("seed", range(4))
def test_merge_of_shards_equals_one_pass(seed: int) -> None:
    g = torch.Generator().manual_seed(100 + seed)
    data = _random_corpus(g, 30, 6)
    cats = ["a", "b", "c"]
    one = UnitStatistics(6, top_k=5, samples=3, window=1, categories=cats)
    _feed(one, data, list(range(30)))
    # Any partition of the texts, in any order: shards interleave in the corpus.
    perm = torch.randperm(30, generator=g).tolist()
    a = UnitStatistics(6, top_k=5, samples=3, window=1, categories=cats)
    b = UnitStatistics(6, top_k=5, samples=3, window=1, categories=cats)
    _feed(a, data, perm[:11])
    _feed(b, data, perm[11:])
    _equal(a.merge(b), one)
    _equal(b.merge(a), one)


def test_one_update_equals_many() -> None:
    g = torch.Generator().manual_seed(7)
    data = _random_corpus(g, 25, 4)
    many = UnitStatistics(4, top_k=7, samples=5, window=(3, 2))
    _feed(many, data, list(range(25)))
    one = UnitStatistics(4, top_k=7, samples=5, window=(3, 2))
    one.update(
        data["values"],
        text_index=data["text_index"],
        position=data["position"],
        token_ids=data["token_ids"],
    )
    _equal(one, many)


def test_rows_in_any_order_give_the_same_records() -> None:
    g = torch.Generator().manual_seed(3)
    data = _random_corpus(g, 12, 3)
    ordered = UnitStatistics(3, top_k=4, samples=2, window=1)
    ordered.update(
        data["values"],
        text_index=data["text_index"],
        position=data["position"],
        token_ids=data["token_ids"],
    )
    perm = torch.randperm(data["values"].shape[0], generator=g)
    nb = context_rows(data["text_index"], 1, 1)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.shape[0])
    shuffled_nb = torch.where(nb[perm] >= 0, inverse[nb[perm].clamp_min(0)], -1)
    shuffled = UnitStatistics(3, top_k=4, samples=2, window=1)
    shuffled.update(
        data["values"][perm],
        text_index=data["text_index"][perm],
        position=data["position"][perm],
        token_ids=data["token_ids"][perm],
        neighbours=shuffled_nb,
    )
    _equal(shuffled, ordered)


def test_category_mass_and_density_equal_direct_sums() -> None:
    g = torch.Generator().manual_seed(5)
    data = _random_corpus(g, 20, 3)
    s = UnitStatistics(3, top_k=2, samples=0, categories=["x", "y", "z"])
    _feed(s, data, list(range(20)))
    V = data["values"].double()
    for c in range(3):
        rows = data["category"] == c
        torch.testing.assert_close(s.category_mass[:, c], V[rows].clamp_min(0).sum(0))
        assert int(s.category_tokens[c]) == int(rows.sum())
    torch.testing.assert_close(s.density.double(), (V > 0).double().mean(0))


def test_histogram_counts_active_values_in_log_bins() -> None:
    # Values on, just below and just above bin edges, below and above the range, and inactive.
    import numpy as np

    edges32 = sp.units.HIST_EDGES.numpy()
    edges = edges32.astype(np.float64)
    assert len(edges) == 37
    assert edges[0] == 2.0**-8
    assert edges[-1] == 2.0**10
    assert np.allclose(edges[1:] / edges[:-1], 2**0.5)
    at_edges = [float(x) for e in edges32[1:-1:5] for x in np.nextafter(e, [0, e, np.inf])]
    probe = [1e-6, 2.0**-8, 0.5, 700.0, 1024.0, 5e4, *at_edges]
    col = torch.tensor([*probe, 0.0, -3.0])
    values = torch.stack([col, -col], 1)  # the second unit is active only on -(-3.0)
    s = UnitStatistics(2, top_k=1, samples=0)
    n = values.shape[0]
    s.update(
        values,
        text_index=torch.zeros(n, dtype=torch.long),
        position=torch.arange(n),
        token_ids=torch.zeros(n, dtype=torch.long),
    )
    # Independently: the bin is the number of inner edges <= v (right-open bins).
    inner = edges32[1:-1]
    for u in range(2):
        active = values[:, u][values[:, u] > 0].numpy()
        expected = np.bincount(np.searchsorted(inner, active, side="right"), minlength=36)
        assert s.histogram[u].tolist() == expected.tolist()
    assert int(s.histogram[0].sum()) == len(probe)
    assert s.histogram[1].tolist()[2 * 8 + 3] == 1


def test_save_load_roundtrip(tmp_path: Any) -> None:
    g = torch.Generator().manual_seed(9)
    data = _random_corpus(g, 10, 3)
    s = UnitStatistics(3, top_k=3, samples=2, window=(1, 2), categories=["p", "q", "r"])
    _feed(s, data, list(range(10)))
    back = UnitStatistics.load(s.save(tmp_path / "u"))
    _equal(back, s)
    assert (back.categories, back.window) == (["p", "q", "r"], (1, 2))


# --------------------------------------------------------------------------- bad input


def test_update_rejects_bad_input_before_changing_anything() -> None:
    s = UnitStatistics(2, top_k=2, samples=1)
    ok: dict[str, Any] = {
        "text_index": torch.tensor([0, 0]),
        "position": torch.tensor([0, 1]),
        "token_ids": torch.tensor([1, 2]),
    }
    with pytest.raises(ValueError, match="must have 2 units"):
        s.update(torch.ones(2, 3), **ok)
    with pytest.raises(ValueError, match=r"text_index must be an integer \[2\] tensor"):
        s.update(torch.ones(2, 2), **{**ok, "text_index": torch.tensor([0])})
    with pytest.raises(ValueError, match="finite"):
        s.update(torch.tensor([[1.0, math.nan], [0.0, 0.0]]), **ok)
    with pytest.raises(ValueError, match="no categories"):
        s.update(torch.ones(2, 2), **ok, category=torch.tensor([0, 0]))
    assert s.count == 0
    assert s.top(0) == []
    with pytest.raises(ValueError, match="top_k must be a positive int"):
        UnitStatistics(2, top_k=0)
    with pytest.raises(ValueError, match="window must be"):
        UnitStatistics(2, window=(1, -1))
    with pytest.raises(IndexError, match="unit must be an int"):
        s.top(5)
    with pytest.raises(ValueError, match="different settings"):
        s.merge(UnitStatistics(2, top_k=3))


def test_bases() -> None:
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    rot = UnitBasis.rotation(6, seed=1)
    Q = rot.directions
    torch.testing.assert_close(Q @ Q.T, torch.eye(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(rot.encode(x), x @ Q.T)
    torch.testing.assert_close(UnitBasis.rotation(6, seed=1).directions, Q)
    sae = sp.SparseAutoencoder(6, 12, k=2, seed=0)
    b = UnitBasis.of(sae, 6)
    torch.testing.assert_close(b.encode(x), sae.encode(x))
    assert torch.equal(b.directions, sae.W_dec.detach())
    assert UnitBasis.of(None, 6).kind == "neurons"
    with pytest.raises(ValueError, match="read 6 neurons but the layer has 7"):
        UnitBasis.of(sae, 7)
    with pytest.raises(TypeError, match="units must be None"):
        UnitBasis.of("sae", 6)  # type: ignore[arg-type]


def test_unit_norm_bases_read_each_token_scaled_to_unit_length() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 8, generator=g)
    x[5] = 0.0  # a silent token stays silent
    scaled = x * torch.rand(40, 1, generator=g).mul(100).add(0.01)  # any positive size
    rot = UnitBasis.rotation(8, seed=4, unit_norm=True)
    neu = UnitBasis.neurons(8, unit_norm=True)
    norms = x.norm(dim=1, keepdim=True)
    direction = torch.where(norms > 0, x / norms, torch.zeros_like(x))
    torch.testing.assert_close(rot.encode(x), direction @ rot.directions.T)
    torch.testing.assert_close(neu.encode(x), direction)
    for basis in (rot, neu):
        torch.testing.assert_close(basis.encode(scaled), basis.encode(x))
    assert torch.equal(rot.directions, UnitBasis.rotation(8, seed=4).directions)
    assert "unit-norm" in rot.name
    assert "unit-norm" in neu.name


def test_unit_norm_rotation_does_not_give_its_top_values_to_large_tokens() -> None:
    """The null's flaw and its fix: a token 100x the norm of the rest tops every unit of a
    random rotation on which its projection is positive (half of them: 128 of 256 expected,
    sd 8), and only its chance share (1 in 400: 0.64 of 256 expected) once tokens are
    scaled to unit length."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 256, generator=g)
    x[0] *= 100.0
    tops = {
        flag: UnitBasis.rotation(256, seed=1, unit_norm=flag).encode(x).argmax(0)
        for flag in (False, True)
    }
    assert int((tops[False] == 0).sum()) >= 90
    assert int((tops[True] == 0).sum()) <= 5


# --------------------------------------------------------------------------- through the probe


def test_collect_units_equals_the_records_of_an_in_memory_run(tokenizer: Any) -> None:
    model, n = tiny_model("bert")
    texts = [f"the cat number {i} sat on the mat and looked at {i + 1} dogs" for i in range(9)]
    texts += ["a short one", "another text about cats that is somewhat longer than most"]
    probe = sp.ActivationProbe(model, tokenizer=tokenizer, batch_size=64, progress=False)
    rot = UnitBasis.rotation(n, seed=2)
    streamed = collect_units(probe, texts, rot, top_k=5, samples=3, window=(2, 2))
    acts = probe.run(texts)
    direct = UnitStatistics(n, top_k=5, samples=3, window=(2, 2))
    direct.update(
        acts.values @ rot.directions.T,
        text_index=acts.text_index,
        position=acts.position,
        token_ids=acts.token_ids,
    )
    for k, v in direct.top_arrays().items():
        got = streamed.top_arrays()[k]
        if v.is_floating_point():
            torch.testing.assert_close(got, v, equal_nan=True, atol=1e-5, rtol=1e-5)
        else:
            assert torch.equal(got, v), k
    c = streamed.top(0)[0]
    assert c.tokens is not None
    assert (
        c.token
        == acts.tokens[
            int(((acts.text_index == c.text_index) & (acts.position == c.position)).nonzero())
        ]
    )


def test_collect_units_streams_a_generator_with_categories(tokenizer: Any) -> None:
    model, _n = tiny_model("gpt2")
    texts = [f"text {i} " + "word " * (i % 5 + 1) for i in range(40)]
    labels = ["even" if i % 2 == 0 else "odd" for i in range(40)]
    probe = sp.ActivationProbe(model, tokenizer=tokenizer, batch_size=4, progress=False)
    s = collect_units(probe, iter(texts), categories=labels, top_k=3, samples=2)
    acts = probe.run(texts)
    assert s.count == acts.values.shape[0]
    assert s.categories == ["even", "odd"]
    even = acts.text_index % 2 == 0
    assert int(s.category_tokens[0]) == int(even.sum())
    torch.testing.assert_close(
        s.category_mass[:, 0], acts.values[even].clamp_min(0).double().sum(0), rtol=1e-4, atol=1e-4
    )
    torch.testing.assert_close(s.max_activation, acts.values.max(0).values, rtol=1e-5, atol=1e-5)


def test_collect_units_rejects_bad_input(tokenizer: Any) -> None:
    model, _n = tiny_model("bert")
    probe = sp.ActivationProbe(model, tokenizer=tokenizer, progress=False)
    with pytest.raises(ValueError, match="one label per text: 2 texts, 1 labels"):
        collect_units(probe, ["a b", "c d"], categories=["x"])
    with pytest.raises(ValueError, match="read 8 neurons"):
        collect_units(probe, ["a b"], sp.SparseAutoencoder(8, 16, k=2))
    multi = sp.ActivationProbe(model, layer=[0, 1], tokenizer=tokenizer, progress=False)
    with pytest.raises(ValueError, match="a probe of one layer"):
        collect_units(multi, ["a b"])


# --------------------------------------------------------------------------- the table


def test_table_sort_save_and_dict(tmp_path: Any) -> None:
    t = UnitTable(
        {"unit": torch.arange(4), "token_diversity": torch.tensor([2.0, math.nan, 1.0, 3.0])}
    )
    assert t.sort("token_diversity")["unit"].tolist() == [2, 0, 3, 1]
    assert t.sort("token_diversity", descending=True)["unit"].tolist() == [3, 0, 2, 1]
    csv_path, json_path = t.save(tmp_path)
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "unit,token_diversity"
    assert lines[2] == "1,"
    import json

    doc = json.loads(json_path.read_text())
    assert doc["columns"]["token_diversity"][1] is None
    assert "token_diversity" in doc["docs"]
    with pytest.raises(KeyError, match="no column 'x'"):
        t.sort("x")
    with pytest.raises(ValueError, match="same length"):
        UnitTable({"unit": torch.arange(2), "a": torch.ones(3)})


# --------------------------------------------------------------------------- known answers


@pytest.fixture(scope="module")
def books(minilm: tuple[Any, Any]) -> dict[str, Any]:
    """Paragraphs of both books where "holmes" or "pierre" appear, plus others, probed."""
    model, tok = minilm
    holmes = list(sp.default_corpus("test", books=["sherlock_holmes"]))
    war = list(sp.default_corpus("test", books=["war_and_peace"]))
    pick = [p for p in holmes if "Holmes" in p][:40] + holmes[:40]
    pick += [p for p in war if "Pierre" in p][:40] + war[:40]
    labels = ["holmes"] * 80 + ["war"] * 80
    probe = sp.ActivationProbe(model, layer=0, tokenizer=tok, batch_size=32, progress=False)
    acts = probe.run(pick)
    ids = acts.token_ids
    h = tok.convert_tokens_to_ids("holmes")
    p = tok.convert_tokens_to_ids("pierre")
    g = torch.Generator().manual_seed(0)
    jitter = 0.5 + 0.5 * torch.rand(ids.shape[0], generator=g)
    mono = (ids == h).float() * jitter
    poly = ((ids == h) | (ids == p)).float() * jitter
    direction = torch.randn(acts.values.shape[1], generator=g)
    rand = acts.values @ (direction / direction.norm())
    values = torch.stack([mono, poly, rand], 1)
    stats = UnitStatistics(3, top_k=20, samples=5, window=(6, 3), categories=["holmes", "war"])
    stats.tokenizer = tok
    stats.update(
        values,
        text_index=acts.text_index,
        position=acts.position,
        token_ids=ids,
        category=torch.tensor([0] * 80 + [1] * 80)[acts.text_index],
    )
    assert labels[0] == "holmes"
    table = score_units(stats, embed=context_embedder(model, tok))
    return {"stats": stats, "table": table, "h": h, "p": p}


def test_known_answers_token_diversity(books: dict[str, Any]) -> None:
    d = books["table"]["token_diversity"]
    mono, poly, rand = d.tolist()
    assert mono == pytest.approx(1.0)
    assert 1.5 < poly <= 2.0 + 1e-9
    assert rand > mono
    top = books["stats"].top(1)
    assert {c.token_ids[c.center] for c in top} == {books["h"], books["p"]}


def test_known_answers_context_coherence(books: dict[str, Any]) -> None:
    mono, poly, rand = books["table"]["context_coherence"].tolist()
    assert mono > poly
    assert mono > rand


def test_known_answers_category_spread(books: dict[str, Any]) -> None:
    mono, poly, rand = books["table"]["category_spread"].tolist()
    assert mono == pytest.approx(0.0, abs=1e-12)
    assert poly > 0.3
    assert rand > 0.3


def test_one_pass_over_several_bases_equals_separate_passes(tokenizer: Any) -> None:
    model, n = tiny_model("llama")
    texts = [f"sentence {i} with some words in it" for i in range(12)]
    probe = sp.ActivationProbe(model, tokenizer=tokenizer, batch_size=4, progress=False)
    sae = sp.SparseAutoencoder(n, 2 * n, k=3, seed=1)
    rot = UnitBasis.rotation(n, seed=5)
    together = collect_units(probe, texts, [None, sae, rot], top_k=4, samples=2)
    assert [s.basis_name for s in together] == ["neurons", "SAE latents", "rotated neurons"]
    for units, got in zip([None, sae, rot], together, strict=True):
        _equal(got, collect_units(probe, texts, units, top_k=4, samples=2))
    with pytest.raises(TypeError, match="units must be None"):
        collect_units(probe, texts, [None, "sae"])  # type: ignore[list-item]


def test_compare_units_intervals_and_verdict() -> None:
    from superposition.units.compare import compare_units

    g = torch.Generator().manual_seed(0)
    neurons = UnitTable(
        {
            "unit": torch.arange(400),
            "token_diversity": 6 + torch.randn(400, generator=g),
            "context_coherence": 0.2 + 0.05 * torch.randn(400, generator=g),
        }
    )
    latents = UnitTable(
        {
            "unit": torch.arange(300),
            "token_diversity": 2 + torch.randn(300, generator=g),
            "context_coherence": 0.2 + 0.05 * torch.randn(300, generator=g),
        }
    )
    c = compare_units({"neurons": neurons, "SAE latents": latents}, n_boot=500)
    d = c.difference("neurons", "SAE latents", "token_diversity")
    assert d.low < d.difference < d.high
    assert d.low > 3.0
    assert d.more_monosemantic == "SAE latents"
    s = c.summary("neurons", "token_diversity")
    assert s.n == 400
    assert s.low < s.median < s.high
    assert s.median == pytest.approx(float(neurons["token_diversity"].median()))
    coh = c.difference("neurons", "SAE latents", "context_coherence")
    assert coh.low < 0 < coh.high  # same distribution: no clear difference
    assert coh.more_monosemantic is None
    text = c.verdict("neurons", "SAE latents")
    assert "token diversity: neurons are more polysemantic than SAE latents" in text
    assert "context coherence: no clear difference" in text
    with pytest.raises(ValueError, match="at least two tables"):
        compare_units({"neurons": neurons})


def test_an_empty_shard_merges_as_nothing() -> None:
    g = torch.Generator().manual_seed(11)
    data = _random_corpus(g, 8, 3)
    full = UnitStatistics(3, top_k=3, samples=2, categories=["a", "b", "c"])
    _feed(full, data, list(range(8)))
    empty = UnitStatistics(3, top_k=3, samples=2, categories=["a", "b", "c"])
    _equal(full.merge(empty), full)
    _equal(empty.merge(full), full)
    nothing = score_units(empty.merge(empty))
    assert bool(nothing["density"].isnan().all())
    assert bool(nothing["token_diversity"].isnan().all())
