"""``superposition toy``: train a sweep of toy models, one per feature probability, and save
the model and its figures."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from superposition._checks import positive_int
from superposition.cli._args import FORMAT
from superposition.cli._common import check_out, make_out

__all__ = ["EXAMPLE", "add_parser", "run"]

EXAMPLE = (
    "example:\n  superposition toy --features 20 --hidden 5 --activation relu "
    "--probability 1 0.1 0.01 --importance 0.7 --out toy-out"
)


def add_parser(sub: Any) -> None:
    """Add ``toy`` to the subcommands ``sub``."""
    toy = sub.add_parser(
        "toy",
        help="train a sweep of toy models and save the model and figures",
        description="Train one toy model per feature probability, all at once, and save the "
        "model (safetensors + JSON) and its figures.",
        epilog=EXAMPLE,
        formatter_class=FORMAT,
    )
    toy.add_argument(
        "--features", type=int, default=20, help="number of features n (default: %(default)s)"
    )
    toy.add_argument(
        "--hidden", type=int, default=5, help="hidden dimensions m (default: %(default)s)"
    )
    toy.add_argument(
        "--activation",
        default="relu",
        choices=["linear", "relu", "relu_hidden", "abs"],
        help="model variant (default: %(default)s)",
    )
    toy.add_argument(
        "--probability",
        type=float,
        nargs="+",
        default=[1.0, 0.1, 0.01],
        help="feature probabilities 1-S, one instance each (default: 1 0.1 0.01)",
    )
    toy.add_argument(
        "--importance",
        type=float,
        default=0.7,
        help="importance decay r: I_i=r^i (default: %(default)s)",
    )
    toy.add_argument(
        "--steps", type=int, default=10_000, help="training steps (default: %(default)s)"
    )
    toy.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    toy.add_argument(
        "--out", type=Path, default=Path("toy-out"), help="output folder (default: %(default)s)"
    )
    toy.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``toy``: model.safetensors and the figures in ``--out``."""
    from superposition import plot
    from superposition.toy import SparseFeatureDataset, ToyModel

    positive_int(args.steps, "--steps")
    check_out(args.out)
    data = SparseFeatureDataset(
        args.features,
        feature_probability=args.probability,
        importance=args.importance,
        distribution="signed" if args.activation == "abs" else "uniform",
        seed=args.seed,
    )
    model = ToyModel(
        args.features,
        args.hidden,
        n_instances=data.n_instances,
        activation=args.activation,
        seed=args.seed,
    )
    make_out(args.out)
    model.fit(data, steps=args.steps, progress=not args.no_progress)
    model.save(args.out / "model.safetensors")
    W, b = model.W.detach(), model.b.detach()
    plot.save_figure(
        plot.toy_weights(W, b, titles=[f"p={p:g}" for p in args.probability]),
        args.out / "weights.png",
    )
    plot.save_figure(plot.feature_geometry(W, data.feature_probability), args.out / "geometry.png")
    if args.hidden == 2:
        plot.save_figure(plot.feature_directions(W), args.out / "directions.png")
    print(f"saved model and figures to {args.out.resolve()}")
    return 0
