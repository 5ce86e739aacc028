"""``superposition stream``: per-neuron statistics and the neuron Gram matrix of one layer over
a corpus of any size, in memory that does not grow with it.

Under torchrun each rank streams its share of the corpus; the statistics are reduced and rank 0
alone writes them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from superposition._checks import positive_int
from superposition.cli._args import FORMAT, model_arguments, text_column_argument
from superposition.cli._common import check_out_once, make_out, rank

__all__ = ["EXAMPLE", "add_parser", "run"]

EXAMPLE = (
    "example:\n  superposition stream --corpus texts.txt --layer 0 --out stream-out\n"
    "  torchrun --nproc-per-node 4 -m superposition stream --corpus corpus/ --out stream-out"
)


def add_parser(sub: Any) -> None:
    """Add ``stream`` to the subcommands ``sub``."""
    st = sub.add_parser(
        "stream",
        help="neuron statistics of one layer over a corpus of any size",
        description="Stream a corpus through one layer and accumulate per-neuron statistics "
        "(moments, activation frequency) and the neuron Gram matrix, in memory that does not "
        "grow with the corpus. Writes stats.safetensors (StreamingStatistics.load reads it; "
        "saved statistics of separate runs merge exactly). Under torchrun each rank streams "
        "its share of the corpus.",
        epilog=EXAMPLE,
        formatter_class=FORMAT,
    )
    model_arguments(st)
    st.add_argument(
        "--corpus",
        required=True,
        help="texts: a .txt file (a text per line), a .jsonl or .parquet file or a folder of them",
    )
    text_column_argument(st)
    st.add_argument(
        "--texts", type=int, default=None, help="at most this many texts (default: all)"
    )
    st.add_argument(
        "--batch-size", type=int, default=32, help="texts per forward pass (default: 32)"
    )
    st.add_argument("--no-gram", action="store_true", help="skip the neuron Gram matrix")
    st.add_argument("--out", type=Path, default=Path("stream-out"), help="output folder")
    st.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``stream``: stats.safetensors in ``--out``."""
    from superposition.probe import ActivationProbe, load_model
    from superposition.probe.corpus import load_corpus

    if args.texts is not None:
        positive_int(args.texts, "--texts")
    positive_int(args.batch_size, "--batch-size")
    corpus = load_corpus(Path(args.corpus), text_column=args.text_column)
    if args.texts is not None:
        corpus = corpus.head(args.texts)
    check_out_once(args.out)
    model, tokenizer = load_model(args.model)
    probe = ActivationProbe(
        model,
        layer=args.layer,
        tokenizer=tokenizer,
        batch_size=args.batch_size,
        progress=False if args.no_progress else None,
    )
    stats = probe.stream(corpus, gram=not args.no_gram)
    if rank() != 0:
        return 0
    make_out(args.out)
    stats.save(args.out / "stats.safetensors")
    print(
        f"{stats.count:,} tokens x {stats.n_neurons} neurons from {stats.module_name}; "
        f"saved to {(args.out / 'stats.safetensors').resolve()}"
    )
    return 0
