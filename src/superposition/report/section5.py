"""Section 5 of the report: the seed paper's twelve texts through a real transformer, its
Figures 4–7, the token-count curve, and each claim with its verdict, numbers and table.

:func:`section5` runs the texts and adds the section to a
:class:`~superposition.report.html.Report`; the analyses, checks and verdicts it reports live
in :mod:`~superposition.report.real`.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from superposition import metrics
from superposition.report.config import percent
from superposition.report.html import Claim, Report, Section
from superposition.report.real import (
    ANALYSES,
    BELOW,
    CATEGORY_NAMES,
    CHECKS,
    CONTROLLED,
    FIGURED,
    PAPER_MODEL,
    RUNS,
    SHARE,
    Check,
    analyse,
    category_average,
    ladder,
    model_facts,
    random_like,
    token_control,
    verdict_numbers,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from superposition.probe import Activations
    from superposition.report.config import ReproduceConfig

__all__ = ["section5"]


def section5(cfg: ReproduceConfig, rep: Report, loaded: tuple[Any, Any, str]) -> None:
    """Run section 5 and add it to ``rep`` (numbers in ``rep.metrics["section5"]``).

    Args:
        cfg: the run's settings (layer, seed, quick, progress; ``cfg.model`` for the words).
        rep: the report being built.
        loaded: ``(model, tokenizer, name)``.
    """
    from superposition import plot
    from superposition.probe import PAPER_TEXTS, ActivationProbe, Activations

    model, tokenizer, name = loaded
    with rep.timed("real.baseline"):
        fork = torch.random.fork_rng()
        with fork:
            baseline = random_like(model, cfg.seed)
    pad = getattr(tokenizer, "pad_token", None)
    facts = model_facts(model)
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
        total=len(PAPER_TEXTS) * len(RUNS), desc="section 5", disable=not cfg.progress, leave=False
    )
    runs: dict[str, dict[str, Activations]] = {}
    with rep.timed("real.probe"), bar:
        for category, texts in PAPER_TEXTS.items():
            runs[category] = {}
            for run, (random_weights, keep_padding) in RUNS.items():
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
            run: Activations.concat([runs[c][run] for c in PAPER_TEXTS]) for run in RUNS
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
                if group != "pooled" and analysis in FIGURED:
                    _figures(rep, plot, group, analysis, acts, D, results[analysis], cfg, dpi)
            if group == "pooled":
                pooled = results
            else:
                out["categories"][group] = results
    out["category_average"] = category_average(out)
    out["pooled"] = pooled
    with rep.timed("real.token_control"):
        control = token_control(matrices, cfg)
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
    _claims(cfg, rep, out, name, facts)
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
        f"dotted line at 1 (orthogonal). Share below {BELOW}: {percent(res[SHARE])}; median "
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
            f"{percent(c[analysis][SHARE])} <small>({c[analysis]['n_tokens']})</small>"
            for c in cats.values()
        ]
        cells.append(percent(out["category_average"][analysis][SHARE]))
        p = out["pooled"][analysis]
        cells.append(f"{percent(p[SHARE])} <small>({p['n_tokens']})</small>")
        if analysis in CONTROLLED:
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


def _claims(
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
    for check in CHECKS:
        verdict = ladder(check, avg)
        pooled_verdict = ladder(check, pooled)
        per_cat = {c: ladder(check, res) for c, res in cats.items()}
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
            for a in FIGURED
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
        pooled_says = verdict_numbers(check, verdict, pooled)
        if pooled_verdict != verdict:
            pooled_says += f", verdict {pooled_verdict}"
        claims.append(
            Claim(
                check.paper,
                verdict,
                f"{check.what}: {verdict_numbers(check, verdict, avg)} (average of the {len(cats)} "
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
        f"{CATEGORY_NAMES.get(c, c)} {percent(r['paper'][SHARE])}" for c, r in cats.items()
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
            f"each of the {len(CHECKS)} claims above gets the same verdict in every category"
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
            [f"{c}_{a}_{f}" for f in ("fig4", "fig5", "fig6", "fig7") for a in FIGURED],
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


def _claim_table(check: Check, out: dict[str, Any]) -> str:
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


def _token_curve_figure(
    control: dict[str, Any], cats: dict[str, dict[str, Any]], pooled: dict[str, Any]
) -> Figure:
    """Share of pairs below 0.5 against the number of tokens: pooled curve, categories as dots."""
    from matplotlib.figure import Figure

    # As every figure of superposition.plot: no pyplot, so no global state to clean up.
    fig = Figure(figsize=(11.0, 4.8), layout="constrained")
    ax = fig.add_subplot()
    colours = {"paper": "tab:red", "corrected": "tab:blue", "baseline": "0.4"}
    markers = dict(zip(cats, "os^", strict=False))
    for analysis in CONTROLLED:
        curve = control["curve"][analysis]
        t, m, sd = (torch.tensor(curve[k], dtype=torch.float64) for k in ("tokens", "mean", "sd"))
        c = colours[analysis]
        ax.plot(t, m, "-", color=c, lw=1.6, label=f"all texts, subsampled: {ANALYSES[analysis][2]}")
        ax.fill_between(t, (m - sd).clamp(min=0), m + sd, color=c, alpha=0.15, lw=0)
        for g, res in cats.items():
            ax.plot(
                res[analysis]["n_tokens"], res[analysis][SHARE], markers[g], color=c, ms=7,
                mfc="white", mew=1.5,
            )  # fmt: skip
        ax.plot(pooled[analysis]["n_tokens"], pooled[analysis][SHARE], "D", color=c, ms=7)
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
