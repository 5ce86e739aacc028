"""Beyond the paper: what makes a neuron fire, and does an SAE separate it?

The seed paper measures polysemanticity by proxy (cosine distances between neurons' activation
vectors). This section measures it directly from what makes each unit fire, on real prose
(:func:`~superposition.default_corpus`), for four sets of units of the same layer:

(a) the MLP neurons, (b) the latents of a TopK SAE trained on them, (c) a random orthogonal
rotation of the neurons (same information, no privileged directions) and (d) the neurons of the
same architecture with random weights. Scores: token diversity, context coherence, category
spread (the two books), compared by medians with bootstrap intervals.
"""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from superposition.report.config import rounded
from superposition.report.html import Claim, Report, Section

__all__ = [
    "FULL",
    "QUICK",
    "STANDARD",
    "UnitsSetting",
    "book_texts",
    "score_bases",
    "train_sae",
    "units_section",
]

EXPLORER = "explorer.html"
"""The unit explorer's file in the report folder (neurons and SAE latents of the layer)."""


@dataclass(frozen=True)
class UnitsSetting:
    """How big the section's experiment is.

    Attributes:
        texts: held-out paragraphs the units are read on (half from each book).
        sae_texts: training paragraphs the SAE is trained on (``None``: the whole train split).
        expansion: SAE latents per neuron.
        k: active latents per token.
        samples: SAE training samples (tokens).
        coherence_units: units per basis whose context coherence is computed (it embeds every
            top context with the full model, the slow part).
        top_k: top contexts per unit.
    """

    texts: int
    sae_texts: int | None
    expansion: int
    k: int
    samples: int
    coherence_units: int
    top_k: int = 20


QUICK = UnitsSetting(texts=60, sae_texts=200, expansion=2, k=32, samples=20_000, coherence_units=6)
"""``--quick``: a 2x SAE trained on 20k tokens of 200 paragraphs, units read on 60, context
coherence on 6 units per basis; about 20 s on 2 cores."""
STANDARD = UnitsSetting(
    texts=600, sae_texts=None, expansion=4, k=32, samples=200_000, coherence_units=64
)
"""The default: a 4x SAE (6,144 latents for MiniLM) trained on 200k tokens."""
FULL = UnitsSetting(
    texts=1_200, sae_texts=None, expansion=4, k=32, samples=784_000, coherence_units=200
)
"""``--full-units``: the 4x SAE trained on one pass over the train split (784k tokens)."""


NORM_CONTROLLED = ("neurons (unit-norm tokens)", "rotated neurons (unit-norm tokens)")
"""The norm-controlled pair: neurons and a random rotation, both read on each token's
activation vector scaled to unit length (:meth:`~superposition.UnitBasis.rotation`)."""


def book_texts(n: int) -> tuple[list[str], list[str]]:
    """``n`` held-out paragraphs of the default corpus, half from each book, and each one's
    book (the categories of :func:`~superposition.metrics.category_spread`)."""
    from superposition.probe.corpus import default_corpus

    texts: list[str] = []
    labels: list[str] = []
    for book in ("sherlock_holmes", "war_and_peace"):
        part = list(default_corpus("test", books=[book]).head(n // 2))
        texts += part
        labels += [book] * len(part)
    return texts, labels


def train_sae(
    model: Any, tokenizer: Any, layer: int, s: UnitsSetting, seed: int, progress: bool
) -> Any:
    """The section's TopK SAE of ``layer``: ``s.expansion`` latents per neuron, ``s.k`` active,
    trained on ``s.samples`` tokens of the default corpus's train split (its first
    ``s.sae_texts`` paragraphs), read through an :class:`~superposition.ActivationStore`."""
    from superposition.probe.corpus import default_corpus
    from superposition.probe.probe import ActivationProbe
    from superposition.sae.model import SparseAutoencoder
    from superposition.sae.store import ActivationStore

    probe = ActivationProbe(model, layer=layer, tokenizer=tokenizer, batch_size=64, progress=False)
    corpus = default_corpus("train")
    if s.sae_texts is not None:
        corpus = corpus.head(s.sae_texts)
    # Epochs enough for the samples asked: a small corpus is read several times.
    store = ActivationStore(probe, corpus, batch_size=1024, seed=seed, epochs=8)
    d_in = int(probe.run([next(iter(corpus))]).values.shape[1])
    sae = SparseAutoencoder(d_in, s.expansion * d_in, k=s.k, seed=seed)
    # Batches of 1,024: four times the updates of 4,096 for the same tokens, which a short
    # run needs more than low-noise gradients.
    sae.fit(store, samples=s.samples, batch_size=1024, progress=progress)
    return sae


def score_bases(
    stats: dict[str, Any], embed: Any, coherence_units: int, seed: int
) -> dict[str, Any]:
    """:func:`~superposition.score_units` of each basis, with context coherence for a random
    sample of ``coherence_units`` units that fired (the same draw for a given seed)."""
    from superposition.units import score_units

    g = torch.Generator().manual_seed(seed)
    tables = {}
    for name, st in stats.items():
        fired = (st.max_activation > st.threshold).nonzero().squeeze(1)
        pick = fired[torch.randperm(fired.numel(), generator=g)[:coherence_units]]
        tables[name] = score_units(
            st, embed=embed if coherence_units > 0 else None, embed_units=pick.sort().values
        )
    return tables


def units_section(
    rep: Report,
    loaded: tuple[Any, Any, str],
    *,
    layer: int,
    quick: bool,
    seed: int,
    progress: bool,
    sae: Any = None,
    setting: UnitsSetting | None = None,
) -> None:
    """Run the comparison and add its section to ``rep`` (numbers in
    ``rep.metrics["units"]``).

    Args:
        rep: the report being built.
        loaded: ``(model, tokenizer, name)``.
        layer: the MLP layer.
        quick: the small setting (:data:`QUICK`: a 2x SAE on 200 paragraphs, units read on
            60) instead of :data:`STANDARD`.
        seed: seeds the SAE, the rotation, the random weights and the bootstrap.
        progress: show progress bars.
        sae: a trained :class:`~superposition.SparseAutoencoder` of this layer to use instead
            of training one.
        setting: overrides the setting chosen by ``quick``.
    """
    model, tokenizer, name = loaded
    s = setting or (QUICK if quick else STANDARD)
    with warnings.catch_warnings():
        # A few paragraphs of the novels are longer than the model's 512 tokens: their ends
        # are cut, which is fine for this statistic and not worth a warning in the report.
        warnings.filterwarnings("ignore", message=r".* were truncated", category=UserWarning)
        _run(rep, model, tokenizer, name, layer, quick, seed, progress, sae, s)


def _run(
    rep: Report,
    model: Any,
    tokenizer: Any,
    name: str,
    layer: int,
    quick: bool,
    seed: int,
    progress: bool,
    sae: Any,
    s: UnitsSetting,
) -> None:
    from superposition.explorer import explorer_html
    from superposition.probe.probe import ActivationProbe
    from superposition.report.real import random_like
    from superposition.units import UnitBasis, collect_units, context_embedder
    from superposition.units.compare import compare_units

    with rep.timed("units.sae"):
        trained_here = sae is None
        if sae is None:
            sae = train_sae(model, tokenizer, layer, s, seed, progress)
    texts, labels = book_texts(s.texts)
    probe = ActivationProbe(model, layer=layer, tokenizer=tokenizer, batch_size=32, progress=False)
    with rep.timed("units.collect"):
        n_neurons = int(sae.d_in)
        bases = [
            None,
            sae,
            UnitBasis.rotation(n_neurons, seed=seed),
            UnitBasis.neurons(n_neurons, unit_norm=True),
            UnitBasis.rotation(n_neurons, seed=seed, unit_norm=True),
        ]
        stats = collect_units(probe, texts, bases, top_k=s.top_k, categories=labels)
        fork = torch.random.fork_rng()
        with fork:
            baseline = random_like(model, seed)
        base_probe = ActivationProbe(
            baseline, layer=layer, tokenizer=tokenizer, batch_size=32, progress=False
        )
        by_name = dict(
            zip(["neurons", "SAE latents", "rotated neurons", *NORM_CONTROLLED], stats, strict=True)
        )
        by_name["random-weights neurons"] = collect_units(
            base_probe, texts, top_k=s.top_k, categories=labels
        )
        del baseline
    names = ["neurons", "SAE latents", "rotated neurons", "random-weights neurons"]
    stats = [by_name[n] for n in names]
    with rep.timed("units.score"):
        embed = context_embedder(model, tokenizer)
        # in this order: each basis's coherence sample is the next draw of one generator
        ordered = {n: by_name[n] for n in [*names, *NORM_CONTROLLED]}
        tables = score_bases(ordered, embed, s.coherence_units, seed)
        cmp = compare_units({n: tables[n] for n in names}, seed=seed)
        cmp_norm = compare_units({n: tables[n] for n in NORM_CONTROLLED}, seed=seed)
    acts = probe.run(texts[: min(len(texts), 200)])
    fit = sae.evaluate(acts.values)
    with rep.timed("units.explorer"):
        rep.pages[EXPLORER] = explorer_html(
            stats[:2],
            tables=[tables[n] for n in names[:2]],
            bases=[UnitBasis.neurons(n_neurons), UnitBasis.sae(sae)],
            title=f"Neurons and SAE latents of {name}, layer {layer}",
        )
    _add(
        rep,
        s,
        stats,
        tables,
        (cmp, cmp_norm),
        names,
        fit,
        trained_here,
        quick,
        name,
        layer,
        len(texts),
    )


def _add(
    rep: Report,
    s: UnitsSetting,
    stats: list[Any],
    tables: dict[str, Any],
    comparisons: tuple[Any, Any],
    names: list[str],
    fit: Any,
    trained_here: bool,
    quick: bool,
    model_name: str,
    layer: int,
    n_texts: int,
) -> None:
    from superposition.plot.units import score_distributions

    cmp, cmp_norm = comparisons
    rep.metrics["units"] = {
        "setting": {**s.__dict__, "quick": quick, "sae_trained_here": trained_here},
        "layer": layer,
        "texts": n_texts,
        "tokens": stats[0].count,
        "sae": {
            "fvu": rounded(fit.fvu),
            "l0": rounded(fit.l0),
            "dead_fraction": rounded(fit.dead_fraction),
        },
        "comparison": cmp.to_dict(),
        "comparison_norm_controlled": cmp_norm.to_dict(),
    }
    rep.add_figure(
        "units_scores",
        score_distributions({n: tables[n] for n in names}, seed=0),
        "Per-unit polysemanticity scores of the layer's neurons, the latents of an SAE trained "
        "on them, a random rotation of the neurons, and the neurons of the same architecture "
        "with random weights. Context coherence is computed for a random sample of "
        f"{s.coherence_units} units of each (it embeds every top context with the model).",
        "full",
    )
    table = _summary_table(cmp, names)
    size = (
        f"a {'quick, small' if quick else ''} TopK SAE with {stats[1].n_units} latents (k = "
        f"{s.k}) trained on {s.samples:,} tokens"
        if trained_here
        else f"the given SAE ({stats[1].n_units} latents)"
    )
    intro = (
        f"The seed paper's question asked directly: what makes each unit of layer {layer} of "
        f"{html.escape(model_name)} fire? Units are read on {n_texts} held-out paragraphs of "
        f"two public-domain novels ({stats[0].count:,} tokens; half Sherlock Holmes, half War "
        f"and Peace). Four sets of units: the {stats[0].n_units} MLP neurons; the latents of "
        f"{size} of the default corpus (held-out FVU {fit.fvu:.3f}, dead "
        f"{100 * fit.dead_fraction:.1f}%); a random orthogonal rotation of the neurons (a null "
        "with the same information and no privileged directions); and the neurons of the same "
        "architecture with random weights. Scores (no language model as a judge): <b>token "
        "diversity</b>, the effective number of distinct tokens among a unit's top "
        f"{s.top_k} activations (1 = a single token); <b>context coherence</b>, the "
        "activation-weighted mean cosine similarity of the model's embeddings of those "
        "contexts (Pach et al. 2025); <b>category spread</b>, how evenly it fires across the "
        "two books (0 = one book only). Medians with 95% bootstrap intervals."
        + (
            " <b>Quick run</b>: a small SAE trained briefly and few texts, so the SAE's numbers "
            "say little; run without --quick for the real comparison."
            if quick
            else ""
        )
    )
    # (hypothesis, the other basis, whether the neurons are the more polysemantic one)
    hypotheses = [
        (
            "MLP neurons are polysemantic: a sparse autoencoder's latents are more monosemantic "
            "than the neurons they are trained on.",
            "SAE latents",
            True,
        ),
        (
            "The neuron basis is privileged: neurons are more monosemantic than random "
            "directions in the same space.",
            "rotated neurons",
            False,
        ),
        (
            "Training makes neurons more monosemantic than the same architecture with random "
            "weights.",
            "random-weights neurons",
            False,
        ),
    ]
    claims = []
    for i, (hypothesis, other, neurons_polysemantic) in enumerate(hypotheses):
        verdict, because = _claim_verdict(cmp, "neurons", other, neurons_polysemantic)
        claims.append(
            Claim(
                hypothesis,
                verdict,
                because,
                cmp.verdict("neurons", other),
                ("units_scores",) if i == 0 else (),
                table if i == 0 else "",
                source="Hypothesis",
            )
        )
    raw_verdict = claims[1].verdict
    norm_verdict, because = _claim_verdict(cmp_norm, *NORM_CONTROLLED, False)
    change = (
        "the same verdict as without the control"
        if norm_verdict == raw_verdict
        else f"without the control the verdict was: {raw_verdict}"
    )
    claims.append(
        Claim(
            "The neuron basis is privileged even when a token's size cannot decide: read on "
            "each token's activation vector scaled to unit length, neurons are more "
            "monosemantic than random directions read on the same vectors.",
            norm_verdict,
            f"{because} ({change}.) A random direction's largest values otherwise go to the "
            "tokens with the largest activation vectors ([CLS], punctuation) whatever they "
            "mean; scaling every token to unit length takes that away from both bases.",
            cmp_norm.verdict(*NORM_CONTROLLED),
            (),
            _summary_table(cmp_norm, list(NORM_CONTROLLED)),
            source="Hypothesis",
        )
    )
    browse = (
        f'<p class="verdict"><a href="{EXPLORER}"><b>Browse every neuron and SAE latent</b></a> '
        f"({stats[0].n_units} neurons, {stats[1].n_units} latents) in the explorer: their top "
        "contexts shaded by activation, random active samples, histograms, scores, the "
        "neurons each latent's decoder direction loads on, sorting, token search and a "
        f"permalink per unit ({EXPLORER}#latent-12). One file; it works offline.</p>"
    )
    after = (
        browse
        + _examples_html(stats[0], tables["neurons"], "neurons")
        + _examples_html(stats[1], tables["SAE latents"], "SAE latents")
    )
    rep.sections.append(
        Section(
            "Beyond the paper: what makes a neuron fire, and does an SAE separate it?",
            intro,
            claims,
            after,
        )
    )


def _claim_verdict(cmp: Any, a: str, b: str, a_polysemantic: bool) -> tuple[str, str]:
    """(verdict, the one-line reason) on token diversity and context coherence for the
    hypothesis that ``a`` is the more polysemantic of the two (``a_polysemantic``) or the more
    monosemantic."""
    primary = ("token_diversity", "context_coherence")
    diffs = [cmp.difference(a, b, sc) for sc in primary]
    expected, opposite = (b, a) if a_polysemantic else (a, b)
    wins = [d.more_monosemantic == expected for d in diffs]
    losses = [d.more_monosemantic == opposite for d in diffs]
    if all(wins):
        verdict = "supported"
    elif any(wins) and not any(losses):
        verdict = "partly supported: one score agrees, the other shows no clear difference"
    elif any(wins):
        verdict = "mixed: the two scores disagree"
    else:
        verdict = "not supported"
    td, cc = diffs
    because = (
        f"median token diversity {cmp.summary(a, td.score).median:.3g} ({a}) vs "
        f"{cmp.summary(b, td.score).median:.3g} ({b}); context coherence "
        f"{cmp.summary(a, cc.score).median:.3g} vs {cmp.summary(b, cc.score).median:.3g}."
    )
    return verdict, because


def _summary_table(cmp: Any, names: list[str]) -> str:
    scores = sorted({s.score for s in cmp.summaries}, key=lambda x: list(_ORDER).index(x))
    head = "".join(f"<th>{html.escape(sc.replace('_', ' '))}</th>" for sc in scores)
    rows = []
    for nm in names:
        cells = []
        for sc in scores:
            s = cmp.summary(nm, sc)
            cells.append(f"<td>{s.median:.3g} <small>[{s.low:.3g}, {s.high:.3g}]</small></td>")
        n = cmp.summary(nm, scores[0]).n
        rows.append(f"<tr><td>{html.escape(nm)} <small>({n})</small></td>{''.join(cells)}</tr>")
    return (
        f"<table><tr><th>units (count)</th>{head}</tr>{''.join(rows)}<caption>Medians over "
        "units with 95% bootstrap intervals. Token diversity: lower is more monosemantic; "
        "context coherence: higher is; category spread: lower is more specific to one "
        "book.</caption></table>"
    )


_ORDER = ("token_diversity", "context_coherence", "category_spread")


def _examples_html(stats: Any, table: Any, what: str, n: int = 3, shown: int = 4) -> str:
    """The ``n`` most and least polysemantic units (by token diversity, among units with all
    their top contexts active) with their top contexts, the firing token highlighted."""
    full = stats.top_arrays()["value"][-1] > stats.threshold
    cand = table.sort("token_diversity")
    order = [int(u) for u in cand["unit"] if bool(full[int(u)])]
    if not order:
        return ""
    picks = [("least polysemantic", order[:n]), ("most polysemantic", order[::-1][:n])]
    out = [f"<h3>Examples: {html.escape(what)}</h3>"]
    td = table["token_diversity"]
    for title, units in picks:
        out.append(f"<h4>The {n} {title} {html.escape(what)} (by token diversity)</h4>")
        for u in units:
            out.append(
                f"<p><b>{html.escape(stats.unit_label)} {u}</b> — token diversity "
                f"{float(td[u]):.2f}</p><ul>"
            )
            for c in stats.top(u)[:shown]:
                out.append(f"<li><small>{c.value:.2f}</small> {_context_html(c)}</li>")
            out.append("</ul>")
    return "\n".join(out)


def _context_html(c: Any) -> str:
    tokens = c.tokens or [str(t) for t in c.token_ids]
    parts = []
    for i, tok in enumerate(tokens):
        text = html.escape(tok)
        parts.append(
            f"<mark style='background:#fc6'><b>{text}</b></mark>" if i == c.center else text
        )
    return " ".join(parts)
