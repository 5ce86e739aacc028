"""Matryoshka BatchTopK (kind="matryoshka"): its nested widths, and what the nested loss buys.

Its gradient is checked against autograd with the other kinds' (tests/test_sae_train.py,
tests/test_transcoder.py); its save, load and SAELens round trips with theirs too.
"""

from __future__ import annotations

import pytest
import torch

from superposition import SparseAutoencoder, SyntheticFeatures
from superposition.sae.kinds.matryoshka import default_widths


def test_widths_default_nest_and_always_end_with_the_whole_dictionary() -> None:
    sae = SparseAutoencoder(8, 64, kind="matryoshka", k=2)
    assert sae.rule.matryoshka_widths == default_widths(64) == (2, 8, 32, 64)  # type: ignore[attr-defined]
    given = SparseAutoencoder(8, 64, kind="matryoshka", k=2, matryoshka_widths=[4, 16])
    assert given.rule.matryoshka_widths == (4, 16, 64)  # type: ignore[attr-defined]
    assert given.config()["matryoshka_widths"] == [4, 16, 64]
    assert "matryoshka_widths=[4, 16, 64]" in repr(given)


@pytest.mark.parametrize(
    ("widths", "message"),
    [
        ([8, 4], "increase strictly"),
        ([0, 8], "increase strictly"),
        ([8, 80], "increase strictly"),
        ([], "non-empty sequence of ints"),
        ([2.5], "non-empty sequence of ints"),
        (7, "sequence of increasing ints"),
    ],
)
def test_bad_widths_are_refused_with_an_example(widths: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        SparseAutoencoder(8, 64, kind="matryoshka", k=2, matryoshka_widths=widths)
    assert "e.g. matryoshka_widths=[2, 8, 32, 64]" in str(err.value)


def test_matryoshka_needs_k_and_widths_belong_to_it_alone() -> None:
    with pytest.raises(ValueError, match="needs k"):
        SparseAutoencoder(8, 64, kind="matryoshka")
    with pytest.raises(ValueError, match="matryoshka_widths only applies to kind='matryoshka'"):
        SparseAutoencoder(8, 64, kind="batchtopk", k=2, matryoshka_widths=[8])


def _prefix_fvu(sae: SparseAutoencoder, x: torch.Tensor, width: int) -> float:
    with torch.no_grad():
        z = sae.encode(x)
        z[:, width:] = 0
        err = x - sae.decode(z)
        return float(err.square().sum() / (x - x.mean(0)).square().sum())


def test_the_first_latents_alone_reconstruct_what_the_frequent_features_explain() -> None:
    """Zipfian features: the best any 8 latents can do is to carry the 8 most frequent
    features, which leaves ``1 - Σ_top8 p(1-p) / Σ p(1-p)`` of the variance (0.53 here). A
    Matryoshka SAE's first 8 latents come near it (0.53-0.63 over 25 seeds); a BatchTopK
    SAE's first 8, trained on the same samples, are 8 latents of no particular rank
    (0.82-0.96)."""
    seed = int(torch.randint(0, 2**31 - 1, ()))
    p = SyntheticFeatures.zipf(64, mean=3 / 64)
    truth = SyntheticFeatures(64, 32, firing_probability=p, seed=seed)
    x = truth.sample(4096, torch.Generator().manual_seed(seed + 1))
    var = p.double() * (1 - p.double())
    best = 1 - float(var[:8].sum() / var.sum())
    fvu = {}
    for kind, kw in [("batchtopk", {}), ("matryoshka", {"matryoshka_widths": [8]})]:
        sae = SparseAutoencoder(32, 64, kind=kind, k=3, seed=seed, **kw)  # type: ignore[arg-type]
        sae.fit(truth, samples=60_000, batch_size=512)
        fvu[kind] = (_prefix_fvu(sae, x, 8), sae.evaluate(x).fvu)
    assert fvu["matryoshka"][0] < best + 0.2, (seed, best, fvu)
    assert fvu["batchtopk"][0] > fvu["matryoshka"][0] + 0.1, (seed, fvu)
    # The whole dictionary still reconstructs about as well as BatchTopK's.
    assert fvu["matryoshka"][1] < fvu["batchtopk"][1] + 0.1, (seed, fvu)
