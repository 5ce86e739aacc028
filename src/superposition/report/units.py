"""Beyond the paper: what makes a neuron fire, and does an SAE separate it?

The seed paper measures polysemanticity by proxy (cosine distances between neurons' activation
vectors). This section measures it directly from what makes each unit fire, on real prose
(:func:`~superposition.default_corpus`), for four sets of units of the same layer:

(a) the MLP neurons, (b) the latents of a TopK SAE trained on them, (c) the latents of a skip
transcoder trained to do the MLP's job (from what it reads to what it writes: a drop-in
replacement for the neurons), (d) a random orthogonal rotation of the neurons (same
information, no privileged directions) and (e) the neurons of the same architecture with random
weights; and a norm-controlled pair (neurons and a rotation read on unit-length tokens). Scores:
token diversity, context coherence, category spread (the two books), compared by medians with
bootstrap intervals, each dictionary's fidelity stated beside it.
"""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from superposition.report._units_html import examples_html, fidelity_text, summary_table
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
    "train_transcoder",
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
        fidelity_texts: the first held-out paragraphs on which the SAE's and the transcoder's
            reconstruction (and loss recovered) are measured.
        loss_recovered: measure the loss recovered with each dictionary spliced in (several
            passes of the whole model over ``fidelity_texts``).
    """

    texts: int
    sae_texts: int | None
    expansion: int
    k: int
    samples: int
    coherence_units: int
    top_k: int = 20
    fidelity_texts: int = 200
    loss_recovered: bool = True


QUICK = UnitsSetting(
    texts=60,
    sae_texts=200,
    expansion=2,
    k=32,
    samples=20_000,
    coherence_units=6,
    fidelity_texts=30,
    loss_recovered=False,
)
"""``--quick``: a 2x SAE and a 2x transcoder trained on 20k tokens of 200 paragraphs, units read
on 60, context coherence on 6 units per basis, FVU on 30 (no loss recovered)."""
STANDARD = UnitsSetting(
    texts=600, sae_texts=None, expansion=4, k=32, samples=200_000, coherence_units=64
)
"""The default: a 4x SAE and a 4x transcoder (6,144 latents each for MiniLM) trained on 200k
tokens."""
FULL = UnitsSetting(
    texts=1_200, sae_texts=None, expansion=4, k=32, samples=784_000, coherence_units=200
)
"""``--full-units``: the 4x SAE and transcoder trained on one pass over the train split (784k
tokens)."""


NAMES = (
    "neurons",
    "SAE latents",
    "transcoder latents",
    "rotated neurons",
    "random-weights neurons",
)
"""The section's bases, in the order of its table and figure."""

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
    return _train(model, tokenizer, layer, s, seed, progress, transcoder=False)


def train_transcoder(
    model: Any, tokenizer: Any, layer: int, s: UnitsSetting, seed: int, progress: bool
) -> Any:
    """The section's skip transcoder of ``layer``'s MLP: as many latents as the SAE
    (``s.expansion`` per neuron), ``s.k`` active, mapping ``mlp_in`` to ``mlp_out``, trained
    as :func:`train_sae` is (same tokens, batches and seed), both sites read in one pass."""
    return _train(model, tokenizer, layer, s, seed, progress, transcoder=True)


def _train(
    model: Any,
    tokenizer: Any,
    layer: int,
    s: UnitsSetting,
    seed: int,
    progress: bool,
    *,
    transcoder: bool,
) -> Any:
    from superposition.probe.corpus import default_corpus
    from superposition.probe.probe import ActivationProbe
    from superposition.sae.model import SparseAutoencoder
    from superposition.sae.store import ActivationStore
    from superposition.sae.transcoder import Transcoder

    corpus = default_corpus("train")
    if s.sae_texts is not None:
        corpus = corpus.head(s.sae_texts)
    sites = ["mlp_in", "mlp_out"] if transcoder else ["neurons"]
    # One text gives every width: the sites trained on, and the neurons that count latents.
    first = ActivationProbe(
        model, layer=layer, site=list(dict.fromkeys(["neurons", *sites])), tokenizer=tokenizer
    ).run([next(iter(corpus))])
    width = {a.site: a.n_neurons for a in first}
    probe = ActivationProbe(
        model,
        layer=layer,
        site=sites if transcoder else "neurons",
        tokenizer=tokenizer,
        batch_size=64,
        progress=False,
    )
    # Epochs enough for the samples asked: a small corpus is read several times.
    store = ActivationStore(probe, corpus, batch_size=1024, seed=seed, epochs=8)
    d_sae = s.expansion * width["neurons"]
    made = (
        Transcoder(width["mlp_in"], width["mlp_out"], d_sae, k=s.k, skip=True, seed=seed)
        if transcoder
        else SparseAutoencoder(width["neurons"], d_sae, k=s.k, seed=seed)
    )
    # Batches of 1,024: four times the updates of 4,096 for the same tokens, which a short
    # run needs more than low-noise gradients.
    made.fit(store, samples=s.samples, batch_size=1024, progress=progress)
    return made


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
    from superposition.probe.locate import linear_weight
    from superposition.probe.probe import ActivationProbe
    from superposition.report.real import random_like
    from superposition.units import UnitBasis, collect_units, context_embedder
    from superposition.units.compare import compare_units

    with rep.timed("units.sae"):
        trained_here = sae is None
        if sae is None:
            sae = train_sae(model, tokenizer, layer, s, seed, progress)
    with rep.timed("units.transcoder"):
        tc = train_transcoder(model, tokenizer, layer, s, seed, progress)
    texts, labels = book_texts(s.texts)
    # The transcoder reads what the MLP reads: both sites come from one pass.
    probe = ActivationProbe(
        model,
        layer=layer,
        site=["neurons", "mlp_in"],
        tokenizer=tokenizer,
        batch_size=32,
        progress=False,
    )
    with rep.timed("units.collect"):
        n_neurons = int(sae.d_in)
        tc_basis = UnitBasis.transcoder(tc, neurons_out=linear_weight(probe.sites[0].module))
        bases = [
            None,
            sae,
            tc_basis,
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
        by_name = dict(zip([*NAMES[:4], *NORM_CONTROLLED], stats, strict=True))
        by_name[NAMES[4]] = collect_units(base_probe, texts, top_k=s.top_k, categories=labels)
        del baseline
    names = list(NAMES)
    stats = [by_name[n] for n in names]
    with rep.timed("units.score"):
        embed = context_embedder(model, tokenizer)
        # in this order: each basis's coherence sample is the next draw of one generator
        ordered = {n: by_name[n] for n in [*names, *NORM_CONTROLLED]}
        tables = score_bases(ordered, embed, s.coherence_units, seed)
        cmp = compare_units({n: tables[n] for n in names}, seed=seed)
        cmp_norm = compare_units({n: tables[n] for n in NORM_CONTROLLED}, seed=seed)
    with rep.timed("units.fidelity"):
        held_out = texts[: s.fidelity_texts]
        fits = {
            what: _fit_metrics(d, model, tokenizer, held_out, layer, s.loss_recovered)
            for what, d in (("sae", sae), ("transcoder", tc))
        }
    with rep.timed("units.explorer"):
        rep.pages[EXPLORER] = explorer_html(
            stats[:3],
            tables=[tables[n] for n in names[:3]],
            bases=[UnitBasis.neurons(n_neurons), UnitBasis.sae(sae), tc_basis],
            title=f"Neurons, SAE latents and transcoder latents of {name}, layer {layer}",
        )
    _add(
        rep,
        s,
        stats,
        tables,
        (cmp, cmp_norm),
        names,
        fits,
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
    fits: dict[str, dict[str, float]],
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
        **fits,
        "comparison": cmp.to_dict(),
        "comparison_norm_controlled": cmp_norm.to_dict(),
    }
    rep.add_figure(
        "units_scores",
        score_distributions({n: tables[n] for n in names}, seed=0),
        "Per-unit polysemanticity scores of the layer's neurons, the latents of an SAE trained "
        "on them, the latents of a skip transcoder trained to do the MLP's job, a random "
        "rotation of the neurons, and the neurons of the same architecture with random "
        "weights. Context coherence is computed for a random sample of "
        f"{s.coherence_units} units of each (it embeds every top context with the model).",
        "full",
    )
    table = summary_table(cmp, names)
    small = "quick, small " if quick else ""
    size = (
        f"a {small}TopK SAE with {stats[1].n_units} latents (k = {s.k}) trained on "
        f"{s.samples:,} tokens"
        if trained_here
        else f"the given SAE ({stats[1].n_units} latents)"
    )
    sae_fit, tc_fit = fits["sae"], fits["transcoder"]
    damage = (
        "; loss recovered is the share of the damage of zero-ablating the site that splicing "
        "the dictionary in avoids (1 = harmless)"
        if s.loss_recovered
        else ""
    )
    intro = (
        f"The seed paper's question asked directly: what makes each unit of layer {layer} of "
        f"{html.escape(model_name)} fire? Units are read on {n_texts} held-out paragraphs of "
        f"two public-domain novels ({stats[0].count:,} tokens; half Sherlock Holmes, half War "
        f"and Peace). Five sets of units: the {stats[0].n_units} MLP neurons; the latents of "
        f"{size} of the default corpus ({fidelity_text(sae_fit, 'the neurons')}); the latents "
        f"of a {small}skip transcoder with as many latents and the same k, trained on the same "
        "tokens to map what the MLP reads to what it writes, so its latents stand in for the "
        f"neurons themselves (Dunefsky et al. 2024; Paulo et al. 2025; "
        f"{fidelity_text(tc_fit, 'the MLP output')}); a random orthogonal rotation of the "
        "neurons (a null with the same information and no privileged directions); and the "
        "neurons of the same architecture with random weights. Fidelity is measured on the "
        f"first {int(sae_fit['fidelity_texts'])} of those paragraphs{damage}. Scores (no "
        "language model as a judge): <b>token "
        "diversity</b>, the effective number of distinct tokens among a unit's top "
        f"{s.top_k} activations (1 = a single token); <b>context coherence</b>, the "
        "activation-weighted mean cosine similarity of the model's embeddings of those "
        "contexts (Pach et al. 2025); <b>category spread</b>, how evenly it fires across the "
        "two books (0 = one book only). Medians with 95% bootstrap intervals."
        + (
            " <b>Quick run</b>: a small SAE and transcoder trained briefly and few texts, so "
            "their numbers say little; run without --quick for the real comparison."
            if quick
            else ""
        )
    )
    # (hypothesis, the other basis, whether the neurons are the more polysemantic one, and
    # the fidelity at which the comparison is made)
    hypotheses = [
        (
            "MLP neurons are polysemantic: a sparse autoencoder's latents are more monosemantic "
            "than the neurons they are trained on.",
            "SAE latents",
            True,
            f" The SAE: {fidelity_text(sae_fit, 'the neurons')}.",
        ),
        (
            "MLP neurons are polysemantic: a transcoder's latents, trained to do the MLP's job "
            "in its place, are more monosemantic than the MLP's neurons.",
            "transcoder latents",
            True,
            f" The transcoder: {fidelity_text(tc_fit, 'the MLP output')}.",
        ),
        (
            "The neuron basis is privileged: neurons are more monosemantic than random "
            "directions in the same space.",
            "rotated neurons",
            False,
            "",
        ),
        (
            "Training makes neurons more monosemantic than the same architecture with random "
            "weights.",
            "random-weights neurons",
            False,
            "",
        ),
    ]
    claims = []
    for i, (hypothesis, other, neurons_polysemantic, fidelity) in enumerate(hypotheses):
        verdict, because = _claim_verdict(cmp, "neurons", other, neurons_polysemantic)
        claims.append(
            Claim(
                hypothesis,
                verdict,
                because + fidelity,
                cmp.verdict("neurons", other),
                ("units_scores",) if i == 0 else (),
                table if i == 0 else "",
                source="Hypothesis",
            )
        )
    raw_verdict = claims[2].verdict  # neurons vs the plain rotation
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
            summary_table(cmp_norm, list(NORM_CONTROLLED)),
            source="Hypothesis",
        )
    )
    browse = (
        f'<p class="verdict"><a href="{EXPLORER}"><b>Browse every neuron, SAE latent and '
        f"transcoder latent</b></a> ({stats[0].n_units} neurons, {stats[1].n_units} and "
        f"{stats[2].n_units} latents) in the explorer: their top contexts shaded by "
        "activation, random active samples, histograms, scores, the neurons each latent's "
        "direction loads on (a transcoder latent's: its output direction through the MLP's "
        "output projection), sorting, token search and a permalink per unit "
        f"({EXPLORER}#latent-12). One file; it works offline.</p>"
    )
    after = browse + "".join(
        examples_html(st, tables[n], n) for st, n in zip(stats[:3], names[:3], strict=True)
    )
    rep.sections.append(
        Section(
            "Beyond the paper: what makes a neuron fire, and does an SAE separate it?",
            intro,
            claims,
            after,
        )
    )


def _fit_metrics(
    d: Any, model: Any, tokenizer: Any, texts: list[str], layer: int, loss: bool
) -> dict[str, float]:
    """A dictionary's held-out quality on ``texts`` (an SAE's of the neurons, a transcoder's of
    the MLP output) and, with ``loss``, its loss recovered spliced in (several passes of the
    whole model: the section's slowest measurement, so ``--quick`` leaves it out)."""
    from superposition.sae.corpus_evaluation import corpus_quality

    q = corpus_quality(d, model, texts, layer, tokenizer=tokenizer).result()
    out = {
        "fvu": rounded(q.fvu),
        "l0": rounded(q.l0),
        "dead_fraction": rounded(q.dead_fraction),
    }
    if loss:
        f = d.fidelity(model, texts, layer, tokenizer=tokenizer)
        out |= {
            "loss_recovered": rounded(f.loss_recovered),
            "loss_recovered_mean": rounded(f.loss_recovered_mean),
        }
    return {**out, "fidelity_texts": len(texts)}


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
