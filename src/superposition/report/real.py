"""Section 5 of the seed paper: polysemantic neurons in a real transformer.

The twelve texts of section 5.1 go through the first MLP layer once per category (as the paper
did), with and without padding, through the trained model and through the same architecture
with random weights. :func:`analyse` turns each set of activations into the paper's numbers
(Figures 4–7); the analyses compare the paper's method with a corrected one; the shares of
"blue" neuron pairs are reported per category, averaged, pooled over all texts, and at an equal
token count; and every claim of the paper gets a verdict (:data:`VERDICTS`).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from superposition import metrics
from superposition.report.config import percent, rounded
from superposition.report.html import Claim, Report, Section

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from superposition.probe import Activations
    from superposition.report.config import ReproduceConfig

__all__ = ["ANALYSES", "BELOW", "VERDICTS", "analyse", "share_below", "subsampled_share"]

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

# run: (random weights?, keep padding?) -- one forward pass per category and run.
_RUNS: dict[str, tuple[bool, bool]] = {
    "paper": (False, True),
    "corrected": (False, False),
    "baseline_paper": (True, True),
    "baseline": (True, False),
}

ANALYSES: dict[str, tuple[str, bool, str]] = {
    "paper": ("paper", False, "paper's analysis (padding kept, raw cosine)"),
    "no_padding": ("corrected", False, "padding dropped, raw cosine"),
    "corrected": ("corrected", True, "corrected (padding dropped, mean-centred cosine)"),
    "baseline_paper": ("baseline_paper", False, "random weights, paper's analysis"),
    "baseline": ("baseline", True, "random weights, corrected analysis"),
}
"""analysis: (the run it reads, mean-centre the cosine?, what it is)."""

_FIGURED = ("paper", "corrected", "baseline")  # analyses drawn as Figures 4-7
_CONTROLLED = ("paper", "corrected", "baseline")  # analyses in the token-count control
_SHARE = "share_pairs_below_0.5"


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
        _SHARE: rounded((d < BELOW).double().mean()),
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


def share_below(X: Tensor, *, center: bool, below: float = BELOW) -> float:
    """Share of neuron pairs ``i < j`` whose cosine distance is below ``below``.

    The statistic behind the paper's "most of the heatmap is blue", as ``analyse`` reports it
    (``share_pairs_below_0.5``), for one ``[tokens, neurons]`` matrix.

    Examples:
        >>> import torch
        >>> share_below(torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), center=False)
        0.3333333333333333
    """
    # distance < below  <=>  similarity > 1 - below, exactly in floating point (Sterbenz:
    # 1 - s is exact for s >= 0.5, and rounding is monotone), and one [N, N] pass cheaper.
    S = metrics.cosine_similarity(X, center=center)
    n = S.shape[0]
    return int(torch.count_nonzero((S > 1.0 - below).triu_(1))) / max(n * (n - 1) // 2, 1)


def subsampled_share(
    X: Tensor, tokens: int, *, center: bool, draws: int, seed: int
) -> tuple[float, float]:
    """:func:`share_below` of ``tokens`` rows of ``X`` drawn at random: mean and spread.

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
        return share_below(X, center=center), 0.0
    values = []
    for k in range(draws):
        rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed + k))[:tokens]
        values.append(share_below(X[rows], center=center))
    v = torch.tensor(values, dtype=torch.float64)
    return float(v.mean()), float(v.std()) if draws > 1 else 0.0


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


def _model_facts(model: Any) -> dict[str, Any]:
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


def _model_sentence(name: str, facts: dict[str, Any], shipped: bool) -> str:
    """Which model ran and how it differs from the paper's BERT base-uncased, in plain words."""
    p = PAPER_MODEL
    ran = (
        f"{facts['layers']} layers, hidden size {facts['hidden_size']}, "
        f"{facts['mlp_neurons']} MLP neurons per layer ({facts['activation']})"
    )
    paper = (
        f"The paper used BERT base-uncased: {p['layers']} layers, hidden size "
        f"{p['hidden_size']}, {p['mlp_neurons']} MLP neurons per layer ({p['activation']}), "
        "pre-trained as a masked language model."
    )
    if shipped:
        return (
            f"{paper} <b>This run used a different, smaller model</b>: all-MiniLM-L6-v2, "
            f"{ran}, a MiniLM (nreimers/MiniLM-L6-H384-uncased) fine-tuned with a contrastive "
            "objective on over a billion sentence pairs to make sentence embeddings; it shares "
            "BERT's uncased WordPiece vocabulary, so the texts split into the same tokens. "
            "The paper's numbers are not expected here; what is tested is whether its claims "
            "hold on this model. To run the paper's own model: "
            "<code>superposition reproduce --model bert-base-uncased</code>."
        )
    same = all(facts[k] == p[k] for k in ("layers", "hidden_size", "mlp_neurons"))
    verdict = "the same size as the paper's model" if same else "not the paper's model"
    return f"{paper} This run used {html.escape(name)}: {ran}, {verdict}."


@dataclass(frozen=True)
class _Check:
    """One claim of section 5, tested on an analysis' numbers (a dict from :func:`analyse`)."""

    key: str
    paper: str
    what: str
    criterion: str
    holds: Callable[[dict[str, Any]], bool]
    value: Callable[[dict[str, Any]], str]
    figures: tuple[str, ...]
    cosine: bool  # centring the cosine can change the statistic


_CHECKS = (
    _Check(
        "fig4_mostly_blue",
        "Figure 4: most of the heatmap is blue — most neuron pairs have a cosine distance near "
        "0, so the neurons are highly correlated (polysemantic).",
        f"share of neuron pairs with cosine distance < {BELOW}",
        "more than half of the pairs",
        lambda r: r[_SHARE] > 0.5,
        lambda r: percent(r[_SHARE]),
        ("fig4",),
        True,
    ),
    _Check(
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
    _Check(
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
    _Check(
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
    _Check(
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
    _Check(
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

VERDICTS = (
    "reproduced",
    "not reproduced",
    "reproduced only as an artefact of padding",
    "reproduced only as an artefact of the raw (uncentred) cosine",
    "reproduced, but random weights show it too",
)
"""Every verdict a section-5 claim can get, from :func:`_ladder`."""


# verdict: (the analyses whose numbers decide it, how to say them)
_STEPS: dict[str, tuple[tuple[str, ...], str]] = {
    VERDICTS[1]: (("paper",), "{0} under the paper's own analysis"),
    VERDICTS[2]: (("paper", "no_padding"), "{0} with padding, {1} without"),
    VERDICTS[3]: (("no_padding", "corrected"), "{0} raw, {1} mean-centred"),
    VERDICTS[4]: (("corrected", "baseline"), "{0} trained, {1} with random weights"),
    VERDICTS[0]: (("corrected", "baseline"), "{0} trained, {1} with random weights"),
}


def _ladder(check: _Check, res: dict[str, dict[str, Any]]) -> str:
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


def _numbers(check: _Check, verdict: str, res: dict[str, dict[str, Any]]) -> str:
    """The numbers a verdict rests on, in words: ``"8.3 % under the paper's own analysis"``."""
    analyses, words = _STEPS[verdict]
    return words.format(*(check.value(res[a]) for a in analyses))


def _claim_table(check: _Check, out: dict[str, Any]) -> str:
    """HTML table of one claim's statistic: analyses by category, average and pooled."""
    cats = out["categories"]
    head = ["analysis", *(CATEGORY_NAMES.get(c, c) for c in cats)]
    head += ["category average", "pooled (all texts)"]
    rows = []
    for analysis, (_run, _centre, what) in ANALYSES.items():
        if analysis == "no_padding" and not check.cosine:
            continue  # without a cosine, "padding dropped" is the corrected analysis
        groups = [*cats.values(), out["category_average"], out["pooled"]]
        cells = [html.escape(what)] + [html.escape(check.value(g[analysis])) for g in groups]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        "<table><thead><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + f"</tbody><caption>{html.escape(check.what[0].upper() + check.what[1:])}.</caption>"
        + "</table>"
    )


def _category_average(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
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


def _token_control(
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
        "statistic": _SHARE,
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
        for analysis in _CONTROLLED:
            M, center = X[g][analysis]
            mean, sd = subsampled_share(M, tokens, center=center, draws=draws, seed=cfg.seed)
            target[analysis] = {"mean": rounded(mean), "sd": rounded(sd)}
    for analysis in _CONTROLLED:
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


def _token_curve_figure(
    control: dict[str, Any], cats: dict[str, dict[str, Any]], pooled: dict[str, Any]
) -> Figure:
    """Share of pairs below 0.5 against the number of tokens: pooled curve, categories as dots."""
    from superposition.plot._common import _new_figure

    fig = _new_figure(11.0, 4.8)
    ax = fig.add_subplot()
    colours = {"paper": "tab:red", "corrected": "tab:blue", "baseline": "0.4"}
    markers = dict(zip(cats, "os^", strict=False))
    for analysis in _CONTROLLED:
        curve = control["curve"][analysis]
        t, m, sd = (torch.tensor(curve[k], dtype=torch.float64) for k in ("tokens", "mean", "sd"))
        c = colours[analysis]
        ax.plot(t, m, "-", color=c, lw=1.6, label=f"all texts, subsampled: {ANALYSES[analysis][2]}")
        ax.fill_between(t, (m - sd).clamp(min=0), m + sd, color=c, alpha=0.15, lw=0)
        for g, res in cats.items():
            ax.plot(
                res[analysis]["n_tokens"], res[analysis][_SHARE], markers[g], color=c, ms=7,
                mfc="white", mew=1.5,
            )  # fmt: skip
        ax.plot(pooled[analysis]["n_tokens"], pooled[analysis][_SHARE], "D", color=c, ms=7)
    ax.axvline(control["tokens"], color="0.6", ls=":", lw=1)
    for g, mk in markers.items():
        ax.plot(
            [],
            [],
            mk,
            color="black",
            mfc="white",
            label=f"{CATEGORY_NAMES.get(g, g)} (all its tokens)",
        )
    ax.plot([], [], "D", color="black", label="all twelve texts pooled")
    ax.set_xscale("log")
    ax.set_xlabel("number of tokens (rows of the activation matrix)")
    ax.set_ylabel(f"share of neuron pairs with distance < {BELOW}")
    ax.set_title("The share of 'blue' pairs depends on how many tokens were seen")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return fig


def _section5(cfg: ReproduceConfig, rep: Report, loaded: tuple[Any, Any, str]) -> None:
    from superposition import plot
    from superposition.probe import PAPER_TEXTS, ActivationProbe, Activations

    model, tokenizer, name = loaded
    with rep.timed("real.baseline"):
        fork = torch.random.fork_rng()
        with fork:
            baseline = _random_like(model, cfg.seed)
    pad = getattr(tokenizer, "pad_token", None)
    facts = _model_facts(model)
    out: dict[str, Any] = {
        "model": name,
        "model_facts": facts,
        "paper_model": PAPER_MODEL,
        "layer": cfg.layer,
        "analyses": {k: v[2] for k, v in ANALYSES.items()},
        "categories": {},
    }
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(PAPER_TEXTS) * len(_RUNS), desc="section 5", disable=not cfg.progress, leave=False
    )
    runs: dict[str, dict[str, Activations]] = {}
    with rep.timed("real.probe"), bar:
        for category, texts in PAPER_TEXTS.items():
            runs[category] = {}
            for run, (random_weights, keep_padding) in _RUNS.items():
                bar.update()
                # One forward pass per category, as the paper did: padding is per category.
                runs[category][run] = ActivationProbe(
                    baseline if random_weights else model,
                    layer=cfg.layer,
                    tokenizer=tokenizer,
                    keep_padding=keep_padding,
                    progress=False,
                ).run(list(texts))
        runs["pooled"] = {
            run: Activations.concat([runs[c][run] for c in PAPER_TEXTS]) for run in _RUNS
        }

    dpi = cfg.dpi
    matrices: dict[str, dict[str, tuple[Tensor, bool]]] = {}
    pooled: dict[str, Any] = {}
    with rep.timed("real.analyse"):
        for group, group_runs in runs.items():
            results: dict[str, Any] = {}
            matrices[group] = {}
            for analysis, (run, center, _what) in ANALYSES.items():
                acts = group_runs[run]
                matrices[group][analysis] = (acts.values, center)
                # One [N, N] distance matrix per analysis feeds the numbers and Figures 4–5.
                D = metrics.cosine_distance(acts.values, center=center)
                results[analysis] = analyse(acts, center=center, pad_token=pad, distance=D)
                if group != "pooled" and analysis in _FIGURED:
                    _figures(rep, plot, group, analysis, acts, D, results[analysis], cfg, dpi)
            if group == "pooled":
                pooled = results
            else:
                out["categories"][group] = results
    out["category_average"] = _category_average(out)
    out["pooled"] = pooled
    with rep.timed("real.token_control"):
        control = _token_control(matrices, cfg)
    out["token_count_control"] = control
    rep.add_figure(
        "token_count_curve",
        _token_curve_figure(control, out["categories"], pooled),
        f"Share of neuron pairs with cosine distance < {BELOW} against the number of tokens "
        "the activation matrix has. Lines: all twelve texts pooled, subsampled to that many "
        f"tokens (mean of {control['draws']} random draws; band ± 1 standard deviation). "
        "Open symbols: each category with all its tokens; filled diamonds: all texts pooled. "
        f"Dotted line: {control['tokens']} tokens, the smallest category, where the table "
        "compares every group. Red: the paper's analysis; blue: corrected; grey: random "
        "weights, corrected analysis.",
        "wide",
    )
    _section5_claims(cfg, rep, out, name, facts)
    rep.metrics["section5"] = out


def _figures(
    rep: Report,
    plot: Any,
    category: str,
    analysis: str,
    acts: Activations,
    D: Tensor,
    res: dict[str, Any],
    cfg: ReproduceConfig,
    dpi: int,
) -> None:
    """Figures 4–7 of one category under one analysis, titled and captioned."""
    stem = f"{category}_{analysis}"
    cat = CATEGORY_NAMES.get(category, category)
    what = ANALYSES[analysis][2]
    head = f"{cat} texts, {what}"
    label = ("centred " if ANALYSES[analysis][1] else "") + "cosine distance"
    n, tokens = acts.n_neurons, acts.n_tokens
    pads = f", {res['n_pad_tokens']} of them padding" if res["n_pad_tokens"] else ""

    fig = plot.distance_heatmap(D, label=label)
    # Big enough that the PNG has a pixel per neuron (up to 8 inches of matrix), so the
    # diagonal and single-neuron bands survive; the caption says when it is downsampled.
    side = min(max(n // 2 / dpi, 5.0), 8.0)
    fig.set_size_inches(side + 2.3, side + 1.1)
    fig.suptitle(head)
    rep.add_figure(
        f"{stem}_fig4",
        fig,
        f"Figure 4, {head}: cosine distance between the first {n // 2} of the {n} neurons "
        f"(over {tokens} tokens{pads}). Blue 0: the two neurons fire alike; white 1: "
        "orthogonal; red 2: opposed.",
        "full",
    )
    fig = plot.distance_histogram(D, label=label)
    fig.suptitle(head, fontsize="medium")
    rep.add_figure(
        f"{stem}_fig5",
        fig,
        f"Figure 5, {head}: histogram of the {label} of all {n * (n - 1) // 2:,} neuron pairs; "
        f"dotted line at 1 (orthogonal). Share below {BELOW}: {percent(res[_SHARE])}; median "
        f"{res['distance_median']:.2f}; skewness {res['distance_skewness']:+.2f}.",
    )
    fig = plot.neuron_traces(
        acts.values, acts.tokens, n=50, seed=cfg.seed, text_index=acts.text_index
    )
    fig.set_size_inches(11.0, 4.4)
    fig.suptitle(head)
    rep.add_figure(
        f"{stem}_fig6",
        fig,
        f"Figure 6, {head}: activations of 50 neurons drawn at random (seed {cfg.seed}) at each "
        f"of the {tokens} tokens{pads}; dotted lines separate the texts. On average "
        f"{percent(res['mean_share_active_per_token'])} of the neurons are positive on a token.",
        "wide",
    )
    fig = plot.activation_sums(acts.values)
    fig.suptitle(head, fontsize="medium")
    rep.add_figure(
        f"{stem}_fig7",
        fig,
        f"Figure 7, {head}: histogram of each neuron's activation summed over the {tokens} "
        f"tokens. Mean {res['sum_mean']:.1f}, skewness {res['sum_skewness']:.2f}, excess "
        f"kurtosis {res['sum_excess_kurtosis']:.2f} (a normal distribution: 0 and 0).",
    )


def _share_table(out: dict[str, Any]) -> str:
    """HTML table: the share of pairs below 0.5 per category, averaged, pooled, and at T tokens."""
    cats = out["categories"]
    control = out["token_count_control"]
    t = control["tokens"]
    head = ["analysis"]
    head += [f"{CATEGORY_NAMES.get(c, c)}" for c in cats]
    head += ["category average", "pooled (all 12 texts)"]
    head += [f"{CATEGORY_NAMES.get(c, c)} at {t} tokens" for c in cats]
    head += [f"pooled at {t} tokens"]
    rows = []
    for analysis, (_run, _c, what) in ANALYSES.items():
        cells = [html.escape(what)]
        cells += [
            f"{percent(c[analysis][_SHARE])} <small>({c[analysis]['n_tokens']})</small>"
            for c in cats.values()
        ]
        cells.append(percent(out["category_average"][analysis][_SHARE]))
        p = out["pooled"][analysis]
        cells.append(f"{percent(p[_SHARE])} <small>({p['n_tokens']})</small>")
        if analysis in _CONTROLLED:
            for c in cats:
                m = control["categories"][c][analysis]
                cells.append(f"{percent(m['mean'])} <small>± {100 * m['sd']:.1f}</small>")
            m = control["pooled"][analysis]
            cells.append(f"{percent(m['mean'])} <small>± {100 * m['sd']:.1f}</small>")
        else:
            cells += ["—"] * (len(cats) + 1)
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        "<table id='share-table'><thead><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody><caption>"
        + html.escape(
            f"Share of neuron pairs with cosine distance < {BELOW} (Figure 4's 'blue'). Per "
            "category: one forward pass over that category's four texts, as in the paper (token "
            "rows in brackets). Category average: the mean of the three, the number the paper's "
            "protocol gives. Pooled: all twelve texts in one matrix (more rows, so a lower "
            f"share). At {t} tokens: each group subsampled to {t} token rows, the size of the "
            f"smallest category (mean ± standard deviation over {control['draws']} random "
            "draws), so that categories, pooled texts and the random-weights baseline are "
            "compared at the same token count."
        )
        + "</caption></table>"
    )


def _section5_claims(
    cfg: ReproduceConfig, rep: Report, out: dict[str, Any], name: str, facts: dict[str, Any]
) -> None:
    cats = out["categories"]
    avg = out["category_average"]
    pooled = out["pooled"]
    first = next(iter(cats))
    from superposition.probe import PAPER_TEXTS

    n_texts = sum(len(t) for t in PAPER_TEXTS.values())
    verdicts: dict[str, Any] = {}
    claims: list[Claim] = []
    for check in _CHECKS:
        verdict = _ladder(check, avg)
        pooled_verdict = _ladder(check, pooled)
        per_cat = {c: _ladder(check, res) for c, res in cats.items()}
        verdicts[check.key] = {
            "claim": check.paper,
            "verdict": verdict,
            "statistic": check.what,
            "criterion": check.criterion,
            "category_average": {a: check.value(avg[a]) for a in ANALYSES},
            "pooled": {a: check.value(pooled[a]) for a in ANALYSES},
            "per_category_verdict": per_cat,
            "pooled_verdict": pooled_verdict,
        }
        figures = tuple(
            f"{first}_{a}_{f}"
            for f in check.figures
            for a in _FIGURED
            if not (f == "fig6" and a == "baseline")
        )
        measured, table = "", _claim_table(check, out)
        if check.key == "fig4_mostly_blue":
            control = out["token_count_control"]
            t = control["tokens"]
            c_at = [control["categories"][c]["paper"]["mean"] for c in cats]
            rows = [r["paper"]["n_tokens"] for r in cats.values()]
            measured = (
                f"The share depends on the number of tokens: the categories have "
                f"{min(rows)}–{max(rows)} rows under the paper's analysis and the pooled texts "
                f"{pooled['paper']['n_tokens']}. Subsampled to the same {t} tokens, the paper's "
                f"analysis gives {percent(sum(c_at) / len(c_at))} (category average) and "
                f"{percent(control['pooled']['paper']['mean'])} (pooled), the corrected analysis "
                f"{percent(control['pooled']['corrected']['mean'])} and random weights "
                f"{percent(control['pooled']['baseline']['mean'])} (pooled, corrected analysis). "
                "The table gives every group at the same token count; the curve shows the "
                "share against the token count."
            )
            table = _share_table(out)
            figures = (*figures, "token_count_curve")
        pooled_says = _numbers(check, verdict, pooled)
        if pooled_verdict != verdict:
            pooled_says += f", verdict {pooled_verdict}"
        claims.append(
            Claim(
                check.paper,
                verdict,
                f"{check.what}: {_numbers(check, verdict, avg)} (average of the {len(cats)} "
                f"categories; pooled over all {n_texts} texts: {pooled_says}). "
                f"Criterion: {check.criterion}.",
                measured,
                figures,
                table,
            )
        )
    # The paper: "These trends are consistent across all 3 text inputs."
    differing = [k for k, v in verdicts.items() if len(set(v["per_category_verdict"].values())) > 1]
    shares = ", ".join(
        f"{CATEGORY_NAMES.get(c, c)} {percent(r['paper'][_SHARE])}" for c, r in cats.items()
    )
    if differing:
        consistent_because = "verdicts differ between categories for " + "; ".join(
            f"{k} ("
            + ", ".join(
                f"{CATEGORY_NAMES.get(c, c)}: {v}"
                for c, v in verdicts[k]["per_category_verdict"].items()
            )
            + ")"
            for k in differing
        )
    else:
        consistent_because = (
            f"each of the {len(_CHECKS)} claims above gets the same verdict in every category"
        )
    consistent = "not reproduced" if differing else "reproduced"
    verdicts["consistent_across_inputs"] = {
        "claim": "These trends are consistent across all 3 text inputs.",
        "verdict": consistent,
        "differing": differing,
    }
    claims.append(
        Claim(
            "Section 5.2: these trends are consistent across all 3 text inputs.",
            consistent,
            f"{consistent_because}. Share of pairs below {BELOW} under the paper's analysis: "
            f"{shares}.",
        )
    )
    out["verdicts"] = verdicts
    rep.groups += [
        (
            f"{CATEGORY_NAMES.get(c, c)} texts",
            [f"{c}_{a}_{f}" for f in ("fig4", "fig5", "fig6", "fig7") for a in _FIGURED],
        )
        for c in cats
    ]
    rep.sections.append(
        Section(
            "Section 5 — polysemantic neurons in a real transformer",
            f"<b>Model.</b> {_model_sentence(name, facts, cfg.model is None)} MLP layer "
            f"{cfg.layer}, the twelve texts of section 5.1 in three categories of four, one "
            "forward pass per category as in the paper.</p><p><b>Analyses.</b> "
            "<b>Paper's analysis</b>: the paper's method — padding kept, raw cosine. "
            "<b>Padding dropped</b>: raw cosine without the pad rows. <b>Corrected</b>: padding "
            "dropped, mean-centred cosine (1 − Pearson correlation). <b>Random weights</b>: the "
            f"same architecture freshly initialised (seed {cfg.seed}), under the paper's and "
            "the corrected analysis: what an untrained layer gives.</p><p><b>Verdicts.</b> A "
            "claim is tested under the paper's analysis; if it holds, it must survive dropping "
            "the padding, then centring, and be absent from random weights. Each verdict rests "
            "on the average over the three categories (the paper analysed each category "
            "separately); the value pooled over all twelve texts is given beside it. Figures "
            f"shown with the claims are for the {CATEGORY_NAMES.get(first, first)} category; "
            "every category's figures are under Other figures.",
            claims,
        )
    )
