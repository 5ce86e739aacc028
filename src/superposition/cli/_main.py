"""The command line: ``superposition reproduce | toy | probe | sae train | sae eval |
transcoder train | units | explore | stream``; one module per command holds its parser and
its run.

Bad arguments exit with status 2 and one line on stderr (no traceback), like argparse's own
usage errors; every check that can run before the work starts does (the model name, the layer,
whether ``--out`` can be created), and a rejected run writes nothing.

``units``, ``explore``, ``stream``, ``sae train`` and ``transcoder train`` also run under
``torchrun`` (``torchrun --nproc-per-node N -m superposition units ...``): each rank streams its
share of the corpus, the results are reduced, and rank 0 alone draws the progress bar and writes
the outputs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from superposition.cli import explore, probe, reproduce, sae, stream, toy, transcoder, units
from superposition.cli._args import Parser
from superposition.cli._common import USER_ERRORS, bounded_heap, fail, torchrun_world

__all__ = ["main"]

# Each command's module, in the order --help lists them.
_COMMANDS = {
    "reproduce": reproduce,
    "toy": toy,
    "probe": probe,
    "sae": sae,
    "transcoder": transcoder,
    "units": units,
    "explore": explore,
    "stream": stream,
}
# The commands that share their work between the ranks of a torchrun launch.
_DISTRIBUTED = ("units", "explore", "stream", "sae train", "transcoder train")


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="superposition",
        description="Toy models of superposition and MLP-neuron probes for Hugging Face models.",
    )
    from superposition import __version__

    parser.add_argument("--version", action="version", version=f"superposition {__version__}")
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        parser_class=Parser,
        metavar="{" + ",".join(_COMMANDS) + "}",
    )
    for module in _COMMANDS.values():
        module.add_parser(sub)
    return parser


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
    bounded_heap()  # a command's peak memory is what it holds, not what it once freed
    prog = f"superposition {args.command}" + (
        f" {args.sae_command}" if args.command in ("sae", "transcoder") else ""
    )
    run: Callable[[argparse.Namespace], int] = _COMMANDS[args.command].run
    launched = torchrun_world() > 1
    if launched and prog.removeprefix("superposition ") not in _DISTRIBUTED:
        return fail(
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
            import faulthandler

            from superposition.distributed import init_from_env

            # A rank killed by a signal from native code (gloo, NCCL) shows torchrun only an
            # exit code; with this its own output names the Python line it was on.
            if not faulthandler.is_enabled():
                faulthandler.enable()

            owned = init_from_env()
        return run(args)
    except USER_ERRORS as err:
        return fail(prog, err)
    finally:
        if owned:
            import torch.distributed as dist

            dist.destroy_process_group()
