"""An SAE measured on a corpus: how well it reconstructs the layer, and how much of the model's
behaviour survives it spliced in.

:func:`evaluate_on_corpus` reads the layer's neurons over the texts once (padding dropped),
scores the reconstruction (:meth:`SparseAutoencoder.evaluate`: L0, FVU, MSE, dead latents,
shrinkage), then runs the model again with the SAE in place of the neurons
(:meth:`SparseAutoencoder.fidelity`: loss recovered against zero- and mean-ablation). This is
what ``superposition sae train`` and ``sae eval`` report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch import nn

from superposition.probe.corpus import Corpus, load_corpus
from superposition.probe.probe import ActivationProbe
from superposition.sae.evaluate import Quality
from superposition.sae.fidelity import Fidelity
from superposition.sae.model import SAEMetrics, SparseAutoencoder

__all__ = ["CorpusEvaluation", "corpus_quality", "evaluate_on_corpus"]


@dataclass(frozen=True)
class CorpusEvaluation:
    """An SAE's quality and fidelity on some texts (:func:`evaluate_on_corpus`).

    Attributes:
        n_texts: texts measured on.
        n_tokens: tokens whose neurons were reconstructed (padding dropped).
        quality: reconstruction of those tokens' neurons (L0, FVU, MSE, dead latents, ...).
        fidelity: the model's loss with the SAE spliced in (a transcoder in place of the
            MLP), against zero- and mean-ablation.
    """

    n_texts: int
    n_tokens: int
    quality: SAEMetrics
    fidelity: Fidelity

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers, for JSON (the ``eval`` of ``sae train``'s metrics.json)."""
        q = self.quality
        return {
            "n_texts": self.n_texts,
            "n_tokens": self.n_tokens,
            "l0": q.l0,
            "fvu": q.fvu,
            "mse": q.mse,
            "dead_fraction": q.dead_fraction,
            "shrinkage": q.shrinkage,
            "fidelity": self.fidelity.to_dict(),
        }

    def summary(self, *, held_out: bool = True) -> str:
        """One line: L0, FVU, dead latents and loss recovered, saying whether the texts were
        held out from training (``held_out=False``: the training texts themselves)."""
        q, f = self.quality, self.fidelity
        where = "held-out" if held_out else "training (not held-out)"
        return (
            f"on {self.n_tokens:,} {where} tokens: L0 {q.l0:.1f}, FVU {q.fvu:.3f}, dead "
            f"{100 * q.dead_fraction:.1f}%, loss recovered {f.loss_recovered:.3f} vs "
            f"zero-ablation ({f.loss_recovered_mean:.3f} vs mean-ablation; {f.metric})"
        )


def evaluate_on_corpus(
    sae: SparseAutoencoder,
    model: nn.Module,
    texts: Corpus | Iterable[str] | Any,
    layer: int,
    *,
    tokenizer: Any = None,
    progress: bool = False,
) -> CorpusEvaluation:
    """Measure ``sae``, trained on the MLP neurons of ``layer`` of ``model``, on ``texts`` (a
    :class:`~superposition.Transcoder`: its prediction of ``mlp_out`` from ``mlp_in``).

    Args:
        sae: an SAE whose ``d_in`` is the layer's number of neurons.
        model: the Hugging Face model (as from :func:`~superposition.load_model`).
        texts: the texts (held-out ones, to judge an SAE), in any form
            :func:`~superposition.load_corpus` reads; read once into memory.
        layer: the layer the SAE was trained on.
        tokenizer: the model's tokenizer (default: found from the model).
        progress: show a progress bar while the neurons are read.

    Returns:
        A :class:`CorpusEvaluation`; ``.to_dict()`` for JSON, ``.summary()`` for one line.

    Examples:
        >>> from superposition import SparseAutoencoder, load_model
        >>> model, tok = load_model()
        >>> sae = SparseAutoencoder(1536, 64, k=8, seed=0)  # untrained: a random dictionary
        >>> ev = evaluate_on_corpus(sae, model, ["The cat sat on the mat."], 0, tokenizer=tok)
        >>> ev.n_texts, ev.n_tokens, ev.quality.l0 <= 8
        (1, 9, True)
        >>> sorted(ev.to_dict()["fidelity"]["effects"])
        ['mean', 'sae', 'zero']
    """
    texts = list(load_corpus(texts))  # read once: a generator cannot be read twice
    quality = corpus_quality(sae, model, texts, layer, tokenizer=tokenizer, progress=progress)
    fidelity = sae.fidelity(model, texts, layer, tokenizer=tokenizer)
    return CorpusEvaluation(
        n_texts=fidelity.n_texts, n_tokens=quality.n, quality=quality.result(), fidelity=fidelity
    )


def corpus_quality(
    sae: SparseAutoencoder,
    model: nn.Module,
    texts: Iterable[str] | Any,
    layer: int,
    *,
    tokenizer: Any = None,
    progress: bool = False,
) -> Quality:
    """The reconstruction half of :func:`evaluate_on_corpus`: ``sae`` (a transcoder: its
    prediction of ``mlp_out`` from ``mlp_in``) measured on the layer's activations of
    ``texts``, read once, batch by batch (``.result()`` gives the :class:`SAEMetrics`, ``.n``
    the tokens)."""
    sites = ["mlp_in", "mlp_out"] if sae.transcoder else ["neurons"]
    probe = ActivationProbe(model, layer=layer, site=sites, tokenizer=tokenizer, progress=progress)
    # Batch by batch as the model gives them: memory does not grow with the texts.
    quality = Quality(sae)
    with probe.capture(texts, distributed=False) as batches:
        for captured in batches:
            quality.add(*(captured[site] for site in sites))
    return quality
