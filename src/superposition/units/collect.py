"""Stream a corpus through an :class:`~superposition.ActivationProbe` into the
:class:`~superposition.units.UnitStatistics` of any unit basis."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Any, TypeAlias, overload

import torch
from torch import Tensor

from superposition.units.basis import UnitBasis
from superposition.units.records import UnitStatistics, context_rows

if TYPE_CHECKING:
    from superposition.probe.probe import ActivationProbe, _Batch
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

    Returns:
        The :class:`UnitStatistics` (a list of them for a list of units), with the probe's
        tokenizer attached so contexts come with token strings.

    Raises:
        ValueError: the probe has several layers, the units read another width, or the
            categories do not cover the texts.

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
    if len(probe.sites) != 1:
        raise ValueError(
            f"collect_units needs a probe of one layer, got layers {probe.layers}; build "
            "ActivationProbe(model, layer=L) for each layer"
        )
    names: list[str] | None = None
    label_index: Tensor | None = None
    if categories is not None:
        if isinstance(categories, (str, bytes)) or not hasattr(categories, "__len__"):
            raise TypeError(
                f"categories must be a sequence with one label per text, got "
                f"{type(categories).__name__}"
            )
        n_texts = len(texts) if isinstance(texts, Sized) else None
        if n_texts is not None and not isinstance(texts, Mapping) and len(categories) != n_texts:
            raise ValueError(
                f"categories must have one label per text: {n_texts} texts, "
                f"{len(categories)} labels"
            )
        names = sorted({str(c) for c in categories})
        lookup = {n: i for i, n in enumerate(names)}
        label_index = torch.tensor([lookup[str(c)] for c in categories], dtype=torch.int64)
    site = probe.sites[0]
    state: dict[str, Any] = {}
    tokenizer = probe._get_tokenizer(required=False)

    def sink(slot: int, batch_no: int, batch: _Batch, x: Tensor, first: int) -> None:
        B, S = batch.inputs["input_ids"].shape
        flat = x.reshape(B * S, x.shape[-1])
        if "stats" not in state:
            state["pairs"] = [(b, _records(b)) for b in _bases(flat.shape[1])]
            state["stats"] = [s for _, s in state["pairs"]]
        pairs: list[tuple[UnitBasis, UnitStatistics]] = state["pairs"]
        src = batch.src
        row_of = src // S
        texts_of = torch.tensor(batch.texts, dtype=torch.int64)[row_of] + first
        position = src % S
        token_ids = batch.inputs["input_ids"].reshape(-1)[src]
        # src is row-major, so each text's tokens are contiguous: cut between texts.
        counts = torch.bincount(row_of, minlength=B).tolist()
        start = 0
        while start < len(counts):
            end, n = start, 0
            while end < len(counts) and (n == 0 or n + counts[end] <= _BLOCK_TOKENS):
                n += counts[end]
                end += 1
            lo = sum(counts[:start])
            rows = slice(lo, lo + n)
            t = texts_of[rows]
            category = None
            if label_index is not None:
                if int(t.max()) >= label_index.shape[0]:
                    raise ValueError(
                        f"categories has {label_index.shape[0]} labels but text {int(t.max())} "
                        "arrived; pass one label per text"
                    )
                category = label_index[t]
            x_rows = flat.index_select(0, src[rows].to(flat.device)).to("cpu", torch.float32)
            neighbours = context_rows(t, *pairs[0][1].window)
            for basis, stats in pairs:
                stats.update(
                    basis.encode(x_rows),
                    text_index=t,
                    position=position[rows],
                    token_ids=token_ids[rows],
                    neighbours=neighbours,
                    category=category,
                )
            start = end

    many = isinstance(units, (list, tuple))
    wanted: list[Units] = list(units) if isinstance(units, (list, tuple)) else [units]
    if not wanted:
        raise ValueError("units is an empty list; pass None (the neurons), an SAE or a basis")

    def _bases(n_neurons: int) -> list[UnitBasis]:
        return [UnitBasis.of(u, int(n_neurons)) for u in wanted]

    def _records(basis: UnitBasis) -> UnitStatistics:
        return UnitStatistics(
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
            model_name=_model_name(probe),
        )

    # Settings are checked before the model runs: a bad top_k or window fails here.
    UnitStatistics(1, top_k=top_k, samples=samples, window=window, threshold=threshold)
    from superposition.sae.model import SparseAutoencoder as SAE

    for u in wanted:
        if u is not None and not isinstance(u, (UnitBasis, SAE)):
            raise TypeError(
                "units must be None (the neurons), a SparseAutoencoder or a UnitBasis (or a "
                f"list of these), got {type(u).__name__}"
            )
    probe._stream(texts, sink)
    out: list[UnitStatistics] = state["stats"]
    for s in out:
        s.tokenizer = tokenizer
    return out if many else out[0]


def _model_name(probe: ActivationProbe[Any, Any]) -> str:
    from superposition.probe.probe import _model_name as name

    return name(probe.model)
