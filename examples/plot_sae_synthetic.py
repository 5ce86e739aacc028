"""
Recovering known features with a sparse autoencoder
===================================================

A sparse autoencoder (SAE) should take superposed features back out of a space too small for
them. Here the truth is known: :class:`superposition.SyntheticFeatures` draws sparse
combinations of 256 fixed unit directions in 64 dimensions, about 4 active at a time, so the
SAE's decoder rows can be compared with the true directions one by one.
"""

# %%
# The ground truth
# ----------------
import torch

import superposition as sp

truth = sp.SyntheticFeatures(256, 64, firing_probability=4 / 256, seed=0)
print(truth)
f = truth.features(8, torch.Generator().manual_seed(1))
print("active features in 8 samples:", (f != 0).sum(1).tolist())

# %%
# A TopK SAE with as many latents as there are features
# -----------------------------------------------------
# ``k=4`` latents per sample; 600,000 samples take a few seconds on a laptop CPU.
sae = sp.SparseAutoencoder(64, 256, kind="topk", k=4, seed=0)
sae.fit(truth, samples=600_000, batch_size=1024)
held_out = truth.sample(20_000, torch.Generator().manual_seed(2))
print(sae.evaluate(held_out))
mcc = sp.metrics.mean_correlation_coefficient(truth.directions, sae.W_dec)
print(
    f"MCC {mcc:.3f}, MMCS {sp.metrics.mean_max_cosine_similarity(truth.directions, sae.W_dec):.3f}"
)

# %%
# The matched cosine matrix
# -------------------------
# Each true feature (row) against the learned directions (columns), reordered by the optimal
# one-to-one matching: a bright diagonal means every feature has its own latent.
sae.plot.matched_cosines(truth.directions)

# %%
# How often latents fire, and how training went
# ----------------------------------------------
# Each true feature fires with probability 4/256 (log10 ≈ -1.8): a recovered dictionary puts
# its latents there. L0 stays at ``k``; the fraction of variance unexplained falls.
sae.plot.latent_density(held_out)

# %%
sae.plot.training()
