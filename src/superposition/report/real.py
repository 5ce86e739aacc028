"""Section 5 of the seed paper, the analyses: polysemantic neurons in a real transformer.

The twelve texts of section 5.1 go through the first MLP layer once per category (as the paper
did), with and without padding, through the trained model and through the same architecture
with random weights (:data:`RUNS`). :func:`analyse` turns each set of activations into the
paper's numbers (Figures 4–7); the analyses compare the paper's method with a corrected one
(:data:`ANALYSES`); the shares of "blue" neuron pairs are reported per category, averaged
(:func:`category_average`), pooled over all texts, and at an equal token count
(:func:`token_control`); and every claim of the paper gets a verdict (:data:`CHECKS`,
:func:`ladder`, :data:`VERDICTS`). The report's section that runs the texts and draws the
figures and tables is :mod:`~superposition.report.section5`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from superposition import metrics

# share_below is a formula, so it lives in metrics; report.share_below stays where it was.
from superposition.metrics import share_below
from superposition.report.config import percent, rounded

if TYPE_CHECKING:
    from superposition.probe import Activations
    from superposition.report.config import ReproduceConfig

__all__ = [
    "ANALYSES",
    "BELOW",
    "CATEGORY_NAMES",
    "CHECKS",
    "CONTROLLED",
    "FIGURED",
    "PAPER_MODEL",
    "RUNS",
    "SHARE",
    "VERDICTS",
    "Check",
    "analyse",
    "category_average",
    "ladder",
    "model_facts",
    "random_like",
    "share_below",
    "subsampled_share",
    "token_control",
    "verdict_numbers",
]

PAPER_MODEL: dict[str, Any] = {
    "name": "bert-base-uncased",
    "layers": 12,
    "hidden_size": 768,
    "mlp_neurons": 3072,
    "activation": "gelu",
}
"""The model of the paper's section 5, to say how the model that ran differs."""

BELOW = 0.5
"""Figure 4's "blue": a neuron pair counts as alike when its cosine distance is below this."""

CATEGORY_NAMES = {
    "language": "Language",
    "math_and_logic": "Math and logic",
    "miscellaneous": "Miscellaneous",
}
"""How the report names each category of :data:`~superposition.PAPER_TEXTS`."""

RUNS: dict[str, tuple[bool, bool]] = {
    "paper": (False, True),
    "corrected": (False, False),
    "baseline_paper": (True, True),
    "baseline": (True, False),
}
"""run: (random weights?, keep padding?) -- one forward pass per category and run."""

ANALYSES: dict[str, tuple[str, bool, str]] = {
    "paper": ("paper", False, "paper's analysis (padding kept, raw cosine)"),
    "no_padding": ("corrected", False, "padding dropped, raw cosine"),
    "corrected": ("corrected", True, "corrected (padding dropped, mean-centred cosine)"),
    "baseline_paper": ("baseline_paper", False, "random weights, paper's analysis"),
    "baseline": ("baseline", True, "random weights, corrected analysis"),
}
"""analysis: (the run it reads, mean-centre the cosine?, what it is)."""

FIGURED = ("paper", "corrected", "baseline")
"""The analyses drawn as Figures 4–7."""
CONTROLLED = ("paper", "corrected", "baseline")
"""The analyses in the token-count control."""
SHARE = "share_pairs_below_0.5"
"""The key of Figure 4's statistic (the share of pairs below :data:`BELOW`) in every result."""


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
        "distance_mean": rounded(ds.mean),
        "distance_median": rounded(d.median()),
        "distance_skewness": rounded(ds.skewness),
        SHARE: rounded((d < BELOW).double().mean()),
        "share_pairs_above_1.5": rounded((d > 1.5).double().mean()),
        "share_neurons_mean_distance_near_1": rounded(
            ((per_neuron - 1).abs() < 0.1).double().mean()
        ),
        "share_neurons_mean_distance_above_1.5": rounded((per_neuron > 1.5).double().mean()),
        "mean_share_active_per_token": rounded(active.mean()),
        "sum_mean": rounded(ss.mean),
        "sum_skewness": rounded(ss.skewness),
        "sum_excess_kurtosis": rounded(ss.kurtosis),
    }


def subsampled_share(
    X: Tensor, tokens: int, *, center: bool, draws: int, seed: int
) -> tuple[float, float]:
    """:func:`~superposition.metrics.share_below` of ``tokens`` random rows of ``X``: mean, spread.

    Draw ``k`` (``k = 0 .. draws-1``) keeps the rows
    ``torch.randperm(len(X), generator=torch.Generator().manual_seed(seed + k))[:tokens]``;
    with ``tokens >= len(X)`` every draw is all of ``X`` and the spread is 0.

    Returns:
        The mean over draws and their standard deviation (``ddof=1``; 0 for one draw).

    Examples:
        >>> import torch
        >>> X = torch.randn(30, 6, generator=torch.Generator().manual_seed(0))
        >>> subsampled_share(X, 30, center=True, draws=3, seed=0)[1]
        0.0
    """
    n = X.shape[0]
    if tokens >= n:
        return share_below(X, center=center, below=BELOW), 0.0
    values = []
    for k in range(draws):
        rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed + k))[:tokens]
        values.append(share_below(X[rows], center=center, below=BELOW))
    v = torch.tensor(values, dtype=torch.float64)
    return float(v.mean()), float(v.std()) if draws > 1 else 0.0


def random_like(model: Any, seed: int) -> Any:
    """The same architecture with freshly initialised weights (the null baseline)."""
    from transformers import AutoModel

    torch.manual_seed(seed)
    baseline = AutoModel.from_config(model.config)
    return baseline.eval()


def model_facts(model: Any) -> dict[str, Any]:
    """Size and kind of the model that ran, from its config, beside :data:`PAPER_MODEL`."""
    config = model.config

    def get(*names: str) -> Any:
        return next((getattr(config, n) for n in names if getattr(config, n, None)), None)

    return {
        "architecture": type(model).__name__,
        "layers": get("num_hidden_layers", "n_layer", "num_layers"),
        "hidden_size": get("hidden_size", "n_embd", "d_model"),
        "mlp_neurons": get("intermediate_size", "n_inner", "ffn_dim", "d_ff"),
        "activation": get("hidden_act", "activation_function"),
    }


@dataclass(frozen=True)
class Check:
    """One claim of section 5, tested on an analysis' numbers (a dict from :func:`analyse`)."""

    key: str
    paper: str
    what: str
    criterion: str
    holds: Callable[[dict[str, Any]], bool]
    value: Callable[[dict[str, Any]], str]
    figures: tuple[str, ...]
    cosine: bool  # centring the cosine can change the statistic


CHECKS = (
    Check(
        "fig4_mostly_blue",
        "Figure 4: most of the heatmap is blue — most neuron pairs have a cosine distance near "
        "0, so the neurons are highly correlated (polysemantic).",
        f"share of neuron pairs with cosine distance < {BELOW}",
        "more than half of the pairs",
        lambda r: r[SHARE] > 0.5,
        lambda r: percent(r[SHARE]),
        ("fig4",),
        True,
    ),
    Check(
        "fig4_white_bands",
        "Figure 4: white bands are frequent — neurons orthogonal to all the others (cosine "
        "distance ≈ 1 to every other neuron), dedicated to unique features.",
        "share of neurons whose mean distance to the others is within 0.1 of 1",
        "at least 1 % of the neurons",
        lambda r: r["share_neurons_mean_distance_near_1"] >= 0.01,
        lambda r: percent(r["share_neurons_mean_distance_near_1"]),
        (),
        True,
    ),
    Check(
        "fig4_red_bands",
        "Figure 4: red bands, though infrequent — some neurons have a cosine distance close to "
        "2 with every other neuron.",
        "share of neurons whose mean distance to the others is above 1.5",
        "at least one neuron",
        lambda r: r["share_neurons_mean_distance_above_1.5"] > 0,
        lambda r: percent(r["share_neurons_mean_distance_above_1.5"]),
        (),
        True,
    ),
    Check(
        "fig5_left_skewed",
        "Figure 5: the distribution of cosine distances is left-skewed, affirming the high "
        "rate of polysemanticity.",
        "skewness of the pairwise distances (median in brackets)",
        "negative skewness",
        lambda r: r["distance_skewness"] < 0,
        lambda r: f"{r['distance_skewness']:+.2f} ({r['distance_median']:.2f})",
        ("fig5",),
        True,
    ),
    Check(
        "fig6_many_active",
        "Figure 6: many neurons have high activation values for every token, not only one "
        "(padding tokens aside).",
        "mean share of neurons with a positive activation per token",
        "more than 5 % of the neurons",
        lambda r: r["mean_share_active_per_token"] > 0.05,
        lambda r: percent(r["mean_share_active_per_token"]),
        ("fig6",),
        False,
    ),
    Check(
        "fig7_normal",
        "Figure 7: each neuron's activation summed over all tokens is normally distributed "
        "across neurons.",
        "skewness and excess kurtosis of the per-neuron sums",
        "|skewness| < 0.5 and |excess kurtosis| < 1 (a normal distribution has 0 and 0)",
        lambda r: abs(r["sum_skewness"]) < 0.5 and abs(r["sum_excess_kurtosis"]) < 1,
        lambda r: f"{r['sum_skewness']:.2f} and {r['sum_excess_kurtosis']:.2f}",
        ("fig7",),
        False,
    ),
)
"""The claims of section 5 that get a verdict, in the order the report gives them."""

VERDICTS = (
    "reproduced",
    "not reproduced",
    "reproduced only as an artefact of padding",
    "reproduced only as an artefact of the raw (uncentred) cosine",
    "reproduced, but random weights show it too",
)
"""Every verdict a section-5 claim can get, from :func:`ladder`."""


# verdict: (the analyses whose numbers decide it, how to say them)
_STEPS: dict[str, tuple[tuple[str, ...], str]] = {
    VERDICTS[1]: (("paper",), "{0} under the paper's own analysis"),
    VERDICTS[2]: (("paper", "no_padding"), "{0} with padding, {1} without"),
    VERDICTS[3]: (("no_padding", "corrected"), "{0} raw, {1} mean-centred"),
    VERDICTS[4]: (("corrected", "baseline"), "{0} trained, {1} with random weights"),
    VERDICTS[0]: (("corrected", "baseline"), "{0} trained, {1} with random weights"),
}


def ladder(check: Check, res: dict[str, dict[str, Any]]) -> str:
    """The verdict for one claim on one group's numbers (``res[analysis]``).

    The claim is tested under the paper's analysis first; if it holds there, it must survive
    dropping the padding, then centring the cosine, and then be absent from random weights
    under the same corrected analysis.
    """
    if not check.holds(res["paper"]):
        return VERDICTS[1]
    if not check.holds(res["no_padding"]):
        return VERDICTS[2]
    if check.cosine and not check.holds(res["corrected"]):
        return VERDICTS[3]
    return VERDICTS[4] if check.holds(res["baseline"]) else VERDICTS[0]


def verdict_numbers(check: Check, verdict: str, res: dict[str, dict[str, Any]]) -> str:
    """The numbers a verdict rests on, in words: ``"8.3 % under the paper's own analysis"``."""
    analyses, words = _STEPS[verdict]
    return words.format(*(check.value(res[a]) for a in analyses))


def category_average(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each analysis' numbers averaged over ``out["categories"]`` (the paper's protocol: one
    value per category, then their mean)."""
    cats = list(out["categories"].values())
    avg: dict[str, dict[str, Any]] = {}
    for analysis in ANALYSES:
        rows = [c[analysis] for c in cats]
        avg[analysis] = {
            k: rounded(sum(r[k] for r in rows) / len(rows))
            for k, x in rows[0].items()
            if isinstance(x, (int, float)) and not isinstance(x, bool)
        }
        avg[analysis]["centered"] = rows[0]["centered"]
    return avg


def token_control(
    X: dict[str, dict[str, tuple[Tensor, bool]]], cfg: ReproduceConfig
) -> dict[str, Any]:
    """Share of pairs below 0.5 with the number of tokens held fixed, and against it.

    ``X[group][analysis]`` is the matrix and whether to centre it. Every category and the
    pooled texts are subsampled to the token count of the smallest group, and the pooled
    texts along a curve of token counts up to all of them.
    """
    draws = 2 if cfg.quick else 5
    groups = [g for g in X if g != "pooled"]
    tokens = min(X[g]["corrected"][0].shape[0] for g in groups)
    out: dict[str, Any] = {
        "statistic": SHARE,
        "tokens": tokens,
        "draws": draws,
        "seed": cfg.seed,
        "recipe": "mean of share_pairs_below_0.5 over draws k = 0..draws-1 of the rows "
        "torch.randperm(n, generator=torch.Generator().manual_seed(seed + k))[:tokens]",
        "categories": {},
        "pooled": {},
        "curve": {},
    }
    for g in [*groups, "pooled"]:
        target = out["pooled"] if g == "pooled" else out["categories"].setdefault(g, {})
        for analysis in CONTROLLED:
            M, center = X[g][analysis]
            mean, sd = subsampled_share(M, tokens, center=center, draws=draws, seed=cfg.seed)
            target[analysis] = {"mean": rounded(mean), "sd": rounded(sd)}
    for analysis in CONTROLLED:
        M, center = X["pooled"][analysis]
        n = M.shape[0]
        grid = sorted({max(2, tokens // 4), max(2, tokens // 2), 2 * tokens})
        counts = sorted({t for t in grid if t < n} | {tokens, n})
        curve: dict[str, list[Any]] = {"tokens": counts, "mean": [], "sd": []}
        for t in counts:
            if t == tokens:
                m = out["pooled"][analysis]
                mean, sd = m["mean"], m["sd"]
            else:
                mean, sd = subsampled_share(M, t, center=center, draws=draws, seed=cfg.seed)
            curve["mean"].append(rounded(mean))
            curve["sd"].append(rounded(sd))
        out["curve"][analysis] = curve
    return out
