"""Per-unit records streamed over a corpus: top activating contexts, random samples of the
tokens a unit fires on, activation moments and activation mass per category of text.

:class:`UnitStatistics` keeps ``O(units × (top_k + samples) × window)`` numbers whatever the
size of the corpus, and two accumulators over disjoint shards :meth:`~UnitStatistics.merge`
into exactly the accumulator of one pass over both: every choice is made under one total order.

* Top contexts: the ``top_k`` tokens with the largest activation, ties broken by the smaller
  text index, then the smaller position.
* Histogram: counts of each unit's active values in fixed log-spaced bins
  (:data:`HIST_EDGES`, two per octave), so shards add up exactly.
* Samples: among the tokens where the unit is active (``> threshold``), the ``samples`` with
  the smallest priority ``hash(text index, position)`` (a bottom-k sketch: a uniform sample,
  the same whichever way the corpus was split), ties broken by text index and position. They
  show what the unit does below its extremes, as OpenAI's neuron records and SAE dashboards
  keep quantile samples beside the top activations.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from superposition.probe.streaming import StreamingStatistics
from superposition.units.slots import Context, _lexsort, _Slots

__all__ = ["HIST_EDGES", "Context", "UnitStatistics", "context_rows"]

# Keys that sort after every real entry (no entry yet).
_EMPTY_KEY = 1 << 62
_MASK32 = 0xFFFFFFFF
_FORMAT_VERSION = 2

# Histogram bins: two per octave from 2**-8 to 2**10 (float32 edges, so binning is exact);
# the first bin also holds the active values below 2**-8, the last those above 2**10.
HIST_EDGES: Tensor = torch.exp2(torch.arange(37, dtype=torch.float64) / 2 - 8).float()
"""``[37]`` float32 edges of :attr:`UnitStatistics.histogram`'s 36 bins, two per octave from
2**-8 to 2**10. Bin ``b`` counts active values ``v`` with ``edges[b] <= v < edges[b + 1]``;
the first bin also counts those below ``edges[0]``, the last those from ``edges[-1]`` up."""
_HIST_BINS = HIST_EDGES.shape[0] - 1


def _hist_bins(values: Tensor) -> Tensor:
    """The histogram bin of each float32 value."""
    return torch.bucketize(values, HIST_EDGES[1:-1], right=True)


def _ordered_bits(values: Tensor) -> Tensor:
    """float32 values to int64 keys with the same order (``-0`` counted as ``+0``)."""
    bits = (values.float() + 0.0).view(torch.int32).to(torch.int64)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


def _priority(text: Tensor, pos: Tensor) -> Tensor:
    """A 31-bit hash of ``(text, position)``: the order in which active tokens are sampled.

    Integer mixing (multiply, xor-shift) kept below 2**63 so it is exact in int64 everywhere.
    """
    h = ((text & _MASK32) * 0x5BD1E995 + (pos & _MASK32) * 0x27D4EB2F) & _MASK32
    h = h ^ (h >> 15)
    h = (h * 0x2C1B3C6D) & _MASK32
    h = h ^ (h >> 12)
    h = (h * 0x297A2D39) & _MASK32
    h = h ^ (h >> 15)
    return h & 0x7FFFFFFF


def context_rows(text_index: Tensor, before: int, after: int) -> Tensor:
    """``[rows, before + 1 + after]`` indices of each row's neighbours in the same text
    (``-1`` past a text's ends), for rows grouped by text in position order.

    Examples:
        >>> import torch
        >>> context_rows(torch.tensor([0, 0, 0, 1]), 1, 1).tolist()
        [[-1, 0, 1], [0, 1, 2], [1, 2, -1], [-1, 3, -1]]
    """
    R = text_index.shape[0]
    offsets = torch.arange(-before, after + 1)
    rows = torch.arange(R)[:, None] + offsets
    inside = (rows >= 0) & (rows < R)
    rows = rows.clamp(0, max(R - 1, 0))
    same = text_index[rows] == text_index[:, None] if R else inside
    return torch.where(inside & same, rows, -1)


class UnitStatistics:
    """Streamed records of every unit of a basis: top contexts, samples, moments, categories.

    Feed it with :meth:`update` (or let :func:`~superposition.units.collect_units` do it from an
    :class:`~superposition.ActivationProbe`); read it with :meth:`top`, :meth:`samples` and
    :func:`~superposition.units.score_units`.

    Args:
        n_units: how many units.
        top_k: contexts kept per unit (the largest activations).
        samples: random active tokens kept per unit.
        window: tokens kept before and after each context's token: an int for both sides or
            ``(before, after)``.
        threshold: a unit is active on a token when its value is ``> threshold``.
        categories: names of the text categories, for
            :func:`~superposition.metrics.category_spread`; :meth:`update` then takes each
            row's category index.
        basis_name, unit_label: how the units are named (from the :class:`UnitBasis`).
        layer, module_name, model_name: where the activations came from (for the record).

    Examples:
        >>> import torch
        >>> s = UnitStatistics(2, top_k=2, samples=1, window=1)
        >>> vals = torch.tensor([[1.0, 0.0], [3.0, 0.5], [2.0, 0.0]])
        >>> _ = s.update(vals, text_index=torch.tensor([0, 0, 1]), position=torch.tensor([0, 1, 0]),
        ...              token_ids=torch.tensor([7, 8, 9]))
        >>> [(c.value, c.token_ids, c.center) for c in s.top(0)]
        [(3.0, [7, 8], 1), (2.0, [9], 0)]
        >>> s.count, s.density.tolist()
        (3, [1.0, 0.3333333432674408])
    """

    def __init__(
        self,
        n_units: int,
        *,
        top_k: int = 20,
        samples: int = 20,
        window: int | tuple[int, int] = (10, 5),
        threshold: float = 0.0,
        categories: Sequence[str] | None = None,
        basis_name: str = "units",
        unit_label: str = "unit",
        layer: int = 0,
        module_name: str = "",
        model_name: str = "",
    ) -> None:
        for name, v, low in (("n_units", n_units, 1), ("top_k", top_k, 1), ("samples", samples, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                kind = "positive" if low else "non-negative"
                raise ValueError(f"{name} must be a {kind} int, got {v!r}")
        before, after = (window, window) if isinstance(window, int) else tuple(window)
        for v in (before, after):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(
                    f"window must be a non-negative int or (before, after) ints, got {window!r}"
                )
        if categories is not None:
            categories = [str(c) for c in categories]
            if len(categories) < 1 or len(set(categories)) != len(categories):
                raise ValueError(
                    f"categories must be distinct names, at least one, got {categories!r}"
                )
        self.n_units = n_units
        self.top_k = top_k
        self.n_samples = samples
        self.window = (before, after)
        self.threshold = float(threshold)
        self.categories = categories
        self.basis_name = basis_name
        self.unit_label = unit_label
        self.layer = layer
        self.module_name = module_name
        self.model_name = model_name
        self.tokenizer: Any = None
        self.stats = StreamingStatistics(n_units, threshold=threshold, gram=False)
        W = before + 1 + after
        U = n_units
        self._top = _Slots(top_k, U, W, empty_key=float("-inf"), key_dtype=torch.float32)
        self._smp = _Slots(samples, U, W, empty_key=_EMPTY_KEY, key_dtype=torch.int64)
        C = len(categories) if categories is not None else 0
        self.category_mass = torch.zeros(U, C, dtype=torch.float64)
        self.category_tokens = torch.zeros(C, dtype=torch.int64)
        self.histogram = torch.zeros(U, _HIST_BINS, dtype=torch.int64)
        """``[units, 36]`` counts of each unit's active values in the bins of
        :data:`HIST_EDGES`."""

    def __repr__(self) -> str:
        return (
            f"UnitStatistics(n_units={self.n_units}, count={self.count}, top_k={self.top_k}, "
            f"samples={self.n_samples}, window={self.window}, basis={self.basis_name!r})"
        )

    # ------------------------------------------------------------------ accumulate

    @property
    def count(self) -> int:
        """Tokens seen."""
        return self.stats.count

    def update(
        self,
        values: Tensor,
        *,
        text_index: Tensor,
        position: Tensor,
        token_ids: Tensor,
        neighbours: Tensor | None = None,
        category: Tensor | None = None,
    ) -> UnitStatistics:
        """Add ``[rows, units]`` unit values of some tokens; returns ``self``.

        Args:
            values: the units' values on each token.
            text_index, position, token_ids: ``[rows]`` each token's text (index in the
                corpus), position in it and token id.
            neighbours: ``[rows, before + 1 + after]`` the row of each token's window
                neighbours in this update (``-1``: none), as :func:`context_rows` builds;
                by default from ``text_index``, for rows grouped by text in position order.
                A token's window only reaches tokens passed in the same update: pass whole
                texts.
            category: ``[rows]`` each token's category index (when ``categories`` were given).

        Raises:
            ValueError: a shape or dtype does not match, or a category is missing or unknown.
        """
        R = self._check_rows(values, text_index, position, token_ids, neighbours, category)
        if R == 0:
            return self
        values = values.detach().float().cpu()
        text_index = text_index.to(torch.int64)
        position = position.to(torch.int64)
        token_ids = token_ids.to(torch.int64)
        if neighbours is None:
            neighbours = context_rows(text_index, *self.window)
        # Rows in (text, position) order: the row's rank is then the tie-break of the total
        # order inside this update.
        order = _lexsort([text_index, position], descending_first=False)
        rank = torch.empty(R, dtype=torch.int64)
        rank[order] = torch.arange(R)
        self.stats.update(values)
        ctx_ids = torch.where(neighbours >= 0, token_ids[neighbours.clamp_min(0)], -1)
        # Top contexts: value, then the earlier token. The in-update choice uses one int64 key
        # (value bits, then reversed rank), so equal values are settled like the merge does.
        k = min(self.top_k, R)
        key = (_ordered_bits(values) << 32) + (_MASK32 - rank)[:, None]
        rows = key.topk(k, dim=0).indices  # [k, U]
        self._top.offer(
            values.gather(0, rows), rows, values, text_index, position, ctx_ids, neighbours
        )
        active = values > self.threshold
        where = active.nonzero()  # [n, 2] (row, unit), row-major
        if where.numel():
            bins = _hist_bins(values[where[:, 0], where[:, 1]])
            flat = where[:, 1] * _HIST_BINS + bins
            self.histogram += torch.bincount(flat, minlength=self.histogram.numel()).view_as(
                self.histogram
            )
        if self.n_samples:
            prio = _priority(text_index, position)
            skey = torch.where(active, ((prio << 32) + rank)[:, None], torch.iinfo(torch.int64).max)
            k = min(self.n_samples, R)
            picked = skey.topk(k, dim=0, largest=False)
            rows = picked.indices
            found = picked.values != torch.iinfo(torch.int64).max
            self._smp.offer(
                torch.where(found, prio[rows], _EMPTY_KEY),
                rows,
                values,
                text_index,
                position,
                ctx_ids,
                neighbours,
                valid=found,
            )
        if self.categories is not None:
            assert category is not None
            C = len(self.categories)
            cat = category.to(torch.int64)
            self.category_mass.index_add_(1, cat, values.clamp_min(0.0).to(torch.float64).T)
            self.category_tokens += torch.bincount(cat, minlength=C)
        return self

    def _check_rows(
        self,
        values: Tensor,
        text_index: Tensor,
        position: Tensor,
        token_ids: Tensor,
        neighbours: Tensor | None,
        category: Tensor | None,
    ) -> int:
        if not isinstance(values, Tensor) or values.ndim != 2 or not values.is_floating_point():
            got = (
                f"shape {tuple(values.shape)}, dtype {values.dtype}"
                if isinstance(values, Tensor)
                else type(values).__name__
            )
            raise ValueError(f"values must be a floating-point [rows, units] tensor, got {got}")
        R, U = values.shape
        if U != self.n_units:
            raise ValueError(f"values must have {self.n_units} units (columns), got {U}")
        named = (("text_index", text_index), ("position", position), ("token_ids", token_ids))
        for name, t in named:
            if not isinstance(t, Tensor) or tuple(t.shape) != (R,) or t.is_floating_point():
                got = f"shape {tuple(t.shape)}" if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"{name} must be an integer [{R}] tensor (one per row), got {got}")
        if R and bool((text_index < 0).any() | (position < 0).any()):
            raise ValueError("text_index and position must be non-negative")
        W = sum(self.window) + 1
        if neighbours is not None and (
            not isinstance(neighbours, Tensor) or tuple(neighbours.shape) != (R, W)
        ):
            got = f"shape {tuple(neighbours.shape)}" if isinstance(neighbours, Tensor) else "?"
            raise ValueError(f"neighbours must be a [{R}, {W}] tensor of row indices, got {got}")
        if self.categories is None:
            if category is not None:
                raise ValueError(
                    "category was given but this UnitStatistics has no categories; pass "
                    "categories=[names] when creating it"
                )
        else:
            C = len(self.categories)
            if (
                not isinstance(category, Tensor)
                or tuple(category.shape) != (R,)
                or category.is_floating_point()
            ):
                raise ValueError(f"category must be an integer [{R}] tensor of category indices")
            if R and bool(((category < 0) | (category >= C)).any()):
                raise ValueError(
                    f"category indices must be in [0, {C}), got {category.tolist()[:8]}"
                )
        if R and not bool(torch.isfinite(values).all()):
            raise ValueError(
                f"values must be finite, got NaN or inf in shape {tuple(values.shape)}"
            )
        return R

    def merge(self, other: UnitStatistics) -> UnitStatistics:
        """A new accumulator equal to one pass over both shards (neither input changes).

        Equal exactly in the kept contexts and samples, counts and category token counts;
        moments and category mass up to round-off.

        Raises:
            TypeError, ValueError: ``other`` is not a UnitStatistics with the same settings.
        """
        if not isinstance(other, UnitStatistics):
            raise TypeError(f"can only merge a UnitStatistics, got {type(other).__name__}")
        mine = (self.n_units, self.top_k, self.n_samples, self.window, self.threshold)
        theirs = (other.n_units, other.top_k, other.n_samples, other.window, other.threshold)
        if mine != theirs or self.categories != other.categories:
            raise ValueError(
                "cannot merge UnitStatistics with different settings: (n_units, top_k, samples, "
                f"window, threshold) {mine} vs {theirs}, categories {self.categories} vs "
                f"{other.categories}"
            )
        out = UnitStatistics(
            self.n_units,
            top_k=self.top_k,
            samples=self.n_samples,
            window=self.window,
            threshold=self.threshold,
            categories=self.categories,
            basis_name=self.basis_name,
            unit_label=self.unit_label,
            layer=self.layer,
            module_name=self.module_name,
            model_name=self.model_name,
        )
        out.tokenizer = self.tokenizer if self.tokenizer is not None else other.tokenizer
        out.stats = self.stats.merge(other.stats)
        out._top = self._top.merged(other._top, descending=True)
        out._smp = self._smp.merged(other._smp, descending=False)
        out.category_mass = self.category_mass + other.category_mass
        out.category_tokens = self.category_tokens + other.category_tokens
        out.histogram = self.histogram + other.histogram
        return out

    # ------------------------------------------------------------------ read

    @property
    def density(self) -> Tensor:
        """``[units]`` fraction of tokens where each unit is active (``> threshold``)."""
        return self.stats.finalise().frequency

    @property
    def max_activation(self) -> Tensor:
        """``[units]`` each unit's largest value (``-inf`` before any token)."""
        return self._top.key[0].clone()

    def _unit(self, unit: int) -> int:
        n = self.n_units
        if isinstance(unit, bool) or not isinstance(unit, int) or not -n <= unit < n:
            raise IndexError(
                f"unit must be an int in [-{self.n_units}, {self.n_units}), got {unit!r}"
            )
        return unit % self.n_units

    def top(self, unit: int) -> list[Context]:
        """The unit's top contexts, largest activation first."""
        return self._top.contexts(self._unit(unit), self.window[0], self.tokenizer)

    def samples(self, unit: int) -> list[Context]:
        """Random tokens where the unit is active, in decreasing activation."""
        out = self._smp.contexts(self._unit(unit), self.window[0], self.tokenizer)
        return sorted(out, key=lambda c: (-c.value, c.text_index, c.position))

    def top_arrays(self) -> dict[str, Tensor]:
        """The top contexts of all units as tensors: ``value [top_k, units]``, ``text_index``,
        ``position``, ``token_ids [top_k, units, window]`` (``-1`` outside the text) and
        ``values [top_k, units, window]`` (NaN outside); empty slots have value ``-inf``."""
        return self._top.arrays()

    def sample_arrays(self) -> dict[str, Tensor]:
        """As :meth:`top_arrays` for the samples; empty slots have ``text_index`` ``-1``."""
        return self._smp.arrays()

    def explore(self, path: str | os.PathLike[str], **kwargs: Any) -> Path:
        """Write an offline HTML explorer of these units to ``path``; keyword arguments as
        :func:`superposition.explore` (pass several records to that to see bases side by side).
        """
        from superposition.explorer import explore

        return explore(self, path, **kwargs)

    # ------------------------------------------------------------------ files

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """``(tensors, meta)``: everything :meth:`from_state` rebuilds these records from.

        What :meth:`save` writes (the tensors to ``.safetensors``, ``meta`` to ``.json``) and
        what :func:`superposition.distributed.reduce` sends between ranks (the
        :class:`~superposition.distributed.Mergeable` protocol). The tokenizer is not part of
        the state. The tensors are the records' own (not copies); ``meta`` is JSON-friendly.

        Examples:
            >>> s = UnitStatistics(3, top_k=2, samples=1)
            >>> tensors, meta = s.state_dict()
            >>> meta["n_units"], tensors["top.value"].shape
            (3, torch.Size([2, 3]))
            >>> UnitStatistics.from_state(tensors, meta, "s")
            UnitStatistics(n_units=3, count=0, top_k=2, samples=1, window=(10, 5), basis='units')
        """
        stats, stats_meta = self.stats.state_dict()
        tensors = {f"top.{k}": v for k, v in self._top.state().items()}
        tensors |= {f"smp.{k}": v for k, v in self._smp.state().items()}
        tensors |= {f"stats.{k}": v for k, v in stats.items()}
        tensors["category_mass"] = self.category_mass
        tensors["category_tokens"] = self.category_tokens
        tensors["histogram"] = self.histogram
        meta = {
            "format_version": _FORMAT_VERSION,
            "n_units": self.n_units,
            "top_k": self.top_k,
            "samples": self.n_samples,
            "window": list(self.window),
            "threshold": self.threshold,
            "categories": self.categories,
            "basis_name": self.basis_name,
            "unit_label": self.unit_label,
            "layer": self.layer,
            "module_name": self.module_name,
            "model_name": self.model_name,
            "stats": stats_meta,
        }
        return tensors, meta

    @classmethod
    def from_state(
        cls, tensors: dict[str, Tensor], meta: dict[str, Any], source: str
    ) -> UnitStatistics:
        """The records that :meth:`state_dict` described (it keeps ``tensors`` as they are;
        no tokenizer).

        Args:
            tensors, meta: what :meth:`state_dict` returned (or :meth:`save` wrote).
            source: where the state came from (a file, a rank), for the messages.

        Raises:
            ValueError: the moments' part of the state is inconsistent.
        """
        before, after = meta["window"]
        out = cls(
            meta["n_units"],
            top_k=meta["top_k"],
            samples=meta["samples"],
            window=(before, after),
            threshold=meta["threshold"],
            categories=meta["categories"],
            basis_name=meta["basis_name"],
            unit_label=meta["unit_label"],
            layer=meta["layer"],
            module_name=meta["module_name"],
            model_name=meta["model_name"],
        )
        part = {
            name: {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(f"{name}.")}
            for name in ("top", "smp", "stats")
        }
        out._top.load_state(part["top"])
        out._smp.load_state(part["smp"])
        stats = StreamingStatistics.from_state(part["stats"], meta["stats"], source)
        if stats.count > 0:  # else keep the empty one of the constructor, sized for the units
            out.stats = stats
        out.category_mass = tensors["category_mass"]
        out.category_tokens = tensors["category_tokens"]
        out.histogram = tensors["histogram"]
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write everything to ``path.safetensors`` and its settings to ``path.json``
        (atomically, as every model's ``save``); returns the tensor file's path."""
        from superposition._io import save_with_config

        return save_with_config(path, *self.state_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> UnitStatistics:
        """Read what :meth:`save` wrote.

        Raises:
            FileNotFoundError: a file is missing.
            ValueError: the files were not written by this version's :meth:`save`.
        """
        from superposition._io import load_saved

        tensors, meta = load_saved(path, "UnitStatistics", _FORMAT_VERSION)
        return cls.from_state(tensors, meta, str(path))
