"""What a probe's ``stream`` returns: :class:`StreamingStatistics`, which keeps only mergeable
summaries (per-neuron central moments, activity counts and the neuron co-moment matrix), so its
memory does not grow with the number of tokens, and two of them merge exactly. Every formula it
needs comes from :mod:`superposition.metrics`.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from superposition import metrics
from superposition._io import (
    DIGEST_KEY,
    atomic_path,
    check_digest,
    damaged,
    save_tensors,
    saved_paths,
)
from superposition.metrics import NeuronStatistics

__all__ = ["StreamingStatistics"]

# /2: central moments and the centred co-moment (/1 kept raw power sums and X^T X, which
# cancel catastrophically for a neuron with a large mean and a small spread).
_STATS_FORMAT = "superposition.StreamingStatistics/2"
_OLD_STATS_FORMATS = ("superposition.StreamingStatistics/1",)
# StreamingStatistics.update works through a batch this many rows at a time, so its float64
# temporaries (~4 x rows x neurons x 8 bytes) stay small and the same size
# whatever the batch: a long batch no longer raises the peak, and equal-sized blocks are reused
# by the allocator instead of fragmenting the heap.
_UPDATE_ROWS = 256


class StreamingStatistics:
    """Per-neuron statistics and the neuron × neuron matrices, accumulated batch by batch.

    Memory is ``O(n_neurons^2)`` (one float64 ``[neurons, neurons]`` matrix) and does not grow
    with the number of tokens. Nothing is kept as raw power sums: every block of 256 rows is
    centred on its own mean and merged with the pairwise updates in
    :mod:`superposition.metrics` (central moments for mean, variance, skewness and kurtosis;
    the centred co-moment ``sum (x - μ)(x - μ)^T`` for Pearson correlation), so a neuron with a
    large mean and a small spread keeps its precision. The raw Gram matrix ``X^T X`` for the
    uncentred cosine is rebuilt from the co-moment and the means without loss. Two
    accumulators over disjoint shards :meth:`merge` into the accumulator of one pass over both
    (up to round-off).

    Results come back in the batches' dtype: float64 when any batch was float64, else float32.
    The accumulators live on the device of the first batch (a GPU's batches are summed there,
    in float64, with no copy to the host); :meth:`to` moves them.

    Args:
        n_neurons: the number of columns, or ``None`` to take it from the first batch.
        threshold: a neuron is active on a token when its value is ``> threshold``.
        gram: keep the co-moment matrix (needed for :meth:`cosine_similarity`); ``False`` saves
            ``n_neurons^2`` memory and the matrix product per batch.
        layer: the layer these statistics describe (for the record).
        module_name: the hooked module (for the record).
        model_name: the model (for the record).

    Examples:
        >>> import torch
        >>> X = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
        >>> s = StreamingStatistics().update(X[:2]).update(X[2:])
        >>> s.count, s.finalise().mean
        (3, tensor([2.0000, 0.3333]))
        >>> a, b = StreamingStatistics().update(X[:1]), StreamingStatistics().update(X[1:])
        >>> torch.allclose(a.merge(b).cosine_similarity(), s.cosine_similarity())
        True
    """

    def __init__(
        self,
        n_neurons: int | None = None,
        *,
        threshold: float = 0.0,
        gram: bool = True,
        layer: int = 0,
        module_name: str = "",
        model_name: str = "",
    ) -> None:
        if n_neurons is not None and (
            isinstance(n_neurons, bool) or not isinstance(n_neurons, int) or n_neurons <= 0
        ):
            raise ValueError(f"n_neurons must be a positive int or None, got {n_neurons!r}")
        self.threshold = float(threshold)
        self.keep_gram = bool(gram)
        self.layer = layer
        self.module_name = module_name
        self.model_name = model_name
        self.count = 0
        # The dtype results come back in: float64 once any float64 batch arrived.
        self.dtype = torch.float32
        self._moments: Tensor | None = None  # [4, neurons] float64: mean, M2, M3, M4
        self._active: Tensor | None = None  # [neurons] int64
        self._comoment: Tensor | None = None  # [neurons, neurons] float64
        if n_neurons is not None:
            self._allocate(n_neurons)

    def _allocate(self, n: int, device: torch.device | None = None) -> None:
        self._moments = torch.zeros(4, n, dtype=torch.float64, device=device)
        self._active = torch.zeros(n, dtype=torch.int64, device=device)
        self._comoment = (
            torch.zeros(n, n, dtype=torch.float64, device=device) if self.keep_gram else None
        )

    @property
    def device(self) -> torch.device:
        """Where the accumulators live (the CPU before the first batch)."""
        return torch.device("cpu") if self._moments is None else self._moments.device

    def to(self, device: str | torch.device) -> StreamingStatistics:
        """Move the accumulators to ``device`` (e.g. ``"cpu"`` after streaming on a GPU);
        returns ``self``."""
        device = torch.device(device)
        if self._moments is not None:
            assert self._active is not None
            self._moments = self._moments.to(device)
            self._active = self._active.to(device)
            if self._comoment is not None:
                self._comoment = self._comoment.to(device)
        return self

    @property
    def n_neurons(self) -> int | None:
        """Number of neurons, ``None`` before the first batch."""
        return None if self._moments is None else int(self._moments.shape[1])

    def __repr__(self) -> str:
        return (
            f"StreamingStatistics(n_neurons={self.n_neurons}, count={self.count}, "
            f"threshold={self.threshold}, gram={self.keep_gram}, layer={self.layer})"
        )

    def update(self, X: Tensor) -> StreamingStatistics:
        """Add a ``[tokens, neurons]`` batch; returns ``self``.

        Raises:
            ValueError: ``X`` is not 2-D, not floating point, not finite, or has a different
                number of neurons than earlier batches.
        """
        if not isinstance(X, Tensor) or X.ndim != 2 or not X.is_floating_point():
            got = (
                f"shape {tuple(X.shape)}, dtype {X.dtype}"
                if isinstance(X, Tensor)
                else type(X).__name__
            )
            raise ValueError(f"X must be a floating-point [tokens, neurons] tensor, got {got}")
        if self._moments is not None and X.shape[1] != self._moments.shape[1]:
            raise ValueError(
                f"X must have {self._moments.shape[1]} neurons (columns) like earlier batches, "
                f"got shape {tuple(X.shape)}"
            )
        if X.shape[0] == 0:
            return self
        X = X.detach()
        if self._moments is not None and X.device != self._moments.device:
            X = X.to(self._moments.device)
        if not bool(torch.isfinite(X).all()):
            raise ValueError(
                f"X must be finite, got NaN or inf in a batch of shape {tuple(X.shape)}"
            )
        if self._moments is None:
            self._allocate(X.shape[1], X.device)
        assert self._moments is not None
        assert self._active is not None
        self._active += (self.threshold < X).sum(0)
        for block in torch.split(X, _UPDATE_ROWS):
            moments, _ = metrics.block_moments(block)
            if self._comoment is not None:
                metrics.accumulate_comoment(
                    self._comoment, self.count, self._moments[0], block, moments[0]
                )
            self._moments = metrics.merge_moments(
                self.count, self._moments, block.shape[0], moments
            )
            self.count += int(block.shape[0])
        self.dtype = torch.promote_types(self.dtype, X.dtype)
        return self

    def merge(self, other: StreamingStatistics) -> StreamingStatistics:
        """A new accumulator equal to one pass over both shards (neither input changes).

        Raises:
            ValueError: the two disagree on neurons, threshold or whether they keep the
                co-moment matrix.
        """
        if not isinstance(other, StreamingStatistics):
            raise TypeError(f"can only merge a StreamingStatistics, got {type(other).__name__}")
        if other.threshold != self.threshold or other.keep_gram != self.keep_gram:
            raise ValueError(
                f"cannot merge accumulators with threshold={self.threshold}, gram={self.keep_gram} "
                f"and threshold={other.threshold}, gram={other.keep_gram}; use the same settings"
            )
        if None not in (self.n_neurons, other.n_neurons) and self.n_neurons != other.n_neurons:
            raise ValueError(
                f"cannot merge accumulators of {self.n_neurons} and {other.n_neurons} neurons"
            )
        out = StreamingStatistics(
            self.n_neurons or other.n_neurons,
            threshold=self.threshold,
            gram=self.keep_gram,
            layer=self.layer,
            module_name=self.module_name,
            model_name=self.model_name,
        )
        out.dtype = torch.promote_types(self.dtype, other.dtype)
        out.to(self.device)
        for part in (self, other):
            if part._moments is None or part.count == 0:
                continue
            if part.device != out.device:
                part = copy.copy(part).to(out.device)
            assert out._moments is not None
            assert out._active is not None
            assert part._active is not None
            assert part._moments is not None
            if out._comoment is not None and part._comoment is not None:
                out._comoment = metrics.merge_comoments(
                    out.count,
                    out._moments[0],
                    out._comoment,
                    part.count,
                    part._moments[0],
                    part._comoment,
                )
            out._moments = metrics.merge_moments(out.count, out._moments, part.count, part._moments)
            out._active += part._active
            out.count += part.count
        return out

    def _require(self) -> tuple[Tensor, Tensor]:
        if self._moments is None or self._active is None or self.count == 0:
            raise ValueError("no tokens have been accumulated yet; call update(X) first")
        return self._moments, self._active

    def finalise(self) -> NeuronStatistics:
        """Mean, variance, frequency, skewness and kurtosis of every neuron so far.

        See :func:`superposition.metrics.statistics_from_moments`.

        Raises:
            ValueError: nothing was accumulated.
        """
        moments, active = self._require()
        return metrics.statistics_from_moments(
            self.count, moments, active, threshold=self.threshold, dtype=self.dtype
        )

    def _require_comoment(self) -> Tensor:
        self._require()
        if self._comoment is None:
            raise ValueError(
                "this accumulator was made with gram=False, so it has no Gram matrix; "
                "make it with gram=True to get cosine similarity"
            )
        return self._comoment

    @property
    def comoment(self) -> Tensor:
        """``[neurons, neurons]`` float64 centred Gram matrix ``sum (x - μ)(x - μ)^T``.

        Divided by :attr:`count` it is the (population) covariance matrix.

        Raises:
            ValueError: nothing was accumulated, or the accumulator was made with ``gram=False``.
        """
        return self._require_comoment()

    @property
    def gram(self) -> Tensor:
        """``[neurons, neurons]`` float64 raw Gram matrix ``X^T X`` over every token so far.

        Rebuilt from the co-moment, ``C + n μ μ^T``: adding two terms that are both bounded by
        ``|x_i| |x_j|`` loses nothing (the reverse, centring ``X^T X``, would). A new matrix per
        call.

        Raises:
            ValueError: nothing was accumulated, or the accumulator was made with ``gram=False``.
        """
        comoment = self._require_comoment()
        mean = self._require()[0][0]
        return comoment.addr(mean, mean, alpha=float(self.count))

    def cosine_similarity(self, *, center: bool = False) -> Tensor:
        """``[neurons, neurons]`` cosine similarity (``center=True``: Pearson correlation).

        What :func:`superposition.metrics.cosine_similarity` gives on the stacked batches, up to
        floating-point round-off, in the batches' dtype.
        """
        comoment = self._require_comoment()
        mean = self._require()[0][0]
        if center:
            sim = metrics.cosine_similarity_from_comoment(
                comoment, mean, self.count, precision=self.dtype
            )
        else:
            sim = metrics.cosine_similarity_from_gram(self.gram)
        return sim.to(self.dtype)

    def cosine_distance(self, *, center: bool = False) -> Tensor:
        """``1 - cosine_similarity(center=center)``."""
        return 1.0 - self.cosine_similarity(center=center)

    def pearson(self) -> Tensor:
        """Pearson correlation between neurons, ``cosine_similarity(center=True)``."""
        return self.cosine_similarity(center=True)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the accumulator to ``path.safetensors`` (to merge shards from other machines).

        ``path`` may be given with or without the suffix; the file is written atomically.
        """
        self._require()  # an empty accumulator is not worth a file
        tensors, meta = self.state_dict()
        tensors = {k: v.cpu() for k, v in tensors.items()}
        meta["format"] = _STATS_FORMAT
        target = saved_paths(path)[0]
        with atomic_path(target) as temp:
            save_tensors(temp, tensors, meta)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> StreamingStatistics:
        """Read what :meth:`save` wrote.

        Raises:
            ValueError: the file is not a saved :class:`StreamingStatistics`, or was written by
                an older version in a format this one cannot read.

        Examples:
            >>> import tempfile, torch
            >>> s = StreamingStatistics().update(torch.randn(5, 3))
            >>> with tempfile.TemporaryDirectory() as d:
            ...     torch.equal(StreamingStatistics.load(s.save(f"{d}/s.safetensors")).gram, s.gram)
            True
        """
        from safetensors import safe_open

        path = saved_paths(path)[0]
        if not path.is_file():
            raise FileNotFoundError(
                f"expected {path} (written by StreamingStatistics.save), but it does not exist"
            )
        with damaged(path, "StreamingStatistics"), safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            fmt = meta.get("format")
            if fmt in _OLD_STATS_FORMATS:
                raise ValueError(
                    f"{path} was written in the old format {fmt!r}, which kept raw power sums "
                    f"and X^T X: statistics recovered from those lose precision for neurons "
                    f"with a large mean and a small spread, so this version reads only "
                    f"{_STATS_FORMAT!r}; stream the activations again and save them anew"
                )
            if fmt != _STATS_FORMAT:
                raise ValueError(
                    f"{path} is not a saved StreamingStatistics (expected format "
                    f"{_STATS_FORMAT!r}, got {fmt!r})"
                )
            t = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iter
        check_digest(path, meta.pop(DIGEST_KEY, None), t, "save the StreamingStatistics again")
        return cls.from_state(t, meta, str(path))

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, str]]:
        """``(tensors, meta)``: everything :meth:`from_state` rebuilds this accumulator from.

        What :meth:`save` writes and what :func:`superposition.distributed.reduce` sends
        between ranks (the :class:`~superposition.distributed.Mergeable` protocol). The tensors
        are the accumulator's own (not copies): ``moments`` ``[4, neurons]``, ``active``
        ``[neurons]`` and, with ``gram=True``, ``comoment`` ``[neurons, neurons]``; none before
        the first token. ``meta`` holds strings only (safetensors metadata).

        Examples:
            >>> import torch
            >>> s = StreamingStatistics().update(torch.ones(3, 2))
            >>> tensors, meta = s.state_dict()
            >>> sorted(tensors), meta["count"]
            (['active', 'comoment', 'moments'], '3')
            >>> StreamingStatistics.from_state(tensors, meta, "s").count
            3
        """
        tensors: dict[str, Tensor] = {}
        if self._moments is not None and self._active is not None and self.count > 0:
            tensors = {"moments": self._moments, "active": self._active}
            if self._comoment is not None:
                tensors["comoment"] = self._comoment
        meta = {
            "count": str(self.count),
            "dtype": str(self.dtype).removeprefix("torch."),
            "threshold": repr(self.threshold),
            "gram": str(self.keep_gram),
            "layer": str(self.layer),
            "module_name": self.module_name,
            "model_name": self.model_name,
        }
        return tensors, meta

    @classmethod
    def from_state(
        cls, tensors: dict[str, Tensor], meta: dict[str, Any], source: str
    ) -> StreamingStatistics:
        """The accumulator that :meth:`state_dict` described (it keeps ``tensors`` as they are).

        Args:
            tensors, meta: what :meth:`state_dict` returned (or :meth:`save` wrote).
            source: where the state came from (a file, a rank), for the messages.

        Raises:
            ValueError: ``meta`` names no floating-point dtype, or the tensors do not match its
                count.
        """
        dtype = getattr(torch, meta.get("dtype", ""), None)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"{source} names no floating-point dtype, got {meta.get('dtype')!r}")
        count = int(meta["count"])
        # Files written before "gram" was in the metadata always hold their tensors.
        gram = meta["gram"] == "True" if "gram" in meta else "comoment" in tensors
        want = ({"moments", "active"} | ({"comoment"} if gram else set())) if count else set()
        if set(tensors) != want:
            raise ValueError(
                f"{source} has count {count} and gram={gram}, so expected the tensors "
                f"{sorted(want)}, got {sorted(tensors)}"
            )
        out = cls(
            threshold=float(meta["threshold"]),
            gram=gram,
            layer=int(meta["layer"]),
            module_name=meta["module_name"],
            model_name=meta["model_name"],
        )
        if count > 0:
            out._moments, out._active = tensors["moments"], tensors["active"]
            out._comoment = tensors.get("comoment")
        out.count = count
        out.dtype = dtype
        return out
