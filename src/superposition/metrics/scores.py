"""Per-unit polysemanticity scores, read from a unit's top contexts or activation mass.

A *unit* is a neuron, an SAE latent or any direction over the neurons. These scores read what
makes a unit fire from its top activating contexts (or its activation mass), with no language
model as a judge. Weights are activations clamped at 0: a context where the unit is silent
says nothing about what it responds to. :func:`superposition.score_units` gathers them into a
table.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from superposition.metrics._common import _TINY, check_tensor

__all__ = ["category_spread", "context_coherence", "token_diversity"]


def _unit_weights(weights: object, shape: tuple[int, ...], name: str = "weights") -> Tensor:
    w = check_tensor(weights, name, 2, "[units, n]", exact=True)
    if tuple(w.shape) != shape:
        raise ValueError(f"{name} must have shape {shape} to match, got {tuple(w.shape)}")
    return w.to(torch.float64).clamp_min(0.0)


def token_diversity(token_ids: Tensor, weights: Tensor) -> Tensor:
    """Effective number of distinct tokens a unit fires on: ``exp`` of the entropy of its
    activation-weighted token distribution, ``[units]``.

    With ``p_t`` the share of a unit's (non-negative) activation mass over its top contexts
    that falls on token ``t``, the score is ``exp(-sum_t p_t log p_t)``, the Hill number of
    order 1 (Hill 1973, "Diversity and evenness"): 1 for a unit that fires on one token only,
    2 for one that splits its mass evenly over two, up to ``n``. It counts tokens, not
    meanings, so a unit for one concept spelled many ways scores high; read it beside
    :func:`context_coherence`.

    Args:
        token_ids: ``[units, n]`` the token at the centre of each top context; negative ids
            (no context) are ignored.
        weights: ``[units, n]`` the unit's activation there; values ``<= 0`` carry no weight.

    Returns:
        ``[units]`` float64 in ``[1, n]``; NaN for a unit with no positive weight.

    Examples:
        >>> import torch
        >>> ids = torch.tensor([[5, 5, 5, 5], [5, 9, 5, 9], [1, 2, 3, 4]])
        >>> token_diversity(ids, torch.ones(3, 4))
        tensor([1., 2., 4.], dtype=torch.float64)
    """
    if not isinstance(token_ids, Tensor) or token_ids.ndim != 2 or token_ids.is_floating_point():
        got = (
            f"shape {tuple(token_ids.shape)}, dtype {token_ids.dtype}"
            if isinstance(token_ids, Tensor)
            else type(token_ids).__name__
        )
        raise ValueError(f"token_ids must be an integer [units, n] tensor, got {got}")
    w = _unit_weights(weights, tuple(token_ids.shape))
    w = w * (token_ids >= 0)
    total = w.sum(1, keepdim=True)
    p = w / total.clamp_min(_TINY)
    # The mass of each entry's own token, summed over the entries that share it: the entropy
    # sums p_j log(mass of token_j) over entries j, which groups into sum_t p_t log p_t.
    same = token_ids[:, :, None] == token_ids[:, None, :]
    mass = (same * p[:, None, :]).sum(2)
    entropy = -(p * torch.where(p > 0, mass, 1.0).log()).sum(1)
    return torch.where(total.squeeze(1) > 0, entropy.exp(), torch.nan)


def context_coherence(embeddings: Tensor, weights: Tensor) -> Tensor:
    """Activation-weighted mean pairwise cosine similarity of a unit's top contexts, ``[units]``.

    The MonoSemanticity score of Pach et al. (2025), "Sparse Autoencoders Learn Monosemantic
    Features in Vision-Language Models": ``sum_{i != j} w_i w_j cos(e_i, e_j) / sum_{i != j}
    w_i w_j`` over the embeddings ``e`` of the contexts that make the unit fire most, weighted
    by its (non-negative) activations ``w`` there. A unit whose contexts all mean the same
    thing scores near the similarity of near-paraphrases; one that answers to unrelated
    things scores near the similarity of unrelated texts. Compare units under one embedding
    model only: the scale is the embedding's.

    Args:
        embeddings: ``[units, n, d]`` an embedding of each top context (e.g. the mean-pooled
            output of a sentence-embedding model over the context window).
        weights: ``[units, n]`` the unit's activation at each context; values ``<= 0`` and
            all-zero embeddings carry no weight.

    Returns:
        ``[units]`` float64 in ``[-1, 1]``; NaN for a unit with fewer than two weighted contexts.

    Examples:
        >>> import torch
        >>> e = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [1.0, 0.0]],
        ...                   [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])
        >>> context_coherence(e, torch.ones(2, 3))
        tensor([1., 0.], dtype=torch.float64)
    """
    e = check_tensor(embeddings, "embeddings", 3, "[units, n, d]", exact=True)
    w = _unit_weights(weights, tuple(e.shape[:2]))
    norms = e.to(torch.float64).norm(dim=2)
    w = w * (norms > 0)
    u = e.to(torch.float64) / norms.clamp_min(_TINY)[:, :, None]
    # sum_{i != j} w_i w_j cos_ij = |sum_i w_i u_i|^2 - sum_i w_i^2 (|u_i| = 1 where w_i > 0).
    pooled = torch.einsum("un,und->ud", w, u)
    num = pooled.square().sum(1) - w.square().sum(1)
    den = w.sum(1).square() - w.square().sum(1)
    return torch.where(den > _TINY * w.sum(1).square(), num / den.clamp_min(_TINY), torch.nan)


def category_spread(mass: Tensor, tokens: Tensor) -> Tensor:
    """How evenly a unit fires across categories of text, relative to their size, ``[units]``.

    With ``r_c = mass_c / tokens_c`` a unit's mean (non-negative) activation per token of
    category ``c`` and ``p_c = r_c / sum r``, the score is the normalised entropy
    ``-sum_c p_c log p_c / log C`` (Pielou's evenness, Pielou 1966) over the ``C`` categories
    that have tokens: 0 for a unit that fires in one category only, 1 for one that fires at the
    same rate in every category. Dividing by the token counts first keeps a large category from
    looking like a preference.

    Args:
        mass: ``[units, C]`` the sum of each unit's activation (clamped at 0) over the tokens of
            each category.
        tokens: ``[C]`` the number of tokens of each category.

    Returns:
        ``[units]`` float64 in ``[0, 1]``; NaN for a unit with no positive mass.

    Raises:
        ValueError: fewer than two categories have tokens.

    Examples:
        >>> import torch
        >>> mass = torch.tensor([[5.0, 0.0], [1.0, 3.0], [0.0, 0.0]])
        >>> category_spread(mass, torch.tensor([10, 30]))
        tensor([0., 1., nan], dtype=torch.float64)
    """
    m = check_tensor(mass, "mass", 2, "[units, categories]", exact=True)
    if (
        not isinstance(tokens, Tensor)
        or tuple(tokens.shape) != (m.shape[1],)
        or bool((tokens < 0).any())
    ):
        got = (
            f"shape {tuple(tokens.shape)}" if isinstance(tokens, Tensor) else type(tokens).__name__
        )
        raise ValueError(
            f"tokens must be a non-negative [{m.shape[1]}] tensor (one count per category), "
            f"got {got}"
        )
    present = tokens > 0
    C = int(present.sum())
    if C < 2:
        raise ValueError(
            f"category_spread needs at least two categories with tokens, got {C}; label the "
            "texts with two or more categories"
        )
    rate = m.to(torch.float64)[:, present].clamp_min(0.0) / tokens[present].to(torch.float64)
    total = rate.sum(1, keepdim=True)
    p = rate / total.clamp_min(_TINY)
    # 0.0 - x, not -x: a unit in one category gets +0, not -0.
    entropy = (0.0 - (p * torch.where(p > 0, p, 1.0).log()).sum(1)).clamp_min_(0.0)
    return torch.where(total.squeeze(1) > 0, entropy / math.log(C), torch.nan)
