"""Streaming under ``torch.distributed``: each rank takes its share of the texts, and the
accumulators are reduced into the accumulator of one process over the whole corpus.

Launch with ``torchrun`` (gloo on CPU, NCCL on GPU); :meth:`ActivationProbe.stream
<superposition.ActivationProbe.stream>` and :func:`~superposition.units.collect_units` then use
these functions by themselves once a process group is initialised.

* **Shares.** Text ``i`` of the corpus goes to rank ``i % world_size`` (:func:`shard`): every
  text exactly once, deterministic by position, and a text's index in the whole corpus is
  ``local_index * world_size + rank``, which is what the unit records keep (so top contexts
  name the same texts as a single process would).
* **Reductions are merges.** :func:`reduce` takes any accumulator that follows the small
  :class:`Mergeable` protocol (``state_dict`` / ``from_state`` / ``merge``), so this module
  knows no accumulator class. Rank 0 receives every other rank's state, in rank order, rebuilds
  it with ``from_state`` and folds it in with the accumulator's own exact ``merge``; with
  ``all_ranks=True`` the result is then broadcast. States travel as tensors (a
  ``[neurons, neurons]`` matrix is never pickled), their small metadata as objects. Counts,
  activity counts and top contexts come out exactly as in one process; moments and the
  co-moment matrix up to floating-point round-off (the same merge formulas, summed in another
  order). :func:`reduce_statistics` and :func:`reduce_units` are :func:`reduce` for
  :class:`~superposition.StreamingStatistics` and :class:`~superposition.UnitStatistics`.
* **One failure stops every rank.** :func:`check_all_ranks` lets every rank say whether its
  share failed before any reduction starts, so a bad text on one rank ends all of them with
  its message instead of leaving the others waiting in a collective.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload, runtime_checkable

import torch
from torch import Tensor

from superposition._collectives import (
    broadcast_outcome,
    broadcast_tensors,
    recv_tensors,
    same_type,
    send_tensors,
    tensor_spec,
)

if TYPE_CHECKING:
    from superposition.probe.corpus import Corpus
    from superposition.probe.streaming import StreamingStatistics
    from superposition.units.records import UnitStatistics

__all__ = [
    "Interleaved",
    "Mergeable",
    "Shardable",
    "check_all_ranks",
    "init_from_env",
    "reduce",
    "reduce_statistics",
    "reduce_units",
    "resolve",
    "shard",
    "waiting",
    "world",
]

_T = TypeVar("_T")
_M = TypeVar("_M", bound="Mergeable")


@runtime_checkable
class Mergeable(Protocol):
    """An accumulator :func:`reduce` can merge across ranks: its state as tensors and
    metadata, the way back from that state, and an exact merge.

    :class:`~superposition.StreamingStatistics` and :class:`~superposition.UnitStatistics`
    follow it; so can any accumulator of yours.

    Examples:
        >>> import torch
        >>> from superposition import StreamingStatistics, UnitStatistics
        >>> isinstance(StreamingStatistics(), Mergeable), isinstance(UnitStatistics(2), Mergeable)
        (True, True)
    """

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """``(tensors, meta)``: everything :meth:`from_state` needs. The tensors travel
        between ranks as tensors; ``meta`` must be small and picklable."""
        ...

    @classmethod
    def from_state(
        cls: type[_M], tensors: dict[str, Tensor], meta: dict[str, Any], source: str
    ) -> _M:
        """The accumulator that :meth:`state_dict` described; ``source`` (``"rank 1"``, a
        path) names where the state came from, for the messages."""
        ...

    def merge(self: _M, other: _M) -> _M:
        """A new accumulator equal to one pass over both inputs' shards."""
        ...


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: from the initialised default process group of
    ``torch.distributed``, else ``(0, 1)``.

    Examples:
        >>> world()  # no process group in this process
        (0, 1)
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def resolve(distributed: bool | None) -> tuple[int, int] | None:
    """What a ``distributed=`` argument means here: ``(rank, world_size)`` to stream a share
    and reduce, or ``None`` to run alone.

    Args:
        distributed: ``None`` (auto): on when a process group is initialised with more than
            one rank; ``True``: require a process group; ``False``: off.

    Raises:
        RuntimeError: ``distributed=True`` but no process group is initialised.
        TypeError: ``distributed`` is not ``True``, ``False`` or ``None``.

    Examples:
        >>> resolve(None), resolve(False)
        (None, None)
        >>> resolve(True)
        Traceback (most recent call last):
        ...
        RuntimeError: distributed=True needs an initialised torch.distributed process group, ...
    """
    if distributed is not None and not isinstance(distributed, bool):
        raise TypeError(f"distributed must be True, False or None, got {distributed!r}")
    if distributed is False:
        return None
    import torch.distributed as dist

    initialised = dist.is_available() and dist.is_initialized()
    if distributed is True and not initialised:
        raise RuntimeError(
            "distributed=True needs an initialised torch.distributed process group, but there "
            "is none; launch with torchrun and call torch.distributed.init_process_group() "
            "first, or pass distributed=None to run alone"
        )
    if not initialised:
        return None
    rank, size = world()
    return (rank, size) if distributed is True or size > 1 else None


# --------------------------------------------------------------------------- shares


@overload
def shard(texts: Corpus, rank: int | None = None, world_size: int | None = None) -> Corpus: ...


@overload
def shard(
    texts: Mapping[str, Any], rank: int | None = None, world_size: int | None = None
) -> dict[str, Any]: ...


@overload
def shard(
    texts: Sequence[_T], rank: int | None = None, world_size: int | None = None
) -> list[_T]: ...


@overload
def shard(
    texts: Iterable[_T], rank: int | None = None, world_size: int | None = None
) -> Iterable[_T]: ...


def shard(texts: Any, rank: int | None = None, world_size: int | None = None) -> Any:
    """This rank's share of ``texts``: items ``rank, rank + world_size, rank + 2·world_size...``

    Together the shares hold every item exactly once. Item ``j`` of a share is item
    ``j * world_size + rank`` of the whole.

    Args:
        texts: a :class:`~superposition.Corpus` (the whole corpus, or a ``head`` of it), a
            list of strings, pre-tokenized input (a dict of ``[n_texts, ...]`` rows), any
            iterable, or a Hugging Face ``Dataset`` / ``IterableDataset``. A Hugging Face
            ``IterableDataset`` is split by ``datasets.distributed.split_dataset_by_node``,
            which may hand out whole files instead of interleaving; to keep text indices
            comparable with one process, pass ``load_corpus(dataset)`` instead.
        rank, world_size: the share to take; by default this process's, from :func:`world`.

    Returns:
        The same kind of thing: a ``Corpus``, a list, a dict, a dataset, or an iterator.

    Raises:
        ValueError: ``rank``/``world_size`` are out of range, or a ``Corpus`` is already a
            shard.
        TypeError: ``texts`` is a single string.

    Examples:
        >>> shard(["a", "b", "c", "d", "e"], 1, 2)
        ['b', 'd']
        >>> shard(["a"], 1, 2)
        []
        >>> from superposition import load_corpus
        >>> list(shard(load_corpus(["a", "b", "c"]), 0, 2))
        ['a', 'c']
    """
    if rank is None and world_size is None:
        rank, world_size = world()
    if world_size is None or isinstance(world_size, bool) or not isinstance(world_size, int):
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    if world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, {world_size}), got {rank!r}")
    if isinstance(texts, str):
        raise TypeError(
            f"texts must be a collection of texts, got a single str {texts[:40]!r}; "
            "wrap it in a list: [text]"
        )
    if isinstance(texts, Shardable):  # a Corpus knows how to share itself
        return texts.shard_for(rank, world_size)
    if isinstance(texts, Mapping):
        return {k: v[rank::world_size] if _has_rows(v) else v for k, v in texts.items()}
    if isinstance(texts, Sequence):
        return list(texts[rank::world_size])
    module = type(texts).__module__
    if module.startswith("datasets.") and hasattr(texts, "column_names"):
        if hasattr(texts, "__getitem__") and hasattr(texts, "__len__"):
            return texts.shard(num_shards=world_size, index=rank, contiguous=False)
        from datasets.distributed import split_dataset_by_node  # type: ignore[import-untyped]

        return split_dataset_by_node(texts, rank=rank, world_size=world_size)
    if isinstance(texts, Iterable):
        return Interleaved(texts, rank, world_size)
    raise TypeError(
        f"texts must be a Corpus, a list of strings, pre-tokenized input or an iterable, got "
        f"{type(texts).__name__}"
    )


def _has_rows(value: Any) -> bool:
    return isinstance(value, (Tensor, list, tuple)) or hasattr(value, "shape")


@runtime_checkable
class Shardable(Protocol):
    """A collection of texts that knows its share for a rank (``Corpus`` is one):
    :func:`shard` hands it ``(rank, world_size)`` instead of slicing it."""

    def shard_for(self, rank: int, world_size: int) -> Iterable[Any]:
        """Items ``rank, rank + world_size, ...``: this rank's share."""
        ...


class Interleaved(Iterable[_T]):
    """Every ``world_size``-th item of a re-iterable source, from ``rank`` (re-iterable if the
    source is).

    Examples:
        >>> list(Interleaved(["a", "b", "c", "d", "e"], 1, 2))
        ['b', 'd']
    """

    def __init__(self, source: Iterable[_T], rank: int, world_size: int) -> None:
        self.source, self.rank, self.world_size = source, rank, world_size

    def __iter__(self) -> Iterator[_T]:
        return itertools.islice(iter(self.source), self.rank, None, self.world_size)


# --------------------------------------------------------------------------- failures


@contextlib.contextmanager
def waiting(what: str) -> Iterator[None]:
    """Around a collective: a wait that outlasted the process group's timeout (a rank hung,
    died or fell far behind), or a connection a dead rank closed, becomes one ``RuntimeError``
    that says so, with ``what`` the others were waiting for (``"to finish their share"``);
    other errors pass unchanged.

    Examples:
        >>> with waiting("at a training step"):
        ...     pass
    """
    try:
        yield
    except RuntimeError as err:
        text = str(err).lower()
        rank, size = world()
        if "connection closed by peer" in text or "connection reset by peer" in text:
            raise RuntimeError(
                f"rank {rank} of {size} lost its connection to another rank while waiting for "
                f"the other ranks {what}: that rank died (killed, out of memory or crashed; its "
                f"own output says why), so every rank stops ({err})"
            ) from err
        if "timed out" not in text:
            raise
        raise RuntimeError(
            f"rank {rank} of {size} waited for the other ranks {what} longer than the "
            "process group's timeout and gave up: a rank hung, died or fell far behind (its "
            "own output says where it is); give the ranks more time with "
            f"init_process_group(timeout=...) if it is only slow ({err})"
        ) from err


def check_all_ranks(error: BaseException | None) -> None:
    """Every rank says whether its part failed; if any did, every rank raises.

    Call it on every rank after the per-rank work and before the first reduction, with the
    exception that rank's work raised (or ``None``). The failing rank re-raises its own
    exception; the others raise the same built-in type (else ``RuntimeError``) naming the
    rank and its message. Without a process group this only re-raises ``error``.

    Raises:
        Exception: ``error``, or the error of the first rank that failed.

    Examples:
        >>> check_all_ranks(None)  # nothing failed (and one process: nothing to ask)
    """
    import torch.distributed as dist

    size = world()[1]
    if size == 1:
        if error is not None:
            raise error
        return
    report = None if error is None else (type(error).__name__, str(error).strip())
    reports: list[Any] = [None] * size
    with waiting("to finish their share"):
        dist.all_gather_object(reports, report)
    if error is not None:
        raise error
    failed = [(r, rep) for r, rep in enumerate(reports) if rep is not None]
    if not failed:
        return
    r, (name, message) = failed[0]
    others = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    text = (
        f"rank {r} of {size} failed{others}, so every rank stops: {name}: {message}; fix the "
        f"error on rank {r} (its own traceback is in its output)"
    )
    raise same_type(name, text)


# --------------------------------------------------------------------------- reductions


def reduce(obj: _M | None, *, all_ranks: bool = False) -> _M | None:
    """The accumulators of every rank merged into one, as if one process had streamed all
    their shares.

    Every rank must call it (it is a collective). Each rank's state
    (:meth:`Mergeable.state_dict`) goes to rank 0 as tensors, in rank order; rank 0 rebuilds
    each with :meth:`Mergeable.from_state` and folds it into its own with
    :meth:`Mergeable.merge`, so the result is as exact as the accumulator's merge. A rank that
    has no accumulator passes ``None`` and takes part all the same.

    Args:
        obj: this rank's accumulator, or ``None``.
        all_ranks: broadcast the result, so every rank returns it (rebuilt from rank 0's
            state on the others).

    Returns:
        The merged accumulator on rank 0 (on every rank with ``all_ranks``), ``None`` on the
        others, and ``None`` everywhere when every rank passed ``None``. Without a process
        group (or with one rank), ``obj`` itself.

    Raises:
        ValueError, TypeError: the ranks' accumulators cannot be merged (their own ``merge``
            refused, e.g. different settings); raised on every rank, with the same type.

    Examples:
        >>> import torch
        >>> from superposition import StreamingStatistics
        >>> s = StreamingStatistics().update(torch.ones(3, 2))
        >>> reduce(s) is s  # one process: nothing to reduce
        True
    """
    rank, size = world()
    if size == 1:
        return obj
    import torch.distributed as dist

    tensors, meta = ({}, {}) if obj is None else obj.state_dict()
    mine = None if obj is None else (type(obj), meta, tensor_spec(tensors))
    infos: list[Any] = [None] * size
    dist.all_gather_object(infos, mine)
    merged = obj
    error: BaseException | None = None
    if rank == 0:
        for r in range(1, size):
            if infos[r] is None:
                continue
            kind, their_meta, spec = infos[r]
            try:
                received = recv_tensors(spec, src=r)
            except Exception as err:  # the link failed: stop folding, tell the other ranks
                error = error or err
                break
            if error is not None:
                continue  # received all the same, so that no rank is left sending
            try:
                other = kind.from_state(received, their_meta, f"rank {r}")
                merged = other if merged is None else merged.merge(other)
            except (ValueError, TypeError) as err:  # told to the other ranks below
                text = (
                    f"rank {r}'s {kind.__name__} cannot be merged into those of the ranks "
                    f"before it: {err}"
                )
                error = ValueError(text) if isinstance(err, ValueError) else TypeError(text)
                error.__cause__ = err
            except Exception as err:  # told to the other ranks below, then raised
                error = err
    elif obj is not None:
        send_tensors(tensors, dst=0)
    out_tensors: dict[str, Tensor] = {}
    out: tuple[Any, dict[str, Any], dict[str, Any]] | None = None
    if rank == 0 and all_ranks and error is None and merged is not None:
        try:
            out_tensors, out_meta = merged.state_dict()
            out = (type(merged), out_meta, tensor_spec(out_tensors))
        except Exception as err:  # told to the other ranks below, then raised
            error = err
    # Every rank learns whether the fold failed (and, with all_ranks, what to rebuild).
    out = broadcast_outcome(out, error)
    if not all_ranks:
        return merged if rank == 0 else None
    if out is None:  # no rank had an accumulator
        return None
    received = broadcast_tensors(out_tensors, out[2])
    if rank == 0:
        return merged
    rebuilt: _M = out[0].from_state(received, out[1], "rank 0")
    return rebuilt


def reduce_statistics(
    stats: StreamingStatistics, *, all_ranks: bool = False
) -> StreamingStatistics | None:
    """The :class:`~superposition.StreamingStatistics` of every rank merged into one, as if
    one process had streamed all their shares: :func:`reduce` of ``stats``.

    Every rank must call it (it is a collective). Rank 0 folds the other ranks' accumulators
    in with :meth:`~superposition.StreamingStatistics.merge`, in rank order: ``count`` and
    activity counts are exact, moments and the co-moment matrix equal one pass up to
    round-off. A rank that saw no token takes part all the same.

    Args:
        stats: this rank's accumulator (possibly empty).
        all_ranks: broadcast the result, so every rank returns it.

    Returns:
        The merged accumulator on rank 0 (on every rank with ``all_ranks``), ``None`` on the
        others. Without a process group (or with one rank), ``stats`` itself.

    Raises:
        ValueError: the ranks' accumulators disagree on threshold, Gram matrix or neurons (on
            every rank).

    Examples:
        >>> import torch
        >>> from superposition import StreamingStatistics
        >>> s = StreamingStatistics().update(torch.ones(3, 2))
        >>> reduce_statistics(s) is s  # one process: nothing to reduce
        True
    """
    return reduce(stats, all_ranks=all_ranks)


def reduce_units(stats: UnitStatistics | None, *, all_ranks: bool = False) -> UnitStatistics | None:
    """The :class:`~superposition.UnitStatistics` of every rank merged into one, as if one
    process had streamed all their shares (exactly, in the kept contexts and samples):
    :func:`reduce` of ``stats``, keeping this rank's tokenizer.

    Every rank must call it. Rank 0 folds the others' records in with
    :meth:`~superposition.UnitStatistics.merge`, in rank order (their states travel as
    tensors, without the tokenizer). The records' text indices must already be indices into
    the whole corpus (as :func:`~superposition.units.collect_units` writes them).

    Args:
        stats: this rank's records, or ``None`` for a rank that saw no text (its unit count
            was never known).
        all_ranks: broadcast the result, so every rank returns it.

    Returns:
        The merged records on rank 0 (on every rank with ``all_ranks``), ``None`` on the
        others, and ``None`` everywhere when no rank had records. Without a process group,
        ``stats`` itself. The result keeps this rank's tokenizer.

    Raises:
        ValueError: the ranks' records have different settings (on every rank).

    Examples:
        >>> from superposition import UnitStatistics
        >>> s = UnitStatistics(3)
        >>> reduce_units(s) is s  # one process: nothing to reduce
        True
    """
    if world()[1] == 1:
        return stats
    result = reduce(stats, all_ranks=all_ranks)
    if result is not None:
        result.tokenizer = None if stats is None else stats.tokenizer
    return result


# --------------------------------------------------------------------------- launching


def init_from_env(timeout_s: float | None = None) -> bool:
    """Initialise the default process group when this process was launched by ``torchrun``
    (``RANK`` and ``WORLD_SIZE`` in the environment, more than one rank) and none exists yet:
    NCCL when a GPU is available (each rank on GPU ``LOCAL_RANK``), else gloo.

    Args:
        timeout_s: how long a collective may wait for the other ranks (default: PyTorch's).

    Returns:
        ``True`` when it initialised a group (the caller destroys it with
        ``torch.distributed.destroy_process_group()``), ``False`` otherwise.

    Examples:
        >>> init_from_env()  # not launched by torchrun
        False
    """
    import torch.distributed as dist

    if not dist.is_available() or dist.is_initialized():
        return False
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return False
    if "RANK" not in os.environ or size <= 1:
        return False
    kwargs: dict[str, Any] = {}
    if timeout_s is not None:
        import datetime

        kwargs["timeout"] = datetime.timedelta(seconds=timeout_s)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl", **kwargs)
    else:
        dist.init_process_group("gloo", **kwargs)
    return True
