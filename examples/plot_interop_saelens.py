"""
Bring your own: a TransformerLens model and an SAELens dictionary
=================================================================

Researchers rarely start from nothing: they have a TransformerLens ``HookedTransformer`` and
dictionaries in SAELens's format (its releases, their own training runs). This example takes
the route a user of those libraries would: probe a ``HookedTransformer`` at its hook names,
keep an SAE of its neurons as an SAELens folder, open that folder again as one would a
download, splice it back into the model, and browse its latents beside the neurons.

The model here is built from a small config with random weights, so that nothing is
downloaded; with ``HookedTransformer.from_pretrained("gpt2")`` and an SAELens release the
lines are the same.
"""

# %%
# A TransformerLens model, probed at its hook names
# -------------------------------------------------
# No ``module=``: the probe knows a ``HookedTransformer``'s hook points, its tokenizer and
# the way it takes its input. Sites can be named as TransformerLens names them.
import tempfile
import warnings
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

import superposition as sp

torch.manual_seed(0)
_, tokenizer = sp.load_model()  # the shipped MiniLM's tokenizer stands in for GPT-2's
config = HookedTransformerConfig(
    n_layers=2, d_model=64, n_ctx=512, d_head=16, n_heads=4, d_mlp=256,
    d_vocab=tokenizer.vocab_size, act_fn="gelu", normalization_type="LN", seed=0,
)  # fmt: skip
with warnings.catch_warnings():  # TransformerLens 3 deprecates HookedTransformer for its bridge
    warnings.simplefilter("ignore", DeprecationWarning)
    model = HookedTransformer(config, tokenizer=tokenizer).eval()

texts = list(sp.default_corpus("train").head(400))
probe = sp.ActivationProbe(model, layer=1, site="mlp.hook_post", progress=False)
print(probe)
acts = probe.run(texts)
print(acts)

# %%
# An SAE, kept as SAELens keeps one
# ---------------------------------
# ``format="saelens"`` writes ``cfg.json`` and ``sae_weights.safetensors`` exactly as
# SAELens's ``save_model`` does (its ``SAE.load_from_disk`` opens the folder and gives the same
# latents, which the tests check against SAELens itself); the site becomes its ``hook_name``.
sae = sp.SparseAutoencoder(256, 1024, k=16, seed=0).fit(acts.values, samples=200_000)
sae.layer, sae.site = 1, "neurons"
folder = Path(tempfile.mkdtemp()) / "blocks.1.mlp.hook_post"
sae.save(folder, format="saelens")
print(sorted(p.name for p in folder.iterdir()))
print((folder / "cfg.json").read_text()[:300], "...")

# %%
# Opened again, as one opens a download
# -------------------------------------
# :meth:`superposition.SparseAutoencoder.load` reads SAELens and sparsify folders by what they
# hold, honours their conventions (``apply_b_dec_to_input``, decoder-norm rescaling, the
# release's norm scaling factor) and reads where the dictionary belongs from its hook name.
loaded = sp.SparseAutoencoder.load(folder)
print(loaded, "reads", loaded.site, "of layer", loaded.layer)
x = acts.values[:512]
print("same latents:", torch.allclose(loaded.encode(x), sae.encode(x), atol=1e-5))

# %%
# Spliced into the model
# ----------------------
# Fidelity finds the layer and the site in the SAE itself: next-token loss with the neurons
# replaced by the SAE's reconstruction, against zero- and mean-ablating them.
fidelity = loaded.fidelity(model, texts[:32])
print(fidelity)

# %%
# Its latents beside the neurons
# ------------------------------
# One pass of the model collects both sets of units; the explorer is one offline HTML file
# (open it in a browser), and the scores compare the two bases unit by unit.
held_out = list(sp.default_corpus("test").head(200))
neurons, latents = sp.collect_units(probe, held_out, [None, loaded])
page = sp.explore(
    [neurons, latents],
    folder.parent / "explorer.html",
    bases=[sp.UnitBasis.neurons(256), sp.UnitBasis.sae(loaded)],
)
print("explorer:", page.name, f"{page.stat().st_size / 1e6:.1f} MB")
tables = {"neurons": sp.score_units(neurons), "SAE latents": sp.score_units(latents)}
for name, table in tables.items():
    td = table["token_diversity"]
    print(f"{name}: median token diversity {float(td[~td.isnan()].median()):.2f}")
sp.plot.score_distributions(tables)
