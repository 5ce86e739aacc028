"""Memorization and double descent (Henighan et al., 2023) on finite training sets.

"Superposition, Memorization, and Double Descent" trains the ReLU-output toy model full-batch on
``T`` points for a range of ``T``. Small ``T``: the model memorizes, storing the *training
points* in superposition (their hidden vectors form a polygon; high data dimensionality). Large
``T``: it stores *features* (high feature dimensionality) and generalizes. In between, test
loss peaks: double descent.

:func:`sweep` runs the experiment and :func:`double_descent` turns it into a report section
(metrics, figures, claims).

Deviations from the paper (n = 10,000 features, m = 2, S = 0.999, 50,000 steps at lr 1e-3):
the full run is the ARENA replication's scale (n = 1,000, S = 0.99, 2,500 warm-up steps then
cosine, weight decay 1e-2) with 10,000 steps at lr 1e-2 to fit a CPU budget; ``quick`` uses
n = 200, S = 0.98, 3,000 steps (300 warm-up). Each ``T`` trains several instances (own
training set, own initialization), and the curve is their median.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from superposition import metrics
from superposition.report.html import Claim, Report, Section
from superposition.toy.data import SparseFeatureDataset
from superposition.toy.model import ToyModel

__all__ = ["DoubleDescentResult", "dimensionality_share", "double_descent", "sweep"]


@dataclass(frozen=True)
class DoubleDescentResult:
    """What :func:`sweep` measured, one row per training-set size.

    Attributes:
        sizes: the training-set sizes ``T``.
        test_loss: ``[len(sizes), instances]`` loss on fresh points.
        train_loss: ``[len(sizes), instances]`` loss on the training points.
        data_dimensionality: ``[len(sizes), instances]`` norm-weighted mean data
            dimensionality of the training points (:func:`dimensionality_share`).
        feature_dimensionality: ``[len(sizes), instances]`` the same for the features.
        W: one ``[n_hidden, n_features]`` weight matrix per size (first instance).
        hidden: one ``[T, n_hidden]`` matrix of training hidden vectors per size (first
            instance).
        baseline: loss of the zero output, ``p E[x^2] = p / 3`` per feature (importance 1).
    """

    sizes: list[int]
    test_loss: Tensor
    train_loss: Tensor
    data_dimensionality: Tensor
    feature_dimensionality: Tensor
    W: list[Tensor]
    hidden: list[Tensor]
    baseline: float

    @property
    def median_test_loss(self) -> Tensor:
        """``[len(sizes)]`` median over instances."""
        return self.test_loss.median(-1).values

    @property
    def peak(self) -> int:
        """The ``T`` with the highest median test loss."""
        return self.sizes[int(self.median_test_loss.argmax())]


def dimensionality_share(V: Tensor) -> Tensor:
    """Norm-weighted mean dimensionality of the columns of ``V: [..., dim, count]``.

    ``sum_i ||V_i||^2 D_i / sum_i ||V_i||^2``: the dimensionality of a typical *large* vector,
    so that the many near-zero features of a memorizing model (or the near-zero hidden vectors
    of points that activate no stored feature) do not count. ``T`` equal points on a polygon
    give ``2 / T``; a pentagon of features gives ``2 / 5``.

    Examples:
        >>> dimensionality_share(torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]]))
        tensor(0.6667)
    """
    D = metrics.feature_dimensionality(V)
    sq = V.square().sum(-2)
    return (sq * D).sum(-1) / sq.sum(-1).clamp_min(1e-30)


def sweep(
    sizes: list[int],
    *,
    n_features: int = 200,
    n_hidden: int = 2,
    sparsity: float = 0.98,
    n_instances: int = 12,
    steps: int = 3_000,
    warmup_steps: int = 300,
    lr: float = 1e-2,
    weight_decay: float = 1e-2,
    n_test: int = 4_096,
    seed: int = 0,
    progress: bool = False,
) -> DoubleDescentResult:
    """Train on finite training sets of each size and measure test loss and dimensionalities.

    Each size trains ``n_instances`` models at once, each on its own ``T`` points
    (:meth:`SparseFeatureDataset.finite`), full-batch, AdamW with linear warm-up then cosine
    decay, importance 1, the ReLU-output model.

    Args:
        sizes: training-set sizes ``T``.
        n_features: ``n``.
        n_hidden: ``m``.
        sparsity: ``S``.
        n_instances: models per size.
        steps: optimizer steps per size.
        warmup_steps: linear warm-up steps.
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        n_test: fresh points per instance for the test loss.
        seed: seeds the training sets, the test sets and the initializations.
        progress: print one line per size.

    Examples:
        >>> r = sweep([3, 30], n_features=20, sparsity=0.9, n_instances=2, steps=50,
        ...           warmup_steps=5, n_test=256)
        >>> r.test_loss.shape
        torch.Size([2, 2])
    """
    if not sizes or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in sizes):
        raise ValueError(f"sizes must be a non-empty list of positive ints, got {sizes!r}")
    data = SparseFeatureDataset(n_features, sparsity=sparsity, n_instances=n_instances)
    rows: dict[str, list[Tensor]] = {k: [] for k in ("test", "train", "data", "feat")}
    Ws: list[Tensor] = []
    hs: list[Tensor] = []
    for i, T in enumerate(sizes):
        train = data.finite(T, seed=seed * 1_000_003 + 2 * i)
        model = ToyModel(n_features, n_hidden, n_instances=n_instances, seed=seed + 7919 * i)
        model.fit(
            train,
            steps=steps,
            lr=lr,
            weight_decay=weight_decay,
            schedule="cosine",
            warmup_steps=warmup_steps,
            progress=False,
        )
        with torch.no_grad():
            x_test = train.test_set(n_test, seed=seed * 1_000_003 + 2 * i + 1)
            rows["test"].append(model.losses(x_test))
            rows["train"].append(model.losses(train.x))
            H = model.hidden(train.x).permute(1, 2, 0)  # [instances, hidden, T]
            rows["data"].append(dimensionality_share(H))
            rows["feat"].append(dimensionality_share(model.W))
            Ws.append(model.W[0].clone())
            hs.append(H[0].T.clone())
        if progress:
            print(
                f"T={T}: test loss {float(rows['test'][-1].median()):.4g}, train loss "
                f"{float(rows['train'][-1].median()):.4g}",
                flush=True,
            )
    return DoubleDescentResult(
        sizes=list(sizes),
        test_loss=torch.stack(rows["test"]),
        train_loss=torch.stack(rows["train"]),
        data_dimensionality=torch.stack(rows["data"]),
        feature_dimensionality=torch.stack(rows["feat"]),
        W=Ws,
        hidden=hs,
        baseline=(1 - sparsity) / 3,
    )


QUICK_SIZES = [3, 10, 30, 100, 300, 1000]
FULL_SIZES = [3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]


def double_descent(rep: Report, *, quick: bool, seed: int, progress: bool) -> None:
    """The report section: run :func:`sweep`, add its figures, numbers and verdicts to ``rep``.

    Args:
        rep: the report being built (``rep.metrics["double_descent"]`` gets the numbers).
        quick: the small setting (n = 200, S = 0.98, 3,000 steps, 6 instances; ~10 s) instead of
            the ARENA-scale one (n = 1,000, S = 0.99, 10,000 steps).
        seed: seeds everything.
        progress: print one line per training-set size.
    """
    from superposition.plot import memorization as plot

    if quick:
        # 6 instances per size, not 12: the largest T costs most (its [instances, T, n]
        # batch), and the peak stays inside the grid (T = 100 for seeds 0-4; 30 for one).
        r = sweep(QUICK_SIZES, n_instances=6, seed=seed, progress=progress)
        setting = "n = 200 features, m = 2, S = 0.98, 3,000 full-batch AdamW steps"
    else:
        r = sweep(
            FULL_SIZES,
            n_features=1_000,
            sparsity=0.99,
            steps=10_000,
            warmup_steps=2_500,
            n_instances=3,
            seed=seed,
            progress=progress,
        )
        setting = (
            "n = 1,000 features, m = 2, S = 0.99, 10,000 full-batch AdamW steps (2,500 warm-up "
            "then cosine, weight decay 1e-2, lr 1e-2)"
        )
    med = r.median_test_loss
    data_dim = r.data_dimensionality.median(-1).values
    feat_dim = r.feature_dimensionality.median(-1).values
    rep.metrics["double_descent"] = {
        "sizes": r.sizes,
        "median_test_loss": [round(float(v), 6) for v in med],
        "median_train_loss": [round(float(v), 6) for v in r.train_loss.median(-1).values],
        "baseline_loss": round(r.baseline, 6),
        "data_dimensionality": [round(float(v), 4) for v in data_dim],
        "feature_dimensionality": [round(float(v), 4) for v in feat_dim],
        "peak_T": r.peak,
    }
    picks = _geometry_picks(len(r.sizes))
    rep.add_figure(
        "double_descent_loss",
        plot.loss_curve(r.sizes, r.test_loss, r.train_loss, baseline=r.baseline),
        "Test loss (fresh points) and training loss against the training-set size T (log "
        "scale); the line is the median over instances, the points are single instances; "
        "dashed: the loss of always answering zero.",
        "half",
    )
    rep.add_figure(
        "double_descent_dimensionality",
        plot.dimensionality_curve(r.sizes, r.data_dimensionality, r.feature_dimensionality),
        "Norm-weighted mean dimensionality of the training points' hidden vectors (data) and "
        "of the feature directions (features) against T: which of the two the model stores.",
        "half",
    )
    rep.add_figure(
        "double_descent_geometry",
        plot.memorization_geometry(
            [r.sizes[i] for i in picks], [r.hidden[i] for i in picks], [r.W[i] for i in picks]
        ),
        f"The 2-d hidden space at T = {', '.join(str(r.sizes[i]) for i in picks)}: training "
        "points' hidden vectors (top) and feature directions (bottom). Small T stores the "
        "points as a polygon; large T stores the features.",
        "full",
    )
    # The smallest T sits before the first descent (a few points generalize badly), so the
    # peak is judged against the curve after it, as in the paper's figure.
    peak_i = int(med.argmax())
    ends = float(torch.maximum(med[1], med[-1]))
    rise = float(med.max()) / ends
    interior = 1 < peak_i < len(r.sizes) - 1
    cross = [t for t, d, f in zip(r.sizes, data_dim, feat_dim, strict=True) if float(f) > float(d)]
    swap = float(data_dim[0]) > float(feat_dim[0]) and float(feat_dim[-1]) > float(data_dim[-1])
    rep.sections.append(
        Section(
            "Memorization and double descent (Henighan et al., 2023)",
            f"The ReLU-output toy model trained full-batch on T points, {setting}; "
            f"{r.test_loss.shape[-1]} instances per T, each with its own training set. The "
            "paper's setting (n = 10,000, S = 0.999, 50,000 steps) is too slow for this run.",
            [
                Claim(
                    "Test loss as a function of the training-set size T rises to a peak between "
                    "small and large T and falls again (double descent).",
                    "reproduced" if interior and rise > 1.15 else "not reproduced",
                    f"median test loss peaks at T = {r.peak}, {rise:.2f}x the larger of its "
                    f"values at T = {r.sizes[1]} and T = {r.sizes[-1]} (criterion: a peak "
                    "between them at least 1.15x both).",
                    f"Peak {float(med.max()):.4g}; T = {r.sizes[0]} (before the first descent): "
                    f"{float(med[0]):.4g}; T = {r.sizes[1]}: {float(med[1]):.4g}; "
                    f"T = {r.sizes[-1]}: {float(med[-1]):.4g}; zero output {r.baseline:.4g}.",
                    ("double_descent_loss",),
                ),
                Claim(
                    "Small T: the model stores data points in superposition; large T: it stores "
                    "features.",
                    "reproduced" if swap else "not reproduced",
                    f"data vs feature dimensionality {float(data_dim[0]):.2f} vs "
                    f"{float(feat_dim[0]):.2f} at T = {r.sizes[0]}, {float(data_dim[-1]):.2f} vs "
                    f"{float(feat_dim[-1]):.2f} at T = {r.sizes[-1]}.",
                    f"Features first dominate at T = {cross[0] if cross else 'never'}.",
                    ("double_descent_dimensionality", "double_descent_geometry"),
                ),
            ],
        )
    )


def _geometry_picks(n: int) -> list[int]:
    """Indices of three sizes to draw: the smallest, a middle one and the largest."""
    return sorted({0, n // 2, n - 1})
