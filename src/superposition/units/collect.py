"""Stream a corpus through an :class:`~superposition.ActivationProbe` into the
:class:`~superposition.units.UnitStatistics` of any unit basis."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Any, TypeAlias, overload

import torch
from torch import Tensor

from superposition import distributed as _distributed
from superposition.units.basis import UnitBasis
from superposition.units.records import UnitStatistics, context_rows

if TYPE_CHECKING:
    from superposition.probe.capture import Captured
    from superposition.probe.probe import ActivationProbe
    from superposition.probe.sites import SitePoint
    from superposition.sae.model import SparseAutoencoder

__all__ = ["collect_units"]

# Unit values are computed for whole texts at most this many tokens at a time (a longer text
# goes alone): an SAE with 16k latents then needs ~64 MB per block, not per batch.
_BLOCK_TOKENS = 2048


Units: TypeAlias = "UnitBasis | SparseAutoencoder | None"


@overload
def collect_units(
    probe: ActivationProbe[Any, Any],
    texts: Iterable[str] | Mapping[str, Any],
    units: Units = None,
    *,
    top_k: int = 20,
    samples: int = 20,
    window: int | tuple[int, int] = (10, 5),
    threshold: float = 0.0,
    categories: Sequence[Any] | None = None,
    distributed: bool | None = None,
) -> UnitStatistics: ...


@overload
def collect_units(
    probe: ActivationProbe[Any, Any],
    texts: Iterable[str] | Mapping[str, Any],
    units: list[Units] | tuple[Units, ...],
    *,
    top_k: int = 20,
    samples: int = 20,
    window: int | tuple[int, int] = (10, 5),
    threshold: float = 0.0,
    categories: Sequence[Any] | None = None,
    distributed: bool | None = None,
) -> list[UnitStatistics]: ...


def collect_units(
    probe: ActivationProbe[Any, Any],
    texts: Iterable[str] | Mapping[str, Any],
    units: Units | list[Units] | tuple[Units, ...] = None,
    *,
    top_k: int = 20,
    samples: int = 20,
    window: int | tuple[int, int] = (10, 5),
    threshold: float = 0.0,
    categories: Sequence[Any] | None = None,
    distributed: bool | None = None,
) -> UnitStatistics | list[UnitStatistics]:
    """Stream ``texts`` through ``probe`` and keep, for every unit, its top contexts, random
    active samples, activation moments and (with ``categories``) activation mass per category.

    Memory does not grow with the corpus: ``texts`` may be a generator or a
    :class:`~superposition.Corpus` far larger than memory.

    Args:
        probe: a probe of one layer.
        texts: strings (any iterable), a :class:`~superposition.Corpus`, or pre-tokenized input.
        units: ``None`` for the neurons, a :class:`~superposition.SparseAutoencoder` for its
            latents, or any :class:`UnitBasis` (e.g. ``UnitBasis.rotation(n)``); or a list of
            these, all fed from one pass of the model (a list of statistics comes back).
        top_k, samples, window, threshold: as in :class:`UnitStatistics`.
        categories: a label per text (e.g. the book each paragraph comes from), for
            :func:`~superposition.metrics.category_spread`; names are sorted.
        distributed: ``None``: under an initialised ``torch.distributed`` process group of
            more than one rank, every rank streams its share of ``texts`` (text ``i`` on rank
            ``i % world_size``; pass the same whole ``texts`` and ``categories`` on every rank)
            and every rank returns the records of the whole corpus, equal to one process's
            (exactly in the top contexts, samples and counts; moments up to round-off). Text
            indices are always indices into the whole ``texts``. ``True``: require a process
            group; ``False``: this process streams everything.

    Returns:
        The :class:`UnitStatistics` (a list of them for a list of units), with the probe's
        tokenizer attached so contexts come with token strings.

    Raises:
        ValueError: the probe has several layers, the units read another width, or the
            categories do not cover the texts.
        RuntimeError: ``distributed=True`` without a process group; under
            ``torch.distributed``, another rank failed (the same type as its error when that
            is a built-in one).

    Examples:
        >>> import torch
        >>> from transformers import BertConfig, BertModel
        >>> from superposition import ActivationProbe
        >>> bert = BertModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
        ...     num_attention_heads=2, intermediate_size=32))
        >>> ids = {"input_ids": torch.tensor([[2, 5, 7, 3]]), "attention_mask": torch.ones(1, 4)}
        >>> s = collect_units(ActivationProbe(bert), ids, top_k=3, window=1)
        >>> s.n_units, s.count, len(s.top(0))
        (32, 4, 3)
    """
    if len({p.layer for p in probe.sites}) != 1:
        raise ValueError(
            f"collect_units needs a probe of one layer, got layers {probe.layers}; build "
            "ActivationProbe(model, layer=L) for each"
        )
    many = isinstance(units, (list, tuple))
    wanted: list[Units] = list(units) if isinstance(units, (list, tuple)) else [units]
    if not wanted:
        raise ValueError("units is an empty list; pass None (the neurons), an SAE or a basis")
    from superposition.sae.model import SparseAutoencoder as SAE

    for u in wanted:
        if u is not None and not isinstance(u, (UnitBasis, SAE)):
            raise TypeError(
                "units must be None (the neurons), a SparseAutoencoder or a UnitBasis (or a "
                f"list of these), got {type(u).__name__}"
            )
    # Settings are checked before the model runs: a bad top_k or window fails here.
    UnitStatistics(1, top_k=top_k, samples=samples, window=window, threshold=threshold)
    names, label_index = _categories(texts, categories)  # of the whole corpus, not a share
    share = _distributed.resolve(distributed)
    size = share[1] if share is not None else 1
    # The site each basis reads: its own (a transcoder reads mlp_in), else the probe's first.
    points: dict[str, SitePoint] = {p.site: p for p in probe.sites}
    reads = [points[_site_of(u, list(points))] for u in wanted]
    pairs: list[tuple[UnitBasis, UnitStatistics]] = []

    def consume(c: Captured) -> None:
        if not pairs:  # the widths are known from the first batch
            for u, site in zip(wanted, reads, strict=True):
                basis = UnitBasis.of(u, int(c.values[site.layer, site.site].shape[1]))
                pairs.append(
                    (
                        basis,
                        UnitStatistics(
                            basis.n_units,
                            top_k=top_k,
                            samples=samples,
                            window=window,
                            threshold=threshold,
                            categories=names,
                            basis_name=basis.name,
                            unit_label=basis.unit_label,
                            layer=site.layer,
                            module_name=site.module_name,
                            model_name=probe.model_name,
                        ),
                    )
                )
        # Rows of one text are contiguous: cut between texts.
        _, counts = torch.unique_consecutive(c.text_index, return_counts=True)
        for lo, hi in _blocks(counts.tolist(), _BLOCK_TOKENS):
            t = c.text_index[lo:hi]
            category = None
            if label_index is not None:
                if int(t.max()) >= label_index.shape[0]:
                    raise ValueError(
                        f"categories has {label_index.shape[0]} labels but text {int(t.max())} "
                        "arrived; pass one label per text"
                    )
                category = label_index[t]
            rows = {
                p.site: c.values[p.layer, p.site][lo:hi].to("cpu", torch.float32)
                for p in dict.fromkeys(reads)
            }
            neighbours = context_rows(t, *pairs[0][1].window)
            for (basis, stats), site in zip(pairs, reads, strict=True):
                stats.update(
                    basis.encode(rows[site.site]),
                    text_index=t,
                    position=c.position[lo:hi],
                    token_ids=c.token_ids[lo:hi],
                    neighbours=neighbours,
                    category=category,
                )

    with probe.capture(texts, distributed=distributed) as batches:
        for captured in batches:
            consume(captured)
    out = [stats for _, stats in pairs]
    if share is not None:
        # A rank that got no text has no records (their width came from the first batch).
        mine: list[UnitStatistics | None] = list(out) or [None] * len(wanted)
        merged = [_distributed.reduce_units(s, all_ranks=True) for s in mine]
        out = [s for s in merged if s is not None]
        if not out:
            raise ValueError(f"texts is empty: none of the {size} ranks got a text; pass one")
    tokenizer = probe.get_tokenizer(required=False)
    for stats in out:
        stats.tokenizer = tokenizer
    return out if many else out[0]


def _site_of(units: Units, sites: list[str]) -> str:
    """The probe's site that ``units`` read: a basis's own site (a transcoder's ``mlp_in``),
    else the first of ``sites``; a site the probe does not capture is refused."""
    from superposition.sae.model import SparseAutoencoder as SAE

    own = units.site if isinstance(units, UnitBasis) else None
    if isinstance(units, SAE):  # a transcoder reads mlp_in; an SAE, as its basis does
        own = "mlp_in" if units.transcoder else UnitBasis.sae(units).site
    if own is None:
        return sites[0]
    if own not in sites:
        what = (
            "a transcoder"
            if own == "mlp_in"
            else "this SAE"
            if isinstance(units, SAE)
            else "these units"
        )
        raise ValueError(
            f"{what} read the {own!r} site, which the probe does not capture (it reads "
            f"{sites}); build the probe with ActivationProbe(model, layer=L, "
            f"site=[{sites[0]!r}, {own!r}])"
        )
    return own


def _categories(
    texts: Any, categories: Sequence[Any] | None
) -> tuple[list[str] | None, Tensor | None]:
    """The sorted category names and each text's category index (``None`` without labels)."""
    if categories is None:
        return None, None
    if isinstance(categories, (str, bytes)) or not hasattr(categories, "__len__"):
        raise TypeError(
            f"categories must be a sequence with one label per text, got "
            f"{type(categories).__name__}"
        )
    n_texts = len(texts) if isinstance(texts, Sized) else None
    if n_texts is not None and not isinstance(texts, Mapping) and len(categories) != n_texts:
        raise ValueError(
            f"categories must have one label per text: {n_texts} texts, {len(categories)} labels"
        )
    names = sorted({str(c) for c in categories})
    lookup = {n: i for i, n in enumerate(names)}
    return names, torch.tensor([lookup[str(c)] for c in categories], dtype=torch.int64)


def _blocks(counts: list[int], limit: int) -> list[tuple[int, int]]:
    """``(start, stop)`` row ranges of consecutive texts with ``counts`` rows each, at most
    ``limit`` rows per range unless one text alone is longer.

    Examples:
        >>> _blocks([3, 2, 4, 9, 1], 5)
        [(0, 5), (5, 9), (9, 18), (18, 19)]
    """
    out: list[tuple[int, int]] = []
    lo = hi = 0
    for n in counts:
        if hi > lo and hi - lo + n > limit:
            out.append((lo, hi))
            lo = hi
        hi += n
    if hi > lo:
        out.append((lo, hi))
    return out
