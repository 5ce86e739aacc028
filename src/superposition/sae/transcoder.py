"""Transcoder: a wide, sparse MLP trained to do an MLP's job, ``x → z → ŷ``.

An SAE reconstructs what it reads; a transcoder (Dunefsky, Chlenski & Nanda 2024) reads what an
MLP reads (``mlp_in``) and predicts what the MLP writes (``mlp_out``), so its latents stand in
for the MLP's neurons, and "neurons vs latents" compares like with like. With ``skip=True`` it
is a *skip transcoder* (Paulo, Shabalin & Belrose 2025): a linear path ``x W_skipᵀ``, starting
at 0, is added to the output::

    pre = x · input_scale · W_enc + b_enc          (no b_dec subtracted: x and y differ)
    z   = the kind's rule on pre                   (TopK, BatchTopK, JumpReLU, ReLU)
    ŷ   = (z W_dec + b_dec + x · input_scale · W_skipᵀ) / output_scale

**A class, not a flag.** A transcoder is a :class:`~superposition.SparseAutoencoder` in every
respect but its output (another width, another scale, an optional linear path), so it is a
subclass: the kinds, the hand-written training loop (:mod:`superposition.sae.gradients`,
which reconstructs ``y - x W_skipᵀ`` from ``x``), checkpoints, data parallelism, ``autocast``,
AuxK and evaluation are the SAE's. A separate class keeps each signature honest:
``Transcoder(d_in, d_out, d_sae, skip=...)`` and ``decode(z, x)`` would be noise on an SAE.

**Training rows.** The loop reads rows ``[x | y]`` of width ``d_in + d_out``: what
:class:`~superposition.SyntheticMLP` and an :class:`~superposition.ActivationStore` over a probe
of the sites ``["mlp_in", "mlp_out"]`` give; :meth:`Transcoder.fit` also takes a pair of
tensors ``(x, y)``. Inputs and outputs are scaled separately to mean squared norms ``d_in`` and
``d_out`` on the first batch, and ``b_dec`` starts at the mean output.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from superposition._checks import optional_device
from superposition.sae.config import Schedule
from superposition.sae.evaluate import SAEMetrics, check_outputs, evaluate
from superposition.sae.kinds import Kind
from superposition.sae.model import SparseAutoencoder
from superposition.sae.synthetic import SyntheticMLP

__all__ = ["Transcoder"]


class Transcoder(SparseAutoencoder):
    """A sparse MLP ``x → z → ŷ`` with ``d_sae`` latents, reading ``d_in`` and writing ``d_out``
    (module docstring for the formulas).

    Parameters are those of :class:`~superposition.SparseAutoencoder` with ``W_dec: [d_sae,
    d_out]`` and ``b_dec: [d_out]``, plus ``W_skip: [d_out, d_in]`` when ``skip``. Buffers:
    ``scale`` (``input_scale``) and ``output_scale``.

    Args:
        d_in: input width (what the MLP reads).
        d_out: output width (what the MLP writes).
        d_sae: number of latents.
        skip: add a linear path ``x W_skipᵀ`` (a skip transcoder), starting at 0.
        kind, k, l1, l0, seed, device, dtype, options: as for
            :class:`~superposition.SparseAutoencoder`.

    Examples:
        >>> tc = Transcoder(4, 6, 16, k=2, skip=True, seed=0)
        >>> tc
        Transcoder(d_in=4, d_out=6, d_sae=16, kind='topk', k=2, skip=True, seed=0)
        >>> x = torch.randn(3, 4)
        >>> tc(x).shape, tc.encode(x).shape, tc.W_skip.shape
        (torch.Size([3, 6]), torch.Size([3, 16]), torch.Size([6, 4]))
    """

    transcoder = True
    output_scale: Tensor

    def __init__(
        self,
        d_in: int,
        d_out: int,
        d_sae: int,
        *,
        skip: bool = False,
        kind: Kind = "topk",
        k: int | None = None,
        l1: float | None = None,
        l0: float | None = None,
        seed: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **options: Any,
    ) -> None:
        nn.Module.__init__(self)
        if not isinstance(skip, bool):
            raise ValueError(f"skip must be True or False, got {skip!r}")
        self.skip = skip
        options = {"k": k, "l1": l1, "l0": l0, **options}
        where = self._setup(d_in, d_out, d_sae, kind, options, seed, device, dtype)
        self.register_buffer("output_scale", torch.tensor(1.0, dtype=self.params.dtype))
        if where is not None:
            self.to(where)

    @property
    def W_skip(self) -> Tensor:
        """``[d_out, d_in]`` linear path of a skip transcoder (normalised space)."""
        views = self._views(self.params)
        if "W_skip" not in views:
            raise AttributeError("W_skip only exists for a skip transcoder (skip=True)")
        return views["W_skip"]

    @property
    def W_dec(self) -> Tensor:
        """``[d_sae, d_out]`` decoder; row ``i`` is where latent ``i`` writes (unit norm)."""
        return self._views(self.params)["W_dec"]

    @property
    def b_dec(self) -> Tensor:
        """``[d_out]`` output bias (normalised space)."""
        return self._views(self.params)["b_dec"]

    # ------------------------------------------------------------------ model

    def pre_activations(self, x: Tensor) -> Tensor:
        """``x · input_scale · W_enc + b_enc``, ``[batch, d_sae]``, on the transcoder's device.

        Examples:
            >>> tc = Transcoder(4, 6, 8, k=2, seed=0)
            >>> torch.equal(tc.pre_activations(torch.zeros(1, 4))[0], tc.b_enc)
            True
        """
        x = self._check_input(x)
        return torch.addmm(self.b_enc, x * self.scale, self.W_enc)

    def decode(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        """Outputs ``ŷ: [batch, d_out]`` (user units) of latents ``z: [batch, d_sae]``; a skip
        transcoder also needs its inputs ``x`` for the linear path.

        Examples:
            >>> tc = Transcoder(4, 6, 8, k=2, skip=True, seed=0)
            >>> tc.decode(torch.zeros(1, 8))
            Traceback (most recent call last):
            ...
            ValueError: a skip transcoder's output needs its input too: decode(z, x)
        """
        if not isinstance(z, Tensor) or z.ndim != 2 or z.shape[1] != self.d_sae:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"z must have shape [batch, d_sae={self.d_sae}], got {shape}")
        if self.skip and x is None:
            raise ValueError("a skip transcoder's output needs its input too: decode(z, x)")
        z = z.to(self.params.device, self.params.dtype, non_blocking=True)
        out = torch.addmm(self.b_dec, z, self.W_dec)
        if self.skip:
            xs = self._check_input(x) * self.scale
            if xs.shape[0] != z.shape[0]:
                rows = f"got {z.shape[0]} and {xs.shape[0]}"
                raise ValueError(f"z and x must have the same rows, {rows}")
            out = out.addmm(xs, self.W_skip.T)
        return out / self.output_scale

    def forward(self, x: Tensor) -> Tensor:
        """Output ``ŷ = decode(encode(x), x)``, ``[batch, d_out]``, on the transcoder's device."""
        return self.decode(self.encode(x), x)

    def _predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.encode(x)
        return z, self.decode(z, x)

    @torch.no_grad()
    def evaluate(  # type: ignore[override]
        self, x: Tensor, y: Tensor, *, batch_size: int | None = None
    ) -> SAEMetrics:
        """How well ``ŷ(x)`` predicts ``y: [samples, d_out]`` (FVU, MSE and shrinkage of ``y``;
        L0 and dead latents as for an SAE: :class:`~superposition.sae.evaluate.SAEMetrics`).

        Examples:
            >>> mlp = SyntheticMLP(16, 8, 6, firing_probability=0.1, seed=0)
            >>> tc = Transcoder(8, 6, 16, k=2, seed=0)
            >>> m = tc.evaluate(*mlp.sample(100))
            >>> m.samples, m.l0 <= 2  # at most k active (TopK, then ReLU)
            (100, True)
        """
        return evaluate(self, x, batch_size, y)

    # ------------------------------------------------------------------ training hooks

    def _scales(self) -> Tensor:
        """``[input_scale, output_scale]``."""
        return torch.stack([self.scale, self.output_scale])

    def _set_scales(self, scales: Tensor) -> None:
        self.scale.copy_(scales[0])
        self.output_scale.copy_(scales[1])

    def _row_scale(self, scales: Tensor) -> float | Tensor:
        s = scales.to(self.params.device, self.params.dtype)
        return torch.cat([s[0].expand(self.d_in), s[1].expand(self.d_out)])

    def _normalise(self, count: float, col_sq: Tensor, col_sum: Tensor) -> None:
        """Input and output each to mean squared norm ``d_in`` / ``d_out``; ``b_dec`` at the
        mean output."""
        d = self.d_in
        for buf, sq, width in (
            (self.scale, float(col_sq[:d].sum()) / count, d),
            (self.output_scale, float(col_sq[d:].sum()) / count, self.d_out),
        ):
            buf.fill_(math.sqrt(width / sq) if sq > 0 else 1.0)
        self.b_dec.copy_((col_sum[d:] / count).to(self.params.dtype) * self.output_scale)

    def fit(
        self,
        source: tuple[Tensor, Tensor] | Tensor | Iterable[Tensor] | SyntheticMLP,
        *,
        samples: int,
        batch_size: int = 4096,
        lr: float | None = None,
        schedule: Schedule = "linear",
        **kwargs: Any,
    ) -> Transcoder:
        """Train on pairs ``(x, y)``: a tuple of tensors ``([n, d_in], [n, d_out])``, rows
        ``[x | y]`` (a tensor ``[n, d_in + d_out]`` or an iterable of them, e.g. an
        :class:`~superposition.ActivationStore` over the sites ``["mlp_in", "mlp_out"]``), or
        a :class:`~superposition.SyntheticMLP`.

        Everything else is :meth:`SparseAutoencoder.fit`'s (its keyword arguments, checkpoints,
        data parallelism, ``autocast``); the loss is the squared error of ``y``, and
        :attr:`history`'s FVU is ``y``'s.

        Examples:
            >>> mlp = SyntheticMLP(16, 8, 6, firing_probability=0.1, seed=0)
            >>> tc = Transcoder(8, 6, 16, k=2, seed=0).fit(mlp, samples=2048, batch_size=256)
            >>> len(tc.history.steps)
            2
        """
        if isinstance(source, tuple):
            source = _pair_rows(self, source)
        super().fit(
            source,
            samples=samples,
            batch_size=batch_size,
            lr=lr,
            schedule=schedule,
            **kwargs,
        )
        return self

    # ------------------------------------------------------------------ persistence

    def config(self) -> dict[str, Any]:
        """The constructor arguments, as saved next to the weights.

        Examples:
            >>> Transcoder(4, 6, 8, k=2, skip=True).config()["d_out"]
            6
        """
        config = super().config()
        return {"d_in": self.d_in, "d_out": self.d_out, **config, "skip": self.skip}

    def save(self, path: str | Path, *, format: str = "native") -> Path:
        """Save to ``path.safetensors`` and ``path.json`` (this library's format; see
        :meth:`SparseAutoencoder.save`), or as the folder ``path`` with ``format="saelens"``
        (:mod:`superposition.sae.formats.saelens_transcoder`: ReLU, JumpReLU and BatchTopK
        transcoders) or ``format="sparsify"`` (TopK, ``d_out == d_in``).

        Examples:
            >>> import tempfile, pathlib
            >>> tc = Transcoder(4, 6, 8, k=2, skip=True, seed=0)
            >>> with tempfile.TemporaryDirectory() as d:
            ...     back = Transcoder.load(tc.save(pathlib.Path(d) / "tc"))
            >>> torch.equal(back.params, tc.params), back.skip
            (True, True)
        """
        if format == "saelens":
            from superposition.sae.formats.saelens_transcoder import save_saelens_transcoder

            return save_saelens_transcoder(self, Path(path))
        if format == "sparsify":
            from superposition.sae.formats.sparsify import save_sparsify_transcoder

            return save_sparsify_transcoder(self, Path(path))
        if format != "native":
            raise ValueError(
                f"format must be 'native', 'saelens' or 'sparsify', got format={format!r}"
            )
        return super().save(path)

    @classmethod
    def load(cls, path: str | Path, *, device: torch.device | str | None = None) -> Transcoder:
        """Load a transcoder written by :meth:`save`, or an SAELens or sparsify transcoder
        folder, onto ``device`` (default the CPU)."""
        from superposition.sae.formats.native import load_native

        if Path(path).is_dir():
            from superposition.sae.formats import detect
            from superposition.sae.formats.convert import read_config
            from superposition.sae.formats.saelens_transcoder import (
                TRANSCODER_ARCHITECTURES,
                load_saelens_transcoder,
            )

            folder = Path(path)
            if detect(folder) == "sparsify":
                from superposition.sae.formats.sparsify import load_sparsify_transcoder

                return load_sparsify_transcoder(folder, optional_device(device))
            cfg = read_config(folder / "cfg.json")
            if cfg.get("architecture") not in TRANSCODER_ARCHITECTURES:
                raise ValueError(
                    f"{str(path)!r} holds no SAELens transcoder (architecture one of "
                    f"{TRANSCODER_ARCHITECTURES}); an SAE folder loads with "
                    "SparseAutoencoder.load"
                )
            return load_saelens_transcoder(folder, cfg, optional_device(device))
        return cast(Transcoder, load_native(cls, path, optional_device(device)))


def _pair_rows(model: Transcoder, pair: tuple[object, ...]) -> Tensor:
    """``[x | y]`` of a pair of tensors, checked."""
    if len(pair) != 2:
        raise ValueError(f"source must be a pair (x, y), got a tuple of {len(pair)}")
    x = model._check_input(pair[0], "x", move=False)
    return torch.cat([x, check_outputs(model, x, pair[1])], 1)
