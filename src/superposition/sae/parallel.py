"""Data parallelism of the SAE training loop over a ``torch.distributed`` group: one
``all_reduce`` per step averages the gradients and makes the dead-latent accounting global."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from superposition.sae.gradients import Step

__all__ = ["Ranks"]


class Ranks:
    """Data parallelism over a ``torch.distributed`` group: each rank computes the gradient
    of its own rows, and one ``all_reduce`` per step sums, weighted by rows, the gradients,
    which latents fired, BatchTopK's threshold and whether any rank failed or ran dry. Every
    rank then takes the same Adam step, so the parameters stay equal without being sent."""

    def __init__(self, rank: int, size: int, per_rank: int, same_source: bool) -> None:
        self.rank, self.size, self.per_rank, self.same_source = rank, size, per_rank, same_source

    def local(self, batch: Tensor) -> Tensor:
        """This rank's rows of a batch: its slice of a batch every rank drew alike, else all."""
        if not self.same_source:
            return batch
        return batch[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]

    def gradients(
        self,
        step_: Step,
        batch: Tensor | None,
        check: Callable[[Tensor], Tensor],
        scale: float | Tensor,
        dead: Tensor | None,
    ) -> tuple[Tensor, Tensor, float, int] | None:
        """``(xn, err, l0, rows of all ranks)`` with ``step_.G`` the mean gradient over every
        rank's rows and ``step_.fired_any`` whether a latent fired on any rank; ``None`` when
        a rank's source ran dry (every rank stops)."""
        import torch.distributed as dist

        from superposition.distributed import check_all_ranks, waiting

        G = step_.G
        G.zero_()
        error: Exception | None = None
        xn = torch.empty(0, step_.width, dtype=G.dtype, device=G.device)
        err = torch.empty(0, step_.d_out, dtype=G.dtype, device=G.device)
        l0, rows = 0.0, 0
        try:
            if batch is not None:
                xn = check(self.local(batch)).to(G.device, G.dtype, non_blocking=True) * scale
                rows = int(xn.shape[0])
                if rows:
                    err, n_active = step_.gradients(xn, dead)
                    l0 = float(n_active) / rows
        except Exception as e:  # every rank hears of it below
            error = e
        # On the parameters' device: NCCL reduces CUDA tensors only.
        flags = torch.tensor(
            [rows, float(error is not None), float(batch is None)], dtype=G.dtype, device=G.device
        )
        buf = torch.cat(
            [
                G.view(-1) * rows,
                step_.fired_any.to(G.dtype),
                flags,
                step_.threshold.view(1).to(G.dtype),
            ]
        )
        with waiting("at a training step"):
            dist.all_reduce(buf)
        total, failed, dry, threshold = buf[-4:].tolist()
        if failed:
            check_all_ranks(error)
        if dry:
            return None
        n = G.numel()
        G.view(-1).copy_(buf[:n]).div_(total)
        step_.fired_any.copy_(buf[n : n + step_.d_sae] > 0)
        # BatchTopK's threshold follows each rank's own batches; the ranks keep their mean.
        step_.threshold.fill_(threshold / self.size)
        return xn, err, l0, int(total)

    def stats(self, xn: Tensor, err: Tensor, l0: float) -> tuple[float, float, float]:
        """:func:`~superposition.sae.gradients.batch_stats` of the batch of all ranks together."""
        import torch.distributed as dist

        B = xn.shape[0]
        buf = torch.cat(
            [
                torch.stack([err.double().square().sum(), xn.double().square().sum()]),
                torch.tensor([l0 * B, B], dtype=torch.float64, device=xn.device),
                xn.double().sum(0),
            ]
        )
        dist.all_reduce(buf)
        e2, x2, l0_sum, n = buf[:4].tolist()
        mean = buf[4:] / n
        centred = x2 - n * float(mean.square().sum())
        mse = e2 / n
        return mse, mse / centred * n if centred > 0 else math.nan, l0_sum / n
