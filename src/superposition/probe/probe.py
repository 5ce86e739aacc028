"""ActivationProbe: capture the MLP neurons of any Hugging Face model with forward pre-hooks.

How a run goes:

1. Everything is validated and tokenized before the first forward pass, so a bad argument fails
   fast. Texts are padded *on the right*, which leaves every real token's position and attention
   unchanged in causal and bidirectional models alike (pre-tokenized input, left-padded or not, is
   unpadded and re-padded the same way).
2. Texts are sorted by length into batches, so a batch pays for little padding; rows are written
   back in the original order into preallocated output buffers (no ``torch.cat`` copy).
3. A forward pre-hook on each requested MLP output projection copies the real tokens' rows out,
   a whole batch with one ``index_copy_`` (one parallel operation per batch: one per text made a
   thread barrier per text, which a busy machine turns into most of the cost); after the deepest
   requested layer it raises an internal exception that ends the forward pass early (probing
   layer 0 costs about one layer, not the whole model). Pad rows kept with ``keep_padding`` are
   marked in ``Activations.is_pad`` and labelled as padding, never as the token whose id filled
   them.
4. Hooks live only inside a ``try/finally`` and are removed in reverse order; the model's
   train/eval mode is restored.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

import torch
from torch import Tensor, nn

from superposition import distributed as _distributed
from superposition.probe.activations import Activations, StreamingStatistics
from superposition.probe.locate import LayerSpec, MLPSite, locate_mlp

if TYPE_CHECKING:
    from torch.utils.hooks import RemovableHandle

__all__ = ["ActivationProbe"]

_R = TypeVar("_R", Activations, list[Activations])
_S = TypeVar("_S", StreamingStatistics, list[StreamingStatistics])

Texts = Sequence[str] | Mapping[str, Any]
"""A list of strings, or a pre-tokenized ``BatchEncoding``/dict with ``input_ids`` and
``attention_mask``."""

# Above this many batches a progress bar appears when progress=None.
_PROGRESS_MIN_BATCHES = 4
# Streaming tokenizes and plans this many batches at a time, so memory stays bounded (fast
# tokenizers keep ~1 KB of offsets and strings per token until a chunk is done).
_STREAM_CHUNK_BATCHES = 8
# Streaming hands the accumulator a batch's real tokens this many rows at a time.
_STREAM_BLOCK_ROWS = 256


class _StopForward(Exception):
    """Raised from a hook once every requested layer is captured: the rest is not needed."""


@dataclass
class _Seq:
    """One input row: ids and mask (mask all ones unless padding is kept), optional type ids."""

    ids: list[int]
    mask: list[int]
    type_ids: list[int] | None


@dataclass
class _Batch:
    """Model inputs for one batch and where its kept rows go.

    Row ``b`` keeps columns ``0..kept_per_row[b]-1``: without ``keep_padding`` rows are padded
    on the right, with it whole rows are kept. So a row is captured with one slice copy.
    """

    inputs: dict[str, Tensor]  # [B, S] each, on the CPU
    texts: list[int]  # original index of each row of the batch
    src: Tensor  # [kept] flat indices into the batch's B*S positions
    kept_per_row: list[int]


class _Bar:
    """A tqdm bar over texts that also counts the tokens seen (shown when the total is unknown)."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.tokens = 0

    def advance(self, texts: int, tokens: int) -> None:
        self.tokens += tokens
        if self.bar.total is None:
            self.bar.set_postfix(tokens=self.tokens, refresh=False)
        self.bar.update(texts)


def _destinations(starts: list[int], kept: list[int]) -> Tensor:
    """Output rows of a batch's kept positions in row-major order: row ``b`` keeps ``kept[b]``
    positions, which land at ``starts[b], starts[b] + 1, ...``."""
    k = torch.tensor(kept)
    first = torch.tensor(starts) - (torch.cumsum(k, 0) - k)
    return torch.arange(int(k.sum())) + first.repeat_interleave(k)


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


def _model_name(model: nn.Module) -> str:
    name = getattr(model, "name_or_path", None) or getattr(
        getattr(model, "config", None), "_name_or_path", None
    )
    return str(name) if name else type(model).__name__


class ActivationProbe(Generic[_R, _S]):
    """Capture the MLP neuron activations of one or several layers of a transformer.

    The neurons are the input of the MLP's output projection (see
    :mod:`superposition.probe.locate`), so post-activation values are captured even where the
    activation is a functional call, and gated MLPs give ``act(gate(x)) * up(x)``.

    Args:
        model: a Hugging Face model, or any ``nn.Module`` together with ``module=``.
        layer: a layer index (negative counts from the end), a list of them, or ``"all"``.
            With one index :meth:`run` returns one :class:`Activations`, otherwise a list.
        tokenizer: the model's tokenizer; by default loaded from ``model.name_or_path``.
        module: the dotted path of the MLP output projection, with ``{layer}`` for the
            index (``"encoder.layer.{layer}.output.dense"``), for architectures not in the table.
        batch_size: texts per forward pass.
        keep_padding: keep pad positions as rows, as the seed paper did. Batches then follow
            the given order and are padded on the tokenizer's side.
        max_length: truncate longer texts (one warning per run); default: the model's limit.
        progress: show a tqdm bar; ``None`` shows it for more than a few batches.

    Raises:
        TypeError, ValueError, LookupError: an argument is wrong, before anything runs.

    Examples:
        >>> import torch
        >>> from transformers import BertConfig, BertModel
        >>> bert = BertModel(BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=2,
        ...     num_attention_heads=2, intermediate_size=64))
        >>> probe = ActivationProbe(bert, layer=-1)
        >>> acts = probe.run({"input_ids": torch.tensor([[2, 5, 7, 3], [2, 9, 3, 0]]),
        ...                   "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])})
        >>> acts.values.shape, acts.text_index.tolist(), acts.module_name
        (torch.Size([7, 64]), [0, 0, 0, 0, 1, 1, 1], 'encoder.layer.1.output.dense')
        >>> [a.layer for a in ActivationProbe(bert, layer="all").run(
        ...     {"input_ids": torch.tensor([[2, 3]]), "attention_mask": torch.ones(1, 2)})]
        [0, 1]
    """

    # Tests switch this off to check that stopping early changes nothing.
    _stop_early: bool = True
    # Inside _one_truncation_warning: (truncated, texts, [first truncated], limit) per chunk.
    _truncation_log: list[tuple[int, int, list[int], int | None]] | None = None
    # While a rank streams its share: (rank, world_size), so messages name corpus indices.
    _share: tuple[int, int] = (0, 1)

    @overload
    def __init__(
        self: ActivationProbe[Activations, StreamingStatistics],
        model: nn.Module,
        layer: int = 0,
        *,
        tokenizer: Any = None,
        module: str | None = None,
        batch_size: int = 32,
        keep_padding: bool = False,
        max_length: int | None = None,
        progress: bool | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self: ActivationProbe[list[Activations], list[StreamingStatistics]],
        model: nn.Module,
        layer: Sequence[int] | Literal["all"],
        *,
        tokenizer: Any = None,
        module: str | None = None,
        batch_size: int = 32,
        keep_padding: bool = False,
        max_length: int | None = None,
        progress: bool | None = None,
    ) -> None: ...

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = 0,
        *,
        tokenizer: Any = None,
        module: str | None = None,
        batch_size: int = 32,
        keep_padding: bool = False,
        max_length: int | None = None,
        progress: bool | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
        if progress not in (None, True, False):
            raise TypeError(f"progress must be True, False or None, got {progress!r}")
        self.sites: list[MLPSite] = locate_mlp(model, layer, module=module)
        self.model = model
        self.tokenizer = tokenizer
        self.module = module
        self.batch_size = batch_size
        self.keep_padding = bool(keep_padding)
        self.max_length = max_length
        self.progress = progress
        self._single = isinstance(layer, int)

    def __repr__(self) -> str:
        layers = self.layers[0] if self._single else self.layers
        return (
            f"ActivationProbe({type(self.model).__name__}, layer={layers!r}, "
            f"modules={[s.module_name for s in self.sites]!r}, batch_size={self.batch_size}, "
            f"keep_padding={self.keep_padding})"
        )

    @property
    def layers(self) -> list[int]:
        """The probed layer indices (non-negative), in the order asked."""
        return [s.layer for s in self.sites]

    # ------------------------------------------------------------------ public verbs

    def run(self, texts: Texts) -> _R:
        """Probe ``texts``; one row per (non-pad) token, in the order of the texts.

        Args:
            texts: a list of strings, or a pre-tokenized ``BatchEncoding``/dict with
                ``input_ids`` and ``attention_mask`` (``[n_texts, seq]``).

        Returns:
            An :class:`Activations`, or a list of them (one per layer) when several layers
            were asked for.
        """
        seqs = self._encode(texts)
        batches = self._plan(seqs)
        n_texts = len(seqs)
        kept = torch.zeros(n_texts, dtype=torch.int64)
        for batch in batches:
            kept[batch.texts] = torch.tensor(batch.kept_per_row)
        offsets = torch.zeros(n_texts + 1, dtype=torch.int64)
        torch.cumsum(kept, 0, out=offsets[1:])
        n_rows = int(offsets[-1])
        text_index = torch.arange(n_texts).repeat_interleave(kept)
        position = torch.arange(n_rows) - offsets[:-1].repeat_interleave(kept)
        token_ids = torch.empty(n_rows, dtype=torch.int64)
        is_pad = torch.zeros(n_rows, dtype=torch.bool)
        # For every batch, the output row of each kept position (dst, in the order of batch.src)
        # and of every position (dst_all: dropped pad positions go to a spare last row), so the
        # batch lands with one index_copy_: one parallel operation per batch, not one per text.
        dsts: list[Tensor] = []
        dsts_all: list[Tensor] = []
        for batch in batches:
            dst = _destinations(offsets[batch.texts].tolist(), batch.kept_per_row)
            dst_all = torch.full((batch.inputs["input_ids"].numel(),), n_rows, dtype=torch.int64)
            dst_all[batch.src] = dst
            dsts.append(dst)
            dsts_all.append(dst_all)
            token_ids[dst] = batch.inputs["input_ids"].reshape(-1)[batch.src]
            if self.keep_padding:
                is_pad[dst] = batch.inputs["attention_mask"].reshape(-1)[batch.src] == 0

        outs: list[Tensor | None] = [None] * len(self.sites)  # [n_rows + 1, H]: a spare row

        def sink(slot: int, batch_no: int, batch: _Batch, x: Tensor) -> None:
            store = outs[slot]
            if store is None:
                store = outs[slot] = torch.empty(n_rows + 1, x.shape[-1], dtype=torch.float32)
            flat = x.reshape(-1, x.shape[-1])
            if flat.device.type == "cpu" and flat.dtype == torch.float32:
                store.index_copy_(0, dsts_all[batch_no], flat)
            else:  # drop the padding where x lives, then convert only the real rows
                real = flat.index_select(0, batch.src.to(flat.device))
                store.index_copy_(0, dsts[batch_no], real.to("cpu", torch.float32))

        with self._progress(n_texts) as bar:
            self._forward_all(batches, sink, bar)
        tokens = self._token_strings(token_ids, is_pad)
        results = [
            Activations(
                out[:n_rows] if out is not None else torch.empty(n_rows, 0),
                tokens=tokens,
                token_ids=token_ids,
                text_index=text_index,
                position=position,
                layer=site.layer,
                module_name=site.module_name,
                model_name=_model_name(self.model),
                is_pad=is_pad,
            )
            for site, out in zip(self.sites, outs, strict=True)
        ]
        return results[0] if self._single else results  # type: ignore[return-value]

    def stream(
        self,
        texts: Iterable[str] | Mapping[str, Any],
        *,
        threshold: float = 0.0,
        gram: bool = True,
        distributed: bool | None = None,
    ) -> _S:
        """Accumulate neuron statistics over ``texts`` without keeping the activations.

        Texts are consumed a chunk of batches at a time, so ``texts`` may be a generator over a
        corpus far larger than memory.

        Under ``torch.distributed`` every rank passes the same (whole) ``texts`` and streams its
        own share of them (text ``i`` on rank ``i % world_size``, see
        :func:`superposition.distributed.shard`); the ranks' statistics are then merged and
        every rank returns the statistics of the whole corpus (counts exact, moments and the
        Gram matrix up to round-off). Only rank 0 shows a progress bar.

        Args:
            texts: strings (any iterable), or pre-tokenized input as for :meth:`run`.
            threshold: activity threshold for the activation frequency.
            gram: keep the neuron Gram matrix (for cosine similarity and Pearson correlation).
            distributed: ``None``: share the work when a ``torch.distributed`` process group
                with more than one rank is initialised; ``True``: require one; ``False``:
                stream all of ``texts`` in this process.

        Returns:
            A :class:`StreamingStatistics`, or a list of them (one per layer).

        Raises:
            RuntimeError: ``distributed=True`` without a process group; under
                ``torch.distributed``, another rank failed (the same type as its error when
                that is a built-in one).

        Examples:
            >>> import torch
            >>> from transformers import GPT2Config, GPT2Model
            >>> gpt2 = GPT2Model(GPT2Config(vocab_size=30, n_embd=32, n_layer=2, n_head=2))
            >>> ids = {"input_ids": torch.tensor([[1, 2, 3]]), "attention_mask": torch.ones(1, 3)}
            >>> s = ActivationProbe(gpt2).stream(ids)
            >>> s.count, s.cosine_similarity().shape
            (3, torch.Size([128, 128]))
        """
        name = _model_name(self.model)
        accs = [
            StreamingStatistics(
                threshold=threshold,
                gram=gram,
                layer=s.layer,
                module_name=s.module_name,
                model_name=name,
            )
            for s in self.sites
        ]

        def sink(slot: int, batch_no: int, batch: _Batch, x: Tensor, first: int) -> None:
            flat = x.reshape(-1, x.shape[-1])
            # A few hundred rows at a time: the copy that drops the padding stays small and the
            # same size for every batch, so peak memory does not follow the longest batch.
            for src in torch.split(batch.src.to(flat.device), _STREAM_BLOCK_ROWS):
                # Summed where the model runs: a GPU forms the float64 Gram itself.
                accs[slot].update(flat.index_select(0, src).float())

        share = _distributed.resolve(distributed)
        self._stream(texts, sink, share=share)
        if share is not None:
            reduced = [_distributed.reduce_statistics(a, all_ranks=True) for a in accs]
            accs = [a for a in reduced if a is not None]
            if accs[0].count == 0:
                raise ValueError(
                    f"texts is empty: none of the {share[1]} ranks got a text; pass at least one"
                )
        for a in accs:
            a.to("cpu")
        return accs[0] if self._single else accs  # type: ignore[return-value]

    @contextmanager
    def _one_truncation_warning(self) -> Iterator[None]:
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

    def _stream(
        self,
        texts: Iterable[str] | Mapping[str, Any],
        sink: Callable[[int, int, _Batch, Tensor, int], None],
        *,
        share: tuple[int, int] | None = None,
    ) -> None:
        """Run ``texts`` a chunk of batches at a time; ``sink(slot, batch_no, batch, x, first)``
        gets each hooked ``x: [B, S, H]`` with ``first``, the corpus index of the chunk's first
        text (``batch.texts`` index within the chunk).

        With ``share=(rank, world_size)`` only this rank's share of ``texts`` runs (indices
        are then within the share: text ``j`` of it is text ``j * world_size + rank`` of
        ``texts``), an empty share is no error, only rank 0 shows a bar, and every rank
        learns whether any rank failed (:func:`superposition.distributed.check_all_ranks`)
        before this returns, so a failure cannot leave the others waiting in a reduction."""
        if share is None:
            self._stream_local(texts, sink)
            return
        rank, size = share
        error: Exception | None = None
        progress = self.progress
        self._share = share
        if rank != 0:
            self.progress = False
        try:
            mine = _distributed.shard(texts, rank, size)
            if not _is_empty(mine):
                self._stream_local(mine, sink, empty_ok=True)
        except Exception as err:  # every rank hears of it below
            error = err
        finally:
            self.progress = progress
            del self._share  # back to the class's (0, 1)
        _distributed.check_all_ranks(error)

    def _stream_local(
        self,
        texts: Iterable[str] | Mapping[str, Any],
        sink: Callable[[int, int, _Batch, Tensor, int], None],
        *,
        empty_ok: bool = False,
    ) -> None:
        if isinstance(texts, Mapping):
            seqs = self._encode(texts)
            with self._progress(len(seqs)) as bar:
                self._forward_all(self._plan(seqs), functools.partial(_with_first, sink, 0), bar)
            return
        size = self.batch_size * _STREAM_CHUNK_BATCHES
        parts = _chunks(texts, size)
        first = next(parts, None)
        if first is None:
            if empty_ok:
                return
            raise ValueError("texts is empty; pass at least one string")
        # One bar over the whole stream: its total is the number of texts when known (a list,
        # or a stream that fits in one chunk), otherwise it counts texts and tokens seen.
        total: int | None = len(texts) if isinstance(texts, Sized) else None
        if total is None and len(first) < size:
            total = len(first)
        with self._progress(total) as bar, self._one_truncation_warning():
            n_seen = 0
            for part in itertools.chain([first], parts):
                self._forward_all(
                    self._plan(self._encode(part, first=n_seen)),
                    functools.partial(_with_first, sink, n_seen),
                    bar,
                )
                n_seen += len(part)

    def _corpus_index(self, i: int) -> int:
        """Text ``i`` of the share being streamed, as an index into the whole corpus."""
        rank, size = self._share
        return i * size + rank

    # ------------------------------------------------------------------ tokenization

    def _get_tokenizer(self, *, required: bool) -> Any:
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

    def _limit(self, tokenizer: Any) -> int | None:
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
        return min(limits) if limits else None

    def _encode(self, texts: Any, *, first: int = 0) -> list[_Seq]:
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
        tokenizer = self._get_tokenizer(required=True)
        limit = self._limit(tokenizer)
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
                stacklevel=3,
            )
        seqs = []
        for i, ids in enumerate(ids_list):
            if not ids:
                raise ValueError(
                    f"text {self._corpus_index(first + i)} ({texts[i]!r}) has no tokens; remove "
                    "empty texts"
                )
            seqs.append(_Seq(list(ids), [1] * len(ids), None))
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

    def _encode_pretokenized(self, enc: Mapping[str, Any]) -> list[_Seq]:
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
            seqs.append(_Seq(row_ids, row_mask, row_types))
        return seqs

    def _token_strings(self, token_ids: Tensor, is_pad: Tensor) -> list[str]:
        tokenizer = self._get_tokenizer(required=False)
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
        tok = self._get_tokenizer(required=False)
        for value in (
            getattr(tok, "pad_token_id", None),
            getattr(getattr(self.model, "config", None), "pad_token_id", None),
        ):
            if isinstance(value, int):
                return value
        return 0

    def _plan(self, seqs: list[_Seq]) -> list[_Batch]:
        """Group rows into batches: by length unless padding is kept (then in given order)."""
        order = list(range(len(seqs)))
        side = "right"
        if self.keep_padding:
            side = str(getattr(self.tokenizer, "padding_side", "right") or "right")
        else:
            order.sort(key=lambda i: len(seqs[i].ids))
        pad_id = self._pad_id()
        with_types = any(s.type_ids is not None for s in seqs)
        batches = []
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            lengths = [len(seqs[i].ids) for i in rows]
            S = max(lengths)
            B = len(rows)
            # One scatter per tensor instead of a tensor per row: the rows' tokens, flattened,
            # go to the positions where ``placed`` is True.
            n = torch.tensor(lengths)
            cols = torch.arange(S).expand(B, S)
            placed = cols >= (S - n)[:, None] if side == "left" else cols < n[:, None]
            ids = torch.full((B, S), pad_id, dtype=torch.int64)
            ids[placed] = torch.tensor([t for i in rows for t in seqs[i].ids], dtype=torch.int64)
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
                _Batch(
                    inputs=inputs,
                    texts=rows,
                    src=keep.reshape(-1).nonzero().squeeze(1),
                    kept_per_row=[S] * B if self.keep_padding else lengths,
                )
            )
        return batches

    # ------------------------------------------------------------------ the forward passes

    def _forward_fn(self) -> Callable[..., Any]:
        model = self.model
        config = getattr(model, "config", None)
        if getattr(config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
            get_encoder = getattr(model, "get_encoder")  # noqa: B009 - nn.Module types it as Tensor
            encoder = get_encoder()
            if isinstance(encoder, nn.Module):
                return encoder
        return model

    @contextmanager
    def _hooked(self, sink: Callable[[int, Tensor], None], state: dict[str, Any]) -> Iterator[None]:
        """Register one pre-hook per distinct module; remove them in reverse order on exit."""
        by_module: dict[int, dict[int, int]] = {}
        modules: dict[int, nn.Module] = {}
        for slot, site in enumerate(self.sites):
            by_module.setdefault(id(site.module), {})[site.call_index] = slot
            modules[id(site.module)] = site.module
        n_targets = len(self.sites)
        handles: list[RemovableHandle] = []

        def make_hook(key: int) -> Callable[..., None]:
            slots = by_module[key]

            def hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                calls = state["calls"]
                k = calls.get(key, 0)
                calls[key] = k + 1
                slot = slots.get(k)
                if slot is None:
                    return
                x = args[0] if args else next(v for v in kwargs.values() if isinstance(v, Tensor))
                B, S = state["shape"]
                flat = x.reshape(-1, x.shape[-1])
                if flat.shape[0] != B * S:
                    raise RuntimeError(
                        f"the input of {self.sites[slot].module_name} has shape "
                        f"{tuple(x.shape)}, expected {B * S} token rows for a batch of "
                        f"{B} x {S} tokens; pass module= naming the MLP output projection"
                    )
                sink(slot, flat.reshape(B, S, flat.shape[1]))
                state["captured"] += 1
                if self._stop_early and state["captured"] == n_targets:
                    raise _StopForward

            return hook

        training = {m: m.training for m in self.model.modules()}
        try:
            self.model.eval()
            for key, mod in modules.items():
                handles.append(mod.register_forward_pre_hook(make_hook(key), with_kwargs=True))
            yield
        finally:
            for handle in reversed(handles):
                handle.remove()
            for m, mode in training.items():
                m.training = mode

    @contextmanager
    def _progress(self, total: int | None) -> Iterator[_Bar | None]:
        """One tqdm bar over ``total`` texts (``None``: unknown, count them), or ``None``."""
        show = self.progress
        if show is None:
            show = total is None or -(-total // self.batch_size) > _PROGRESS_MIN_BATCHES
        if not show:
            yield None
            return
        from tqdm.auto import tqdm

        with tqdm(total=total, desc="probe", unit="text") as bar:
            yield _Bar(bar)

    def _forward_all(
        self,
        batches: list[_Batch],
        sink: Callable[[int, int, _Batch, Tensor], None],
        bar: _Bar | None = None,
    ) -> None:
        """Run every batch; ``sink(slot, batch_no, batch, x)`` gets each hooked ``x: [B, S, H]``.

        ``bar``, a tqdm bar or ``None``, advances by the texts of each batch; when its total is
        unknown it also shows the tokens seen.
        """
        forward = self._forward_fn()
        target: Callable[..., Any] = forward.forward if isinstance(forward, nn.Module) else forward
        params = inspect.signature(target)
        accepts = set(params.parameters)
        extra: dict[str, Any] = {"use_cache": False} if "use_cache" in accepts else {}
        if "return_dict" in accepts:
            extra["return_dict"] = True
        try:
            device = next(self.model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
        state: dict[str, Any] = {}

        def to_sink(slot: int, x: Tensor) -> None:
            sink(slot, state["batch_no"], state["batch"], x)

        with self._hooked(to_sink, state), torch.inference_mode():
            for batch_no, batch in enumerate(batches):
                B, S = batch.inputs["input_ids"].shape
                state.update(calls={}, captured=0, shape=(B, S), batch_no=batch_no, batch=batch)
                inputs = {
                    k: v.to(device)
                    for k, v in batch.inputs.items()
                    if k in accepts or k in ("input_ids", "attention_mask")
                }
                with suppress(_StopForward):
                    forward(**inputs, **extra)
                if state["captured"] != len(self.sites):
                    missing = [
                        s.module_name for s in self.sites[state["captured"] :]
                    ]  # in call order; good enough to name what did not fire
                    raise RuntimeError(
                        f"the forward pass of {type(self.model).__name__} did not call "
                        f"{missing}; the module does not run on this input. Pass module= "
                        "naming a module that does"
                    )
                if bar is not None:
                    bar.advance(len(batch.texts), int(batch.src.numel()))


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


def _with_first(
    sink: Callable[[int, int, _Batch, Tensor, int], None],
    first: int,
    slot: int,
    batch_no: int,
    batch: _Batch,
    x: Tensor,
) -> None:
    sink(slot, batch_no, batch, x, first)


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
