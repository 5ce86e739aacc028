"""
The paper's analysis, corrected, and a random-weights baseline
==============================================================

The seed paper reads its mostly-blue cosine heatmaps (Figure 4) as evidence of polysemantic
neurons. Two details of its analysis push every neuron pair toward a small cosine distance
whatever the network has learned:

* **Padding kept.** Pad positions are all alike, so each one adds a near-identical row to the
  ``[tokens, neurons]`` matrix.
* **Raw cosine.** A GELU neuron that is "off" outputs a small *negative* value, so two
  unrelated, mostly-off neurons point into the same orthant and look similar. Mean-centring
  each neuron (``center=True``, i.e. Pearson correlation) removes that shared offset.

This example runs the same texts three ways: **as the paper did** (``keep_padding=True``, raw
cosine), **corrected** (padding dropped, centred), and the corrected analysis on a **null
baseline**: the same architecture with random weights. Whatever the corrected analysis still
shows on the trained model but not on the random one is what training put there.
"""

# %%
# The trained model and a random-weights twin
# -------------------------------------------
# ``AutoModel.from_config`` builds the architecture with freshly initialised weights; seeding
# torch first makes the baseline the same on every build.
import torch
from transformers import AutoModel

import superposition as sp

model, tokenizer = sp.load_model()
torch.manual_seed(0)
random_model = AutoModel.from_config(model.config).eval()

texts = [text for group in sp.PAPER_TEXTS.values() for text in group]

# %%
# Three sets of activations of layer 0
# ------------------------------------
# With ``keep_padding=True`` batches follow the given order, so ``batch_size=4`` pads each of
# the paper's three categories together, as its three separate runs did.
paper = sp.ActivationProbe(
    model, layer=0, tokenizer=tokenizer, keep_padding=True, batch_size=4
).run(texts)
corrected = sp.ActivationProbe(model, layer=0, tokenizer=tokenizer).run(texts)
baseline = sp.ActivationProbe(random_model, layer=0, tokenizer=tokenizer).run(texts)

n_pad = sum(token == tokenizer.pad_token for token in paper.tokens)
print(f"paper:     {paper.n_tokens} rows, {n_pad} of them padding")
print(f"corrected: {corrected.n_tokens} rows (no padding)")

# %%
# A few numbers
# -------------
# For every pair of neurons ``i < j``: the mean cosine distance, and the share of pairs that
# look "similar" (distance below 0.5, the blue of Figure 4).
runs = {
    "paper (padding, raw)": (paper, False),
    "corrected (no padding, centred)": (corrected, True),
    "random weights (corrected)": (baseline, True),
}
n = corrected.n_neurons
i, j = torch.triu_indices(n, n, offset=1)
for name, (acts, center) in runs.items():
    d = acts.cosine_distance(center=center)[i, j]
    print(
        f"{name:>32}: mean distance {float(d.mean()):.3f}, "
        f"pairs below 0.5: {float((d < 0.5).float().mean()):.1%}"
    )

# %%
# Also how the paper's raw cosine reads the random model (no training at all):
d = baseline.cosine_distance(center=False)[i, j]
print(f"random weights, raw cosine: pairs below 0.5: {float((d < 0.5).float().mean()):.1%}")

# %%
# Figure 5, three ways
# --------------------
# Every ``acts.plot`` method takes ``ax=``, so the three histograms share one figure.
from matplotlib.figure import Figure

fig = Figure(figsize=(13, 3.8), layout="constrained")
axes = fig.subplots(1, 3, sharex=True)
for ax, (name, (acts, center)) in zip(axes, runs.items(), strict=True):
    acts.plot.cosine_histogram(center=center, ax=ax)
    ax.set_title(name)
fig

# %%
# Figure 4, three ways
# --------------------
# The first 200 neurons of each heatmap.
fig = Figure(figsize=(15, 4.6), layout="constrained")
axes = fig.subplots(1, 3)
for ax, (name, (acts, center)) in zip(axes, runs.items(), strict=True):
    acts.plot.cosine_heatmap(center=center, neurons=200, ax=ax)
    ax.set_title(name, fontsize="medium")
fig

# %%
# ``superposition reproduce`` runs this comparison on every category, with the toy-model
# experiments, and writes the numbers and figures to a self-contained HTML report.
