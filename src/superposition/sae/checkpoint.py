"""Checkpoints of the SAE training loop: what a run writes (the whole training state, atomically)
and how a resumed run reads it back, refusing one written by another SAE, fit or source.

With ``checkpoint="run/ckpt"`` the whole training state is written
to ``run/ckpt.safetensors`` (parameters, Adam's moments, BatchTopK's threshold, the
input scale, each latent's samples since it fired, the generator's state at the start
of the run; the step, samples seen, history so far and the run's settings in its
header) and ``run/ckpt.json`` (the same settings and history, readable), every
``checkpoint_every`` steps and at the end, each file replaced atomically. Under
``torch.distributed`` rank 0 alone writes: every rank holds the same state.
``resume="run/ckpt"`` continues such a run: call it on an SAE built with the same
arguments, with the same source (rebuilt as it was at the start: the same tensor, the
same :class:`~superposition.SyntheticFeatures`, a fresh
:class:`~superposition.ActivationStore` over the same corpus) and the same fit
arguments and number of ranks; anything else that the checkpoint records is refused
with a ``ValueError`` before any work. The final parameters and history are then
bit-identical (on the CPU) to those of the run had it not stopped. The data stream
continues by replaying it: the generator is set back to its state at the start of
the run and the batches of the steps already done are drawn and thrown away (no
gradients). For a tensor that is one permutation per epoch; a
:class:`~superposition.SyntheticFeatures` samples them again (a fraction of a
step's cost); any other iterable is read again up to that point (an
:class:`~superposition.ActivationStore` runs the language model again over those
texts: as long as the training so far took, less the SAE's share).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from superposition.sae.config import FitConfig, FitHistory, StepNumbers

if TYPE_CHECKING:
    from superposition.sae.model import SparseAutoencoder

__all__ = [
    "CHECKPOINT_FORMAT",
    "HISTORY_FIELDS",
    "CheckpointPlan",
    "Resume",
    "read_checkpoint",
    "run_identity",
    "write_checkpoint",
]

CHECKPOINT_FORMAT = 1


# What a checkpoint keeps of the FitHistory (all but its config, which the run passes again).
HISTORY_FIELDS = ("steps", "samples", "mse", "fvu", "l0", "dead")


@dataclass
class Resume:
    """A run's state between two steps, read back by :func:`read_checkpoint`.

    ``step`` steps are done (``seen`` samples); the tensors are on the CPU.
    ``generator_state`` is the state of the run's generator when the run began (the data
    stream is rebuilt from it and fast-forwarded ``step`` batches). ``pending`` holds the
    numbers of the last step done when ``history`` did not record them (they are recorded
    only if the run ends right there, as an uninterrupted run would).
    """

    step: int
    seen: int
    params: Tensor
    m: Tensor
    v: Tensor
    since_fired: Tensor
    threshold: Tensor
    scale: Tensor
    generator_state: Tensor
    history: FitHistory
    pending: StepNumbers | None


@dataclass(frozen=True)
class CheckpointPlan:
    """Where and how often :func:`~superposition.sae.train.train` writes its state.

    ``every``: steps between checkpoints (``None``: only at the end). ``identity``: what a
    resumed run must match (:func:`run_identity`). ``generator_state``: the run's generator
    before its first draw.
    """

    path: str | os.PathLike[str]
    every: int | None
    identity: dict[str, Any]
    generator_state: Tensor


def run_identity(
    model: SparseAutoencoder,
    config: FitConfig,
    world_size: int,
    source: object,
    autocast: torch.dtype | None,
) -> dict[str, Any]:
    """What a checkpoint records of the run that wrote it, and a resumed run must match:
    the SAE's constructor arguments and dtype, the fit's settings, the number of ranks, the
    source's type (and rows, for a tensor) and the autocast dtype. JSON values.

    Examples:
        >>> from superposition.sae.model import SparseAutoencoder
        >>> sae = SparseAutoencoder(4, 8, k=2, seed=0)
        >>> run_identity(sae, FitConfig(samples=64), 1, torch.zeros(10, 4), None)["source"]
        {'type': 'Tensor', 'rows': 10}
    """
    about: dict[str, Any] = {"type": type(source).__name__}
    if isinstance(source, Tensor):
        about["rows"] = int(source.shape[0])
    identity = {
        "sae": {**model.config(), "dtype": str(model.params.dtype)},
        "fit": {**asdict(config), "world_size": world_size, "autocast": str(autocast)},
        "source": about,
    }
    # Through JSON, so that it compares equal to what a checkpoint read back holds.
    return dict(json.loads(json.dumps(identity)))


def write_checkpoint(
    path: str | os.PathLike[str], tensors: dict[str, Tensor], meta: dict[str, Any]
) -> None:
    """Write a checkpoint: ``path.safetensors`` (tensors, and ``meta`` in its header) then
    ``path.json`` (``meta`` again, for people and tools), each replaced atomically.

    The tensor file alone is what :func:`read_checkpoint` reads, so a run killed between
    the two writes leaves a whole, usable checkpoint (the JSON one step behind).
    """
    from safetensors.torch import save_file

    from superposition import _io

    flat = {k: t.detach().cpu().contiguous() for k, t in tensors.items()}
    # The checksum rides in the state's JSON: one header key keeps the file byte-identical
    # between runs (safetensors orders a header of several keys at random).
    text = json.dumps({**meta, "digest": _io.tensor_digest(flat)}, indent=1)
    weights, sidecar = _io.saved_paths(path)
    with _io.atomic_path(weights) as temp:
        save_file(flat, str(temp), metadata={"checkpoint": text})
    _io.atomic_write(sidecar, text + "\n")


def _differences(theirs: dict[str, Any], ours: dict[str, Any]) -> str:
    keys = [k for k in {**theirs, **ours} if theirs.get(k) != ours.get(k)]
    return ", ".join(f"{k}={theirs.get(k)!r} there but {ours.get(k)!r} here" for k in keys)


def read_checkpoint(path: str | os.PathLike[str], identity: dict[str, Any]) -> Resume:
    """The state in the checkpoint at ``path``, checked against this run's ``identity``
    (:func:`run_identity`) before anything is changed.

    Raises:
        FileNotFoundError: there is no checkpoint at ``path``.
        ValueError: it was written by another format version, or by a run with another
            SAE, other fit arguments, another number of ranks or another kind of source.
    """
    from safetensors import safe_open

    from superposition import _io

    weights, _ = _io.saved_paths(path)
    if not weights.exists():
        raise FileNotFoundError(
            f"cannot resume from {str(path)!r}: {str(weights)!r} does not exist; pass the "
            "checkpoint= path of the run to resume"
        )
    with (
        _io.damaged(weights, "checkpoint (rerun without resume=)"),
        safe_open(str(weights), "pt") as f,
    ):
        header = f.metadata() or {}
    try:
        meta = json.loads(header["checkpoint"])
    except (KeyError, ValueError) as err:
        raise ValueError(
            f"{str(weights)!r} is not a checkpoint of SparseAutoencoder.fit (its header holds "
            "no checkpoint state); pass the checkpoint= path of the run to resume"
        ) from err
    if meta.get("format_version") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{str(weights)!r} has checkpoint format_version {meta.get('format_version')!r}, "
            f"expected {CHECKPOINT_FORMAT}; it was written by another version of superposition"
        )
    for part, what in (("sae", "an SAE with"), ("fit", "a fit with"), ("source", "a source")):
        if meta[part] != identity[part]:
            raise ValueError(
                f"cannot resume from {str(path)!r}: it was written by {what} "
                f"{_differences(meta[part], identity[part])}; resume with the SAE, fit "
                "arguments and source of the run that wrote it (or start afresh without resume=)"
            )
    t, _ = _io.read_tensors(weights, "checkpoint (rerun without resume=)")
    _io.check_digest(
        weights,
        meta.get("digest"),
        t,
        "start afresh without resume= (or resume from a copy of an earlier checkpoint)",
    )
    history = FitHistory(**{k: meta["history"][k] for k in HISTORY_FIELDS})
    pending = meta["pending"]
    return Resume(
        step=meta["step"],
        seen=meta["seen"],
        params=t["params"],
        m=t["m"],
        v=t["v"],
        since_fired=t["since_fired"],
        threshold=t["threshold"],
        scale=t["input_scale"],
        generator_state=t["generator_state"],
        history=history,
        pending=None if pending is None else StepNumbers(*pending),
    )
