"""``superposition units``: what makes each unit of a layer fire (neurons, SAE latents, a
random rotation), scored and compared; also the reading that ``explore`` shares.

Under torchrun each rank streams its share of the corpus, the records are reduced, and rank 0
alone scores them and writes the outputs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from superposition._checks import positive_int
from superposition._io import atomic_write
from superposition.cli._args import FORMAT, unit_arguments
from superposition.cli._common import (
    check_out_once,
    load_sae_folder,
    load_transcoder_folder,
    make_out,
    rank,
)

__all__ = ["EXAMPLE", "add_parser", "run", "unit_records"]

EXAMPLE = (
    "example:\n  superposition units --layer 0 --out units-out\n"
    "  superposition units --layer 0 --sae sae-out --rotation --out units-out"
)


def add_parser(sub: Any) -> None:
    """Add ``units`` to the subcommands ``sub``."""
    un = sub.add_parser(
        "units",
        help="what makes each neuron (and SAE latent) fire: top contexts and scores",
        description="Stream a corpus through one layer and score every unit: the neurons, the "
        "latents of an SAE (--sae) and a random rotation of the neurons (--rotation, a null). "
        "Writes per basis a table (CSV and JSON: max activation, density, kurtosis, token "
        "diversity, context coherence, category spread), the records of its top contexts "
        "(.units.safetensors and .units.json), a figure of the score distributions and, for "
        "two or more bases, comparison.json (medians with 95% bootstrap intervals).",
        epilog=EXAMPLE,
        formatter_class=FORMAT,
    )
    unit_arguments(un)
    un.add_argument("--out", type=Path, default=Path("units-out"), help="output folder")


def unit_records(
    args: argparse.Namespace, out: Path
) -> tuple[dict[str, Any], dict[str, Any], list[Any]] | None:
    """What ``units`` and ``explore`` share: check the arguments, collect and score every basis.

    Returns the records and tables by basis name, and the bases in the same order; ``None``
    on a torchrun rank other than 0 (rank 0 writes the outputs).
    """
    from superposition.probe import ActivationProbe, load_model
    from superposition.probe.corpus import load_corpus
    from superposition.report.units import book_texts, score_bases
    from superposition.units import UnitBasis, collect_units, context_embedder

    positive_int(args.texts, "--texts")
    positive_int(args.top_k, "--top-k")
    if args.coherence_units < 0:
        raise ValueError(f"--coherence-units must be 0 or more, got {args.coherence_units}")
    sae = None if args.sae is None else load_sae_folder(args.sae)
    tc = None if args.transcoder is None else load_transcoder_folder(args.transcoder)
    labels: list[str] | None
    if args.corpus is None:
        texts, labels = book_texts(args.texts)
    else:
        texts = list(load_corpus(Path(args.corpus), text_column=args.text_column).head(args.texts))
        labels = None
        if not texts:
            raise ValueError(f"--corpus {args.corpus!r} holds no text")
    positive_int(args.batch_size, "--batch-size")
    check_out_once(out)
    progress = not args.no_progress
    for d, flag in ((sae, "--sae"), (tc, "--transcoder")):
        if d is not None and d.layer is not None and d.layer != args.layer:
            raise ValueError(
                f"the dictionary in {flag} {str(getattr(args, flag[2:]))!r} reads layer "
                f"{d.layer} but --layer is {args.layer}; pass --layer {d.layer}"
            )
    model, tokenizer = load_model(args.model)
    # Every basis reads its own site, all from one pass: a transcoder what the MLP reads, an
    # SAE of another site (an SAELens hook_resid_post release) that site.
    sae_basis = None if sae is None else UnitBasis.sae(sae)
    sae_site = None if sae_basis is None else sae_basis.site
    sites = ["neurons", *(["mlp_in"] if tc is not None else []), *([sae_site] if sae_site else [])]
    sites = list(dict.fromkeys(sites))
    probe = ActivationProbe(
        model,
        layer=args.layer,
        site=sites if len(sites) > 1 else "neurons",
        tokenizer=tokenizer,
        batch_size=args.batch_size,
        progress=progress or None,
    )
    first = probe.run(texts[:1])
    widths = [a.n_neurons for a in first] if isinstance(first, list) else [first.n_neurons]
    width_at = dict(zip(sites, widths, strict=True))
    width = widths[0]
    sae_width = width_at[sae_site] if sae_site else width
    if sae is not None and sae.d_in != sae_width:
        where = f"values at {sae_site}" if sae_site else "neurons"
        raise ValueError(
            f"the SAE in {str(args.sae)!r} reads {sae.d_in} {where} but layer {args.layer} "
            f"has {sae_width}; pass an SAE trained on this model and layer"
        )
    bases: dict[str, Any] = {"neurons": None}
    if sae_basis is not None:
        bases["SAE latents"] = sae_basis
    if tc is not None:
        bases["transcoder latents"] = transcoder_basis(tc, probe, width_at["mlp_in"], args)
    if args.rotation:
        bases["rotated neurons"] = UnitBasis.rotation(width, seed=args.seed)
    stats = collect_units(probe, texts, list(bases.values()), top_k=args.top_k, categories=labels)
    if rank() != 0:  # every rank has the reduced records; rank 0 scores and writes them
        return None
    named = dict(zip(bases, stats, strict=True))
    tables = score_bases(named, context_embedder(model, tokenizer), args.coherence_units, args.seed)
    return (
        named,
        tables,
        [UnitBasis.neurons(width) if u is None else u for u in bases.values()],
    )


def transcoder_basis(tc: Any, probe: Any, width: int, args: argparse.Namespace) -> Any:
    """The transcoder's latents as units, with directions over the neurons through the MLP's
    output projection (the module the neurons feed); its widths checked against the layer."""
    from superposition.probe.locate import linear_weight
    from superposition.units import UnitBasis

    w_out = linear_weight(probe.sites[0].module)
    if tc.d_in != width or (w_out is not None and tc.d_out != w_out.shape[0]):
        d_out = "?" if w_out is None else w_out.shape[0]
        raise ValueError(
            f"the transcoder in {str(args.transcoder)!r} maps {tc.d_in} -> {tc.d_out} values "
            f"but layer {args.layer}'s MLP maps {width} -> {d_out}; pass a transcoder trained "
            "on this model and layer"
        )
    return UnitBasis.transcoder(tc, neurons_out=w_out)


def run(args: argparse.Namespace) -> int:
    """Run ``units``: per basis a table and records, scores.png, comparison.json and
    explorer.html in ``--out``; prints the comparison's verdicts and each basis's median."""
    from superposition.explorer import explore
    from superposition.plot import save_figure, score_distributions
    from superposition.units.compare import compare_units

    records = unit_records(args, args.out)
    if records is None:  # not rank 0 under torchrun: rank 0 writes
        return 0
    named, tables, bases = records
    stats = list(named.values())
    make_out(args.out)
    explore(stats, args.out / "explorer.html", tables=list(tables.values()), bases=bases)
    for name, table in tables.items():
        stem = name.replace(" ", "_").replace("-", "_").lower()
        table.save(args.out, stem)
        named[name].save(args.out / f"{stem}.units")
    save_figure(score_distributions(tables, seed=args.seed), args.out / "scores.png")
    if len(tables) > 1:
        cmp = compare_units(tables, seed=args.seed)
        atomic_write(args.out / "comparison.json", json.dumps(cmp.to_dict(), indent=1))
        for other in list(tables)[1:]:
            print(cmp.verdict("neurons", other))
    for name, table in tables.items():
        td = table["token_diversity"]
        print(
            f"{name}: {len(table)} units, median token diversity "
            f"{float(td[~td.isnan()].median()):.2f} over {stats[0].count:,} tokens"
        )
    print(f"saved to {args.out.resolve()} (open explorer.html to browse the units)")
    return 0
