"""The seed paper's experiments end to end: the ``superposition reproduce`` command.

Section 3 (toy models): the linear and ReLU-output models of Figure 1 over a sparsity sweep,
the pentagon, and the two-feature phase diagram, with the paper's three results checked
numerically. Section 5 (a real transformer): the twelve texts of section 5.1 through the first
MLP layer, Figures 4–7 for each category, three times — **as the paper did** (padding kept, raw
cosine), **corrected** (padding dropped, mean-centred cosine) and on a **null baseline** (the same
architecture with random weights, corrected analysis).

:func:`reproduce` writes ``report.html`` (self-contained), ``metrics.json`` (every number, with
configuration, versions, seed and timings) and the PNG figures, and returns the metrics.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from superposition import metrics
from superposition._io import atomic_write
from superposition.report.html import Report, png, render
from superposition.toy import SparseFeatureDataset, ToyModel

if TYPE_CHECKING:
    from superposition.probe import Activations

__all__ = ["ReproduceConfig", "analyse", "phase_losses", "reproduce", "summary"]

SWEEP_PROBABILITY = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
"""Feature probabilities 1 - S of the section-3 sweep, S in {0, .7, .9, .97, .99, .997, .999}."""
PHASE_IMPORTANCE = (0.1, 0.3, 1.0, 3.0, 10.0)
PHASE_PROBABILITY = (1.0, 0.3, 0.1, 0.03, 0.01)
# A feature counts as represented when its embedding has this norm (TMS: ||W_i|| ≈ 1 or ≈ 0).
REPRESENTED = 0.5


@dataclass(frozen=True)
class ReproduceConfig:
    """What ``superposition reproduce`` runs.

    Args:
        out: folder for ``report.html``, ``metrics.json`` and the figures (created).
        model: a Hugging Face model name or local path; ``None`` is the shipped MiniLM.
        layer: the MLP layer to probe (the paper: 0, the first).
        quick: shorter training and smaller figures (about a minute on 2 CPU cores).
        seed: seed of every random draw (training, neuron sampling, the random baseline).
        progress: show progress bars.
    """

    out: Path = Path("superposition-out")
    model: str | None = None
    layer: int = 0
    quick: bool = False
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if isinstance(self.layer, bool) or not isinstance(self.layer, int):
            raise ValueError(f"layer must be an int, got {self.layer!r}")

    @property
    def steps(self) -> int:
        """Training steps per toy model, 10,000 as in the TMS recipe (5,000 with ``quick``)."""
        return 5_000 if self.quick else 10_000


def _r(x: float | Tensor, digits: int = 4) -> float:
    """A JSON-friendly rounded float (rounding makes same-seed runs compare equal on disk)."""
    v = float(x)
    return v if math.isinf(v) or math.isnan(v) else round(v, digits)


# ============================================================================ section 3


def _train(
    activation: str,
    n: int,
    m: int,
    probability: Sequence[float] | Tensor,
    importance: float | Tensor,
    cfg: ReproduceConfig,
    seed_offset: int,
) -> tuple[ToyModel, SparseFeatureDataset]:
    data = SparseFeatureDataset(
        n, feature_probability=probability, importance=importance, seed=cfg.seed + seed_offset
    )
    model = ToyModel(
        n,
        m,
        n_instances=data.n_instances,
        activation=activation,  # type: ignore[arg-type]
        seed=cfg.seed + seed_offset,
    )
    model.fit(data, steps=cfg.steps, progress=cfg.progress)
    return model, data


def _sweep_checks(model: ToyModel, m: int) -> dict[str, Any]:
    """Which features each instance represents, and how much they interfere."""
    W = model.W.detach()
    norms = metrics.feature_norms(W)
    represented = norms > REPRESENTED
    top = W[..., :m]  # the m most important features
    return {
        "n_represented": represented.sum(-1).tolist(),
        "top_m_only": [bool(r[:m].all() and not r[m:].any()) for r in represented],
        "frobenius_sq": [_r(x) for x in W.square().sum((-2, -1))],
        "max_interference_top_m": [_r(x) for x in metrics.interference(top).amax(-1)],
        "max_interference": [_r(x) for x in metrics.interference(W).amax(-1)],
        "features_in_superposition": [
            int(((metrics.interference(W) > 0.05) & represented)[i].sum())
            for i in range(W.shape[0])
        ],
        "min_bias": [_r(x) for x in model.b.detach().amin(-1)],
    }


def _pentagon(W: Tensor) -> list[bool]:
    """Instances whose five features form a regular pentagon (72° ± 2° between neighbours)."""
    out = []
    for w in W:
        if not bool((metrics.feature_norms(w) > REPRESENTED).all()):
            out.append(False)
            continue
        angles = torch.atan2(w[1], w[0]).sort().values
        gaps = torch.diff(torch.cat([angles, angles[:1] + 2 * math.pi]))
        out.append(bool((gaps.rad2deg() - 72).abs().max() <= 2))
    return out


def phase_losses(s: float, r: float) -> tuple[float, float, float]:
    """Closed-form expected losses of the three n=2, m=1 configurations (TMS, section 4).

    With feature probability ``s`` and relative importance ``r`` of feature 2:
    representing only feature 1 loses ``r (s/3 - s²/4)``, only feature 2 loses
    ``s/3 - s²/4``, and the antipodal pair loses ``(1 + r) s² / 6``.

    Examples:
        >>> phase_losses(1.0, 1.0)
        (0.08333333333333331, 0.08333333333333331, 0.3333333333333333)
    """
    drop2 = r * (s / 3 - s**2 / 4)
    drop1 = s / 3 - s**2 / 4
    antipodal = (1 + r) * s**2 / 6
    return drop2, drop1, antipodal


def _section3(cfg: ReproduceConfig, rep: Report) -> None:
    from superposition import plot

    n, m = 20, 5
    sparsity = [_r(1 - p, 4) for p in SWEEP_PROBABILITY]
    titles = [f"S={s:g}" for s in sparsity]
    out: dict[str, Any] = {
        "n_features": n,
        "n_hidden": m,
        "importance": "0.7**i",
        "sparsity": sparsity,
        "steps": cfg.steps,
    }

    with rep.timed("toy.linear"):
        linear, _ = _train("linear", n, m, SWEEP_PROBABILITY, 0.7, cfg, 0)
    with rep.timed("toy.relu"):
        relu, _ = _train("relu", n, m, SWEEP_PROBABILITY, 0.7, cfg, 1)
    lin, rel = _sweep_checks(linear, m), _sweep_checks(relu, m)
    out["linear"], out["relu"] = lin, rel
    rep.figures["toy_linear"] = plot.toy_weights(
        linear.W.detach(), linear.b.detach(), titles=titles
    )
    rep.figures["toy_relu"] = plot.toy_weights(relu.W.detach(), relu.b.detach(), titles=titles)

    result1 = (
        all(lin["top_m_only"])
        and all(abs(f - m) < 0.1 for f in lin["frobenius_sq"])
        and all(x < 0.05 for x in lin["max_interference_top_m"])
    )
    # Interference is only meaningful between represented features: a dropped feature's
    # near-zero W_i still has a direction that the others project onto.
    result2 = rel["top_m_only"][0] and rel["max_interference_top_m"][0] < 0.05
    counts = rel["n_represented"]
    result3 = counts[-1] > m and counts[-1] > counts[0]
    out["results"] = {
        "1_linear_top_m_orthogonal": result1,
        "2_relu_dense_top_m": result2,
        "3_relu_sparse_superposition": result3,
    }

    # --- the pentagon: n=5, m=2, p=0.05
    k = 8 if cfg.quick else 16
    with rep.timed("toy.pentagon"):
        pent, _ = _train("relu", 5, 2, [0.05] * k, 1.0, cfg, 2)
    W = pent.W.detach()
    is_pentagon = _pentagon(W)
    dims = metrics.feature_dimensionality(W)
    out["pentagon"] = {
        "instances": k,
        "regular_pentagons": sum(is_pentagon),
        "mean_dimensionality_of_pentagons": _r(dims[torch.tensor(is_pentagon)].mean())
        if any(is_pentagon)
        else None,
    }
    best = is_pentagon.index(True) if any(is_pentagon) else 0
    rep.figures["toy_pentagon"] = plot.feature_directions(W[best : best + 1])

    # --- phase diagram: n=2, m=1, relative importance x feature probability, best of 3 seeds
    seeds = 3
    grid = [(r, p) for r in PHASE_IMPORTANCE for p in PHASE_PROBABILITY]
    probs = torch.tensor([p for _r_, p in grid for _ in range(seeds)])
    imp = torch.tensor([[1.0, r] for r, _p in grid for _ in range(seeds)])
    with rep.timed("toy.phase"):
        phase, data = _train("relu", 2, 1, probs, imp, cfg, 3)
        g = torch.Generator().manual_seed(cfg.seed + 4)
        with torch.no_grad():
            losses = torch.stack(
                [phase.losses(data.sample(4096, generator=g), data.importance) for _ in range(8)]
            ).mean(0)
    learned = plot.classify_phase(phase.W.detach()).reshape(len(grid), seeds)
    best_seed = losses.reshape(len(grid), seeds).argmin(-1)
    labels = learned[torch.arange(len(grid)), best_seed]
    expected = torch.tensor([min(range(3), key=lambda c: phase_losses(p, r)[c]) for r, p in grid])
    shape = (len(PHASE_IMPORTANCE), len(PHASE_PROBABILITY))
    out["phase_diagram"] = {
        "relative_importance": list(PHASE_IMPORTANCE),
        "feature_probability": list(PHASE_PROBABILITY),
        "learned": labels.reshape(shape).tolist(),
        "closed_form_optimum": expected.reshape(shape).tolist(),
        "agreement": int((labels == expected).sum()),
        "points": len(grid),
        "labels": {"0": "feature 1 only", "1": "feature 2 only", "2": "antipodal pair"},
    }
    rep.figures["toy_phase_diagram"] = plot.phase_diagram(
        labels.reshape(shape), PHASE_PROBABILITY, PHASE_IMPORTANCE
    )
    rep.metrics["section3"] = out

    def yes(ok: bool) -> str:
        return "reproduced" if ok else "NOT reproduced"

    rep.sections.append(
        (
            "Section 3 — toy models of superposition",
            f"n = {n} features, m = {m} hidden dimensions, importance I_i = 0.7^i, "
            f"{cfg.steps:,} AdamW steps per model, sparsities {sparsity}.",
            [
                (
                    "Result 1: linear models learn the top m features, without superposition.",
                    f"{yes(result1)}: features represented (||W_i|| > {REPRESENTED}) per "
                    f"sparsity {lin['n_represented']}; ||W||_F² = {lin['frobenius_sq']}; largest "
                    "interference "
                    f"among the top {m}: {max(lin['max_interference_top_m']):.3g}.",
                    ["toy_linear"],
                ),
                (
                    "Result 2: with dense inputs the ReLU model also learns the top m features, "
                    "orthogonally.",
                    f"{yes(result2)}: at S = 0 it represents {counts[0]} features, largest "
                    f"interference among them {rel['max_interference_top_m'][0]:.3g}.",
                    [],
                ),
                (
                    "Result 3: as sparsity grows the ReLU model represents more than m features "
                    "(superposition).",
                    f"{yes(result3)}: features represented per sparsity {counts}; features in "
                    f"superposition (interference > 0.05) {rel['features_in_superposition']}; "
                    f"smallest bias {rel['min_bias']}.",
                    ["toy_relu"],
                ),
                (
                    "Elhage et al.: five features in two dimensions form a regular pentagon "
                    "(dimensionality 2/5 each).",
                    f"{out['pentagon']['regular_pentagons']} of {k} instances form a pentagon; "
                    f"mean D_i = {out['pentagon']['mean_dimensionality_of_pentagons']}.",
                    ["toy_pentagon"],
                ),
                (
                    "Elhage et al.: with two features and one dimension the model drops the less "
                    "important feature when dense and stores both antipodally when sparse.",
                    f"{out['phase_diagram']['agreement']} of {len(grid)} points learn the "
                    "configuration with the lowest closed-form loss (best of 3 seeds).",
                    ["toy_phase_diagram"],
                ),
            ],
        )
    )


# ============================================================================ section 5


def _upper(D: Tensor) -> Tensor:
    i, j = torch.triu_indices(D.shape[0], D.shape[0], offset=1)
    return D[i, j]


def _summary(v: Tensor) -> metrics.NeuronStatistics:
    return metrics.neuron_statistics(v.double()[:, None])


def analyse(
    acts: Activations,
    *,
    center: bool,
    pad_token: str | None = None,
    distance: Tensor | None = None,
) -> dict[str, Any]:
    """The seed paper's numbers for one set of activations.

    Args:
        acts: activations of one layer over some texts.
        center: mean-centre neurons before the cosine (the corrected analysis).
        pad_token: the tokenizer's pad token, to count pad rows.
        distance: ``metrics.cosine_distance(acts.values, center=center)`` if already computed.

    Returns:
        A JSON-friendly dict of token counts, the distribution of pairwise cosine distances
        (Figures 4–5), neuron activity per token (Figure 6), and the shape of per-neuron
        activation sums (Figure 7).
    """
    X = acts.values
    D = metrics.cosine_distance(X, center=center) if distance is None else distance
    d = _upper(D)
    ds = _summary(d)
    per_neuron = (D.sum(1) - D.diagonal()) / max(D.shape[0] - 1, 1)
    sums = X.sum(0)
    ss = _summary(sums)
    active = (X > 0).float().mean(1)  # fraction of neurons active on each token
    n_pad = sum(t == pad_token for t in acts.tokens) if pad_token else 0
    return {
        "n_tokens": X.shape[0],
        "n_pad_tokens": n_pad,
        "n_neurons": X.shape[1],
        "centered": center,
        "distance_mean": _r(ds.mean),
        "distance_median": _r(d.median()),
        "distance_skewness": _r(ds.skewness),
        "share_pairs_below_0.5": _r((d < 0.5).double().mean()),
        "share_pairs_above_1.5": _r((d > 1.5).double().mean()),
        "share_neurons_mean_distance_near_1": _r(((per_neuron - 1).abs() < 0.1).double().mean()),
        "share_neurons_mean_distance_above_1.5": _r((per_neuron > 1.5).double().mean()),
        "mean_share_active_per_token": _r(active.mean()),
        "sum_mean": _r(ss.mean),
        "sum_skewness": _r(ss.skewness),
        "sum_excess_kurtosis": _r(ss.kurtosis),
    }


def _load(cfg: ReproduceConfig) -> tuple[Any, Any, str]:
    """The model, its tokenizer and a display name; the layer is checked here, before any work."""
    from superposition.probe import load_model, locate_mlp

    model, tokenizer = load_model(cfg.model)
    locate_mlp(model, cfg.layer)  # IndexError naming the valid range, before minutes of training
    name = cfg.model or "all-MiniLM-L6-v2 (shipped)"
    return model, tokenizer, name


def _random_like(model: Any, seed: int) -> Any:
    """The same architecture with freshly initialised weights (the null baseline)."""
    from transformers import AutoModel

    torch.manual_seed(seed)
    baseline = AutoModel.from_config(model.config)
    return baseline.eval()


def _section5(cfg: ReproduceConfig, rep: Report, loaded: tuple[Any, Any, str]) -> None:
    from superposition import plot
    from superposition.probe import PAPER_TEXTS, ActivationProbe

    model, tokenizer, name = loaded
    with rep.timed("real.baseline"):
        fork = torch.random.fork_rng()
        with fork:
            baseline = _random_like(model, cfg.seed)
    pad = getattr(tokenizer, "pad_token", None)
    out: dict[str, Any] = {"model": name, "layer": cfg.layer, "categories": {}}
    analyses = {
        "paper": (model, True, False),
        "corrected": (model, False, True),
        "baseline_paper": (baseline, True, False),
        "baseline": (baseline, False, True),
    }
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(PAPER_TEXTS) * len(analyses),
        desc="section 5",
        disable=not cfg.progress,
        leave=False,
    )
    with rep.timed("real.probe"), bar:
        for category, texts in PAPER_TEXTS.items():
            results: dict[str, Any] = {}
            for key, (net, keep_padding, center) in analyses.items():
                bar.update()
                acts = ActivationProbe(
                    net,
                    layer=cfg.layer,
                    tokenizer=tokenizer,
                    keep_padding=keep_padding,
                    progress=False,
                ).run(list(texts))
                # One [N, N] distance matrix per run feeds the numbers and Figures 4–5.
                D = metrics.cosine_distance(acts.values, center=center)
                results[key] = analyse(acts, center=center, pad_token=pad, distance=D)
                if key in ("paper", "corrected", "baseline"):
                    stem = f"{category}_{key}"
                    label = ("centred " if center else "") + "cosine distance"
                    rep.figures[f"{stem}_fig4"] = plot.distance_heatmap(D, label=label)
                    rep.figures[f"{stem}_fig5"] = plot.distance_histogram(D, label=label)
                    rep.figures[f"{stem}_fig6"] = plot.neuron_traces(
                        acts.values, acts.tokens, n=50, seed=cfg.seed
                    )
                    rep.figures[f"{stem}_fig7"] = plot.activation_sums(acts.values)
            out["categories"][category] = results
    rep.metrics["section5"] = out

    def avg(key: str, stat: str) -> float:
        vals = [c[key][stat] for c in out["categories"].values()]
        return _r(sum(vals) / len(vals), 3)

    def row(stat: str) -> str:
        return (
            f"paper's analysis {avg('paper', stat)}, corrected {avg('corrected', stat)}, "
            f"random-weights baseline {avg('baseline', stat)} "
            f"(baseline with the paper's analysis {avg('baseline_paper', stat)})"
        )

    first = next(iter(PAPER_TEXTS))
    low = "share_pairs_below_0.5"
    claims = [
        (
            "Figure 4: most of the heatmap is blue — most neuron pairs have cosine distance near "
            "0, so the neurons are highly correlated (polysemantic).",
            f"Share of neuron pairs with distance < 0.5, averaged over the three categories: "
            f"{row(low)}. "
            + _verdict(avg("paper", low), avg("corrected", low), avg("baseline_paper", low)),
            [f"{first}_paper_fig4", f"{first}_corrected_fig4", f"{first}_baseline_fig4"],
        ),
        (
            "Figure 5: the distribution of cosine distances is skewed, with its mass at small "
            "distances.",
            f"Median distance: {row('distance_median')}; skewness: {row('distance_skewness')}.",
            [f"{first}_paper_fig5", f"{first}_corrected_fig5", f"{first}_baseline_fig5"],
        ),
        (
            "Figure 4: white bands (neurons orthogonal to all others) and red bands (neurons "
            "opposite to all others).",
            f"Share of neurons whose mean distance to the others is within 0.1 of 1: "
            f"{row('share_neurons_mean_distance_near_1')}; above 1.5: "
            f"{row('share_neurons_mean_distance_above_1.5')}.",
            [],
        ),
        (
            "Figure 6: many neurons are strongly active on every token (padding tokens show "
            "identical activations and should be disregarded).",
            f"Mean share of neurons with a positive activation per token: "
            f"{row('mean_share_active_per_token')}. Pad rows in the paper's analysis: "
            f"{sum(c['paper']['n_pad_tokens'] for c in out['categories'].values())} of "
            f"{sum(c['paper']['n_tokens'] for c in out['categories'].values())} tokens.",
            [f"{first}_paper_fig6", f"{first}_corrected_fig6"],
        ),
        (
            "Figure 7: each neuron's activation summed over all tokens is normally distributed "
            "across neurons.",
            f"Skewness of the sums: {row('sum_skewness')}; excess kurtosis: "
            f"{row('sum_excess_kurtosis')} (0 and 0 for a normal distribution; the random "
            "baseline shows what an untrained layer gives).",
            [f"{first}_paper_fig7", f"{first}_corrected_fig7", f"{first}_baseline_fig7"],
        ),
    ]
    rep.sections.append(
        (
            "Section 5 — polysemantic neurons in a real transformer",
            f"Model {name}, MLP layer {cfg.layer}, the twelve texts of section 5.1 in three "
            "categories. <b>Paper</b>: padding kept, raw cosine (as published). "
            "<b>Corrected</b>: padding dropped, mean-centred cosine (Pearson). "
            "<b>Baseline</b>: the same architecture with random weights, corrected analysis. "
            "Figures below are for the first category; all categories' figures are saved "
            "beside this report.",
            claims,
        )
    )


def _verdict(paper: float, corrected: float, baseline_paper: float) -> str:
    """One sentence on whether the 'highly correlated' reading survives."""
    parts = []
    if corrected < 0.5 * paper:
        parts.append(
            "Most of the paper's effect disappears once padding is dropped and the "
            "neurons are centred"
        )
    else:
        parts.append("The effect survives the correction")
    if baseline_paper >= 0.5 * paper:
        parts.append(
            "and untrained random weights show it too under the paper's analysis, so it "
            "is not evidence of learned polysemantic features."
        )
    else:
        parts.append("and random weights do not show it, so it reflects training.")
    return ", ".join(parts[:1]) + " " + parts[1]


def _versions() -> dict[str, str]:
    import transformers

    import superposition

    return {
        "superposition": superposition.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def reproduce(config: ReproduceConfig | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run every experiment of the seed paper; write the report, metrics and figures.

    Args:
        config: a :class:`ReproduceConfig`; or pass its fields as keyword arguments.

    Returns:
        The contents of ``metrics.json``.

    Examples:
        >>> from superposition.report import ReproduceConfig
        >>> ReproduceConfig(quick=True).steps
        5000
    """
    cfg = config if config is not None else ReproduceConfig(**kwargs)
    rep = Report()
    with rep.timed("load_model"):
        loaded = _load(cfg)  # bad --model / --layer fail here, before anything is written
    cfg.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    with rep.timed("section3"):
        _section3(cfg, rep)
    with rep.timed("section5"):
        _section5(cfg, rep, loaded)
    rep.metrics["config"] = {
        **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "versions": _versions(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    with rep.timed("figures"):
        dpi = 60 if cfg.quick else 100
        images = {name: png(fig, dpi) for name, fig in rep.figures.items()}
        for name, data in images.items():
            atomic_write(cfg.out / f"{name}.png", data)
    rep.metrics["timings_s"] = rep.timings
    atomic_write(cfg.out / "report.html", render(rep, images, cfg))
    atomic_write(cfg.out / "metrics.json", json.dumps(rep.metrics, indent=2))
    return rep.metrics


def summary(result: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    s3 = result["section3"]["results"]
    lines = [
        "Section 3 (toy models): "
        + ", ".join(
            f"result {k.split('_')[0]} {'reproduced' if v else 'NOT reproduced'}"
            for k, v in s3.items()
        )
    ]
    cats = result["section5"]["categories"]
    for key in ("paper", "corrected", "baseline"):
        share = sum(c[key]["share_pairs_below_0.5"] for c in cats.values()) / len(cats)
        lines.append(
            f"Section 5 ({key}): share of neuron pairs with cosine distance < 0.5 = {share:.3f}"
        )
    return "\n".join(lines)
