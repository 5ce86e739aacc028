"""Kept contexts per unit: the slots behind :class:`~superposition.units.UnitStatistics`'s top
contexts and random samples, which keep ``n`` entries per unit in a fixed order (key, text
index, position) so that two sets of slots merge exactly, and the :class:`Context` they give
back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["Context"]


def _lexsort(keys: Sequence[Tensor], descending_first: bool) -> Tensor:
    """Permutation along dim 0 sorting by ``keys[0]`` then ``keys[1]``... (each ascending,
    except ``keys[0]`` descending when asked), column by column."""
    perm: Tensor | None = None
    for i in range(len(keys) - 1, -1, -1):
        k = keys[i] if perm is None else keys[i].gather(0, perm)
        o = k.argsort(dim=0, stable=True, descending=descending_first and i == 0)
        perm = o if perm is None else perm.gather(0, o)
    assert perm is not None
    return perm


@dataclass(frozen=True)
class Context:
    """One token where a unit fired, with the tokens around it.

    Attributes:
        value: the unit's activation on the token.
        text_index: the text it is in (index in the corpus).
        position: its position in the text (in tokens).
        token_ids: the window's token ids (the token is at ``center``); tokens past the text's
            ends are left out.
        values: the unit's activation on each token of the window.
        center: the token's index in the window.
        tokens: the window's token strings, when a tokenizer is known.
    """

    value: float
    text_index: int
    position: int
    token_ids: list[int]
    values: list[float]
    center: int
    tokens: list[str] | None = None

    @property
    def token(self) -> str | None:
        """The firing token's string, when a tokenizer is known."""
        return None if self.tokens is None else self.tokens[self.center]


class _Slots:
    """``n`` kept entries per unit, ordered by (key, text index, position): the top contexts
    (key = value, descending) or the samples (key = priority, ascending)."""

    def __init__(
        self, n: int, units: int, width: int, *, empty_key: float, key_dtype: torch.dtype
    ) -> None:
        self.n = n
        self.empty_key = empty_key
        self.key = torch.full((n, units), empty_key, dtype=key_dtype)
        self.value = torch.full((n, units), float("-inf"))
        self.text = torch.full((n, units), -1, dtype=torch.int64)
        self.pos = torch.full((n, units), -1, dtype=torch.int64)
        self.ids = torch.full((n, units, width), -1, dtype=torch.int32)
        self.vals = torch.full((n, units, width), float("nan"))

    def state(self) -> dict[str, Tensor]:
        return {
            "key": self.key,
            "value": self.value,
            "text": self.text,
            "pos": self.pos,
            "ids": self.ids,
            "vals": self.vals,
        }

    def load_state(self, state: dict[str, Tensor]) -> None:
        for name, t in state.items():
            setattr(self, name, t)

    def offer(
        self,
        keys: Tensor,
        rows: Tensor,
        values: Tensor,
        text: Tensor,
        pos: Tensor,
        ctx_ids: Tensor,
        neighbours: Tensor,
        valid: Tensor | None = None,
    ) -> None:
        """Merge candidates (``rows [k, U]`` of this update, with ``keys``) into the slots."""
        # Only units where some candidate beats (or ties) the last kept entry can change.
        descending = self.key.dtype.is_floating_point  # values: largest first; priorities not
        last, best = self.key[-1], keys[0]
        better = best > last if descending else best < last
        beats = better | ((best == last) & (best != self.empty_key))
        units = beats.nonzero().squeeze(1)
        if units.numel() == 0:
            return
        r = rows[:, units]
        W = ctx_ids.shape[1]
        nb = neighbours[r]  # [k, u, W]
        cand_vals = values[nb.clamp_min(0), units[None, :, None].expand_as(nb)]
        cand_vals = torch.where(nb >= 0, cand_vals, float("nan"))
        ok = torch.ones_like(r, dtype=torch.bool) if valid is None else valid[:, units]
        new = _SlotData(
            key=keys[:, units],
            value=torch.where(ok, values[r, units[None, :]], float("-inf")),
            text=torch.where(ok, text[r], -1),
            pos=torch.where(ok, pos[r], -1),
            ids=ctx_ids[r].to(torch.int32).reshape(r.shape[0], r.shape[1], W),
            vals=cand_vals,
        )
        old = _SlotData(
            key=self.key[:, units],
            value=self.value[:, units],
            text=self.text[:, units],
            pos=self.pos[:, units],
            ids=self.ids[:, units],
            vals=self.vals[:, units],
        )
        kept = _SlotData.choose(old, new, self.n, descending=descending)
        self.key[:, units] = kept.key
        self.value[:, units] = kept.value
        self.text[:, units] = kept.text
        self.pos[:, units] = kept.pos
        self.ids[:, units] = kept.ids
        self.vals[:, units] = kept.vals

    def merged(self, other: _Slots, *, descending: bool) -> _Slots:
        out = _Slots.__new__(_Slots)
        out.n = self.n
        out.empty_key = self.empty_key
        kept = _SlotData.choose(
            _SlotData(**self.state()), _SlotData(**other.state()), self.n, descending=descending
        )
        out.key, out.value, out.text, out.pos = kept.key, kept.value, kept.text, kept.pos
        out.ids, out.vals = kept.ids, kept.vals
        return out

    def arrays(self) -> dict[str, Tensor]:
        return {
            "value": self.value.clone(),
            "text_index": self.text.clone(),
            "position": self.pos.clone(),
            "token_ids": self.ids.clone(),
            "values": self.vals.clone(),
        }

    def contexts(self, unit: int, before: int, tokenizer: Any) -> list[Context]:
        out = []
        for slot in range(self.n):
            t = int(self.text[slot, unit])
            if t < 0:
                continue
            ids = self.ids[slot, unit]
            inside = ids >= 0
            center = int(inside[:before].sum())
            token_ids = ids[inside].tolist()
            tokens = (
                [str(s) for s in tokenizer.convert_ids_to_tokens(token_ids)]
                if tokenizer is not None
                else None
            )
            out.append(
                Context(
                    value=float(self.value[slot, unit]),
                    text_index=t,
                    position=int(self.pos[slot, unit]),
                    token_ids=token_ids,
                    values=self.vals[slot, unit][inside].tolist(),
                    center=center,
                    tokens=tokens,
                )
            )
        return out


@dataclass
class _SlotData:
    key: Tensor  # [m, U]
    value: Tensor
    text: Tensor
    pos: Tensor
    ids: Tensor  # [m, U, W]
    vals: Tensor

    @staticmethod
    def choose(a: _SlotData, b: _SlotData, n: int, *, descending: bool) -> _SlotData:
        """The first ``n`` of ``a`` and ``b`` together under (key, text, position); empty
        entries (text ``-1``) have the empty key and sort last."""
        key = torch.cat([a.key, b.key])
        text = torch.cat([a.text, b.text])
        pos = torch.cat([a.pos, b.pos])
        perm = _lexsort([key, text, pos], descending_first=descending)[:n]
        ids = torch.cat([a.ids, b.ids])
        vals = torch.cat([a.vals, b.vals])
        pw = perm[:, :, None].expand(-1, -1, ids.shape[2])
        return _SlotData(
            key=key.gather(0, perm),
            value=torch.cat([a.value, b.value]).gather(0, perm),
            text=text.gather(0, perm),
            pos=pos.gather(0, perm),
            ids=ids.gather(0, pw),
            vals=vals.gather(0, pw),
        )
