"""The collectives under :mod:`superposition.distributed`'s reductions: tensors sent to rank 0
and broadcast back on the backend's device, rank 0's outcome (a result or an error) told to
every rank, and an error rebuilt with a built-in type from its name."""

from __future__ import annotations

import builtins
import contextlib
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "backend_device",
    "broadcast_outcome",
    "broadcast_tensors",
    "recv_tensors",
    "same_type",
    "send_tensors",
    "tensor_spec",
]


def backend_device() -> torch.device:
    """Where collectives want their tensors: the current GPU under NCCL, else the CPU."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def send_tensors(tensors: dict[str, Tensor], dst: int) -> None:
    import torch.distributed as dist

    device = backend_device()
    for name in sorted(tensors):
        dist.send(tensors[name].contiguous().to(device), dst=dst)


def recv_tensors(spec: dict[str, tuple[tuple[int, ...], str]], src: int) -> dict[str, Tensor]:
    import torch.distributed as dist

    device = backend_device()
    out = {}
    for name in sorted(spec):
        shape, dtype = spec[name]
        buf = torch.empty(shape, dtype=getattr(torch, dtype), device=device)
        dist.recv(buf, src=src)
        out[name] = buf.cpu()
    return out


def broadcast_tensors(tensors: dict[str, Tensor], spec: dict[str, Any]) -> dict[str, Tensor]:
    import torch.distributed as dist

    device = backend_device()
    out = {}
    for name in sorted(spec):
        shape, dtype = spec[name]
        if name in tensors:
            buf = tensors[name].contiguous().to(device)
        else:
            buf = torch.empty(shape, dtype=getattr(torch, dtype), device=device)
        dist.broadcast(buf, src=0)
        out[name] = buf.cpu()
    return out


def broadcast_outcome(result: Any, error: BaseException | None) -> Any:
    """Rank 0's ``result`` (or its ``error``) to every rank, so a fold that failed on rank 0
    stops the others too (with the same built-in type) instead of leaving them waiting."""
    import torch.distributed as dist

    failure = None if error is None else (type(error).__name__, str(error).strip())
    box = [failure, result]
    dist.broadcast_object_list(box, src=0)  # on rank 0, box is left as it is
    if error is not None:
        raise error
    if box[0] is not None:
        name, message = box[0]
        raise same_type(name, f"rank 0 failed while merging the ranks' results: {message}")
    return box[1]


def same_type(name: str, text: str) -> Exception:
    """An exception of the built-in type called ``name`` (else ``RuntimeError``) saying ``text``."""
    kind = getattr(builtins, name, None)
    same: Exception = RuntimeError(text)
    if isinstance(kind, type) and issubclass(kind, Exception):
        # A built-in that needs other arguments (UnicodeDecodeError) stays a RuntimeError.
        with contextlib.suppress(TypeError):
            same = kind(text)
    return same


def tensor_spec(tensors: dict[str, Tensor]) -> dict[str, tuple[tuple[int, ...], str]]:
    """Shape and dtype name of each tensor: what the receiving rank allocates."""
    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in tensors.items()}
