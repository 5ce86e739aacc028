"""
Streaming statistics over a corpus too large to hold
====================================================

:meth:`superposition.ActivationProbe.run` materialises a ``[tokens, neurons]`` matrix: 1536
float32 neurons cost 6 KB per token, so a million tokens need 6 GB.
:meth:`superposition.ActivationProbe.stream` keeps only running sums instead (per-neuron power
sums, activity counts and the float64 Gram matrix ``XᵀX``), so its memory is fixed by the
number of neurons, not by the corpus, and the full neuron × neuron cosine and Pearson
matrices still come out exactly at the end.

This example writes a few thousand generated sentences to a text file, streams them back line
by line, and checks the result against the materialised analysis.
"""

# %%
# A generated corpus on disk
# --------------------------
# 2,000 sentences from a few templates (a real corpus works the same way: any iterable of
# strings, such as an open file).
import random
import tempfile
from pathlib import Path

subjects = ["The cat", "A teacher", "My neighbour", "The committee", "Every student", "She"]
verbs = ["reads", "writes about", "argues over", "forgets", "draws", "explains"]
objects = ["the old map", "prime numbers", "a German poem", "the weather", "42 apples", "tea"]
endings = [".", " today.", " every morning.", " in Paris.", " without a word.", "?"]
rng = random.Random(0)
sentences = [
    f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}{rng.choice(endings)}"
    for _ in range(2_000)
]
folder = tempfile.TemporaryDirectory()
corpus = Path(folder.name) / "corpus.txt"
corpus.write_text("\n".join(sentences) + "\n", encoding="utf-8")
print(f"{corpus.stat().st_size:,} bytes, e.g. {sentences[:3]}")


def lines(path):
    """Yield the file's lines one at a time: the corpus is never in memory as a whole."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield line.rstrip("\n")


# %%
# Stream it through the first MLP layer
# -------------------------------------
# The probe tokenizes and batches a chunk of lines at a time; each batch's activations are
# added to the accumulator and dropped.
import superposition as sp

model, tokenizer = sp.load_model()
probe = sp.ActivationProbe(model, layer=0, tokenizer=tokenizer, batch_size=64, progress=False)
streamed = probe.stream(lines(corpus))
streamed

# %%
# Memory: fixed by the number of neurons
# --------------------------------------
# The accumulator's largest part is the ``[neurons, neurons]`` float64 Gram matrix. Streaming
# a quarter of the corpus allocates exactly the same.
quarter = probe.stream(sentences[:512])
n = streamed.n_neurons
print(f"Gram matrix: {streamed.gram.nbytes / 2**20:.1f} MiB for {streamed.count:,} tokens")
print(f"Gram matrix: {quarter.gram.nbytes / 2**20:.1f} MiB for {quarter.count:,} tokens")
print(f"materialised [tokens, {n}] float32: {streamed.count * n * 4 / 2**20:.1f} MiB")

# %%
# The same numbers as the materialised analysis
# ---------------------------------------------
# For a corpus this small the full matrix fits, so we can check: the cosine similarity, the
# Pearson correlation (``center=True``) and the per-neuron statistics agree with what
# :class:`superposition.Activations` computes from all rows at once, up to float round-off.
import torch

acts = probe.run(sentences)
print(f"{acts.n_tokens:,} tokens materialised, {streamed.count:,} streamed")
for center in (False, True):
    full = acts.cosine_similarity(center=center)
    online = streamed.cosine_similarity(center=center)
    torch.testing.assert_close(online, full, atol=1e-4, rtol=0)
    print(f"center={center}: largest difference {float((online - full).abs().max()):.1e}")
torch.testing.assert_close(streamed.finalise().mean, acts.stats().mean, atol=1e-5, rtol=1e-4)

# %%
# Shards merge exactly
# --------------------
# Accumulators over disjoint parts of a corpus (other processes, other machines: see
# :meth:`superposition.StreamingStatistics.save`) merge into the accumulator of one pass.
# The split is at 512 texts because the probe sorts each chunk of 8 batches (8 x 64 texts) by
# length: split there, both sides see the same batches. Split elsewhere, some texts land in
# batches padded to another length, and the float32 forward pass rounds them differently
# (about 1e-6 relative): a difference in the activations, not in the merge.
rest = probe.stream(sentences[512:])  # `quarter` above holds sentences[:512]
merged = quarter.merge(rest)
torch.testing.assert_close(merged.gram, streamed.gram)
print(merged)

# %%
# The centred cosine-distance histogram (Figure 5) of the whole stream
# --------------------------------------------------------------------
# Figures 6 and 7 need per-token values; Figures 4 and 5 need only the neuron × neuron
# distances, which the stream computed exactly: draw them from the matrix.
from superposition import plot

distance = streamed.cosine_distance(center=True)
plot.distance_histogram(distance, label="centred cosine distance (1 - Pearson)")

# %%
plot.distance_heatmap(distance, label="centred cosine distance")

# %%
folder.cleanup()
