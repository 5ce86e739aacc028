"""
Superposition appears as features get sparser
=============================================

The first experiment of the seed paper (section 3, after Elhage et al. 2022): squeeze
``n = 20`` features through ``m = 5`` hidden dimensions, with importance ``I_i = 0.7**i``, and
train the same model at seven sparsities. A **linear** model keeps the five most important
features at every sparsity; a **ReLU-output** model keeps five when the input is dense and
packs more and more features into its five dimensions as the input gets sparser.

Every sparsity is one *instance*: the whole sweep is one :class:`superposition.ToyModel`
trained in one call.
"""

# %%
# The data: one instance per sparsity
# -----------------------------------
# ``feature_probability`` is ``1 - S``, the probability that a feature is non-zero. A sequence
# of values makes one instance per value.
import superposition as sp

probability = [1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001]
titles = [f"1-S = {p:g}" for p in probability]
data = sp.SparseFeatureDataset(20, feature_probability=probability, importance=0.7, seed=0)
data

# %%
# Train a linear and a ReLU-output model
# --------------------------------------
# The TMS notebook trains for 10,000 steps; 5,000 are enough here for the effect to show and
# keep this page fast to build (about two seconds per model on one CPU core).
STEPS = 5_000

linear = sp.ToyModel(20, 5, n_instances=data.n_instances, activation="linear", seed=0)
linear.fit(data, steps=STEPS, progress=False)
relu = sp.ToyModel(20, 5, n_instances=data.n_instances, activation="relu", seed=0)
relu.fit(data, steps=STEPS, progress=False)

# %%
# How many features does each model represent?
# --------------------------------------------
# A feature is represented when its embedding ``W_i`` has a norm near 1 (we count
# ``||W_i|| > 0.5``). It is in *superposition* when other features project onto its direction,
# i.e. its interference :math:`\sum_{j \ne i} (\hat W_i \cdot W_j)^2` is well above 0.
for name, model in [("linear", linear), ("relu", relu)]:
    represented = model.feature_norms() > 0.5
    superposed = (model.interference() > 0.05) & represented
    print(f"{name:>6}  represented: {represented.sum(-1).tolist()}")
    print(f"{'':>6}  superposed:  {superposed.sum(-1).tolist()}")
print(f"{'':>6}  1-S:         {probability}")

# %%
# The linear model: the top five features, orthogonal
# ---------------------------------------------------
# Each column is one sparsity. Top: ``WᵀW`` (an identity block means orthogonal features)
# beside the bias ``b``. Bottom: ``||W_i||`` per feature, coloured by interference (black: the
# feature has a dimension of its own; yellow: it shares one).
linear.plot.weights(titles=titles)

# %%
# The ReLU model: superposition as sparsity grows
# -----------------------------------------------
# Dense (left) it behaves like the linear model. As ``1 - S`` falls, off-diagonal structure
# appears in ``WᵀW``, more bars reach a norm of 1, they turn yellow (interference), and the
# bias goes negative to filter out the interference.
relu.plot.weights(titles=titles)

# %%
# Dimensions per feature
# ----------------------
# ``m / ||W||_F²``: how many hidden dimensions each represented feature gets. The dots are the
# per-feature dimensionality :math:`D_i`; the dashed lines mark the fractions (1/2, 2/5, ...)
# where Elhage et al. find features sticking.
relu.plot.geometry(probability)
