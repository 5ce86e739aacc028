"""Texts to model inputs: validation, tokenization and length-sorted batches.

:class:`TextBatching` is the half of :class:`~superposition.ActivationProbe` that turns texts
into :class:`Batch` es before any forward pass: it validates and tokenizes (everything is
checked before the model runs), pads *on the right* (every real token keeps its position and
attention in causal and bidirectional models alike; pre-tokenized input, left-padded or not, is
unpadded and re-padded the same way), and sorts texts by length into batches so a batch pays
for little padding. Its public verbs serve every consumer that runs the model itself
(:func:`~superposition.sae.fidelity.edit_effects`, the CLI): :meth:`TextBatching.batches`,
:meth:`TextBatching.get_tokenizer`, :meth:`TextBatching.token_limit` and
:meth:`TextBatching.truncation_summary`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Batch", "TextBatching", "length_order", "model_name", "pad_rows"]


@dataclass
class Encoded:
    """One input row: ids and mask (mask all ones unless padding is kept), optional type ids."""

    ids: list[int]
    mask: list[int]
    type_ids: list[int] | None


@dataclass(frozen=True)
class Batch:
    """Model inputs for one batch and which of its positions are kept as rows.

    Row ``b`` keeps columns ``0..kept_per_row[b]-1``: without ``keep_padding`` rows are padded
    on the right, with it whole rows are kept.

    Attributes:
        inputs: ``input_ids``, ``attention_mask`` (and ``token_type_ids`` where given),
            ``[B, S]`` each, on the CPU.
        texts: the index of each row's text among the texts batched (within a chunk).
        src: ``[kept]`` flat indices of the kept positions into the batch's ``B * S``, in
            row-major order (each text's positions are contiguous).
        kept_per_row: how many positions of each row are kept.
    """

    inputs: dict[str, Tensor]
    texts: list[int]
    src: Tensor
    kept_per_row: list[int]

    @property
    def n_tokens(self) -> int:
        """Kept positions (the real tokens, and pad positions with ``keep_padding``)."""
        return int(self.src.numel())


def _pad_label(tokenizer: Any) -> str:
    """How pad rows are labelled: the tokenizer's own pad token, or ``"<pad>"``.

    A pad token that doubles as another special token (GPT-2's pad set to its end-of-text token,
    LLaMA's to ``<unk>``) would disguise pad rows as that token, so those get ``"<pad>"`` too.
    """
    pad = getattr(tokenizer, "pad_token", None)
    if not isinstance(pad, str) or not isinstance(getattr(tokenizer, "pad_token_id", None), int):
        return "<pad>"
    others = {getattr(tokenizer, f"{k}_token", None) for k in ("eos", "bos", "unk", "sep", "cls")}
    return "<pad>" if pad in others else pad


def model_name(model: nn.Module) -> str:
    """The model's ``name_or_path`` (or its config's), else its class name."""
    name = (
        getattr(model, "name_or_path", None)
        or getattr(getattr(model, "config", None), "_name_or_path", None)
        or getattr(getattr(model, "cfg", None), "model_name", None)  # TransformerLens
    )
    return str(name) if name else type(model).__name__


class TextBatching:
    """Texts -> batches of model inputs (the base of :class:`~superposition.ActivationProbe`)."""

    model: nn.Module
    tokenizer: Any
    batch_size: int
    keep_padding: bool
    max_length: int | None
    max_tokens: int | None = None
    # Inside truncation_summary: (truncated, texts, [first truncated], limit) per chunk.
    _truncation_log: list[tuple[int, int, list[int], int | None]] | None = None
    # While a rank streams its share: (rank, world_size), so messages name corpus indices.
    _share: tuple[int, int] = (0, 1)

    @contextmanager
    def truncation_summary(self) -> Iterator[None]:
        """Within, each chunk's truncated texts are counted; one warning for them all on exit
        (a corpus read a chunk at a time would otherwise warn once per chunk)."""
        outer = self._truncation_log
        log: list[tuple[int, int, list[int], int | None]] = []
        self._truncation_log = log
        try:
            yield
        finally:
            self._truncation_log = outer
        if outer is not None:  # nested: the outermost block warns, once
            outer.extend(log)
            return
        n = sum(t for t, _, _, _ in log)
        if not n:
            return
        seen, first = 0, -1
        for _, n_texts, idx, _ in log:
            if idx and first < 0:
                first = self._corpus_index(seen + idx[0])
            seen += n_texts
        limit = next(lim for t, _, _, lim in log if t)
        message = (
            f"{n} of {seen} texts are longer than max_length={limit} tokens and were truncated "
            f"(first: text {first}); pass a larger max_length= if the model allows it, or "
            "split the texts"
        )
        warnings.warn(message, UserWarning, stacklevel=_caller_level())

    def _corpus_index(self, i: int) -> int:
        """Text ``i`` of the share being streamed, as an index into the whole corpus."""
        rank, size = self._share
        return i * size + rank

    def batches(self, texts: Sequence[str] | Mapping[str, Any]) -> list[Batch]:
        """``texts`` validated, tokenized and grouped into model inputs as the probe runs them
        (sorted by length unless padding is kept); nothing runs on the model.

        Examples:
            >>> import torch
            >>> from transformers import GPT2Config, GPT2Model
            >>> from superposition import ActivationProbe
            >>> gpt2 = GPT2Model(GPT2Config(vocab_size=30, n_embd=16, n_layer=1, n_head=2))
            >>> (b,) = ActivationProbe(gpt2).batches(
            ...     {"input_ids": torch.tensor([[1, 2, 3], [4, 5, 0]]),
            ...      "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]])})
            >>> b.texts, b.n_tokens, b.inputs["input_ids"].tolist()
            ([1, 0], 5, [[4, 5, 0], [1, 2, 3]])
        """
        return self._plan(self._encode(texts))

    # ------------------------------------------------------------------ tokenization

    def get_tokenizer(self, *, required: bool = True) -> Any:
        """The tokenizer: the one passed, or loaded from the model's ``name_or_path`` (the
        shipped MiniLM resolves offline); ``None`` when none can be had and not ``required``.

        Raises:
            ValueError: ``required`` and no tokenizer can be had (the message says what to pass).
        """
        if self.tokenizer is not None:
            return self.tokenizer
        source = getattr(self.model, "name_or_path", None) or getattr(
            getattr(self.model, "config", None), "_name_or_path", None
        )
        if not source:
            if not required:
                return None
            raise ValueError(
                f"no tokenizer was passed and {type(self.model).__name__} has no name_or_path "
                "to load one from; pass tokenizer=AutoTokenizer.from_pretrained(...) or "
                "pre-tokenized input with input_ids and attention_mask"
            )
        try:
            from transformers import AutoTokenizer

            from superposition.probe.models import shipped_path

            self.tokenizer = AutoTokenizer.from_pretrained(shipped_path(str(source)) or source)
        except Exception as err:
            if not required:
                return None
            raise ValueError(
                f"could not load a tokenizer from the model's name_or_path {source!r} "
                f"({type(err).__name__}: {err}); pass tokenizer=... explicitly"
            ) from err
        return self.tokenizer

    def token_limit(self, tokenizer: Any = None) -> int | None:
        """The most tokens a text keeps: ``max_length``, else the smaller of the tokenizer's and
        the model's limits (``None``: no limit known)."""
        if tokenizer is None and self.max_length is None:
            tokenizer = self.get_tokenizer(required=False)
        if self.max_length is not None:
            return self.max_length
        limits = []
        tok_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and tok_max < 1_000_000:
            limits.append(tok_max)
        config = getattr(self.model, "config", None)
        pos = getattr(config, "max_position_embeddings", None)
        if isinstance(pos, int) and getattr(config, "position_embedding_type", "absolute") in (
            "absolute",
            None,
        ):
            # RoBERTa-style position ids start after the padding index.
            if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
                pos -= int(getattr(config, "pad_token_id", 1) or 0) + 1
            limits.append(pos)
        n_ctx = getattr(getattr(self.model, "cfg", None), "n_ctx", None)  # TransformerLens
        if isinstance(n_ctx, int) and not isinstance(n_ctx, bool) and n_ctx > 0:
            limits.append(n_ctx)
        return min(limits) if limits else None

    def _encode(self, texts: Any, *, first: int = 0) -> list[Encoded]:
        """Validate and tokenize; nothing has run on the model yet."""
        if isinstance(texts, Mapping):
            return self._encode_pretokenized(texts)
        if isinstance(texts, str):
            raise TypeError(
                f"texts must be a list of strings, got a single str {texts[:40]!r}; "
                "wrap it in a list: [text]"
            )
        if not isinstance(texts, Sequence):
            raise TypeError(
                "texts must be a list of strings or a BatchEncoding/dict with input_ids and "
                f"attention_mask, got {type(texts).__name__}"
            )
        if len(texts) == 0:
            raise ValueError("texts is empty; pass at least one string")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(
                    f"texts must contain only strings, got {type(t).__name__} at index "
                    f"{self._corpus_index(first + i)}: {t!r}"
                )
        tokenizer = self.get_tokenizer(required=True)
        limit = self.token_limit(tokenizer)
        enc = tokenizer(
            list(texts),
            truncation=limit is not None,
            max_length=limit,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        ids_list: list[list[int]] = enc["input_ids"]
        truncated = self._truncated(tokenizer, enc, texts, ids_list, limit)
        if self._truncation_log is not None:
            self._truncation_log.append((len(truncated), len(texts), truncated[:1], limit))
        elif truncated:
            warnings.warn(
                f"{len(truncated)} of {len(texts)} texts are longer than max_length={limit} "
                f"tokens and were truncated (first: text "
                f"{self._corpus_index(first + truncated[0])}); pass a larger "
                "max_length= if the model allows it, or split the texts",
                UserWarning,
                stacklevel=_caller_level(),
            )
        seqs = []
        for i, ids in enumerate(ids_list):
            if not ids:
                raise ValueError(
                    f"text {self._corpus_index(first + i)} ({texts[i]!r}) has no tokens; remove "
                    "empty texts"
                )
            seqs.append(Encoded(list(ids), [1] * len(ids), None))
        return seqs

    @staticmethod
    def _truncated(
        tokenizer: Any, enc: Any, texts: Sequence[str], ids: list[list[int]], limit: int | None
    ) -> list[int]:
        if limit is None:
            return []
        encodings = getattr(enc, "encodings", None)
        if encodings:
            return [i for i, e in enumerate(encodings) if e.overflowing]
        long = [i for i, x in enumerate(ids) if len(x) >= limit]
        if not long:
            return []
        full = tokenizer([texts[i] for i in long], truncation=False)["input_ids"]
        return [i for i, x in zip(long, full, strict=True) if len(x) > limit]

    def _encode_pretokenized(self, enc: Mapping[str, Any]) -> list[Encoded]:
        missing = [k for k in ("input_ids", "attention_mask") if k not in enc]
        if missing:
            raise ValueError(
                f"pre-tokenized input must have input_ids and attention_mask, missing {missing}; "
                "tokenize with tokenizer(texts, padding=True, return_tensors='pt')"
            )
        try:
            ids = torch.as_tensor(enc["input_ids"])
            mask = torch.as_tensor(enc["attention_mask"])
        except (TypeError, ValueError) as err:
            raise ValueError(
                "input_ids and attention_mask must be [n_texts, seq] tensors or rectangular "
                f"lists of ints ({err}); tokenize with padding=True"
            ) from err
        if ids.ndim != 2 or ids.shape != mask.shape or ids.shape[0] == 0 or ids.shape[1] == 0:
            raise ValueError(
                "input_ids and attention_mask must both have shape [n_texts, seq] with "
                f"n_texts, seq >= 1, got {tuple(ids.shape)} and {tuple(mask.shape)}"
            )
        if ids.is_floating_point():
            raise ValueError(f"input_ids must hold integer ids, got dtype {ids.dtype}")
        types = enc.get("token_type_ids")
        type_t = torch.as_tensor(types) if types is not None else None
        mask_b = mask.bool()
        seqs = []
        for i in range(ids.shape[0]):
            sel = torch.ones_like(mask_b[i]) if self.keep_padding else mask_b[i]
            if not bool(mask_b[i].any()):
                raise ValueError(f"text {i} has no tokens (its attention_mask is all 0)")
            row_ids = ids[i][sel].tolist()
            row_mask = mask[i][sel].long().tolist()
            row_types = type_t[i][sel].tolist() if type_t is not None else None
            seqs.append(Encoded(row_ids, row_mask, row_types))
        return seqs

    def _token_strings(self, token_ids: Tensor, is_pad: Tensor) -> list[str]:
        tokenizer = self.get_tokenizer(required=False)
        # Each distinct id is looked up once (a corpus repeats its vocabulary many times over).
        uniq, inverse = torch.unique(token_ids, return_inverse=True)
        if tokenizer is None:
            names = [str(i) for i in uniq.tolist()]
        else:
            names = [str(t) for t in tokenizer.convert_ids_to_tokens(uniq.tolist())]
        tokens = [names[i] for i in inverse.tolist()]
        if bool(is_pad.any()):
            label = _pad_label(tokenizer)
            for i in is_pad.nonzero().squeeze(1).tolist():
                tokens[i] = label
        return tokens

    # ------------------------------------------------------------------ batching

    def _pad_id(self) -> int:
        tok = self.get_tokenizer(required=False)
        for value in (
            getattr(tok, "pad_token_id", None),
            getattr(getattr(self.model, "config", None), "pad_token_id", None),
        ):
            if isinstance(value, int):
                return value
        return 0

    def _plan(self, seqs: list[Encoded]) -> list[Batch]:
        """Group rows into batches: by length unless padding is kept (then in given order)."""
        all_lengths = [len(s.ids) for s in seqs]
        order = list(range(len(seqs)))
        side = "right"
        if self.keep_padding:
            side = str(getattr(self.tokenizer, "padding_side", "right") or "right")
        else:
            order = length_order(all_lengths)
        pad_id = self._pad_id()
        with_types = any(s.type_ids is not None for s in seqs)
        batches = []
        for rows in self._groups(order, all_lengths):
            lengths = [all_lengths[i] for i in rows]
            ids, placed = pad_rows([seqs[i].ids for i in rows], pad_id, side=side)
            B, S = ids.shape
            mask = torch.zeros(B, S, dtype=torch.int64)
            mask[placed] = torch.tensor([m for i in rows for m in seqs[i].mask], dtype=torch.int64)
            inputs = {"input_ids": ids, "attention_mask": mask}
            if with_types:
                types = torch.zeros(B, S, dtype=torch.int64)
                flat_types: list[int] = []
                for i, n_i in zip(rows, lengths, strict=True):
                    flat_types += seqs[i].type_ids or [0] * n_i
                types[placed] = torch.tensor(flat_types, dtype=torch.int64)
                inputs["token_type_ids"] = types
            # keep_padding keeps whole rows; otherwise rows are right-padded and their mask is
            # all ones (_encode* drop masked positions), so row b keeps columns 0..n_b-1.
            # The run's copies rely on this.
            keep = torch.ones(B, S, dtype=torch.bool) if self.keep_padding else placed
            batches.append(
                Batch(
                    inputs=inputs,
                    texts=rows,
                    src=keep.reshape(-1).nonzero().squeeze(1),
                    kept_per_row=[S] * B if self.keep_padding else lengths,
                )
            )
        return batches

    def _groups(self, order: list[int], lengths: list[int]) -> Iterator[list[int]]:
        """``order`` cut into batches of at most ``batch_size`` texts and, with ``max_tokens``,
        at most that many padded positions (texts x the longest); a text longer than the
        budget goes alone."""
        budget = self.max_tokens
        rows: list[int] = []
        longest = 0
        for i in order:
            n = max(longest, lengths[i])
            over = budget is not None and n * (len(rows) + 1) > budget
            if rows and (len(rows) == self.batch_size or over):
                yield rows
                rows, n = [], lengths[i]
            rows.append(i)
            longest = n
        if rows:
            yield rows


def pad_rows(
    rows: Sequence[Sequence[int]], pad_id: int, *, side: str = "right"
) -> tuple[Tensor, Tensor]:
    """Token id rows of different lengths as one ``[B, S]`` tensor padded with ``pad_id`` on
    ``side``, and the ``[B, S]`` bool mask of where the real tokens are.

    One scatter for the whole batch instead of a tensor per row: the rows' tokens, flattened,
    go to the positions where the mask is True.

    Examples:
        >>> ids, placed = pad_rows([[5, 6, 7], [8]], 0)
        >>> ids.tolist(), placed.tolist()
        ([[5, 6, 7], [8, 0, 0]], [[True, True, True], [True, False, False]])
    """
    n = torch.tensor([len(r) for r in rows])
    B, S = len(rows), int(n.max())
    cols = torch.arange(S).expand(B, S)
    placed = cols >= (S - n)[:, None] if side == "left" else cols < n[:, None]
    ids = torch.full((B, S), pad_id, dtype=torch.int64)
    ids[placed] = torch.tensor([t for r in rows for t in r], dtype=torch.int64)
    return ids, placed


def length_order(lengths: Sequence[int]) -> list[int]:
    """Indices sorted by length (stable), so batches of neighbours pay for little padding.

    Examples:
        >>> length_order([3, 1, 2, 1])
        [1, 3, 2, 0]
    """
    return sorted(range(len(lengths)), key=lengths.__getitem__)


def _caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside this package (and
    outside contextlib and the standard library's generator plumbing): the user's line."""
    import os
    import sys

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame: Any = sys._getframe(1)
    level = 1
    while frame is not None:
        name = os.path.abspath(frame.f_code.co_filename)
        if not name.startswith(package) and "contextlib" not in os.path.basename(name):
            return level
        frame = frame.f_back
        level += 1
    return 1


def _is_empty(texts: Iterable[str] | Mapping[str, Any]) -> bool:
    """Whether a share is known to hold no text (pre-tokenized rows, a list) without reading
    it (an iterable's share is found empty when it is read)."""
    if isinstance(texts, Mapping):
        ids = texts.get("input_ids")
        return ids is not None and len(ids) == 0
    return isinstance(texts, Sized) and len(texts) == 0


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    if isinstance(items, str):
        raise TypeError(
            f"texts must be an iterable of strings, got a single str {items[:40]!r}; "
            "wrap it in a list: [text]"
        )
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
