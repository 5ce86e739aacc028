"""The command line: ``superposition reproduce | toy | probe | sae train | sae eval | units |
stream``.

Bad arguments exit with status 2 and one line on stderr (no traceback), like argparse's own
usage errors; every check that can run before the work starts does (the model name, the layer,
whether ``--out`` can be created), and a rejected run writes nothing.

``units`` and ``stream`` also run under ``torchrun`` (``torchrun --nproc-per-node N -m
superposition units ...``): each rank streams its share of the corpus, the results are reduced,
and rank 0 alone draws the progress bar and writes the outputs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from superposition._io import atomic_write

__all__ = ["main"]

_EXAMPLES = {
    "reproduce": "example:\n  superposition reproduce --out superposition-out\n"
    "  superposition reproduce --model bert-base-uncased --layer 0 --quick",
    "toy": "example:\n  superposition toy --features 20 --hidden 5 --activation relu "
    "--probability 1 0.1 0.01 --importance 0.7 --out toy-out",
    "sae": "example:\n  superposition sae train --layer 0 --d-sae 6144 --k 32 --out sae-out\n"
    "  superposition sae eval --sae sae-out\n"
    "  superposition sae train --layer 0 --out sae-out --checkpoint-every 100 [--resume]",
    "units": "example:\n  superposition units --layer 0 --out units-out\n"
    "  superposition units --layer 0 --sae sae-out --rotation --out units-out",
    "explore": "example:\n  superposition explore --layer 0 --sae sae-out --out explorer.html\n"
    "  superposition explore --corpus texts.jsonl --text-column text --texts 5000",
    "stream": "example:\n  superposition stream --corpus texts.txt --layer 0 --out stream-out\n"
    "  torchrun --nproc-per-node 4 -m superposition stream --corpus corpus/ --out stream-out",
    "probe": "example:\n  superposition probe --texts texts.txt --layer 0 --out probe-out\n"
    "  superposition probe --texts texts.txt --layer all --no-progress\n"
    "  superposition probe --model bert-base-uncased --texts texts.txt --keep-padding",
}

# `superposition reproduce` (MiniLM, layer 0, the small double-descent sweep, the units section)
# on 2 quiet CPU cores: the full run 2 min 58 s wall (the units section 122 s of it, its SAE
# 89 s); --quick about 35 s less than before the units section (54 s of CPU) plus about 35 s.
_QUICK_TIME = "about 1.5 minutes"
_FULL_TIME = "about 3 minutes"

# Errors a library call raises for bad input; anything else is a bug and keeps its traceback.
_USER_ERRORS = (ValueError, TypeError, IndexError, LookupError, OSError, ImportError)
# The commands that share their work between the ranks of a torchrun launch.
_DISTRIBUTED = ("units", "explore", "stream", "sae train")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _fail(prog: str, err: BaseException) -> int:
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def _layer_or_all(value: str) -> int | str:
    if value == "all":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a layer index (0, -1, ...) or 'all', got {value!r}"
        ) from None


def _model_arguments(parser: argparse.ArgumentParser, *, all_layers: bool = False) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="Hugging Face model name or local path (default: the shipped MiniLM)",
    )
    if all_layers:
        parser.add_argument(
            "--layer",
            type=_layer_or_all,
            default=0,
            help="MLP layer to probe (negative counts from the end), or 'all' (default: 0)",
        )
    else:
        parser.add_argument("--layer", type=int, default=0, help="MLP layer to probe (default: 0)")


def _check_out(path: Path) -> None:
    """Fail before any work when ``path`` cannot become the output folder; creates nothing."""
    where = str(path)
    ancestor = path.absolute()
    try:
        if path.exists() and not path.is_dir():
            raise ValueError(
                f"cannot create the output folder {where!r}: a file of that name exists; "
                "pass --out naming a folder"
            )
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise ValueError(
                f"cannot create the output folder {where!r}: {str(ancestor)!r} is a file, "
                "not a folder"
            )
        # The only sure test of "can a folder be made here": make one, and remove it at once.
        Path(tempfile.mkdtemp(prefix=".superposition-check-", dir=ancestor)).rmdir()
    except OSError as err:
        reason = err.strerror or str(err)
        raise ValueError(
            f"cannot create the output folder {where!r}: making a folder in "
            f"{str(ancestor)!r} fails ({reason})"
        ) from err


def _make_out(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(
            f"cannot create the output folder {str(path)!r}: {err.strerror or err}"
        ) from err


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="superposition",
        description="Toy models of superposition and MLP-neuron probes for Hugging Face models.",
    )
    from superposition import __version__

    parser.add_argument("--version", action="version", version=f"superposition {__version__}")
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        parser_class=_Parser,
        metavar="{reproduce,toy,probe,sae,units,explore,stream}",
    )

    rep = sub.add_parser(
        "reproduce",
        help="run every experiment of the seed paper and write a report",
        description="Regenerate the seed paper's experiments (section 3: toy models; section 5: "
        "a real transformer, as published, corrected, and against a random-weights baseline). "
        "Writes report.html, metrics.json and PNG figures.",
        epilog=_EXAMPLES["reproduce"],
        formatter_class=fmt,
    )
    _model_arguments(rep)
    rep.add_argument(
        "--out",
        type=Path,
        default=Path("superposition-out"),
        help="output folder (default: superposition-out)",
    )
    rep.add_argument(
        "--quick",
        action="store_true",
        help=f"shorter training: {_QUICK_TIME} instead of {_FULL_TIME} for the full run "
        "on 2 CPU cores",
    )
    rep.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    rep.add_argument("--no-progress", action="store_true", help="hide progress bars")
    rep.add_argument(
        "--full-double-descent",
        action="store_true",
        help="run the memorization / double-descent section at the ARENA replication's scale "
        "(n = 1,000 features, T up to 2,000: about 10 more minutes on 2 CPU cores)",
    )
    rep.add_argument(
        "--sae",
        type=Path,
        default=None,
        help="an SAE folder from `superposition sae train` for this model and layer: the units "
        "section uses it instead of training one",
    )
    rep.add_argument(
        "--full-units",
        action="store_true",
        help="the units section at full scale (a 4x SAE trained on the 784k tokens of the "
        "train split, units read on 1,200 paragraphs: about 15 more minutes on 2 CPU cores)",
    )
    rep.add_argument(
        "--no-units",
        action="store_true",
        help="skip the units section (neurons vs SAE latents vs nulls)",
    )

    toy = sub.add_parser(
        "toy",
        help="train a sweep of toy models and save the model and figures",
        description="Train one toy model per feature probability, all at once, and save the "
        "model (safetensors + JSON) and its figures.",
        epilog=_EXAMPLES["toy"],
        formatter_class=fmt,
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

    probe = sub.add_parser(
        "probe",
        help="capture MLP neuron activations of a model over a text file",
        description="Run texts (one per line) through a model, capture the MLP neurons of one "
        "layer, and save the activations, their statistics and Figures 4-7.",
        epilog=_EXAMPLES["probe"],
        formatter_class=fmt,
    )
    _model_arguments(probe, all_layers=True)
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

    sae = sub.add_parser(
        "sae",
        help="train or evaluate a sparse autoencoder on a model's MLP neurons",
        description="Dictionary learning on the MLP neurons of one layer: `sae train` streams "
        "a corpus through the model into a shuffling activation store and trains a sparse "
        "autoencoder; `sae eval` measures one on held-out text (FVU, L0, dead latents, and the "
        "loss recovered when it is spliced into the model).",
        epilog=_EXAMPLES["sae"],
        formatter_class=fmt,
    )
    sae_sub = sae.add_subparsers(
        dest="sae_command", required=True, parser_class=_Parser, metavar="{train,eval}"
    )
    train = sae_sub.add_parser(
        "train",
        help="train an SAE on one layer's neurons over a corpus",
        description="Train a sparse autoencoder on the MLP neurons of one layer over a corpus, "
        "then evaluate it on held-out text. Writes sae.safetensors, sae.json (the SAE), and "
        "metrics.json (its settings, quality and fidelity).",
        epilog=_EXAMPLES["sae"],
        formatter_class=fmt,
    )
    _model_arguments(train)
    _corpus_arguments(train)
    train.add_argument(
        "--kind",
        default="topk",
        choices=["topk", "batchtopk", "jumprelu", "relu"],
        help="SAE architecture (default: %(default)s)",
    )
    train.add_argument("--d-sae", type=int, default=None, help="latents (default: 4 x neurons)")
    train.add_argument(
        "--k", type=int, default=32, help="active latents per token, TopK kinds (default: 32)"
    )
    train.add_argument(
        "--samples",
        type=int,
        default=None,
        help="training tokens (default: one pass over the training corpus)",
    )
    train.add_argument(
        "--batch-size",
        type=int,
        default=4096,
        help="tokens per step, per rank under torchrun (default: %(default)s)",
    )
    train.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="folder to cache activations in (reused by later runs and epochs)",
    )
    train.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    train.add_argument(
        "--out", type=Path, default=Path("sae-out"), help="output folder (default: %(default)s)"
    )
    train.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="write the training state to OUT/checkpoint.safetensors (and .json) every N "
        "steps and at the end",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run that wrote OUT/checkpoint.* (same arguments: anything else is "
        "refused before training); add --checkpoint-every to keep writing checkpoints",
    )
    train.add_argument("--no-progress", action="store_true", help="hide progress bars")

    ev = sae_sub.add_parser(
        "eval",
        help="evaluate a trained SAE on held-out text",
        description="Evaluate an SAE written by `sae train` on held-out text: FVU, L0, dead "
        "latents, and loss recovered when spliced into the model. Prints JSON.",
        epilog=_EXAMPLES["sae"],
        formatter_class=fmt,
    )
    ev.add_argument("--sae", type=Path, required=True, help="folder written by `sae train`")
    ev.add_argument("--model", default=None, help="model (default: the one it was trained on)")
    ev.add_argument("--layer", type=int, default=None, help="layer (default: its training layer)")
    ev.add_argument(
        "--corpus",
        default=None,
        help="held-out texts: a .txt/.jsonl/.parquet file or folder, or 'gutenberg' (default: the "
        "held-out split of the training corpus when it was 'gutenberg')",
    )
    ev.add_argument(
        "--text-column",
        default=None,
        help="JSONL field / Parquet column of the text (default: as in training)",
    )
    ev.add_argument(
        "--eval-texts", type=int, default=2000, help="at most this many texts (default: 2000)"
    )

    un = sub.add_parser(
        "units",
        help="what makes each neuron (and SAE latent) fire: top contexts and scores",
        description="Stream a corpus through one layer and score every unit: the neurons, the "
        "latents of an SAE (--sae) and a random rotation of the neurons (--rotation, a null). "
        "Writes per basis a table (CSV and JSON: max activation, density, kurtosis, token "
        "diversity, context coherence, category spread), the records of its top contexts "
        "(.units.safetensors and .units.json), a figure of the score distributions and, for "
        "two or more bases, comparison.json (medians with 95%% bootstrap intervals).",
        epilog=_EXAMPLES["units"],
        formatter_class=fmt,
    )
    _unit_arguments(un)
    un.add_argument("--out", type=Path, default=Path("units-out"), help="output folder")

    ex = sub.add_parser(
        "explore",
        help="write an offline HTML explorer of the neurons (and SAE latents) of a layer",
        description="Stream a corpus through one layer and write one self-contained HTML page "
        "(no network, no server) to browse every unit: top contexts shaded by activation, "
        "random active samples, activation histograms, scores, decoder loadings, token search "
        "and a permalink per unit (page.html#latent-12).",
        epilog=_EXAMPLES["explore"],
        formatter_class=fmt,
    )
    _unit_arguments(ex)
    ex.add_argument(
        "--out", type=Path, default=Path("explorer.html"), help="the page (default: explorer.html)"
    )
    _stream_parser(sub, fmt)
    return parser


def _unit_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments `units` and `explore` share (all but --out)."""
    _model_arguments(parser)
    parser.add_argument("--sae", type=Path, default=None, help="a folder written by `sae train`")
    parser.add_argument(
        "--rotation", action="store_true", help="also score a random rotation of the neurons"
    )
    parser.add_argument(
        "--corpus",
        default=None,
        help="texts: a .txt file (a text per line), a .jsonl or .parquet file or a folder of them "
        "(default: held-out paragraphs of the two novels, labelled by book)",
    )
    _text_column_argument(parser)
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


def _stream_parser(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    st = sub.add_parser(
        "stream",
        help="neuron statistics of one layer over a corpus of any size",
        description="Stream a corpus through one layer and accumulate per-neuron statistics "
        "(moments, activation frequency) and the neuron Gram matrix, in memory that does not "
        "grow with the corpus. Writes stats.safetensors (StreamingStatistics.load reads it; "
        "saved statistics of separate runs merge exactly). Under torchrun each rank streams "
        "its share of the corpus.",
        epilog=_EXAMPLES["stream"],
        formatter_class=fmt,
    )
    _model_arguments(st)
    st.add_argument(
        "--corpus",
        required=True,
        help="texts: a .txt file (a text per line), a .jsonl or .parquet file or a folder of them",
    )
    _text_column_argument(st)
    st.add_argument(
        "--texts", type=int, default=None, help="at most this many texts (default: all)"
    )
    st.add_argument(
        "--batch-size", type=int, default=32, help="texts per forward pass (default: 32)"
    )
    st.add_argument("--no-gram", action="store_true", help="skip the neuron Gram matrix")
    st.add_argument("--out", type=Path, default=Path("stream-out"), help="output folder")
    st.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _text_column_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--text-column",
        default="text",
        help="JSONL field / Parquet column of the text (default: text)",
    )


def _corpus_arguments(parser: argparse.ArgumentParser) -> None:
    from superposition.probe.corpus import DEFAULT_CORPUS

    parser.add_argument(
        "--corpus",
        default=DEFAULT_CORPUS,
        help=f"training texts: a .txt file (a text per line), a .jsonl or .parquet file, a "
        f"folder of them, or {DEFAULT_CORPUS!r}: two public-domain novels, about 790k tokens "
        f"(default: %(default)s; its held-out split is evaluated on)",
    )
    _text_column_argument(parser)
    parser.add_argument(
        "--eval-texts",
        type=int,
        default=2000,
        help="held-out texts to evaluate on (default: %(default)s)",
    )


def _read_texts(path: Path) -> list[str]:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read --texts {str(path)!r}: {err}") from err
    texts = [line.strip() for line in raw.splitlines() if line.strip()]
    if not texts:
        raise ValueError(f"--texts {str(path)!r} has no text: expected one text per line")
    return texts


def _reproduce(args: argparse.Namespace) -> int:
    from superposition.report import ReproduceConfig, reproduce, summary

    _check_out(args.out)
    cfg = ReproduceConfig(
        out=args.out,
        model=args.model,
        layer=args.layer,
        quick=args.quick,
        seed=args.seed,
        progress=not args.no_progress,
        full_double_descent=args.full_double_descent,
        units=not args.no_units,
        full_units=args.full_units,
        sae=args.sae,
    )
    result = reproduce(cfg)
    print(summary(result))
    print(f"report: {(cfg.out / 'report.html').resolve()}")
    return 0


def _toy(args: argparse.Namespace) -> int:
    from superposition import plot
    from superposition.toy import SparseFeatureDataset, ToyModel

    if args.steps < 1:
        raise ValueError(f"--steps must be a positive int, got {args.steps}")
    _check_out(args.out)
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
    _make_out(args.out)
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


def _probe(args: argparse.Namespace) -> int:
    from superposition.probe import ActivationProbe, Activations, load_model

    texts = _read_texts(args.texts)  # before loading any model
    _check_out(args.out)
    model, tokenizer = load_model(args.model)
    probe = ActivationProbe(
        model,
        layer=[args.layer] if isinstance(args.layer, int) else "all",
        tokenizer=tokenizer,
        keep_padding=args.keep_padding,
        batch_size=args.batch_size,
        progress=False if args.no_progress else None,
    )
    _make_out(args.out)
    results: list[Activations] = probe.run(texts)
    several = len(results) > 1
    for acts in results:
        folder = args.out / f"layer{acts.layer}" if several else args.out
        _make_out(folder)
        _save_probe(acts, folder, n_texts=len(texts), args=args)
        print(
            f"{acts.n_tokens} tokens x {acts.n_neurons} neurons from "
            f"{acts.module_name}; saved to {folder.resolve()}"
        )
    return 0


def _save_probe(acts: Any, folder: Path, *, n_texts: int, args: argparse.Namespace) -> None:
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


def _corpora(name: str, text_column: str, eval_texts: int) -> tuple[Any, Any, bool]:
    """``(train, held_out, truly_held_out)`` for ``--corpus``; the default corpus has a
    held-out split, a user's corpus is evaluated on its first texts (not held out)."""
    from superposition.probe.corpus import DEFAULT_CORPUS, default_corpus, load_corpus

    if eval_texts < 1:
        raise ValueError(f"--eval-texts must be a positive int, got {eval_texts}")
    if name == DEFAULT_CORPUS:
        return default_corpus("train"), default_corpus("test").head(eval_texts), True
    train = load_corpus(Path(name), text_column=text_column)
    return train, train.head(eval_texts), False


def _evaluate_sae(
    sae: Any, model: Any, tokenizer: Any, layer: int, texts: Any, progress: bool
) -> dict[str, Any]:
    from superposition.probe import ActivationProbe

    probe = ActivationProbe(model, layer=layer, tokenizer=tokenizer, progress=progress or None)
    acts = probe.run(list(texts))
    quality = sae.evaluate(acts.values)
    fidelity = sae.fidelity(model, texts, layer, tokenizer=tokenizer)
    return {
        "n_texts": fidelity.n_texts,
        "n_tokens": acts.n_tokens,
        "l0": quality.l0,
        "fvu": quality.fvu,
        "mse": quality.mse,
        "dead_fraction": quality.dead_fraction,
        "shrinkage": quality.shrinkage,
        "fidelity": fidelity.to_dict(),
    }


def _sae_train(args: argparse.Namespace) -> int:
    import time

    from superposition.probe import ActivationProbe, load_model
    from superposition.sae import ActivationStore, SparseAutoencoder

    for name in ("batch_size", "k"):
        value = getattr(args, name)
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive int, got {value}")
    if args.samples is not None and args.samples < 1:
        raise ValueError(f"--samples must be a positive int, got {args.samples}")
    if args.d_sae is not None and args.d_sae < 1:
        raise ValueError(f"--d-sae must be a positive int, got {args.d_sae}")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise ValueError(f"--checkpoint-every must be a positive int, got {args.checkpoint_every}")
    checkpoint = args.out / "checkpoint"
    if args.resume and not (args.out / "checkpoint.safetensors").is_file():
        raise ValueError(
            f"--resume continues from {str(args.out / 'checkpoint.safetensors')!r}, which does "
            "not exist; train with --checkpoint-every N first (same --out)"
        )
    train_texts, eval_texts, held_out = _corpora(args.corpus, args.text_column, args.eval_texts)
    _check_out_once(args.out)
    from superposition.distributed import world

    # Under torchrun: each rank reads its share of the corpus into its own store, fit averages
    # the ranks' gradients, and rank 0 alone saves, evaluates and writes.
    rank, ranks = world()
    progress = not args.no_progress and rank == 0
    t0 = time.perf_counter()
    model, tokenizer = load_model(args.model)
    probe = ActivationProbe(model, layer=args.layer, tokenizer=tokenizer, progress=False)
    first = next(iter(train_texts), None)
    if first is None:
        raise ValueError(f"--corpus {args.corpus!r} holds no text")
    width = probe.run([first]).n_neurons
    topk = args.kind in ("topk", "batchtopk")
    sae = SparseAutoencoder(
        width, args.d_sae or 4 * width, kind=args.kind, k=args.k if topk else None, seed=args.seed
    )  # checks d_sae and k before any work
    limit = probe._limit(tokenizer)
    tokens = sum(
        len(ids)
        for ids in tokenizer(list(train_texts), truncation=limit is not None, max_length=limit)[
            "input_ids"
        ]
    )
    samples = args.samples or tokens
    store = ActivationStore(
        probe,
        train_texts.shard(rank, ranks) if ranks > 1 else train_texts,
        batch_size=args.batch_size,
        # up to 16 batches, within 1 GiB of float32 rows
        buffer_rows=max(2 * args.batch_size, min(16 * args.batch_size, 2**28 // width)),
        epochs=-(-samples // tokens) + 1,
        seed=args.seed,
        cache_dir=args.cache / f"rank{rank}" if args.cache and ranks > 1 else args.cache,
        progress=progress,
    )
    made: OSError | None = None
    if rank == 0:
        try:
            _make_out(args.out)
        except OSError as err:
            made = err
    from superposition.distributed import check_all_ranks

    check_all_ranks(made)  # no rank goes on (to its checkpoint folder) before it exists
    t1 = time.perf_counter()
    sae.fit(
        store,
        samples=samples,
        batch_size=args.batch_size,
        progress=progress,
        checkpoint=checkpoint if args.checkpoint_every else None,
        checkpoint_every=args.checkpoint_every,
        # The store is read again up to the checkpoint's step (fit's docstring).
        resume=checkpoint if args.resume else None,
    )
    t2 = time.perf_counter()
    if rank != 0:  # every rank ends with the same SAE; rank 0 evaluates and writes it
        return 0
    sae.save(args.out / "sae")
    result = _evaluate_sae(sae, model, tokenizer, args.layer, eval_texts, progress)
    t3 = time.perf_counter()
    model_name = getattr(model, "name_or_path", None) or args.model
    payload = {
        "model": model_name,
        "layer": args.layer,
        "module": probe.sites[0].module_name,
        "corpus": args.corpus,
        "text_column": args.text_column,
        "train_tokens_per_epoch": tokens,
        "samples": samples,
        "kind": args.kind,
        "d_in": width,
        "d_sae": sae.d_sae,
        "k": sae.k,
        "batch_size": args.batch_size,
        "ranks": ranks,
        "seed": args.seed,
        "resumed": args.resume,
        "held_out": held_out,
        "eval": result,
        "seconds": {
            "load": round(t1 - t0, 1),
            "train": round(t2 - t1, 1),
            "eval": round(t3 - t2, 1),
        },
    }
    atomic_write(args.out / "metrics.json", json.dumps(payload, indent=1))
    _print_eval(result, held_out)
    print(f"trained in {t2 - t1:.0f} s on {samples:,} tokens; saved to {args.out.resolve()}")
    return 0


def _print_eval(result: dict[str, Any], held_out: bool) -> None:
    fid = result["fidelity"]
    where = "held-out" if held_out else "training (not held-out)"
    print(
        f"on {result['n_tokens']:,} {where} tokens: L0 {result['l0']:.1f}, FVU "
        f"{result['fvu']:.3f}, dead {100 * result['dead_fraction']:.1f}%, loss recovered "
        f"{fid['loss_recovered']:.3f} vs zero-ablation ({fid['loss_recovered_mean']:.3f} vs "
        f"mean-ablation; {fid['metric']})"
    )


def _sae_eval(args: argparse.Namespace) -> int:
    from superposition.probe import load_model
    from superposition.probe.corpus import DEFAULT_CORPUS
    from superposition.sae import SparseAutoencoder

    folder = args.sae
    trained: dict[str, Any] = {}
    if (folder / "metrics.json").is_file():
        trained = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    if not (folder / "sae.safetensors").is_file():
        raise ValueError(
            f"--sae {str(folder)!r} holds no sae.safetensors; pass a folder written by "
            "`superposition sae train`"
        )
    sae = SparseAutoencoder.load(folder / "sae")
    corpus = args.corpus or trained.get("corpus")
    if corpus is None:
        raise ValueError("pass --corpus: the SAE's folder does not say what it was trained on")
    column = args.text_column or trained.get("text_column", "text")
    _, eval_texts, held_out = _corpora(corpus, column, args.eval_texts)
    held_out = held_out or (args.corpus is not None and args.corpus != DEFAULT_CORPUS)
    layer = args.layer if args.layer is not None else int(trained.get("layer", 0))
    model, tokenizer = load_model(args.model or trained.get("model"))
    result = _evaluate_sae(sae, model, tokenizer, layer, eval_texts, False)
    _print_eval(result, held_out)
    print(json.dumps(result, indent=1))
    return 0


def _unit_records(
    args: argparse.Namespace, out: Path
) -> tuple[dict[str, Any], dict[str, Any], list[Any]] | None:
    """What `units` and `explore` share: check the arguments, collect and score every basis.

    Returns the records and tables by basis name, and the bases in the same order; ``None``
    on a torchrun rank other than 0 (rank 0 writes the outputs).
    """
    from superposition.probe import ActivationProbe, load_model
    from superposition.probe.corpus import load_corpus
    from superposition.report.units import book_texts, score_bases
    from superposition.sae import SparseAutoencoder
    from superposition.units import UnitBasis, collect_units, context_embedder

    for name in ("texts", "top_k"):
        if getattr(args, name) < 1:
            raise ValueError(
                f"--{name.replace('_', '-')} must be a positive int, got {getattr(args, name)}"
            )
    if args.coherence_units < 0:
        raise ValueError(f"--coherence-units must be 0 or more, got {args.coherence_units}")
    sae = None
    if args.sae is not None:
        if not (args.sae / "sae.safetensors").is_file():
            raise ValueError(
                f"--sae {str(args.sae)!r} holds no sae.safetensors; pass a folder written by "
                "`superposition sae train`"
            )
        sae = SparseAutoencoder.load(args.sae / "sae")
    labels: list[str] | None
    if args.corpus is None:
        texts, labels = book_texts(args.texts)
    else:
        texts = list(load_corpus(Path(args.corpus), text_column=args.text_column).head(args.texts))
        labels = None
        if not texts:
            raise ValueError(f"--corpus {args.corpus!r} holds no text")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be a positive int, got {args.batch_size}")
    _check_out_once(out)
    progress = not args.no_progress
    model, tokenizer = load_model(args.model)
    probe = ActivationProbe(
        model,
        layer=args.layer,
        tokenizer=tokenizer,
        batch_size=args.batch_size,
        progress=progress or None,
    )
    width = probe.run(texts[:1]).n_neurons
    if sae is not None and sae.d_in != width:
        raise ValueError(
            f"the SAE in {str(args.sae)!r} reads {sae.d_in} neurons but layer {args.layer} has "
            f"{width}; pass an SAE trained on this model and layer"
        )
    bases: dict[str, Any] = {"neurons": None}
    if sae is not None:
        bases["SAE latents"] = sae
    if args.rotation:
        bases["rotated neurons"] = UnitBasis.rotation(width, seed=args.seed)
    stats = collect_units(probe, texts, list(bases.values()), top_k=args.top_k, categories=labels)
    if _rank() != 0:  # every rank has the reduced records; rank 0 scores and writes them
        return None
    named = dict(zip(bases, stats, strict=True))
    tables = score_bases(named, context_embedder(model, tokenizer), args.coherence_units, args.seed)
    return named, tables, [UnitBasis.of(u, width) for u in bases.values()]


def _units(args: argparse.Namespace) -> int:
    from superposition.explorer import explore
    from superposition.plot import save_figure, score_distributions
    from superposition.units.compare import compare_units

    records = _unit_records(args, args.out)
    if records is None:  # not rank 0 under torchrun: rank 0 writes
        return 0
    named, tables, bases = records
    stats = list(named.values())
    _make_out(args.out)
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


def _explore(args: argparse.Namespace) -> int:
    from superposition.explorer import explore

    if args.out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out must be an .html file, got {str(args.out)!r}")
    if not args.out.parent.is_dir():
        raise ValueError(
            f"--out {str(args.out)!r}: its folder {str(args.out.parent)!r} does not exist; "
            "create it first"
        )
    records = _unit_records(args, args.out.parent)
    if records is None:  # not rank 0 under torchrun: rank 0 writes
        return 0
    named, tables, bases = records
    page = explore(list(named.values()), args.out, tables=list(tables.values()), bases=bases)
    size = page.stat().st_size / 1e6
    units = ", ".join(f"{r.n_units} {name}" for name, r in named.items())
    print(f"saved {units} to {page.resolve()} ({size:.1f} MB); open it in any browser, offline")
    return 0


def _stream(args: argparse.Namespace) -> int:
    from superposition.probe import ActivationProbe, load_model
    from superposition.probe.corpus import load_corpus

    for name in ("texts", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive int, got {value}")
    corpus = load_corpus(Path(args.corpus), text_column=args.text_column)
    if args.texts is not None:
        corpus = corpus.head(args.texts)
    _check_out_once(args.out)
    model, tokenizer = load_model(args.model)
    probe = ActivationProbe(
        model,
        layer=args.layer,
        tokenizer=tokenizer,
        batch_size=args.batch_size,
        progress=False if args.no_progress else None,
    )
    stats = probe.stream(corpus, gram=not args.no_gram)
    if _rank() != 0:
        return 0
    _make_out(args.out)
    stats.save(args.out / "stats.safetensors")
    print(
        f"{stats.count:,} tokens x {stats.n_neurons} neurons from {stats.module_name}; "
        f"saved to {(args.out / 'stats.safetensors').resolve()}"
    )
    return 0


def _rank() -> int:
    from superposition.distributed import world

    return world()[0]


def _check_out_once(path: Path) -> None:
    """:func:`_check_out` on rank 0, which alone writes; every rank learns the outcome (so a
    bad ``--out`` stops all of them before any work, and no rank waits for one that left)."""
    from superposition.distributed import check_all_ranks

    error = None
    if _rank() == 0:
        try:
            _check_out(path)
        except ValueError as err:
            error = err
    check_all_ranks(error)


def _torchrun_world() -> int:
    """The number of ranks torchrun launched (1 when it did not launch this process)."""
    import os

    try:
        return int(os.environ.get("WORLD_SIZE", "1")) if "RANK" in os.environ else 1
    except ValueError:
        return 1


def _sae(args: argparse.Namespace) -> int:
    return _sae_train(args) if args.sae_command == "train" else _sae_eval(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``superposition`` command.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for bad arguments.
    """
    parser = _parser()
    if not (sys.argv[1:] if argv is None else list(argv)):
        # No command at all: show what there is to run, not just "arguments are required".
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    prog = f"superposition {args.command}" + (
        f" {args.sae_command}" if args.command == "sae" else ""
    )
    run = {
        "reproduce": _reproduce,
        "toy": _toy,
        "probe": _probe,
        "sae": _sae,
        "units": _units,
        "explore": _explore,
        "stream": _stream,
    }[args.command]
    launched = _torchrun_world() > 1
    if launched and prog.removeprefix("superposition ") not in _DISTRIBUTED:
        return _fail(
            prog,
            ValueError(
                f"{prog} does not share its work between ranks, so under torchrun every rank "
                f"would run all of it and write the same files; run it as one process (the "
                f"commands that run under torchrun: {', '.join(_DISTRIBUTED)})"
            ),
        )
    owned = False
    try:
        if launched:
            from superposition.distributed import init_from_env

            owned = init_from_env()
        return run(args)
    except _USER_ERRORS as err:
        return _fail(prog, err)
    finally:
        if owned:
            import torch.distributed as dist

            dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
