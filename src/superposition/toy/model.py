"""ToyModel: the toy models of Elhage et al. (2022), many instances trained at once.

Four variants, chosen by ``activation``:

==================  ===========================================  ==========================
``activation``      model                                        paper
==================  ===========================================  ==========================
``"linear"``        ``x' = WᵀWx + b``                            seed paper, Figure 1
``"relu"``          ``x' = ReLU(WᵀWx + b)``                      seed paper, Figure 1
``"relu_hidden"``   ``h = ReLU(Wx)``, ``x' = ReLU(Wᵀh + b)``     TMS, "privileged basis"
``"abs"``           ``h = ReLU(Wx)``, ``y' = ReLU(W_outᵀh + b)``  TMS, "computation in
                    trained towards ``|x|``                      superposition"
==================  ===========================================  ==========================

Every tensor has a leading ``instances`` dimension: instance ``k`` is an independent model with
its own sparsity and importance (see :class:`~superposition.toy.data.SparseFeatureDataset`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from superposition import metrics
from superposition._checks import generator
from superposition._checks import positive_int as _positive_int
from superposition._io import load_saved, save_with_config
from superposition.toy.data import FiniteFeatureDataset, SparseFeatureDataset
from superposition.toy.train import Schedule, TrainConfig, TrainHistory, train

if TYPE_CHECKING:
    from superposition.plot import ToyModelPlots

__all__ = ["Activation", "ToyModel"]

Activation = Literal["linear", "relu", "relu_hidden", "abs"]
ACTIVATIONS: tuple[Activation, ...] = ("linear", "relu", "relu_hidden", "abs")
_FORMAT_VERSION = 1


def _instance_major_normal(shape: tuple[int, int, int], g: torch.Generator) -> Tensor:
    """Standard normals where instance ``k`` gets the same values whatever ``shape[0]`` is.

    ``Tensor.normal_`` fills blocks of 16 and redraws the tail, so its first values depend on
    the total size; Box-Muller on serially drawn uniforms, laid out instance-major, does not.
    """
    u = torch.rand((shape[0], 2, shape[1] * shape[2]), generator=g, dtype=torch.float64)
    z = torch.sqrt(-2.0 * torch.log1p(-u[:, 0])) * torch.cos(2.0 * math.pi * u[:, 1])
    return z.view(shape).float()


class ToyModel(nn.Module):
    """A batch of toy models: ``n_features`` features through ``n_hidden`` dimensions.

    ``W``, ``b`` and (for ``activation="abs"``) ``W_out`` are views into one packed parameter,
    ``params: [instances, rows, n_features]``, so the optimizer updates all of them, for every
    instance, in a handful of tensor operations.

    Each instance's ``[n_hidden, n_features]`` matrix gets its own Xavier-normal init, std
    ``sqrt(2 / (n_hidden + n_features))``, so an instance starts the same whether it trains alone
    or beside 99 others. (The original TMS notebook applies ``xavier_normal_`` to the whole 3-D
    tensor, whose fans then include the number of instances: its init shrinks as instances are
    added.)

    Args:
        n_features: number of input features ``n``.
        n_hidden: hidden dimensions ``m``.
        n_instances: independent model instances trained side by side.
        activation: ``"linear"``, ``"relu"``, ``"relu_hidden"`` or ``"abs"`` (module docstring).
        seed: seed of the initialisation (and of the training data when the dataset has none).
        device: where the parameters live (default the CPU); ``fit`` trains there, drawing its
            batches with a generator on that device, and ``forward`` moves its inputs there.
            The initialisation is drawn on the CPU, so a seed starts the same everywhere.

    Examples:
        >>> model = ToyModel(5, 2, n_instances=3, seed=0)
        >>> model
        ToyModel(n_features=5, n_hidden=2, n_instances=3, seed=0)
        >>> model.W.shape, model.b.shape
        (torch.Size([3, 2, 5]), torch.Size([3, 5]))
        >>> model(torch.rand(7, 3, 5)).shape
        torch.Size([7, 3, 5])
    """

    history: TrainHistory | None

    def __init__(
        self,
        n_features: int,
        n_hidden: int,
        *,
        n_instances: int = 1,
        activation: Activation = "relu",
        seed: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        try:
            where = None if device is None else torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(
                f"device must be a torch.device or a string such as 'cpu' or 'cuda:0', "
                f"got {device!r}"
            ) from err
        self.n_features = _positive_int(n_features, "n_features")
        self.n_hidden = _positive_int(n_hidden, "n_hidden")
        self.n_instances = _positive_int(n_instances, "n_instances")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.activation: Activation = activation
        self.seed = seed
        self.history = None

        rows = (2 if activation == "abs" else 1) * n_hidden + 1
        g = generator(seed)
        params = torch.zeros(n_instances, rows, n_features)
        std = math.sqrt(2.0 / (n_hidden + n_features))  # xavier_normal_ of one [m, n] matrix
        params[:, : rows - 1] = std * _instance_major_normal((n_instances, rows - 1, n_features), g)
        self.params = nn.Parameter(params)
        if where is not None:
            self.to(where)

    # ------------------------------------------------------------------ parameters

    @property
    def W(self) -> Tensor:
        """``[instances, n_hidden, n_features]`` embedding; column ``i`` is ``W_i``."""
        return self.params[:, : self.n_hidden]

    @property
    def b(self) -> Tensor:
        """``[instances, n_features]`` output bias."""
        return self.params[:, -1]

    @property
    def W_out(self) -> Tensor:
        """``[instances, n_hidden, n_features]`` output weights (``W`` unless ``"abs"``)."""
        if self.activation == "abs":
            return self.params[:, self.n_hidden : 2 * self.n_hidden]
        return self.W

    def __repr__(self) -> str:
        args = f"n_features={self.n_features}, n_hidden={self.n_hidden}"
        if self.n_instances != 1:
            args += f", n_instances={self.n_instances}"
        if self.activation != "relu":
            args += f", activation={self.activation!r}"
        if self.seed is not None:
            args += f", seed={self.seed}"
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ model

    def _check_x(self, x: Tensor) -> Tensor:
        if (
            not isinstance(x, Tensor)
            or x.ndim != 3
            or x.shape[1:]
            != (
                self.n_instances,
                self.n_features,
            )
        ):
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"x must have shape [batch, {self.n_instances}, {self.n_features}] "
                f"(batch, instances, features), got {shape}"
            )
        return x.to(self.params.device)

    def hidden(self, x: Tensor) -> Tensor:
        """Hidden activations ``h``: ``Wx``, or ``ReLU(Wx)`` for the ReLU-hidden variants.

        Args:
            x: ``[batch, instances, n_features]``.

        Returns:
            ``[batch, instances, n_hidden]``.

        Examples:
            >>> ToyModel(4, 2, activation="relu_hidden", seed=0).hidden(torch.rand(3, 1, 4)).min()
            tensor(0., grad_fn=<MinBackward1>)
        """
        x = self._check_x(x)
        h = torch.einsum("bif,ihf->bih", x, self.W)
        return torch.relu(h) if self.activation in ("relu_hidden", "abs") else h

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction ``x'`` (or ``|x|``'s estimate for ``"abs"``).

        Args:
            x: ``[batch, instances, n_features]``.

        Returns:
            ``[batch, instances, n_features]``.
        """
        h = self.hidden(x)
        out = torch.einsum("bih,ihf->bif", h, self.W_out) + self.b
        return out if self.activation == "linear" else torch.relu(out)

    def target(self, x: Tensor) -> Tensor:
        """What the model is trained to output: ``x``, or ``|x|`` for ``"abs"``.

        Examples:
            >>> ToyModel(2, 1, activation="abs", seed=0).target(torch.tensor([[[-0.5, 0.5]]]))
            tensor([[[0.5000, 0.5000]]])
        """
        return x.abs() if self.activation == "abs" else x

    def losses(self, x: Tensor, importance: Tensor | float = 1.0) -> Tensor:
        """Importance-weighted squared error of each instance, ``[instances]``.

        ``mean over batch and features of I_i (target_i - x'_i)^2``.

        Args:
            x: ``[batch, instances, n_features]``.
            importance: ``[instances, n_features]`` (or broadcastable) feature importances.

        Examples:
            >>> model = ToyModel(3, 3, activation="linear", n_instances=2, seed=0)
            >>> model.losses(torch.zeros(1, 2, 3))
            tensor([0., 0.], grad_fn=<MeanBackward1>)
        """
        x = self._check_x(x)
        err: Tensor = self.target(x) - self(x)
        imp = torch.as_tensor(importance, dtype=err.dtype, device=err.device)
        weighted: Tensor = imp * err.square()
        return weighted.mean((0, 2))

    def loss(self, x: Tensor, importance: Tensor | float = 1.0) -> Tensor:
        """The training loss: :meth:`losses` summed over instances (so they train independently).

        Examples:
            >>> ToyModel(3, 2, seed=0).loss(torch.zeros(4, 1, 3))
            tensor(0., grad_fn=<SumBackward0>)
        """
        return self.losses(x, importance).sum()

    # ------------------------------------------------------------------ training

    def fit(
        self,
        data: SparseFeatureDataset | FiniteFeatureDataset,
        steps: int = 10_000,
        batch_size: int | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        schedule: Schedule = "constant",
        warmup_steps: int = 0,
        log_every: int | None = None,
        progress: bool = True,
        generator: torch.Generator | None = None,
    ) -> ToyModel:
        """Train every instance at once with AdamW on the importance-weighted squared error.

        The defaults are the TMS notebook's recipe. Gradients are computed in closed form and
        the AdamW update is fused (see :mod:`superposition.toy.train`); the result equals what
        ``torch.optim.AdamW`` and autograd give, up to float round-off. The products follow
        ``torch.set_float32_matmul_precision``: under ``"medium"``, on CPUs with bfloat16 units,
        oneDNN computes them from bfloat16 parts (about 16 bits of each operand on
        ``avx512_bf16`` CPUs; a single bfloat16 pass, ~2^-8 relative, on CPUs with AMX),
        1.3-1.4x faster at ``n=200, m=20`` with the same final loss (``benchmarks/bench_toy.py``).

        Args:
            data: the input distribution, or a finite training set
                (:meth:`SparseFeatureDataset.finite`) to train on full-batch; its
                ``n_features`` and ``n_instances`` must match.
            steps: optimizer steps.
            batch_size: samples per step (per instance); 1024 by default. A finite training
                set is always used whole.
            lr: peak learning rate.
            weight_decay: decoupled (AdamW) weight decay, applied to every parameter.
            betas: Adam's ``(beta1, beta2)``.
            eps: Adam's epsilon.
            schedule: ``"constant"``, ``"linear"`` (to 0), ``"cosine"`` (to 0), or a function
                ``(step, steps) -> multiplier`` of ``lr``.
            warmup_steps: linear warm-up before the schedule.
            log_every: record per-instance losses every this many steps in ``self.history``.
            progress: show a tqdm progress bar.
            generator: randomness for the training batches; defaults to the dataset's seed,
                else the model's seed, else fresh entropy. On the CPU one draw of it seeds a
                stream per instance, so instance ``i`` trains the same in any sweep whose first
                ``i + 1`` instances match, on any number of threads.

        Returns:
            ``self``, trained.

        Examples:
            >>> data = SparseFeatureDataset(5, feature_probability=[1.0, 0.05], seed=0)
            >>> model = ToyModel(5, 2, n_instances=2, seed=0).fit(data, steps=20, progress=False)
            >>> model.W.shape
            torch.Size([2, 2, 5])
        """
        if not isinstance(data, (SparseFeatureDataset, FiniteFeatureDataset)):
            raise TypeError(
                "data must be a SparseFeatureDataset or a FiniteFeatureDataset, "
                f"got {type(data).__name__}"
            )
        if isinstance(data, FiniteFeatureDataset):
            if batch_size is not None and batch_size != data.n_points:
                raise ValueError(
                    f"a finite training set of {data.n_points} points trains full-batch; got "
                    f"batch_size={batch_size!r}: leave batch_size out"
                )
            batch_size = data.n_points
        elif batch_size is None:
            batch_size = 1024
        if (data.n_instances, data.n_features) != (self.n_instances, self.n_features):
            raise ValueError(
                f"data has n_instances={data.n_instances}, n_features={data.n_features} but the "
                f"model has n_instances={self.n_instances}, n_features={self.n_features}; "
                f"build the model with n_instances=data.n_instances"
            )
        if (data.distribution == "signed") != (self.activation == "abs"):
            raise ValueError(
                f"activation={self.activation!r} expects distribution="
                f"{'signed' if self.activation == 'abs' else 'uniform'!r}, "
                f"got distribution={data.distribution!r}"
            )
        config = TrainConfig(
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            betas=betas,
            eps=eps,
            schedule=schedule,
            warmup_steps=warmup_steps,
            log_every=log_every,
        )
        if generator is None:
            if isinstance(data, FiniteFeatureDataset):
                generator = torch.Generator().manual_seed(0)  # unused: no batches are drawn
            elif data.seed is None and self.seed is not None:
                generator = torch.Generator().manual_seed(self.seed + 1)
            else:
                generator = data.generator()
        self.history = train(self, data, config, generator=generator, progress=progress)
        return self

    # ------------------------------------------------------------------ views

    def feature_norms(self) -> Tensor:
        """``||W_i||`` of each feature, ``[instances, n_features]`` (``metrics.feature_norms``).

        Examples:
            >>> ToyModel(3, 2, n_instances=4, seed=0).feature_norms().shape
            torch.Size([4, 3])
        """
        return metrics.feature_norms(self.W.detach())

    def interference(self) -> Tensor:
        """``sum_{j!=i} (Ŵ_i·W_j)^2`` of each feature, ``[instances, n_features]``.

        Examples:
            >>> ToyModel(3, 2, seed=0).interference().shape
            torch.Size([1, 3])
        """
        return metrics.interference(self.W.detach())

    def feature_dimensionality(self) -> Tensor:
        """``D_i`` of each feature, ``[instances, n_features]`` (via ``superposition.metrics``).

        Examples:
            >>> float(ToyModel(3, 2, seed=0).feature_dimensionality().sum()) <= 2 + 1e-5
            True
        """
        return metrics.feature_dimensionality(self.W.detach())

    def dimensions_per_feature(self) -> Tensor:
        """``n_hidden / ||W||_F^2`` of each instance, ``[instances]``.

        Examples:
            >>> ToyModel(3, 2, n_instances=2, seed=0).dimensions_per_feature().shape
            torch.Size([2])
        """
        return metrics.dimensions_per_feature(self.W.detach())

    @property
    def plot(self) -> ToyModelPlots:
        """Figures of this model (``superposition.plot.ToyModelPlots``), imported on first use."""
        from superposition.plot import ToyModelPlots

        return ToyModelPlots(self)

    # ------------------------------------------------------------------ persistence

    def config(self) -> dict[str, Any]:
        """The constructor arguments, as saved next to the weights.

        Examples:
            >>> ToyModel(3, 2, seed=0).config()["activation"]
            'relu'
        """
        return {
            "n_features": self.n_features,
            "n_hidden": self.n_hidden,
            "n_instances": self.n_instances,
            "activation": self.activation,
            "seed": self.seed,
        }

    def save(self, path: str | Path) -> Path:
        """Save to ``path.safetensors`` (the weights) and ``path.json`` (the config).

        ``path`` may be given with or without its ``.safetensors`` suffix. Nothing is pickled;
        both files are written atomically with the umask's permissions. Returns the weights'
        path.

        Examples:
            >>> import tempfile, pathlib
            >>> model = ToyModel(3, 2, seed=0)
            >>> with tempfile.TemporaryDirectory() as d:
            ...     p = model.save(pathlib.Path(d) / "toy")
            ...     torch.equal(ToyModel.load(p).W, model.W)
            True
        """
        tensors = {"W": self.W, "b": self.b}
        if self.activation == "abs":
            tensors["W_out"] = self.W_out
        meta = {"format_version": _FORMAT_VERSION, "config": self.config()}
        return save_with_config(path, tensors, meta)

    @classmethod
    def load(cls, path: str | Path, *, device: torch.device | str | None = None) -> ToyModel:
        """Load a model written by :meth:`save` (``path`` with or without its suffix), onto
        ``device`` (default the CPU).

        Examples:
            >>> ToyModel.load("missing")  # doctest: +IGNORE_EXCEPTION_DETAIL
            Traceback (most recent call last):
            FileNotFoundError: ...
        """
        tensors, meta = load_saved(path, "ToyModel", _FORMAT_VERSION)
        model = cls(**meta["config"], device=device)
        with torch.no_grad():
            model.W.copy_(tensors["W"])
            model.b.copy_(tensors["b"])
            if model.activation == "abs":
                model.W_out.copy_(tensors["W_out"])
        return model
