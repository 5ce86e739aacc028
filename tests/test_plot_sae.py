"""Figures of dictionary learning (``superposition.plot.sae``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from superposition import SparseAutoencoder, SyntheticFeatures, plot


def test_matched_cosines_draws_the_matching_diagonal() -> None:
    true = torch.eye(4)
    learned = -torch.eye(4)[[2, 0, 3, 1]]
    fig = plot.matched_cosines(true, learned)
    image = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(image), np.eye(4))
    assert fig.axes[0].get_title() == "MCC 1.000, MMCS 1.000"


def test_matched_cosines_rejects_mismatched_spaces() -> None:
    with pytest.raises(ValueError, match=r"same space"):
        plot.matched_cosines(torch.eye(3), torch.eye(4))


def test_latent_density_histogram_counts_live_latents() -> None:
    freq = torch.tensor([0.0, 0.0, 1e-3, 1e-2, 1e-2, 0.5])
    fig = plot.latent_density(freq, bins=5)
    ax = fig.axes[0]
    assert sum(p.get_height() for p in ax.patches) == 4
    assert ax.get_title() == "6 latents, 2 never fire"
    with pytest.raises(ValueError, match=r"frequency must be fractions in \[0, 1\]"):
        plot.latent_density(torch.tensor([1.5]))


def test_sae_plot_accessor() -> None:
    truth = SyntheticFeatures(16, 8, firing_probability=0.1, seed=0)
    sae = SparseAutoencoder(8, 16, k=2, seed=0)
    with pytest.raises(ValueError, match=r"no training history; call \.fit"):
        sae.plot.training()
    sae.fit(truth, samples=4096, batch_size=512)
    assert len(sae.plot.training().axes) == 2
    assert sae.plot.matched_cosines(truth.directions).axes[0].images
    x = truth.sample(1000, torch.Generator().manual_seed(0))
    title = sae.plot.latent_density(x).axes[0].get_title()
    never = int((sae.encode(x) != 0).sum(0).eq(0).sum())
    assert title == f"16 latents, {never} never fire"
