"""Argument definitions more than one command shares: the parser class, ``--model`` and
``--layer``, ``--text-column``, the arguments of ``units`` and ``explore``, and the help
layout."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

__all__ = [
    "FORMAT",
    "Parser",
    "layer_or_all",
    "model_arguments",
    "text_column_argument",
    "unit_arguments",
]

FORMAT = argparse.RawDescriptionHelpFormatter
"""Every command's help layout: the descriptions wrap, the examples keep their lines."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2 (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def layer_or_all(value: str) -> int | str:
    """``--layer``'s type where every layer may be asked for: an index, or ``"all"``."""
    if value == "all":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a layer index (0, -1, ...) or 'all', got {value!r}"
        ) from None


def model_arguments(parser: argparse.ArgumentParser, *, all_layers: bool = False) -> None:
    """``--model`` and ``--layer`` (``all_layers``: ``--layer all`` is allowed too)."""
    parser.add_argument(
        "--model",
        default=None,
        help="Hugging Face model name or local path (default: the shipped MiniLM)",
    )
    if all_layers:
        parser.add_argument(
            "--layer",
            type=layer_or_all,
            default=0,
            help="MLP layer to probe (negative counts from the end), or 'all' (default: 0)",
        )
    else:
        parser.add_argument("--layer", type=int, default=0, help="MLP layer to probe (default: 0)")


def text_column_argument(parser: argparse.ArgumentParser) -> None:
    """``--text-column``: where the text is in a JSONL or Parquet corpus."""
    parser.add_argument(
        "--text-column",
        default="text",
        help="JSONL field / Parquet column of the text (default: text)",
    )


def unit_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments ``units`` and ``explore`` share (all but ``--out``)."""
    model_arguments(parser)
    parser.add_argument("--sae", type=Path, default=None, help="a folder written by `sae train`")
    parser.add_argument(
        "--transcoder",
        type=Path,
        default=None,
        help="a folder written by `transcoder train` (or an SAELens / sparsify transcoder): "
        "its latents, read from what the MLP reads, beside the neurons",
    )
    parser.add_argument(
        "--rotation", action="store_true", help="also score a random rotation of the neurons"
    )
    parser.add_argument(
        "--corpus",
        default=None,
        help="texts: a .txt file (a text per line), a .jsonl or .parquet file or a folder of them "
        "(default: held-out paragraphs of the two novels, labelled by book)",
    )
    text_column_argument(parser)
    parser.add_argument(
        "--texts", type=int, default=1200, help="at most this many texts (default: 1200)"
    )
    parser.add_argument("--top-k", type=int, default=20, help="top contexts per unit (default: 20)")
    parser.add_argument(
        "--coherence-units",
        type=int,
        default=200,
        help="units per basis whose context coherence is computed, at random (it embeds each "
        "top context with the model; 0 skips it; default: 200)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--batch-size", type=int, default=32, help="texts per forward pass (default: 32)"
    )
