"""
The pentagon and the two-feature phase diagram
==============================================

Two small experiments from Elhage et al. (2022) that the seed paper summarises in section 3.

* **The pentagon.** Five equally important, sparse features (``p = 0.05``) in two dimensions:
  the ReLU model places them at the corners of a regular pentagon, each using 2/5 of a
  dimension.
* **The phase diagram.** Two features, one dimension. Depending on sparsity and on how
  important feature 2 is relative to feature 1, the model keeps feature 1, keeps feature 2, or
  stores both antipodally (superposition).
"""

# %%
# Five features in two dimensions
# -------------------------------
# Several instances train at once with different initialisations; 4,000 steps (instead of the
# notebook's 10,000) already give the pentagon.
import superposition as sp

data = sp.SparseFeatureDataset(5, feature_probability=[0.05] * 4, seed=1)
pentagon = sp.ToyModel(5, 2, n_instances=data.n_instances, seed=1)
pentagon.fit(data, steps=4_000, progress=False)
pentagon.plot.directions()

# %%
# Each feature's dimensionality :math:`D_i = ||W_i||^2 / \sum_j (\hat W_i \cdot W_j)^2` is
# 2/5 on a regular pentagon: five features share two dimensions equally.
print(pentagon.feature_dimensionality())

# %%
# The phase diagram: n = 2, m = 1
# -------------------------------
# One instance per (relative importance, sparsity) cell and seed. Feature 1 has importance 1,
# feature 2 has importance ``r``, so ``importance`` is an ``[instances, 2]`` tensor. Near a
# phase boundary one run can settle in a worse configuration, so each cell trains three seeds
# (three instances) and keeps the one with the lowest loss, as ``superposition reproduce``
# does. 5,000 steps instead of 10,000 keep this under ten seconds.
import torch

relative_importance = [0.1, 0.3, 1.0, 3.0, 10.0]
probability = [1.0, 0.3, 0.1, 0.03, 0.01]
SEEDS = 3
cells = [(r, p) for r in relative_importance for p in probability]
phase_data = sp.SparseFeatureDataset(
    2,
    feature_probability=[p for _, p in cells for _ in range(SEEDS)],
    importance=torch.tensor([[1.0, r] for r, _ in cells for _ in range(SEEDS)]),
    seed=3,
)
phase = sp.ToyModel(2, 1, n_instances=phase_data.n_instances, seed=3)
phase.fit(phase_data, steps=5_000, progress=False)

with torch.no_grad():
    x = phase_data.sample(50_000, generator=torch.Generator().manual_seed(4))
    losses = phase.losses(x, phase_data.importance).reshape(len(cells), SEEDS)
best = losses.argmin(-1)

# %%
# :func:`superposition.plot.classify_phase` reads what each instance learned: 0 (feature 1
# only), 1 (feature 2 only) or 2 (both, antipodally: superposition).
learned = sp.plot.classify_phase(phase.W.detach()).reshape(len(cells), SEEDS)
labels = learned[torch.arange(len(cells)), best].reshape(len(relative_importance), -1)
print(labels)

# %%
# Elhage et al. give the expected loss of each configuration in closed form
# (:func:`superposition.report.phase_losses`); the lowest one is the theoretical phase.
# Dense inputs keep the more important feature; sparse inputs store both, antipodally.
from matplotlib.figure import Figure

from superposition.report import phase_losses

optimum = torch.tensor(
    [min(range(3), key=lambda code: phase_losses(p, r)[code]) for r, p in cells]
).reshape(len(relative_importance), -1)
print(f"{int((labels == optimum).sum())} of {len(cells)} cells learn the optimal configuration")

fig = Figure(figsize=(12, 4.5), layout="constrained")
trained, theory = fig.subplots(1, 2)
sp.plot.phase_diagram(
    labels, probability, relative_importance, optimum=phase_losses, ax=trained
)  # dashed: the closed form's boundaries; crosses: cells that disagree
sp.plot.phase_diagram(optimum, probability, relative_importance, ax=theory)
trained.set_title("trained (best of 3 seeds)")
theory.set_title("closed-form optimum")
fig

# %%
# The cells that disagree sit on a phase boundary, where the losses of two configurations
# are close and a short run can settle in either. On the ``r = 1`` row the two single-feature
# phases tie exactly (the closed form names feature 1 on a tie).
