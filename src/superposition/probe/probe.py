"""ActivationProbe: capture the activations of any Hugging Face model at any site of a block.

How a run goes:

1. Everything is validated and tokenized before the first forward pass, so a bad argument fails
   fast (:mod:`superposition.probe.batching`). Texts are padded *on the right* and sorted by
   length into batches, so a batch pays for little padding.
2. :meth:`ActivationProbe.capture` runs them batch by batch with the hooks of
   :mod:`superposition.probe.hooks` at the requested sites (:mod:`superposition.probe.sites`)
   and hands over each batch's real-token rows (:mod:`superposition.probe.capture`); after the
   deepest requested site the forward pass stops early (probing layer 0 costs about one layer).
   Pad rows kept with ``keep_padding`` are marked in ``Activations.is_pad`` and labelled as
   padding, never as the token whose id filled them.
3. :meth:`~ActivationProbe.run` writes the rows back in the original order into preallocated
   buffers (no ``torch.cat`` copy); :meth:`~ActivationProbe.stream` folds them into
   :class:`StreamingStatistics`. Hooks live only around each forward pass and are removed in
   reverse order, also on error; the model's train/eval mode is restored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, Literal, TypeVar, overload

import torch
from torch import Tensor, nn

from superposition import distributed as _distributed
from superposition._checks import optional_positive_int, positive_int
from superposition.probe.activations import Activations
from superposition.probe.adapters import model_tokenizer, unwrap
from superposition.probe.batching import Batch, TextBatching, model_name
from superposition.probe.capture import Capture, Sink
from superposition.probe.locate import LayerSpec
from superposition.probe.sites import SitePoint, locate_sites
from superposition.probe.streaming import StreamingStatistics

__all__ = ["ActivationProbe", "Texts"]

_R = TypeVar("_R", Activations, list[Activations])
_S = TypeVar("_S", StreamingStatistics, list[StreamingStatistics])

Texts = Sequence[str] | Mapping[str, Any]
"""A list of strings, or a pre-tokenized ``BatchEncoding``/dict with ``input_ids`` and
``attention_mask``."""

# Streaming hands the accumulator a batch's real tokens this many rows at a time.
_STREAM_BLOCK_ROWS = 256


def _destinations(starts: list[int], kept: list[int]) -> Tensor:
    """Output rows of a batch's kept positions in row-major order: row ``b`` keeps ``kept[b]``
    positions, which land at ``starts[b], starts[b] + 1, ...``."""
    k = torch.tensor(kept)
    first = torch.tensor(starts) - (torch.cumsum(k, 0) - k)
    return torch.arange(int(k.sum())) + first.repeat_interleave(k)


class ActivationProbe(TextBatching, Generic[_R, _S]):
    """Capture the activations of one or several layers (and sites) of a transformer.

    By default the MLP's neurons: the input of its output projection (see
    :mod:`superposition.probe.locate`), so post-activation values are captured even where the
    activation is a functional call, and gated MLPs give ``act(gate(x)) * up(x)``. ``site``
    reads other places of the block (:mod:`superposition.probe.sites`): ``mlp_in``,
    ``mlp_out``, ``resid_pre``, ``resid_post`` or their TransformerLens names.

    Args:
        model: a Hugging Face model, or any ``nn.Module`` together with ``module=``.
        layer: a layer index (negative counts from the end), a list of them, or ``"all"``.
            With one index and one site :meth:`run` returns one :class:`Activations`,
            otherwise a list (layer by layer, sites in the order asked within a layer).
        site: a site (default ``"neurons"``) or a list of them, all read in one pass.
        tokenizer: the model's tokenizer; by default loaded from ``model.name_or_path``.
        module: the dotted path of the MLP output projection, with ``{layer}`` for the
            index (``"encoder.layer.{layer}.output.dense"``), for architectures not in the table;
            or a mapping from site to such a path (see :func:`~superposition.probe.locate_sites`).
        batch_size: texts per forward pass.
        max_tokens: at most this many token positions (padding included) per forward pass: a
            batch of long texts holds fewer than ``batch_size``, which bounds the memory of a
            forward pass (a text longer than this goes alone). Default: no bound.
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
        >>> [(a.site, a.n_neurons) for a in ActivationProbe(bert, site=["mlp_in", "mlp_out"]).run(
        ...     {"input_ids": torch.tensor([[2, 3]]), "attention_mask": torch.ones(1, 2)})]
        [('mlp_in', 32), ('mlp_out', 32)]
    """

    # Tests switch this off to check that stopping early changes nothing.
    _stop_early: bool = True

    @overload
    def __init__(
        self: ActivationProbe[Activations, StreamingStatistics],
        model: nn.Module,
        layer: int = 0,
        site: str = "neurons",
        *,
        tokenizer: Any = None,
        module: str | Mapping[str, str] | None = None,
        batch_size: int = 32,
        max_tokens: int | None = None,
        keep_padding: bool = False,
        max_length: int | None = None,
        progress: bool | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self: ActivationProbe[list[Activations], list[StreamingStatistics]],
        model: nn.Module,
        layer: Sequence[int] | Literal["all"],
        site: str | Sequence[str] = "neurons",
        *,
        tokenizer: Any = None,
        module: str | Mapping[str, str] | None = None,
        batch_size: int = 32,
        max_tokens: int | None = None,
        keep_padding: bool = False,
        max_length: int | None = None,
        progress: bool | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self: ActivationProbe[list[Activations], list[StreamingStatistics]],
        model: nn.Module,
        layer: int,
        site: Sequence[str],
        *,
        tokenizer: Any = None,
        module: str | Mapping[str, str] | None = None,
        batch_size: int = 32,
        max_tokens: int | None = None,
        keep_padding: bool = False,
        max_length: int | None = None,
        progress: bool | None = None,
    ) -> None: ...

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = 0,
        site: str | Sequence[str] = "neurons",
        *,
        tokenizer: Any = None,
        module: str | Mapping[str, str] | None = None,
        batch_size: int = 32,
        max_tokens: int | None = None,
        keep_padding: bool = False,
        max_length: int | None = None,
        progress: bool | None = None,
    ) -> None:
        positive_int(batch_size, "batch_size")
        optional_positive_int(max_tokens, "max_tokens")
        optional_positive_int(max_length, "max_length")
        if progress not in (None, True, False):
            raise TypeError(f"progress must be True, False or None, got {progress!r}")
        self.sites: list[SitePoint] = locate_sites(model, layer, site, module=module)
        self.model = unwrap(model)
        self.tokenizer = tokenizer if tokenizer is not None else model_tokenizer(model)
        self.module = module
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.keep_padding = bool(keep_padding)
        self.max_length = max_length
        self.progress = progress
        self._single = isinstance(layer, int) and isinstance(site, str)

    def __repr__(self) -> str:
        layers = (
            self.layers[0]
            if isinstance(self.layers, list) and len(self.layers) == 1
            else self.layers
        )
        sites = sorted({p.site for p in self.sites}, key=[p.site for p in self.sites].index)
        site = (
            f", site={sites[0]!r}"
            if sites == ["neurons"] or len(sites) == 1
            else f", site={sites!r}"
        )
        return (
            f"ActivationProbe({type(self.model).__name__}, layer={layers!r}{site}, "
            f"modules={[s.module_name for s in self.sites]!r}, batch_size={self.batch_size}, "
            + (f"max_tokens={self.max_tokens}, " if self.max_tokens is not None else "")
            + f"keep_padding={self.keep_padding})"
        )

    @property
    def layers(self) -> list[int]:
        """The probed layer indices (non-negative), in the order asked."""
        return list(dict.fromkeys(s.layer for s in self.sites))

    @property
    def model_name(self) -> str:
        """The model's ``name_or_path`` (or its class name), as results record it."""
        return model_name(self.model)

    # ------------------------------------------------------------------ public verbs

    def capture(
        self, texts: Iterable[str] | Mapping[str, Any], *, distributed: bool | None = None
    ) -> Capture:
        """Run ``texts`` through the model and yield each batch's activations at every site.

        The one seam every consumer reads (``run``, ``stream``,
        :func:`~superposition.collect_units`, :class:`~superposition.ActivationStore`): an
        iterable of
        :class:`~superposition.probe.Captured` batches, a chunk of texts tokenized at a time,
        so ``texts`` may be a generator over a corpus far larger than memory.

        Args:
            texts: strings (any iterable), or pre-tokenized input as for :meth:`run`.
            distributed: ``None``: under an initialised ``torch.distributed`` process group of
                more than one rank, each rank captures its share (text ``i`` on rank
                ``i % world_size``; pass the same whole ``texts`` on every rank); ``True``:
                require a process group; ``False``: capture everything here. Under
                ``torch.distributed`` iterate inside ``with probe.capture(texts) as batches``.

        Returns:
            A :class:`~superposition.probe.Capture` (iterable, and a context manager).

        Examples:
            >>> import torch
            >>> from transformers import GPT2Config, GPT2Model
            >>> gpt2 = GPT2Model(GPT2Config(vocab_size=30, n_embd=16, n_layer=2, n_head=2))
            >>> probe = ActivationProbe(gpt2, layer=0, site="mlp_out")
            >>> ids = {"input_ids": torch.tensor([[1, 2], [3, 4]]),
            ...        "attention_mask": torch.ones(2, 2)}
            >>> [(c.text_index.tolist(), tuple(c["mlp_out"].shape)) for c in probe.capture(ids)]
            [([0, 0, 1, 1], (4, 16))]
        """
        return Capture(self, texts, share=_distributed.resolve(distributed))

    def run(self, texts: Texts) -> _R:
        """Probe ``texts``; one row per (non-pad) token, in the order of the texts.

        Args:
            texts: a list of strings, or a pre-tokenized ``BatchEncoding``/dict with
                ``input_ids`` and ``attention_mask`` (``[n_texts, seq]``).

        Returns:
            An :class:`Activations`, or a list of them (layer by layer, sites in the order
            asked) when several layers or sites were asked for.
        """
        capture = Capture(self, texts, share=None, whole=True)
        n_texts, n_rows = capture.n_texts, capture.n_rows
        batches = capture.planned
        if n_texts is None or n_rows is None or batches is None:  # pragma: no cover
            raise AssertionError("a capture made with whole=True is planned")
        kept = torch.zeros(n_texts, dtype=torch.int64)
        for batch in batches:
            kept[batch.texts] = torch.tensor(batch.kept_per_row)
        offsets = torch.zeros(n_texts + 1, dtype=torch.int64)
        torch.cumsum(kept, 0, out=offsets[1:])
        text_index = torch.arange(n_texts).repeat_interleave(kept)
        position = torch.arange(n_rows) - offsets[:-1].repeat_interleave(kept)
        token_ids = torch.empty(n_rows, dtype=torch.int64)
        is_pad = torch.zeros(n_rows, dtype=torch.bool)
        outs: dict[tuple[int, str], Tensor] = {}
        dst = torch.empty(0, dtype=torch.int64)

        def sink_for(batch: Batch) -> Sink:
            # The output row of each kept position, in the batch's order: one index_copy_ per
            # batch and site (one per text made a thread barrier per text), written from the
            # site's hook, so no batch holds the rows of every site at once.
            nonlocal dst
            dst = _destinations(offsets[batch.texts].tolist(), batch.kept_per_row)

            def sink(point: SitePoint, rows: Tensor) -> None:
                key = point.layer, point.site
                store = outs.get(key)
                if store is None:
                    store = outs[key] = torch.empty(n_rows, rows.shape[-1], dtype=torch.float32)
                store.index_copy_(0, dst, rows.to("cpu", torch.float32))

            return sink

        for captured in capture._from_plan(batches, sink_for):
            token_ids[dst] = captured.token_ids
            is_pad[dst] = captured.is_pad
        tokens = self._token_strings(token_ids, is_pad)
        results = [
            Activations(
                outs.get((p.layer, p.site), torch.empty(n_rows, 0)),
                tokens=tokens,
                token_ids=token_ids,
                text_index=text_index,
                position=position,
                layer=p.layer,
                module_name=p.module_name,
                model_name=self.model_name,
                is_pad=is_pad,
                site=p.site,
            )
            for p in self.sites
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
        accs = [
            StreamingStatistics(
                threshold=threshold,
                gram=gram,
                layer=p.layer,
                module_name=p.module_name,
                model_name=self.model_name,
            )
            for p in self.sites
        ]
        share = _distributed.resolve(distributed)
        with Capture(self, texts, share=share) as batches:
            for captured in batches:
                for p, acc in zip(self.sites, accs, strict=True):
                    rows = captured.values[p.layer, p.site]
                    # A few hundred rows at a time: the float32 copy stays small and the same
                    # size for every batch, so peak memory does not follow the longest batch.
                    # Summed where the model runs: a GPU forms the float64 Gram itself.
                    for block in torch.split(rows, _STREAM_BLOCK_ROWS):
                        acc.update(block.float())
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
