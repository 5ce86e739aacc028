"""
Probing the MLP neurons of a real transformer
=============================================

The seed paper's section 5: run its twelve texts through the first MLP layer of a BERT model
and ask how the neurons relate to each other (Figures 4–7). Here the model is the
all-MiniLM-L6-v2 that ships with the ``demo`` extra (a 6-layer BERT with 1536 MLP neurons per
layer), so nothing is downloaded; pass any Hugging Face name to
:func:`superposition.load_model` (``"bert-base-uncased"``) to probe another model the same way.

This page uses the **corrected** analysis, the library's default: padding dropped and, for
the cosine figures, each neuron mean-centred. :doc:`plot_paper_vs_corrected` compares it with
the paper's settings.
"""

# %%
# Load the model and probe layer 0
# --------------------------------
# :class:`superposition.ActivationProbe` finds the MLP's output projection in any supported
# architecture and hooks its input, so the captured values are the neurons after the
# activation function.
import superposition as sp

model, tokenizer = sp.load_model()
probe = sp.ActivationProbe(model, layer=0, tokenizer=tokenizer)
probe

# %%
# The seed paper's texts, by category:
for category, texts in sp.PAPER_TEXTS.items():
    print(f"{category}: {texts}")

# %%
# One run per category returns an :class:`superposition.Activations`: one row per real token
# (no padding), one column per neuron.
acts = {category: probe.run(texts) for category, texts in sp.PAPER_TEXTS.items()}
language = acts["language"]
print(language)
print(language.tokens[:12])

# %%
# Figure 4: the neuron × neuron cosine-distance matrix
# -----------------------------------------------------
# The first half of the neurons, as in the paper. Blue means two neurons fire alike (distance
# 0), white orthogonal (1), red opposed (2). ``center=True`` makes the distance
# ``1 - Pearson correlation``.
language.plot.cosine_heatmap(center=True)

# %%
# Figure 5: the distribution of pairwise distances
# ------------------------------------------------
# Every pair of the 1536 neurons counts once.
language.plot.cosine_histogram(center=True)

# %%
# Figure 6: a sample of neurons, token by token
# ---------------------------------------------
# Fifty neurons drawn with a fixed seed; dotted lines mark where each text starts. Most
# neurons sit slightly below zero (GELU's "off" value) and fire on a few tokens.
language.plot.neuron_traces(n=50, seed=0)

# %%
# Figure 7: each neuron's activation summed over all tokens
# ---------------------------------------------------------
language.plot.activation_sums()

# %%
# Per-neuron statistics
# ---------------------
# :meth:`superposition.Activations.stats` gives mean, variance, activation frequency (share of
# tokens with a value above 0) and excess kurtosis of every neuron. A high kurtosis means a
# neuron that is quiet on most tokens and fires strongly on a few.
for category, a in acts.items():
    s = a.stats()
    print(
        f"{category:>15}: {a.n_tokens:3d} tokens, neurons active on "
        f"{float(s.frequency.mean()):.1%} of tokens, median excess kurtosis "
        f"{float(s.kurtosis.median()):.2f}"
    )
