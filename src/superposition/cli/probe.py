"""``superposition probe``: capture one layer's (or every layer's) MLP neurons over a text
file, and save the activations, their statistics and the paper's Figures 4-7."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from superposition._io import atomic_write
from superposition.cli._args import FORMAT, model_arguments
from superposition.cli._common import check_out, make_out

__all__ = ["EXAMPLE", "add_parser", "run"]

EXAMPLE = (
    "example:\n  superposition probe --texts texts.txt --layer 0 --out probe-out\n"
    "  superposition probe --texts texts.txt --layer all --no-progress\n"
    "  superposition probe --model bert-base-uncased --texts texts.txt --keep-padding"
)


def add_parser(sub: Any) -> None:
    """Add ``probe`` to the subcommands ``sub``."""
    probe = sub.add_parser(
        "probe",
        help="capture MLP neuron activations of a model over a text file",
        description="Run texts (one per line) through a model, capture the MLP neurons of one "
        "layer, and save the activations, their statistics and Figures 4-7.",
        epilog=EXAMPLE,
        formatter_class=FORMAT,
    )
    model_arguments(probe, all_layers=True)
    probe.add_argument("--texts", type=Path, required=True, help="text file, one text per line")
    probe.add_argument(
        "--out",
        type=Path,
        default=Path("probe-out"),
        help="output folder; with --layer all one subfolder per layer (default: probe-out)",
    )
    probe.add_argument("--keep-padding", action="store_true", help="keep pad tokens (as the paper)")
    probe.add_argument(
        "--batch-size", type=int, default=32, help="texts per forward pass (default: 32)"
    )
    probe.add_argument(
        "--seed", type=int, default=0, help="seed of the neuron sample, Figure 6 (default: 0)"
    )
    probe.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _read_texts(path: Path) -> list[str]:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read --texts {str(path)!r}: {err}") from err
    texts = [line.strip() for line in raw.splitlines() if line.strip()]
    if not texts:
        raise ValueError(f"--texts {str(path)!r} has no text: expected one text per line")
    return texts


def run(args: argparse.Namespace) -> int:
    """Run ``probe``: per layer, activations, stats.json and Figures 4-7 in ``--out``."""
    from superposition.probe import ActivationProbe, Activations, load_model

    texts = _read_texts(args.texts)  # before loading any model
    check_out(args.out)
    model, tokenizer = load_model(args.model)
    probe = ActivationProbe(
        model,
        layer=[args.layer] if isinstance(args.layer, int) else "all",
        tokenizer=tokenizer,
        keep_padding=args.keep_padding,
        batch_size=args.batch_size,
        progress=False if args.no_progress else None,
    )
    make_out(args.out)
    results: list[Activations] = probe.run(texts)
    several = len(results) > 1
    for acts in results:
        folder = args.out / f"layer{acts.layer}" if several else args.out
        make_out(folder)
        _save(acts, folder, n_texts=len(texts), args=args)
        print(
            f"{acts.n_tokens} tokens x {acts.n_neurons} neurons from "
            f"{acts.module_name}; saved to {folder.resolve()}"
        )
    return 0


def _save(acts: Any, folder: Path, *, n_texts: int, args: argparse.Namespace) -> None:
    """One layer's activations, statistics and Figures 4-7 in ``folder``."""
    from superposition import plot

    acts.save(folder / "activations.safetensors")
    stats = acts.stats()
    summary: dict[str, Any] = {
        "model": acts.model_name,
        "layer": acts.layer,
        "module": acts.module_name,
        "n_texts": n_texts,
        "n_tokens": acts.n_tokens,
        "n_pad_tokens": int(acts.is_pad.sum()),
        "n_neurons": acts.n_neurons,
        "per_neuron": {
            k: getattr(stats, k).tolist()
            for k in ("mean", "variance", "frequency", "skewness", "kurtosis")
        },
    }
    atomic_write(folder / "stats.json", json.dumps(summary))
    X = acts.values
    for name, fig in {
        "fig4_cosine_heatmap": plot.cosine_heatmap(X, center=not args.keep_padding),
        "fig5_cosine_histogram": plot.cosine_histogram(X, center=not args.keep_padding),
        "fig6_neuron_traces": plot.neuron_traces(X, acts.tokens, n=50, seed=args.seed),
        "fig7_activation_sums": plot.activation_sums(X),
    }.items():
        plot.save_figure(fig, folder / f"{name}.png")
