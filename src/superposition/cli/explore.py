"""``superposition explore``: one offline HTML page to browse the units of a layer (its neurons,
and an SAE's latents), read as ``units`` reads them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from superposition.cli._args import FORMAT, unit_arguments
from superposition.cli.units import unit_records

__all__ = ["EXAMPLE", "add_parser", "run"]

EXAMPLE = (
    "example:\n  superposition explore --layer 0 --sae sae-out --out explorer.html\n"
    "  superposition explore --corpus texts.jsonl --text-column text --texts 5000"
)


def add_parser(sub: Any) -> None:
    """Add ``explore`` to the subcommands ``sub``."""
    ex = sub.add_parser(
        "explore",
        help="write an offline HTML explorer of the neurons (and SAE latents) of a layer",
        description="Stream a corpus through one layer and write one self-contained HTML page "
        "(no network, no server) to browse every unit: top contexts shaded by activation, "
        "random active samples, activation histograms, scores, decoder loadings, token search "
        "and a permalink per unit (page.html#latent-12).",
        epilog=EXAMPLE,
        formatter_class=FORMAT,
    )
    unit_arguments(ex)
    ex.add_argument(
        "--out", type=Path, default=Path("explorer.html"), help="the page (default: explorer.html)"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``explore``: the page at ``--out``, whose folder must exist."""
    from superposition.explorer import explore

    if args.out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out must be an .html file, got {str(args.out)!r}")
    if not args.out.parent.is_dir():
        raise ValueError(
            f"--out {str(args.out)!r}: its folder {str(args.out.parent)!r} does not exist; "
            "create it first"
        )
    records = unit_records(args, args.out.parent)
    if records is None:  # not rank 0 under torchrun: rank 0 writes
        return 0
    named, tables, bases = records
    page = explore(list(named.values()), args.out, tables=list(tables.values()), bases=bases)
    size = page.stat().st_size / 1e6
    units = ", ".join(f"{r.n_units} {name}" for name, r in named.items())
    print(f"saved {units} to {page.resolve()} ({size:.1f} MB); open it in any browser, offline")
    return 0
