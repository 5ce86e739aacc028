"""
What makes a neuron fire? Top contexts and polysemanticity scores
=================================================================

The seed paper judges MLP neurons polysemantic from cosine distances between their activation
vectors. Here the question is asked directly: for every neuron of MiniLM's first MLP layer,
which tokens make it fire most, and how many different things are they? The same code scores
any other set of units over the neurons (:class:`superposition.UnitBasis`): here a random
rotation of the neurons, a null with the same information and no privileged directions.

A few hundred held-out paragraphs of the default corpus keep the documentation build short;
``superposition units`` and the report run the same thing at scale, with an SAE.
"""

# %%
# One pass of the model, two sets of units
# ----------------------------------------
# :func:`superposition.collect_units` streams the texts through the probe and keeps, per unit,
# its top 20 activations with a window of tokens around each, a random sample of the tokens it
# fires on, and its activation mass per book. Memory does not grow with the corpus.
import torch

import superposition as sp
from superposition.report.units import book_texts

torch.manual_seed(0)
model, tokenizer = sp.load_model()
probe = sp.ActivationProbe(model, layer=0, tokenizer=tokenizer, progress=False)
texts, books = book_texts(300)  # held-out paragraphs, half of each novel, and their book
neurons, rotated = sp.collect_units(
    probe, texts, [None, sp.UnitBasis.rotation(1536, seed=0)], categories=books
)
print(neurons)

# %%
# Scores, one row per unit
# ------------------------
# Token diversity is the effective number of distinct tokens among a unit's top contexts
# (1: a single token); category spread how evenly it fires across the two books; context
# coherence how similar the model's embeddings of its top contexts are (here for 48 units of
# each set at random, since it embeds every context with the whole model).
embed = sp.context_embedder(model, tokenizer)
g = torch.Generator().manual_seed(0)
tables = {
    "neurons": sp.score_units(
        neurons, embed=embed, embed_units=torch.randperm(1536, generator=g)[:48]
    ),
    "rotated neurons": sp.score_units(
        rotated, embed=embed, embed_units=torch.randperm(1536, generator=g)[:48]
    ),
}
for name, table in tables.items():
    td = table["token_diversity"]
    print(f"{name}: median token diversity {float(td[~td.isnan()].median()):.2f}")

# %%
# The least and the most diverse neuron, in context
# --------------------------------------------------
# The firing token is in brackets; the number is the neuron's activation there. A neuron that
# never fires positively on these texts has no token diversity (NaN) and sorts last.
scored = tables["neurons"].sort("token_diversity")
order = scored["unit"][~scored["token_diversity"].isnan()]
for unit in (int(order[0]), int(order[-1])):
    d = float(tables["neurons"]["token_diversity"][unit])
    print(f"neuron {unit} (token diversity {d:.2f})")
    for c in neurons.top(unit)[:4]:
        words = [f"[{t}]" if i == c.center else t for i, t in enumerate(c.tokens or [])]
        print(f"  {c.value:5.2f}  {' '.join(words)}")

# %%
# Neurons against the rotation
# ----------------------------
# Each box spans the middle half of the units, each dot is a unit, and the diamond is the
# median with its 95 % bootstrap interval.
sp.plot.score_distributions(tables)
