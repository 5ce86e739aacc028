"""``superposition transcoder train``: a transcoder (a wide, sparse MLP) trained to do the job
of one layer's MLP, from what it reads (``mlp_in``) to what it writes (``mlp_out``), over a
corpus; the training, checkpoints and torchrun support are ``sae train``'s
(:mod:`superposition.cli.sae`)."""

from __future__ import annotations

import argparse
from typing import Any

from superposition.cli._args import FORMAT, Parser
from superposition.cli.sae import train, train_parser

__all__ = ["EXAMPLE", "add_parser", "run"]

EXAMPLE = (
    "example:\n  superposition transcoder train --layer 0 --k 32 --out transcoder-out\n"
    "  superposition transcoder train --layer 0 --skip --out skip-out"
)


def add_parser(sub: Any) -> None:
    """Add ``transcoder`` (with ``train`` below it) to the subcommands ``sub``."""
    parser = sub.add_parser(
        "transcoder",
        help="train a transcoder: sparse latents in place of a layer's MLP",
        description="A transcoder maps what the MLP of one layer reads to what it writes "
        "through many sparse latents, so its latents stand in for the MLP's neurons. "
        "`transcoder train` streams a corpus through the model, capturing both sites in one "
        "pass, trains one, and measures it on held-out text.",
        epilog=EXAMPLE,
        formatter_class=FORMAT,
    )
    commands = parser.add_subparsers(
        dest="sae_command", required=True, parser_class=Parser, metavar="{train}"
    )
    train_parser(commands, transcoder=True, epilog=EXAMPLE)


def run(args: argparse.Namespace) -> int:
    """Run ``transcoder train``."""
    return train(args)
