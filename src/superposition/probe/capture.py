"""The capture seam: texts in, one :class:`Captured` batch of activations at a time out.

Every consumer of a model's activations reads them here: :meth:`ActivationProbe.run
<superposition.ActivationProbe.run>` (rows in memory), :meth:`~superposition.ActivationProbe.stream`
(statistics), :func:`~superposition.collect_units`, :class:`~superposition.ActivationStore`.

How a capture goes, batch by batch:

1. Texts are validated and tokenized a chunk of batches at a time (a whole list at once for
   :meth:`~superposition.ActivationProbe.run`), so a bad text fails before its chunk runs and
   memory stays bounded on a corpus of any size.
2. For each batch, the hooks of :mod:`superposition.probe.hooks` are registered, the model runs
   in ``eval`` mode under ``torch.no_grad``, and each hooked site's real-token rows are copied
   out with one ``index_select`` (pad positions dropped unless ``keep_padding``). After the last
   site (the deepest layer) an internal exception ends the forward pass early: probing layer 0
   costs about one layer. Then the hooks are removed and the model's modes restored, before the
   batch is handed over: between batches the model is untouched.
3. Under ``torch.distributed`` each rank captures its share of the texts (text ``i`` on rank
   ``i % world_size``) and :attr:`Captured.text_index` holds indices into the whole corpus.
   Use the capture as a context manager there (``with probe.capture(texts) as batches``), so
   a failure on one rank (in the capture or in the loop that reads it) ends every rank instead
   of leaving the others waiting in a reduction.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from superposition import distributed as _distributed
from superposition._checks import all_finite
from superposition.probe.adapters import HookedTransformerCall, is_hooked_transformer
from superposition.probe.batching import Batch, Encoded, _chunks, _is_empty
from superposition.probe.hooks import Hook, hooked
from superposition.probe.sites import Site, SitePoint

if TYPE_CHECKING:
    from superposition.probe.probe import ActivationProbe

__all__ = ["Capture", "Captured"]

# Above this many batches a progress bar appears when progress=None.
_PROGRESS_MIN_BATCHES = 4
# Streaming tokenizes and plans this many batches at a time, so memory stays bounded (fast
# tokenizers keep ~1 KB of offsets and strings per token until a chunk is done).
_STREAM_CHUNK_BATCHES = 8


# What a hand-named module= must be, per site (for messages).
_WHAT: dict[str, str] = {
    "neurons": "the MLP output projection",
    "mlp_in": "the MLP's first module",
    "mlp_out": "the MLP",
    "resid_pre": "the block",
    "resid_post": "the block",
}


# Where a capture can hand each site's rows as they come (see _Runner.run).
Sink = Callable[[SitePoint, Tensor], None]


class _StopForward(Exception):
    """Raised from a hook once every requested site is captured: the rest is not needed."""


@dataclass(frozen=True)
class Captured:
    """One batch of captured activations: a row per kept token, for every site asked.

    Attributes:
        values: ``(layer, site) -> [rows, width]`` activations, on the model's device in its
            dtype (each row is one token of one text; pad positions only with
            ``keep_padding``).
        text_index: ``[rows]`` int64, the text of each row as an index into the whole
            ``texts`` passed (also under ``torch.distributed``, where a rank sees its share).
        position: ``[rows]`` int64, the row's position within its text.
        token_ids: ``[rows]`` int64, the id fed to the model.
        is_pad: ``[rows]`` bool, True for a pad position kept with ``keep_padding``.

    Rows of one text are contiguous and in order; texts come in the order the model ran
    them (by length within a chunk), so use ``text_index`` to put them back.

    Examples:
        >>> import torch
        >>> from transformers import GPT2Config, GPT2Model
        >>> from superposition import ActivationProbe
        >>> gpt2 = GPT2Model(GPT2Config(vocab_size=30, n_embd=16, n_layer=2, n_head=2))
        >>> probe = ActivationProbe(gpt2, layer=1, site=["neurons", "hook_resid_post"])
        >>> (c,) = probe.capture({"input_ids": torch.tensor([[1, 2, 3]]),
        ...                       "attention_mask": torch.ones(1, 3)})
        >>> c["neurons"].shape, c[1, "resid_post"].shape, c.position.tolist()
        (torch.Size([3, 64]), torch.Size([3, 16]), [0, 1, 2])
    """

    values: dict[tuple[int, Site], Tensor]
    text_index: Tensor
    position: Tensor
    token_ids: Tensor
    is_pad: Tensor

    @property
    def n_rows(self) -> int:
        """Rows (kept tokens) in this batch."""
        return int(self.text_index.numel())

    def __getitem__(self, key: tuple[int, str] | str) -> Tensor:
        """``c[layer, site]``, or ``c[site]`` when one layer was captured (aliases allowed)."""
        from superposition.probe.sites import site_name

        if isinstance(key, tuple):
            layer, site = key
            found = self.values.get((layer, site_name(site)))
        else:
            wanted = site_name(key)
            matches = [v for (_, s), v in self.values.items() if s == wanted]
            if len(matches) > 1:
                raise KeyError(
                    f"site {key!r} was captured at several layers "
                    f"{sorted({lay for lay, s in self.values if s == wanted})}; use c[layer, site]"
                )
            found = matches[0] if matches else None
        if found is None:
            raise KeyError(f"{key!r} was not captured; captured: {sorted(self.values)}")
        return found


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


@contextmanager
def _progress(show: bool | None, total: int | None, batch_size: int) -> Iterator[_Bar | None]:
    """One tqdm bar over ``total`` texts (``None``: unknown, count them), or ``None``."""
    if show is None:
        show = total is None or -(-total // batch_size) > _PROGRESS_MIN_BATCHES
    if not show:
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc="probe", unit="text") as bar:
        yield _Bar(bar)


def forward_function(model: nn.Module, *, logits: bool = False) -> nn.Module:
    """What runs the probed layers: the model, the encoder of an encoder-decoder model, or a
    ``HookedTransformer`` called as a Hugging Face model is (``logits``: with its
    unembedding)."""
    if is_hooked_transformer(model):
        return HookedTransformerCall(model, logits=logits)
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        get_encoder = getattr(model, "get_encoder")  # noqa: B009 - nn.Module types it as Tensor
        encoder = get_encoder()
        if isinstance(encoder, nn.Module):
            return encoder
    return model


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without any)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


class _Runner:
    """Runs batches through a model with capture hooks; one per capture."""

    def __init__(self, probe: ActivationProbe[Any, Any]) -> None:
        self.probe = probe
        self.forward = forward_function(probe.model)
        accepts = set(inspect.signature(self.forward.forward).parameters)
        self.accepts = accepts
        self.extra: dict[str, Any] = {"use_cache": False} if "use_cache" in accepts else {}
        if "return_dict" in accepts:
            self.extra["return_dict"] = True
        self.device = model_device(probe.model)
        self.modules = list(probe.model.modules())

    def run(
        self,
        batch: Batch,
        first: int,
        share: tuple[int, int],
        sink: Sink | None = None,
    ) -> Captured:
        """One batch through the model. With ``sink``, each site's rows go to ``sink(point,
        rows)`` from inside its hook, and the :class:`Captured` returned holds no values: a
        site's rows are then the only copy alive, one site at a time."""
        probe = self.probe
        points: list[SitePoint] = probe.sites
        B, S = batch.inputs["input_ids"].shape
        src = batch.src
        got: dict[tuple[int, Site], Tensor] = {}
        seen: set[tuple[int, Site]] = set()
        n_points = len(points)
        rank, size = share
        row_of = src // S
        texts = torch.tensor(batch.texts, dtype=torch.int64)[row_of]
        text_index = (texts + first) * size + rank

        def reader(point: SitePoint) -> Callable[[Tensor], None]:
            def read(x: Tensor) -> None:
                flat = x.reshape(-1, x.shape[-1])
                if flat.shape[0] != B * S:
                    raise RuntimeError(
                        f"the {point.direction} of {point.module_name} has shape "
                        f"{tuple(x.shape)}, expected {B * S} token rows for a batch of "
                        f"{B} x {S} tokens ({point.site} of layer {point.layer}); pass module= "
                        f"naming {_WHAT[point.site]}"
                    )
                rows = flat.index_select(0, src.to(flat.device))
                _check_finite(point, rows, text_index)
                if sink is None:
                    got[point.layer, point.site] = rows
                else:
                    sink(point, rows)
                seen.add((point.layer, point.site))
                if probe._stop_early and len(seen) == n_points:
                    raise _StopForward

            return read

        inputs = {
            k: v.to(self.device)
            for k, v in batch.inputs.items()
            if k in self.accepts or k in ("input_ids", "attention_mask")
        }
        model = probe.model
        # Only modules in training mode are switched (and switched back): an eval model, the
        # usual case, is not walked module by module on every batch.
        training = [m for m in self.modules if m.training]
        try:
            if training:
                model.eval()
            with (
                hooked(self.forward, [Hook(p, reader(p)) for p in points], count_every_call=True),
                torch.no_grad(),
                suppress(_StopForward),
            ):
                self.forward(**inputs, **self.extra)
        finally:
            for m in training:
                m.training = True
        if len(seen) != n_points:
            missing = [p.module_name for p in points if (p.layer, p.site) not in seen]
            raise RuntimeError(
                f"the forward pass of {type(model).__name__} did not call {missing}; the "
                "module does not run on this input. Pass module= naming a module that does"
            )
        ids = batch.inputs["input_ids"].reshape(-1)[src]
        is_pad = (
            batch.inputs["attention_mask"].reshape(-1)[src] == 0
            if probe.keep_padding
            else torch.zeros(src.numel(), dtype=torch.bool)
        )
        return Captured(
            values=got,
            text_index=text_index,
            position=src % S,
            token_ids=ids,
            is_pad=is_pad,
        )


def _check_finite(point: SitePoint, rows: Tensor, text_index: Tensor) -> None:
    """NaN statistics later say nothing about where they came from: fail here, naming texts."""
    if all_finite(rows):
        return
    bad = torch.unique(text_index[~torch.isfinite(rows).all(1).cpu()])
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    raise ValueError(
        f"the model gave NaN or inf activations at the {point.site} of layer {point.layer} "
        f"({point.module_name}) in text {int(bad[0])}{more} of the texts passed; a float16 or "
        "bfloat16 model can overflow: run it in float32 (model.float()), or check its weights"
    )


class Capture:
    """An iterable of :class:`Captured` batches (from :meth:`ActivationProbe.capture
    <superposition.ActivationProbe.capture>`), also a context manager.

    Iterating runs the model batch by batch. Under ``torch.distributed`` iterate inside
    ``with``: on leaving it every rank learns whether any rank failed (in the capture or in
    the loop body), and all raise together.

    Attributes:
        share: ``(rank, world_size)`` when each rank captures its share, else ``None``.
        planned, n_texts, n_rows: for a capture planned at once (``run``), its batches, texts
            and rows to come; ``None`` for a stream.
    """

    def __init__(
        self,
        probe: ActivationProbe[Any, Any],
        texts: Iterable[str] | Mapping[str, Any],
        *,
        share: tuple[int, int] | None,
        whole: bool = False,
    ) -> None:
        self.probe = probe
        self.share = share
        self._texts = texts
        self._entered = False
        self.planned: list[Batch] | None = None
        self.n_texts: int | None = None
        self.n_rows: int | None = None
        if whole:  # everything validated and planned now, before any forward pass
            seqs: list[Encoded] = probe._encode(texts)
            self.planned = probe._plan(seqs)
            self.n_texts = len(seqs)
            self.n_rows = sum(b.n_tokens for b in self.planned)

    def __repr__(self) -> str:
        return f"Capture({self.probe!r}, share={self.share})"

    def __enter__(self) -> Capture:
        self._entered = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._entered = False
        if self.share is not None:
            _distributed.check_all_ranks(error)

    def __iter__(self) -> Iterator[Captured]:
        if self.share is not None and not self._entered:
            raise RuntimeError(
                "under torch.distributed iterate a capture inside its with block, so that a "
                "failure on one rank ends every rank: with probe.capture(texts) as batches: "
                "for c in batches: ..."
            )
        if self.planned is not None:
            return self._from_plan(self.planned)
        return self._stream()

    def _from_plan(
        self, batches: list[Batch], sink_for: Callable[[Batch], Sink] | None = None
    ) -> Iterator[Captured]:
        """The planned batches in turn; with ``sink_for``, each batch's rows go to the sink it
        returns for that batch (see :meth:`_Runner.run`)."""
        probe = self.probe
        runner = _Runner(probe)
        with _progress(probe.progress, self.n_texts, probe.batch_size) as bar:
            for batch in batches:
                sink = None if sink_for is None else sink_for(batch)
                captured = runner.run(batch, 0, (0, 1), sink)
                if bar is not None:
                    bar.advance(len(batch.texts), batch.n_tokens)
                yield captured

    def _stream(self) -> Iterator[Captured]:
        probe = self.probe
        if self.share is None:
            yield from self._stream_local(self._texts, (0, 1), empty_ok=False)
            return
        rank, size = self.share
        progress = probe.progress
        probe._share = self.share
        if rank != 0:
            probe.progress = False
        try:
            mine = _distributed.shard(self._texts, rank, size)
            if not _is_empty(mine):
                yield from self._stream_local(mine, self.share, empty_ok=True)
        finally:
            probe.progress = progress
            del probe._share  # back to the class's (0, 1)

    def _stream_local(
        self,
        texts: Iterable[str] | Mapping[str, Any],
        share: tuple[int, int],
        *,
        empty_ok: bool,
    ) -> Iterator[Captured]:
        probe = self.probe
        runner = _Runner(probe)
        if isinstance(texts, Mapping):
            batches = probe._plan(probe._encode(texts))
            n_texts = sum(len(b.texts) for b in batches)
            with _progress(probe.progress, n_texts, probe.batch_size) as bar:
                for batch in batches:
                    captured = runner.run(batch, 0, share)
                    if bar is not None:
                        bar.advance(len(batch.texts), batch.n_tokens)
                    yield captured
            return
        size = probe.batch_size * _STREAM_CHUNK_BATCHES
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
        with (
            _progress(probe.progress, total, probe.batch_size) as bar,
            probe.truncation_summary(),
        ):
            n_seen = 0
            for part in itertools.chain([first], parts):
                for batch in probe._plan(probe._encode(part, first=n_seen)):
                    captured = runner.run(batch, n_seen, share)
                    if bar is not None:
                        bar.advance(len(batch.texts), batch.n_tokens)
                    yield captured
                n_seen += len(part)
