"""What the commands share besides arguments: one-line errors, the output folder checked
before any work and made after, the SAE folder of ``sae train``, and torchrun ranks."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from superposition.sae import SparseAutoencoder, Transcoder

__all__ = [
    "USER_ERRORS",
    "check_out",
    "check_out_once",
    "fail",
    "load_sae_folder",
    "load_transcoder_folder",
    "make_out",
    "rank",
    "torchrun_world",
]

USER_ERRORS = (ValueError, TypeError, IndexError, LookupError, OSError, ImportError)
"""Errors a library call raises for bad input; anything else is a bug and keeps its traceback."""


def fail(prog: str, err: BaseException) -> int:
    """Print ``err``'s first line as ``prog: error: ...`` on stderr; the exit status, 2."""
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def check_out(path: Path) -> None:
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


def make_out(path: Path) -> None:
    """Create the output folder (and its parents); a ValueError that names it if that fails."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(
            f"cannot create the output folder {str(path)!r}: {err.strerror or err}"
        ) from err


def rank() -> int:
    """This process's rank under torchrun (0 otherwise)."""
    from superposition.distributed import world

    return world()[0]


def check_out_once(path: Path) -> None:
    """:func:`check_out` on rank 0, which alone writes; every rank learns the outcome (so a
    bad ``--out`` stops all of them before any work, and no rank waits for one that left)."""
    from superposition.distributed import check_all_ranks

    error = None
    if rank() == 0:
        try:
            check_out(path)
        except ValueError as err:
            error = err
    check_all_ranks(error)


def torchrun_world() -> int:
    """The number of ranks torchrun launched (1 when it did not launch this process)."""
    import os

    try:
        return int(os.environ.get("WORLD_SIZE", "1")) if "RANK" in os.environ else 1
    except ValueError:
        return 1


def load_transcoder_folder(folder: Path) -> Transcoder:
    """The transcoder in a folder written by ``superposition transcoder train``, or an SAELens
    or sparsify transcoder folder (``--transcoder FOLDER``)."""
    from superposition.sae import Transcoder

    if (folder / "transcoder.safetensors").is_file() and (folder / "transcoder.json").is_file():
        return Transcoder.load(folder / "transcoder")
    if not (folder / "cfg.json").is_file():
        raise ValueError(
            f"--transcoder {str(folder)!r} holds no transcoder.safetensors (a folder written by "
            "`superposition transcoder train`) nor cfg.json (an SAELens or sparsify transcoder)"
        )
    return Transcoder.load(folder)


def load_sae_folder(folder: Path) -> SparseAutoencoder:
    """The SAE in a folder written by ``superposition sae train``, or an SAELens or sparsify
    folder (``--sae FOLDER``) of the neuron site."""
    from superposition.sae import SparseAutoencoder

    if (folder / "sae.safetensors").is_file() and (folder / "sae.json").is_file():
        return SparseAutoencoder.load(folder / "sae")
    if not (folder / "cfg.json").is_file():
        raise ValueError(
            f"--sae {str(folder)!r} holds no sae.safetensors (a folder written by "
            "`superposition sae train`) nor cfg.json (an SAELens or sparsify folder)"
        )
    sae = SparseAutoencoder.load(folder)
    if sae.site not in (None, "neurons"):
        raise ValueError(
            f"the SAE in {str(folder)!r} reads the site {sae.site!r} of layer {sae.layer}; "
            "this command compares bases of the MLP's neurons, so it needs an SAE of the "
            "neuron site (SAELens's blocks.<layer>.mlp.hook_post)"
        )
    return sae
