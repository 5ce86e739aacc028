"""
A sparse autoencoder on MiniLM's MLP neurons, and its fidelity
==============================================================

The seed paper asks whether the 1536 MLP neurons of a real transformer are polysemantic. A
sparse autoencoder (SAE) proposes another basis for the same activations: many more
directions ("latents"), few active per token. Here one is trained on the first MLP layer of
the shipped all-MiniLM-L6-v2 over real English prose (:func:`superposition.default_corpus`:
two public-domain novels), and then judged the way the field judges SAEs: on held-out text,
how much variance it leaves unexplained and how much of the model's behaviour survives when
the SAE's reconstruction replaces the neurons.

This example trains briefly (a slice of the corpus, a few seconds of CPU per step) so that
the documentation builds quickly; ``superposition sae train`` trains on the whole corpus.
"""

# %%
# Activations from a real corpus
# ------------------------------
# :class:`superposition.ActivationStore` streams the corpus through the model, a chunk of
# texts at a time, into a shuffling buffer, so every training batch mixes tokens of many
# paragraphs and memory does not grow with the corpus.
import torch

import superposition as sp
from superposition.sae.edit import splice, top_k_neurons

torch.manual_seed(0)
model, tokenizer = sp.load_model()
probe = sp.ActivationProbe(model, layer=0, tokenizer=tokenizer, progress=False)
train = sp.default_corpus("train").head(1500)
store = sp.ActivationStore(probe, train, batch_size=2048, buffer_rows=16_384, seed=0)
print(train)

# %%
# Training a TopK SAE
# -------------------
# 4 x 1536 latents, 32 active per token (L0 = 32).
sae = sp.SparseAutoencoder(1536, 4 * 1536, kind="topk", k=32, seed=0)
sae.fit(store, samples=100_000, batch_size=2048)
sae.plot.training()

# %%
# Quality on held-out text
# ------------------------
# Every tenth paragraph of the novels is held out of training.
held_out = sp.default_corpus("test").head(100)
acts = probe.run(list(held_out))
print(sae.evaluate(acts.values))

# %%
# Fidelity: splicing the SAE into the model
# -----------------------------------------
# MiniLM has no language-model head, so the damage an edit does is measured as the distance
# ``1 - cos`` between each text's edited and clean output embedding. *Loss recovered* puts it
# on a scale from 0 (as bad as zero-ablating the layer's neurons) to 1 (no damage). Beside the
# SAE: the neurons themselves truncated to each token's 32 largest (the same L0), and an
# untrained SAE of the same size (a random dictionary).
random_sae = sp.SparseAutoencoder(1536, 4 * 1536, kind="topk", k=32, seed=1)
fid = sae.fidelity(
    model,
    held_out,
    0,
    tokenizer=tokenizer,
    extra={"top-32 neurons": top_k_neurons(32), "random dictionary": splice(random_sae)},
)
print(f"metric: {fid.metric} on {fid.n_tokens:,} tokens")
for name in ("sae", "top-32 neurons", "random dictionary", "zero", "mean"):
    print(
        f"{name:>18}: distance {fid.effects[name].loss:.4f}, "
        f"loss recovered {fid.recovered(name):+.3f} (vs mean-ablation "
        f"{fid.recovered(name, 'mean'):+.3f})"
    )

# %%
# The same numbers as a figure. Zero-ablating layer 0's neurons barely moves MiniLM's
# embeddings, while holding them at their means moves them a lot, so a ratio against
# mean-ablation flatters every edit: the zero-ablation ratio is the one to judge by.
from matplotlib.figure import Figure

names = ["sae", "top-32 neurons", "random dictionary", "mean"]
fig = Figure(figsize=(6, 2.6), layout="constrained")
ax = fig.add_subplot()
ax.barh(names, [fid.effects[n].loss for n in names], color=["C0", "C1", "C7", "C3"])
ax.axvline(fid.effects["zero"].loss, color="black", linestyle="--", label="zero-ablation")
ax.set_xscale("log")
ax.invert_yaxis()
ax.set_xlabel("embedding distance 1 - cos to the clean model (log)")
ax.set_title("Damage done by each replacement of layer 0's neurons")
ax.legend(loc="lower right")
fig
