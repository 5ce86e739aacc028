"""``superposition sae train`` and ``sae eval``: dictionary learning on one layer's MLP
neurons over a corpus, and an SAE measured on held-out text.

``sae train`` also runs under torchrun: each rank reads its share of the corpus into its own
activation store, the SAE averages the ranks' gradients, and rank 0 alone saves, evaluates and
writes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from superposition._checks import positive_int
from superposition._io import atomic_write
from superposition.cli._args import FORMAT, Parser, model_arguments, text_column_argument
from superposition.cli._common import check_out_once, load_sae_folder, make_out
from superposition.sae.kinds import KINDS

__all__ = ["EXAMPLE", "add_parser", "run", "train", "train_parser"]

EXAMPLE = (
    "example:\n  superposition sae train --layer 0 --d-sae 6144 --k 32 --out sae-out\n"
    "  superposition sae eval --sae sae-out\n"
    "  superposition sae train --layer 0 --out sae-out --checkpoint-every 100 [--resume]"
)

# Token positions per forward pass of the training probe (see ActivationProbe's max_tokens).
PROBE_TOKENS = 4096


def add_parser(sub: Any) -> None:
    """Add ``sae`` (with ``train`` and ``eval`` below it) to the subcommands ``sub``."""
    sae = sub.add_parser(
        "sae",
        help="train or evaluate a sparse autoencoder on a model's MLP neurons",
        description="Dictionary learning on the MLP neurons of one layer: `sae train` streams "
        "a corpus through the model into a shuffling activation store and trains a sparse "
        "autoencoder; `sae eval` measures one on held-out text (FVU, L0, dead latents, and the "
        "loss recovered when it is spliced into the model).",
        epilog=EXAMPLE,
        formatter_class=FORMAT,
    )
    sae_sub = sae.add_subparsers(
        dest="sae_command", required=True, parser_class=Parser, metavar="{train,eval}"
    )
    train_parser(sae_sub)
    _eval_parser(sae_sub)


def _corpus_arguments(parser: argparse.ArgumentParser) -> None:
    from superposition.probe.corpus import DEFAULT_CORPUS

    parser.add_argument(
        "--corpus",
        default=DEFAULT_CORPUS,
        help=f"training texts: a .txt file (a text per line), a .jsonl or .parquet file, a "
        f"folder of them, or {DEFAULT_CORPUS!r}: two public-domain novels, about 790k tokens "
        f"(default: %(default)s; its held-out split is evaluated on)",
    )
    text_column_argument(parser)
    parser.add_argument(
        "--eval-texts",
        type=int,
        default=2000,
        help="held-out texts to evaluate on (default: %(default)s)",
    )


def train_parser(sub: Any, *, transcoder: bool = False, epilog: str = EXAMPLE) -> None:
    """Add ``train`` to ``sub``: an SAE's, or with ``transcoder`` a transcoder's."""
    if transcoder:
        help_ = "train a transcoder on one layer's MLP over a corpus"
        description = (
            "Train a transcoder (a wide, sparse MLP) to map what the MLP of one layer reads "
            "(mlp_in) to what it writes (mlp_out) over a corpus, then evaluate it on held-out "
            "text. Writes transcoder.safetensors, transcoder.json and metrics.json (its "
            "settings, quality (FVU of mlp_out, L0, dead latents) and fidelity: the loss "
            "recovered with it in place of the MLP)."
        )
    else:
        help_ = "train an SAE on one layer's neurons over a corpus"
        description = (
            "Train a sparse autoencoder on the MLP neurons of one layer over a corpus, then "
            "evaluate it on held-out text. Writes sae.safetensors, sae.json (the SAE), and "
            "metrics.json (its settings, quality and fidelity)."
        )
    train = sub.add_parser(
        "train", help=help_, description=description, epilog=epilog, formatter_class=FORMAT
    )
    model_arguments(train)
    _corpus_arguments(train)
    train.add_argument(
        "--kind",
        default="topk",
        choices=list(KINDS),
        help="architecture (default: %(default)s; matryoshka uses nested widths growing 4x "
        "from d_sae/32)",
    )
    train.add_argument(
        "--d-sae", type=int, default=None, help="latents (default: 4 x the MLP's neurons)"
    )
    if transcoder:
        train.add_argument(
            "--skip",
            action="store_true",
            help="a skip transcoder: add a linear path from mlp_in to mlp_out",
        )
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


def _eval_parser(sub: Any) -> None:
    ev = sub.add_parser(
        "eval",
        help="evaluate a trained SAE on held-out text",
        description="Evaluate an SAE written by `sae train` on held-out text: FVU, L0, dead "
        "latents, and loss recovered when spliced into the model. Prints JSON.",
        epilog=EXAMPLE,
        formatter_class=FORMAT,
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


def run(args: argparse.Namespace) -> int:
    """Run ``sae train`` or ``sae eval``."""
    return train(args) if args.sae_command == "train" else _eval(args)


def train(args: argparse.Namespace) -> int:
    """Run ``sae train``, or ``transcoder train`` when ``args.command`` says so."""
    from superposition.distributed import check_all_ranks, world
    from superposition.probe import ActivationProbe, load_model
    from superposition.sae import (
        ActivationStore,
        SparseAutoencoder,
        count_tokens,
        evaluate_on_corpus,
        split_corpus,
        store_buffer_rows,
        store_epochs,
    )
    from superposition.sae.kinds import kind_class
    from superposition.sae.transcoder import Transcoder

    transcoder = args.command == "transcoder"
    name = "transcoder" if transcoder else "sae"

    positive_int(args.batch_size, "--batch-size")
    positive_int(args.k, "--k")
    for value, flag in (
        (args.samples, "--samples"),
        (args.d_sae, "--d-sae"),
        (args.checkpoint_every, "--checkpoint-every"),
    ):
        if value is not None:
            positive_int(value, flag)
    checkpoint = args.out / "checkpoint"
    if args.resume and not (args.out / "checkpoint.safetensors").is_file():
        raise ValueError(
            f"--resume continues from {str(args.out / 'checkpoint.safetensors')!r}, which does "
            "not exist; train with --checkpoint-every N first (same --out)"
        )
    positive_int(args.eval_texts, "--eval-texts")
    train_texts, eval_texts, held_out = split_corpus(
        args.corpus, text_column=args.text_column, eval_texts=args.eval_texts
    )
    check_out_once(args.out)
    # Under torchrun: each rank reads its share of the corpus into its own store, fit averages
    # the ranks' gradients, and rank 0 alone saves, evaluates and writes.
    rank, ranks = world()
    progress = not args.no_progress and rank == 0
    t0 = time.perf_counter()
    model, tokenizer = load_model(args.model)
    sites = ["mlp_in", "mlp_out"] if transcoder else ["neurons"]
    # A bounded forward pass: a batch of 32 long texts (512 tokens) held ~300 MB of MLP
    # intermediates at MiniLM's width, the largest transient of a run.
    probe = ActivationProbe(
        model,
        layer=args.layer,
        site=sites,
        tokenizer=tokenizer,
        max_tokens=PROBE_TOKENS,
        progress=False,
    )
    first = next(iter(train_texts), None)
    if first is None:
        raise ValueError(f"--corpus {args.corpus!r} holds no text")
    widths = [a.n_neurons for a in probe.run([first])]
    width = sum(widths)  # of a training row: [mlp_in | mlp_out] for a transcoder
    n_neurons = widths[0]
    if transcoder:  # the default d_sae counts the MLP's neurons, which it does not read
        neurons = ActivationProbe(model, layer=args.layer, tokenizer=tokenizer, progress=False)
        n_neurons = neurons.run([first]).n_neurons
    kw: dict[str, Any] = {
        "kind": args.kind,
        "k": args.k if "k" in kind_class(args.kind).hyperparameters() else None,
        "seed": args.seed,
    }
    d_sae = args.d_sae or 4 * n_neurons
    # Built now: checks d_sae and k before any work.
    sae = (
        Transcoder(widths[0], widths[1], d_sae, skip=args.skip, **kw)
        if transcoder
        else SparseAutoencoder(width, d_sae, **kw)
    )
    tokens = count_tokens(train_texts, tokenizer, max_length=probe.token_limit(tokenizer))
    samples = args.samples or tokens
    store = ActivationStore(
        probe,
        train_texts,  # under torchrun each rank's store reads (and caches) its share
        batch_size=args.batch_size,
        buffer_rows=store_buffer_rows(args.batch_size, width),
        epochs=store_epochs(samples, tokens),
        seed=args.seed,
        cache_dir=args.cache,
        progress=progress,
    )
    made: OSError | None = None
    if rank == 0:
        try:
            make_out(args.out)
        except OSError as err:
            made = err
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
    sae.layer = probe.layers[0]  # saved with it: where it reads
    if not transcoder:
        sae.site = "neurons"
    sae.save(args.out / name)
    result = evaluate_on_corpus(
        sae, model, eval_texts, args.layer, tokenizer=tokenizer, progress=progress
    )
    t3 = time.perf_counter()
    model_name = getattr(model, "name_or_path", None) or args.model
    payload = {
        "model": model_name,
        "layer": args.layer,
        "module": "+".join(p.module_name for p in probe.sites),
        "corpus": args.corpus,
        "text_column": args.text_column,
        "train_tokens_per_epoch": tokens,
        "samples": samples,
        "kind": args.kind,
        "d_in": sae.d_in,
        **({"d_out": sae.d_out, "skip": args.skip} if transcoder else {}),
        "d_sae": sae.d_sae,
        "k": sae.k,
        "batch_size": args.batch_size,
        "ranks": ranks,
        "seed": args.seed,
        "resumed": args.resume,
        "held_out": held_out,
        "eval": result.to_dict(),
        "seconds": {
            "load": round(t1 - t0, 1),
            "train": round(t2 - t1, 1),
            "eval": round(t3 - t2, 1),
        },
    }
    atomic_write(args.out / "metrics.json", json.dumps(payload, indent=1))
    print(result.summary(held_out=held_out))
    print(f"trained in {t2 - t1:.0f} s on {samples:,} tokens; saved to {args.out.resolve()}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from superposition.probe import load_model
    from superposition.probe.corpus import DEFAULT_CORPUS
    from superposition.sae import evaluate_on_corpus, split_corpus

    folder = args.sae
    trained: dict[str, Any] = {}
    if (folder / "metrics.json").is_file():
        trained = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    sae = load_sae_folder(folder)
    corpus = args.corpus or trained.get("corpus")
    if corpus is None:
        raise ValueError("pass --corpus: the SAE's folder does not say what it was trained on")
    column = args.text_column or trained.get("text_column", "text")
    positive_int(args.eval_texts, "--eval-texts")
    _, eval_texts, held_out = split_corpus(corpus, text_column=column, eval_texts=args.eval_texts)
    # A corpus named here, other than the default, is taken to be held out from training.
    held_out = held_out or (args.corpus is not None and args.corpus != DEFAULT_CORPUS)
    layer = args.layer if args.layer is not None else int(trained.get("layer", 0))
    model, tokenizer = load_model(args.model or trained.get("model"))
    result = evaluate_on_corpus(sae, model, eval_texts, layer, tokenizer=tokenizer)
    print(result.summary(held_out=held_out))
    print(json.dumps(result.to_dict(), indent=1))
    return 0
