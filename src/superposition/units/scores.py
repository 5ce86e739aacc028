"""The per-unit score table: how polysemantic each unit is, from its streamed records.

The formulas live in :mod:`superposition.metrics`; this module feeds them from a
:class:`~superposition.units.UnitStatistics` and lays the results out one row per unit.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from superposition import metrics
from superposition.probe.batching import length_order, pad_rows
from superposition.probe.capture import model_device
from superposition.units.records import UnitStatistics

__all__ = ["SCORE_DOCS", "UnitTable", "context_embedder", "score_units"]

Embed = Callable[[list[list[int]]], Tensor]
"""Token-id windows to ``[n, d]`` embeddings."""

SCORE_DOCS: dict[str, str] = {
    "max_activation": "the largest activation over the corpus",
    "density": "fraction of tokens where the unit is active (> threshold)",
    "kurtosis": "excess kurtosis of its activations: heavy tails mark sparse, feature-like units",
    "token_diversity": (
        "effective number of distinct tokens among its top contexts (1 = one token); "
        "lower is more monosemantic"
    ),
    "context_coherence": (
        "activation-weighted mean cosine similarity of its top contexts' embeddings; "
        "higher is more monosemantic"
    ),
    "category_spread": (
        "how evenly it fires across text categories, relative to their size "
        "(0 = one category, 1 = all alike)"
    ),
}
"""One line per score column of :class:`UnitTable`: what it measures and which way is
monosemantic."""


@dataclass(frozen=True)
class UnitTable:
    """Scores of every unit of a basis, one row per unit.

    Attributes:
        columns: name → ``[units]`` tensor; ``unit`` holds the unit indices. See
            :data:`SCORE_DOCS` for each score.
        basis_name: which units (``"neurons"``, ``"SAE latents"``, ...).
        unit_label: how one unit is named (``"neuron"``, ``"latent"``...).

    Examples:
        >>> import torch
        >>> t = UnitTable({"unit": torch.arange(3), "density": torch.tensor([0.5, 0.1, 0.9])})
        >>> t.sort("density").columns["unit"].tolist(), len(t)
        ([1, 0, 2], 3)
    """

    columns: dict[str, Tensor]
    basis_name: str = "units"
    unit_label: str = "unit"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lengths = {k: int(v.shape[0]) for k, v in self.columns.items()}
        if "unit" not in self.columns or len(set(lengths.values())) != 1:
            raise ValueError(
                f"columns must include 'unit' and all have the same length, got {lengths}"
            )

    def __len__(self) -> int:
        return int(self.columns["unit"].shape[0])

    def __repr__(self) -> str:
        return f"UnitTable({self.basis_name!r}, units={len(self)}, columns={list(self.columns)})"

    def __getitem__(self, name: str) -> Tensor:
        return self.columns[name]

    def sort(self, by: str, *, descending: bool = False) -> UnitTable:
        """The rows ordered by column ``by`` (NaN last), ties by unit index."""
        if by not in self.columns:
            raise KeyError(f"no column {by!r}; columns are {list(self.columns)}")
        col = self.columns[by].to(torch.float64)
        key = torch.where(col.isnan(), math.inf, -col if descending else col)
        order = key.argsort(stable=True)
        return UnitTable(
            {k: v[order] for k, v in self.columns.items()},
            self.basis_name,
            self.unit_label,
            dict(self.meta),
        )

    def to_dict(self) -> dict[str, list[float | int | None]]:
        """Plain lists (NaN as ``None``), for JSON."""
        out: dict[str, list[float | int | None]] = {}
        for k, v in self.columns.items():
            if v.is_floating_point():
                out[k] = [None if math.isnan(x) else x for x in v.tolist()]
            else:
                out[k] = [int(x) for x in v.tolist()]
        return out

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` (needs pandas)."""
        try:
            import pandas as pd  # type: ignore[import-untyped, unused-ignore]
        except ImportError as err:
            raise ImportError(
                "to_pandas needs pandas; pip install pandas, or use .columns / .to_dict()"
            ) from err
        return pd.DataFrame({k: v.numpy() for k, v in self.columns.items()})

    def save(self, directory: str | os.PathLike[str], name: str = "units") -> tuple[Path, Path]:
        """Write ``name.csv`` and ``name.json`` (with the basis and score docs) to
        ``directory`` atomically; returns both paths."""
        from superposition._io import atomic_write

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        rows = self.to_dict()
        keys = list(rows)
        lines: list[list[Any]] = [keys]
        lines += [[rows[k][i] for k in keys] for i in range(len(self))]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(
            [["" if x is None else x for x in line] for line in lines]
        )
        doc = {
            "basis": self.basis_name,
            "unit_label": self.unit_label,
            "meta": self.meta,
            "docs": {k: SCORE_DOCS[k] for k in keys if k in SCORE_DOCS},
            "columns": rows,
        }
        return (
            atomic_write(d / f"{name}.csv", buf.getvalue()),
            atomic_write(d / f"{name}.json", json.dumps(doc)),
        )


def score_units(
    stats: UnitStatistics,
    *,
    embed: Embed | None = None,
    embed_units: Sequence[int] | Tensor | None = None,
) -> UnitTable:
    """Score every unit of ``stats``: max activation, density, kurtosis, token diversity, and
    context coherence (with ``embed``) and category spread (when it has categories).

    Args:
        stats: from :func:`~superposition.units.collect_units` or :meth:`UnitStatistics.update`.
        embed: turns token-id windows into embeddings, e.g. :func:`context_embedder` of a
            sentence-embedding model; each distinct top context is embedded once.
        embed_units: compute context coherence for these units only (NaN for the others):
            embedding every context of thousands of units takes a full model pass each.

    Examples:
        >>> import torch
        >>> from superposition.units import UnitStatistics
        >>> s = UnitStatistics(2, top_k=2, samples=0, window=0)
        >>> _ = s.update(torch.tensor([[1.0, 2.0], [1.0, 0.0]]), text_index=torch.tensor([0, 1]),
        ...              position=torch.tensor([0, 0]), token_ids=torch.tensor([4, 5]))
        >>> score_units(s).columns["token_diversity"]
        tensor([2., 1.], dtype=torch.float64)
    """
    if not isinstance(stats, UnitStatistics):
        raise TypeError(f"stats must be a UnitStatistics, got {type(stats).__name__}")
    top = stats.top_arrays()
    final = stats.stats.finalise() if stats.count else None
    U = stats.n_units
    nan = torch.full((U,), math.nan, dtype=torch.float64)
    before = stats.window[0]
    centre_ids = top["token_ids"][:, :, before].to(torch.int64).T  # [U, top_k]
    weights = torch.where(top["text_index"] >= 0, top["value"], 0.0).T
    cols: dict[str, Tensor] = {
        "unit": torch.arange(U),
        "max_activation": torch.where(
            top["text_index"][0] >= 0, top["value"][0].to(torch.float64), math.nan
        ),
        "density": final.frequency.to(torch.float64) if final is not None else nan,
        "kurtosis": final.kurtosis.to(torch.float64) if final is not None else nan,
        "token_diversity": metrics.token_diversity(centre_ids, weights),
    }
    if embed is not None:
        chosen = torch.arange(U) if embed_units is None else torch.as_tensor(embed_units).long()
        if chosen.ndim != 1 or bool(((chosen < 0) | (chosen >= U)).any()):
            raise ValueError(
                f"embed_units must be unit indices in [0, {U}), got {chosen.tolist()[:8]}"
            )
        coherence = torch.full((U,), math.nan, dtype=torch.float64)
        if chosen.numel():
            part = {k: v[:, chosen] for k, v in top.items()}
            coherence[chosen] = metrics.context_coherence(_embed_top(part, embed), weights[chosen])
        cols["context_coherence"] = coherence
    if stats.categories is not None and int((stats.category_tokens > 0).sum()) >= 2:
        cols["category_spread"] = metrics.category_spread(
            stats.category_mass, stats.category_tokens
        )
    return UnitTable(
        cols,
        stats.basis_name,
        stats.unit_label,
        {
            "tokens": stats.count,
            "top_k": stats.top_k,
            "layer": stats.layer,
            "model": stats.model_name,
            "categories": stats.categories,
        },
    )


def _embed_top(top: dict[str, Tensor], embed: Embed) -> Tensor:
    """``[units, top_k, d]`` embeddings of the top contexts, each distinct one computed once."""
    text, pos, ids = top["text_index"], top["position"], top["token_ids"]
    K, U = text.shape
    valid = text >= 0
    key = text * (int(pos.max()) + 2 if pos.numel() else 1) + pos
    uniq, inverse = torch.unique(key[valid], return_inverse=True)
    first = torch.full((uniq.shape[0],), -1, dtype=torch.int64)
    flat_ids = ids[valid]  # [m, W]
    first.scatter_reduce_(
        0, inverse, torch.arange(inverse.shape[0]), reduce="amin", include_self=False
    )
    windows = [[int(t) for t in flat_ids[i] if t >= 0] for i in first.tolist()]
    E = torch.as_tensor(embed(windows)) if windows else torch.zeros(0, 1)
    if E.ndim != 2 or E.shape[0] != len(windows):
        raise ValueError(
            f"embed must return a [{len(windows)}, d] tensor for {len(windows)} windows, got "
            f"shape {tuple(E.shape)}"
        )
    out = torch.zeros(K, U, E.shape[1], dtype=torch.float32)
    out[valid] = E.float()[inverse]
    return out.transpose(0, 1)


def context_embedder(
    model: nn.Module, tokenizer: Any, *, batch_size: int = 64
) -> Callable[[list[list[int]]], Tensor]:
    """An ``embed`` for :func:`score_units`: the mean over tokens of ``model``'s last hidden
    state on each window (with the tokenizer's special tokens around it), as a
    sentence-embedding model like the shipped MiniLM is used.

    Examples:
        >>> import torch
        >>> from transformers import BertConfig, BertModel
        >>> bert = BertModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
        ...     num_attention_heads=2, intermediate_size=32))
        >>> class Tok:
        ...     pad_token_id = 0
        ...     def build_inputs_with_special_tokens(self, ids): return [2, *ids, 3]
        >>> context_embedder(bert, Tok())([[5, 6], [7]]).shape
        torch.Size([2, 16])
    """
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = 0 if not isinstance(pad, int) else pad
    build = getattr(tokenizer, "build_inputs_with_special_tokens", None)

    def embed(windows: list[list[int]]) -> Tensor:
        device = model_device(model)
        seqs = [list(build(w)) if build is not None else list(w) for w in windows]
        order = length_order([len(s) for s in seqs])
        out: Tensor | None = None
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                ids, placed = pad_rows([seqs[i] for i in rows], pad)
                mask = placed.long()
                hidden = model(input_ids=ids.to(device), attention_mask=mask.to(device))
                h = hidden[0] if isinstance(hidden, tuple) else hidden.last_hidden_state
                m = mask.to(h.device, h.dtype)[:, :, None]
                pooled = ((h * m).sum(1) / m.sum(1).clamp_min(1)).float().cpu()
                if out is None:
                    out = torch.zeros(len(seqs), pooled.shape[1])
                out[torch.tensor(rows)] = pooled
        return out if out is not None else torch.zeros(0, 1)

    return embed
