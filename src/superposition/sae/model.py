"""SparseAutoencoder: dictionary learning with five kinds of sparsity.

With pre-activations ``pre = (x - b_dec) W_enc + b_enc``, the latents ``z`` are (each kind is
one file of :mod:`superposition.sae.kinds`, which holds its rules):

* ``"topk"``: the ``k`` largest of each row, through ReLU; the rest 0 (Gao et al. 2024).
* ``"batchtopk"``: the batch's ``k·batch`` largest (training); above a learned threshold (after).
* ``"matryoshka"``: BatchTopK's, each of nested prefixes trained to reconstruct (Bussmann 2025).
* ``"jumprelu"``: ``pre`` where above a learned per-latent threshold ``θ_i``, trained with an
  L0 penalty ``l0`` (Rajamanoharan et al. 2024).
* ``"relu"``: ``ReLU(pre)``, trained with an L1 penalty ``l1`` scaled by the decoder norms
  (Anthropic, *Towards Monosemanticity*, 2023).

``x̂ = z W_dec + b_dec``; the rows of ``W_dec`` are the learned feature directions and stay at
unit norm. Inputs are scaled by ``input_scale`` (set on the first :meth:`~SparseAutoencoder.fit`
so that the mean squared norm is ``d_in``) before encoding and scaled back after decoding, so
``encode``/``decode``/``forward`` take and return the user's units while the parameters live in
the normalised space.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from superposition._checks import float_rows, generator, optional_device
from superposition._checks import positive_int as _positive_int
from superposition.sae.config import FitHistory, Schedule
from superposition.sae.evaluate import SAEMetrics, evaluate
from superposition.sae.formats import Format, load_folder, save_folder
from superposition.sae.formats.native import load_native, save_native
from superposition.sae.kinds import KINDS, Kind, SAEKind, build
from superposition.sae.kinds.jumprelu import DEFAULT_L0
from superposition.sae.kinds.relu import DEFAULT_L1
from superposition.sae.rownorm import RowNorm, normalise_rows, restore_rows
from superposition.sae.synthetic import SyntheticFeatures
from superposition.sae.train import fit

if TYPE_CHECKING:
    from superposition.plot import SAEPlots
    from superposition.probe.sites import Site
    from superposition.sae.fidelity import Fidelity

__all__ = ["DEFAULT_L0", "DEFAULT_L1", "KINDS", "Kind", "SAEMetrics", "SparseAutoencoder"]

_PARAM_DTYPES = (torch.float32, torch.float64)


class SparseAutoencoder(nn.Module):
    """A sparse autoencoder ``x → z → x̂`` with ``d_sae`` latents (module docstring for kinds).

    All parameters are views into one packed parameter ``params`` (so that the optimizer
    updates them in a handful of tensor operations): ``W_enc: [d_in, d_sae]``,
    ``b_enc: [d_sae]``, ``W_dec: [d_sae, d_in]`` (unit rows), ``b_dec: [d_in]`` and, for
    ``"jumprelu"``, ``log_threshold: [d_sae]``. The decoder starts as the transpose of the
    encoder (random unit directions).

    Args:
        d_in: input width.
        d_sae: number of latents.
        kind: ``"topk"``, ``"batchtopk"``, ``"jumprelu"`` or ``"relu"``.
        k: active latents per sample, for ``"topk"`` and ``"batchtopk"`` (required there).
        l1: L1 coefficient of ``"relu"`` (default ``DEFAULT_L1``).
        l0: L0 coefficient of ``"jumprelu"`` (default ``DEFAULT_L0``).
        seed: seed of the initialisation (and of training when ``fit`` gets no generator).
        device: where the parameters live (default the CPU); ``fit`` trains there and
            ``encode``/``decode``/``forward`` move their inputs there and return results
            there. The initialisation is drawn on the CPU, so a seed gives the same starting
            point on every device. ``.to(device)`` moves an SAE later.
        dtype: the parameters' dtype, ``torch.float32`` (default) or ``torch.float64``. For
            training in low precision see ``fit(autocast=torch.bfloat16)``.
        **options: further hyperparameters of kinds that take them (each kind's file in
            :mod:`superposition.sae.kinds` says which); refused by the others.

    Examples:
        >>> sae = SparseAutoencoder(4, 8, k=2, seed=0)
        >>> sae
        SparseAutoencoder(d_in=4, d_sae=8, kind='topk', k=2, seed=0)
        >>> z = sae.encode(torch.randn(3, 4))
        >>> z.shape, bool(((z != 0).sum(1) <= 2).all())  # at most k active (ReLU after TopK)
        (torch.Size([3, 8]), True)
        >>> sae(torch.randn(3, 4)).shape
        torch.Size([3, 4])
    """

    history: FitHistory | None
    scale: Tensor
    threshold: Tensor
    transcoder: ClassVar[bool] = False  # True for Transcoder: rows hold [x | y]
    skip: bool = False  # a linear path x W_skipᵀ beside the latents (skip transcoders only)
    row_norm: RowNorm = "none"  # SAELens's per-row normalize_activations (rownorm.py)

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        kind: Kind = "topk",
        k: int | None = None,
        l1: float | None = None,
        l0: float | None = None,
        seed: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        where = self._setup(
            d_in, d_in, d_sae, kind, {"k": k, "l1": l1, "l0": l0, **options}, seed, device, dtype
        )
        if where is not None:
            self.to(where)

    def _setup(
        self,
        d_in: int,
        d_out: int,
        d_sae: int,
        kind: Kind,
        options: dict[str, Any],
        seed: int | None,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> torch.device | None:
        """The constructor's work, shared with :class:`~superposition.Transcoder` (which reads
        ``d_in`` and writes ``d_out``): checks, the kind, the packed parameter and the
        buffers; returns the device to move to (``None``: stay on the CPU)."""
        if dtype is not None and dtype not in _PARAM_DTYPES:
            raise ValueError(
                f"dtype must be torch.float32 or torch.float64, got {dtype!r}; to train in "
                "bfloat16 or float16 keep float32 parameters and pass fit(autocast=torch.bfloat16)"
            )
        where = optional_device(device)
        self.d_in = _positive_int(d_in, "d_in")
        self.d_out = _positive_int(d_out, "d_out")
        self.d_sae = _positive_int(d_sae, "d_sae")
        rule = build(kind, self.d_in, self.d_sae, options)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.kind: Kind = kind
        self.rule: SAEKind = rule
        settings = rule.settings()
        self.k: int | None = settings.get("k")
        self.l1: float | None = settings.get("l1")
        self.l0: float | None = settings.get("l0")
        self.seed = seed
        self.history = None
        self.fitted = False
        self._layer: int | None = None
        self._site: Site | None = None

        g = generator(seed)
        dtype = dtype or torch.get_default_dtype()
        size = sum(math.prod(shape) for shape in self._shapes().values())
        self.params = nn.Parameter(torch.zeros(size, dtype=dtype))
        with torch.no_grad():
            views = self._views(self.params.data)
            f64 = torch.float64
            enc = torch.randn(d_sae, d_in, generator=g, dtype=f64)
            # An SAE's decoder starts tied (W_dec = W_encᵀ), a transcoder's independent of it.
            dec = torch.randn(d_sae, d_out, generator=g, dtype=f64) if self.transcoder else enc
            views["encT"].copy_(enc / enc.norm(dim=1, keepdim=True))
            views["W_dec"].copy_(dec / dec.norm(dim=1, keepdim=True))
            rule.init_parameters(views)
        self.register_buffer("scale", torch.tensor(1.0, dtype=dtype))
        self.register_buffer("threshold", torch.tensor(0.0, dtype=dtype))
        return where

    def _extra_slots(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the packed parameter's slots after the common four, by name: the
        kind's own (JumpReLU's ``log_threshold``), then a skip transcoder's ``W_skip``."""
        slots: dict[str, tuple[int, ...]] = {
            n: (s,) for n, s in self.rule.extra_parameters(self.d_in, self.d_sae).items()
        }
        if self.skip:
            slots["W_skip"] = (self.d_out, self.d_in)
        return slots

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        """The packed parameter's layout: ``encT``, ``W_dec``, ``b_dec``, ``b_enc``, then
        :meth:`_extra_slots`, in order."""
        n, d, o = self.d_sae, self.d_in, self.d_out
        common = {"encT": (n, d), "W_dec": (n, o), "b_dec": (o,), "b_enc": (n,)}
        return {**common, **self._extra_slots()}

    def _views(self, P: Tensor) -> dict[str, Tensor]:
        """Named views of a flat tensor laid out like ``params`` (:meth:`_shapes`)."""
        out, at = {}, 0
        for name, shape in self._shapes().items():
            out[name] = P[at : at + math.prod(shape)].view(shape)
            at += math.prod(shape)
        return out

    # ------------------------------------------------------------------ parameters

    @property
    def W_enc(self) -> Tensor:
        """``[d_in, d_sae]`` encoder (a transposed view: stored latent-major)."""
        return self._views(self.params)["encT"].T

    @property
    def W_dec(self) -> Tensor:
        """``[d_sae, d_in]`` decoder; row ``i`` is latent ``i``'s unit feature direction."""
        return self._views(self.params)["W_dec"]

    @property
    def b_enc(self) -> Tensor:
        """``[d_sae]`` encoder bias."""
        return self._views(self.params)["b_enc"]

    @property
    def b_dec(self) -> Tensor:
        """``[d_in]`` decoder bias (normalised space), also subtracted before encoding."""
        return self._views(self.params)["b_dec"]

    @property
    def log_threshold(self) -> Tensor:
        """``[d_sae]`` log of JumpReLU's per-latent thresholds (``"jumprelu"`` only)."""
        views = self._views(self.params)
        if "log_threshold" not in views:
            raise AttributeError(
                f"log_threshold only exists for kind='jumprelu', not {self.kind!r}"
            )
        return views["log_threshold"]

    @property
    def layer(self) -> int | None:
        """The layer the SAE reads, when known (``None`` otherwise): set by :meth:`load` from
        an SAELens ``hook_name`` or a sparsify hook point, by ``superposition sae train``, or
        by hand; saved with the SAE, and the default of :meth:`fidelity`."""
        return self._layer

    @layer.setter
    def layer(self, value: int | None) -> None:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ValueError(f"layer must be a non-negative int or None, got {value!r}")
        self._layer = value

    @property
    def site(self) -> Site | None:
        """The site of that layer (:mod:`superposition.probe.sites`), when known; a
        TransformerLens name is accepted and stored as the site it names."""
        return self._site

    @site.setter
    def site(self, value: str | None) -> None:
        from superposition.probe.sites import site_name

        self._site = None if value is None else site_name(value)

    @property
    def input_scale(self) -> float:
        """Factor applied to inputs before encoding (1 until the first ``fit``)."""
        return float(self.scale)

    def __repr__(self) -> str:
        out = f"d_out={self.d_out}, " if self.transcoder else ""
        args = f"d_in={self.d_in}, {out}d_sae={self.d_sae}, kind={self.kind!r}"
        for name, value in self.rule.settings().items():
            args += f", {name}={value}"
        if self.skip:
            args += ", skip=True"
        if self.seed is not None:
            args += f", seed={self.seed}"
        if self.params.device.type != "cpu":
            args += f", device={str(self.params.device)!r}"
        if self.params.dtype != torch.float32:
            args += f", dtype={self.params.dtype}"
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ model

    def _check_input(
        self, x: object, name: str = "x", *, move: bool = True, rows: bool = False
    ) -> Tensor:
        """Validate ``[batch, d_in]`` finite floats (``rows``: training rows, a transcoder's
        ``[x | y]``) as the parameters' dtype, on their device unless ``move=False``."""
        width, label = self.d_in, f"d_in={self.d_in}"
        if rows and self.transcoder:
            width, label = self.d_in + self.d_out, f"d_in + d_out={self.d_in + self.d_out}"
        built = f"the {'transcoder' if self.transcoder else 'SAE'} was built with {label}"
        x = float_rows(x, width, name, label, built)
        if move:
            return x.to(self.params.device, self.params.dtype, non_blocking=True)
        return x.to(self.params.dtype)

    def _scales(self) -> Tensor:
        """The normalisation (a copy): ``input_scale`` as a 0-d tensor. This and the next
        three answer the training loop for an SAE; :class:`~superposition.Transcoder`'s
        for rows ``[x | y]``."""
        return self.scale.clone()

    def _set_scales(self, scales: Tensor) -> None:
        self.scale.copy_(scales)

    def _row_scale(self, scales: Tensor) -> float | Tensor:
        """What a training row is multiplied by to enter the normalised space."""
        return float(scales)

    def _normalise(self, count: float, col_sq: Tensor, col_sum: Tensor) -> None:
        """Set the scale (mean squared norm ``d_in``) and ``b_dec`` (the mean) from the first
        training rows: their number, and the sums of each column's squares and values."""
        sq = float(col_sq.sum()) / count
        self.scale.fill_(math.sqrt(self.d_in / sq) if sq > 0 else 1.0)
        self.b_dec.copy_((col_sum / count).to(self.params.dtype) * self.scale)

    def pre_activations(self, x: Tensor) -> Tensor:
        """``(x · input_scale - b_dec) W_enc + b_enc``, ``[batch, d_sae]``, on the SAE's device
        (``x`` is moved there).

        Examples:
            >>> SparseAutoencoder(4, 8, k=2, seed=0).pre_activations(torch.zeros(1, 4)).abs().max()
            tensor(0., grad_fn=<MaxBackward1>)
        """
        x = normalise_rows(self._check_input(x), self.row_norm)
        return torch.addmm(self.b_enc, x * self.scale - self.b_dec, self.W_enc)

    def encode(self, x: Tensor) -> Tensor:
        """Latents ``z: [batch, d_sae]`` of inputs ``x: [batch, d_in]`` (user units).

        ``x`` may live on any device; it is moved to the SAE's, where ``z`` is returned.

        Examples:
            >>> sae = SparseAutoencoder(4, 8, kind="relu", seed=0)
            >>> bool((sae.encode(torch.randn(5, 4)) >= 0).all())
            True
        """
        return self.rule.encode(self, self.pre_activations(x))

    def decode(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        """Reconstructions ``[batch, d_in]`` (user units) of latents ``z: [batch, d_sae]``,
        on the SAE's device (``z`` is moved there); an SAE with a per-row :attr:`row_norm`
        needs the inputs ``x`` too, whose normalisation it undoes.

        Examples:
            >>> sae = SparseAutoencoder(4, 8, k=2, seed=0)
            >>> torch.allclose(sae.decode(torch.eye(8))[0], sae.W_dec[0])
            True
        """
        if not isinstance(z, Tensor) or z.ndim != 2 or z.shape[1] != self.d_sae:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"z must have shape [batch, d_sae={self.d_sae}], got {shape}")
        z = z.to(self.params.device, self.params.dtype, non_blocking=True)
        out = torch.addmm(self.b_dec, z, self.W_dec) / self.scale
        if self.row_norm == "none":
            return out
        if x is None:
            raise ValueError(f"an SAE with row_norm={self.row_norm!r} decodes with decode(z, x)")
        return restore_rows(out, self._check_input(x), self.row_norm)

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction ``x̂ = decode(encode(x), x)``, ``[batch, d_in]``, on the SAE's device."""
        return self.decode(self.encode(x), x)

    def _predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(z, output)`` of checked inputs ``x`` on the SAE's device."""
        z = self.encode(x)
        return z, self.decode(z, x)

    def fidelity(
        self, model: nn.Module, texts: Any, layer: int | None = None, **kwargs: Any
    ) -> Fidelity:
        """Loss recovered with this SAE spliced into ``layer`` (default :attr:`layer`, at
        :attr:`site`) against zero- and mean-ablation on ``texts``: see
        :func:`superposition.sae.fidelity.sae_fidelity`, whose keyword arguments it takes."""
        from superposition.sae.fidelity import sae_fidelity

        return sae_fidelity(self, model, texts, layer, **kwargs)

    @torch.no_grad()
    def evaluate(self, x: Tensor, *, batch_size: int | None = None) -> SAEMetrics:
        """Reconstruction quality on ``x: [samples, d_in]`` (see :class:`SAEMetrics`).

        ``x`` stays where it is; each batch of ``batch_size`` rows (default: about 64 MiB of
        latents) is moved to the SAE's device in turn, so memory stays bounded and a GPU SAE
        evaluates a CPU tensor larger than its memory.

        Examples:
            >>> sae = SparseAutoencoder(4, 8, k=2, seed=0)
            >>> m = sae.evaluate(torch.randn(100, 4))
            >>> m.samples, 0 < m.l0 <= 2, 0 <= m.dead_fraction <= 1
            (100, True, True)
        """
        return evaluate(self, x, batch_size)

    # ------------------------------------------------------------------ training

    def fit(
        self,
        source: Tensor | Iterable[Tensor] | SyntheticFeatures,
        *,
        samples: int,
        batch_size: int = 4096,
        lr: float | None = None,
        schedule: Schedule = "linear",
        warmup: float = 0.02,
        decay: float = 0.2,
        betas: tuple[float, float] = (0.9, 0.999),
        aux_k: int | None = None,
        aux_coef: float = 1.0,
        dead_after: int | None = None,
        bandwidth: float = 0.5,
        penalty_warmup: float = 0.1,
        log_every: int = 50,
        progress: bool = False,
        generator: torch.Generator | None = None,
        distributed: bool | None = None,
        autocast: torch.dtype | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        checkpoint_every: int | None = None,
        resume: str | os.PathLike[str] | None = None,
    ) -> SparseAutoencoder:
        """Train on ``samples`` samples with Adam and hand-written gradients (module
        :mod:`superposition.sae.train`).

        On the first call the input scale is set from the first batch (mean squared norm
        becomes ``d_in``) and ``b_dec`` starts at that batch's mean.

        Under ``torch.distributed`` (data parallel) each step takes ``batch_size`` rows on
        every rank and applies the mean gradient of all of them, the same step on every
        rank, so ``N`` ranks with ``batch_size=B`` train like one process with
        ``batch_size=N * B`` (dead latents are counted over all ranks; BatchTopK alone
        differs, choosing its top ``k * B`` within each rank's rows). A tensor or a
        :class:`~superposition.SyntheticFeatures` is drawn alike on every rank (pass the same
        one, and the same seed), and each rank keeps its slice of every batch; any other
        iterable is this rank's own data (an :class:`~superposition.ActivationStore` over
        its share of the corpus). ``samples`` counts the rows of all ranks. Save the SAE on
        rank 0: every rank ends with the same parameters.

        Training runs on the SAE's device; batches move there one at a time from wherever
        the source keeps them. The random stream is drawn on the CPU, so a seed picks the
        same batches on every device (results agree up to the device's round-off).

        **Checkpoints.** ``checkpoint="run/ckpt"`` writes the whole training state every
        ``checkpoint_every`` steps and at the end; ``resume="run/ckpt"`` continues such a run
        bit-identically (:mod:`superposition.sae.checkpoint` says what is kept and checked).

        Args:
            source: a tensor ``[n, d_in]`` (reshuffled every epoch), any iterable of
                ``[batch, d_in]`` tensors (re-batched to ``batch_size``), or a
                :class:`~superposition.SyntheticFeatures`.
            samples: training samples in all (steps = ``ceil(samples / batch_size)``).
            batch_size: samples per step.
            lr: peak learning rate of Adam; default
                :func:`~superposition.sae.train.default_lr` (4e-3 up to 512 latents, then
                falling as ``1 / sqrt(d_sae)``).
            schedule: decay over the last ``decay`` fraction: ``"linear"``, ``"cosine"`` or
                ``"constant"`` (none).
            warmup: fraction of steps of linear warm-up.
            decay: fraction of steps of the final decay.
            betas: Adam's ``(beta1, beta2)``.
            aux_k: latents of the AuxK loss (all kinds but ``"relu"``); default ``d_in // 2``.
            aux_coef: weight of the AuxK loss (as SAELens: 1, on the unnormalised squared
                error); 0 turns it off.
            dead_after: a latent that has not fired for this many samples counts as dead;
                default :func:`~superposition.sae.train.default_dead_after`.
            bandwidth: JumpReLU's straight-through kernel width (normalised units).
            penalty_warmup: fraction of steps over which the L1 (``"relu"``) or L0
                (``"jumprelu"``) coefficient ramps up linearly from 0.
            log_every: record batch statistics in ``self.history`` every this many steps.
            progress: show a tqdm progress bar.
            generator: randomness of shuffling / synthetic sampling; default: the synthetic
                source's own stream if it has a seed, else the model's seed, else fresh.
            distributed: ``None``: data parallel when a ``torch.distributed`` process group
                of more than one rank is initialised; ``True``: require one; ``False``: off.
            autocast: ``torch.bfloat16`` or ``torch.float16`` to run the dense forward
                products (the encoder's, the dominant cost, and for ``"relu"`` and
                ``"jumprelu"`` the decoder's) in that dtype, with float32 results; the
                parameters, gradients and Adam stay in the parameters' dtype. Measured on
                synthetic features, bfloat16 trains to nearly the same FVU (within 0.02).
                ``None`` (default): everything in the parameters' dtype.
            checkpoint: where to write the training state (``path`` as in :meth:`save`),
                after every ``checkpoint_every`` steps and at the end; its folder must exist.
            checkpoint_every: steps between checkpoints; ``None``: at the end only.
            resume: a checkpoint to continue from (often the same path as ``checkpoint``).

        Returns:
            ``self``, trained.

        Examples:
            >>> truth = SyntheticFeatures(16, 8, firing_probability=0.1, seed=0)
            >>> sae = SparseAutoencoder(8, 16, k=2, seed=0).fit(truth, samples=4096, batch_size=256)
            >>> len(sae.history.steps), sae.evaluate(truth.sample(512)).l0
            (2, 2.0)

            A run that writes a checkpoint every 4 steps; a fresh SAE resumed from the
            checkpoint (here the last one) ends exactly where the run ended:

            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as d:
            ...     kw = dict(samples=2048, batch_size=128, checkpoint=f"{d}/ckpt")
            ...     whole = SparseAutoencoder(8, 16, k=2, seed=0)
            ...     _ = whole.fit(truth, **kw, checkpoint_every=4)
            ...     again = SparseAutoencoder(8, 16, k=2, seed=0)
            ...     _ = again.fit(truth, **kw, resume=f"{d}/ckpt")
            >>> torch.equal(whole.params, again.params), again.history.fvu == whole.history.fvu
            (True, True)
        """
        fit(self, source, **{k: v for k, v in locals().items() if k not in ("self", "source")})
        return self

    @property
    def plot(self) -> SAEPlots:
        """Figures of this SAE (``superposition.plot.SAEPlots``), imported on first use."""
        from superposition.plot import SAEPlots

        return SAEPlots(self)

    # ------------------------------------------------------------------ persistence

    def config(self) -> dict[str, Any]:
        """The constructor arguments, as saved next to the weights.

        Examples:
            >>> SparseAutoencoder(4, 8, k=2).config()["kind"]
            'topk'
        """
        # k, l1 and l0 are saved for every kind (None where it takes none), as they always were.
        return {
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "kind": self.kind,
            "k": self.k,
            "l1": self.l1,
            "l0": self.l0,
            **self.rule.settings(),
            "seed": self.seed,
        }

    def save(self, path: str | Path, *, format: Format = "native") -> Path:
        """Save to ``path.safetensors`` (the weights, as CPU tensors from any device) and
        ``path.json`` (the config).

        ``path`` may be given with or without its ``.safetensors`` suffix. Nothing is pickled;
        both files are written atomically. Returns the weights' path.

        ``format="saelens"`` writes the folder ``path`` as SAELens writes one (``cfg.json`` +
        ``sae_weights.safetensors``, opened by SAELens's ``SAE.load_from_disk``);
        ``format="sparsify"`` as sparsify does (``cfg.json`` + ``sae.safetensors``, TopK
        SAEs only). See :mod:`superposition.sae.formats` for the conventions.

        Examples:
            >>> import tempfile, pathlib
            >>> sae = SparseAutoencoder(4, 8, k=2, seed=0)
            >>> with tempfile.TemporaryDirectory() as d:
            ...     p = sae.save(pathlib.Path(d) / "sae")
            ...     torch.equal(SparseAutoencoder.load(p).W_dec, sae.W_dec)
            True
        """
        if format != "native":
            return save_folder(self, Path(path), format)
        return save_native(self, path)

    @classmethod
    def from_pretrained(
        cls, release: str, sae_id: str, *, device: torch.device | str | None = None, **hub: Any
    ) -> SparseAutoencoder:
        """A pretrained dictionary by name, through SAELens's registry and the Hugging Face
        cache (``hub``: ``cache_dir=``, ``local_files_only=``); see
        :mod:`superposition.sae.formats.pretrained`.

        Examples:
            >>> SparseAutoencoder.from_pretrained("gpt2-small-res-jb", "blocks.99.hook_mlp_out")
            Traceback (most recent call last):
            ...
            ValueError: SAELens's release 'gpt2-small-res-jb' has no SAE 'blocks.99.hook_mlp_out'...
        """
        from superposition.sae.formats.pretrained import load_pretrained

        return load_pretrained(release, sae_id, optional_device(device), **hub)

    @classmethod
    def load(
        cls, path: str | Path, *, device: torch.device | str | None = None
    ) -> SparseAutoencoder:
        """Load an SAE written by :meth:`save` (``path`` with or without its suffix), onto
        ``device`` (default the CPU), in the dtype it was saved in.

        A folder is read as an SAELens folder (``cfg.json`` + ``sae_weights.safetensors``) or
        a sparsify one (``cfg.json`` + ``sae.safetensors``), whichever it holds; where such an
        SAE reads (SAELens's ``hook_name``, sparsify's hook point) becomes :attr:`layer` and
        :attr:`site`. See :mod:`superposition.sae.formats`.

        Examples:
            >>> SparseAutoencoder.load("missing")  # doctest: +IGNORE_EXCEPTION_DETAIL
            Traceback (most recent call last):
            FileNotFoundError: ...
        """
        where = optional_device(device)
        if Path(path).is_dir():
            return load_folder(Path(path), where)
        return load_native(cls, path, where)
