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
    "bounded_heap",
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


# Allocations of this size or more get their own mapping, given back to the system when freed.
HEAP_MMAP_BYTES = 4 << 20


def bounded_heap() -> bool:
    """With glibc, give every allocation of :data:`HEAP_MMAP_BYTES` or more its own mapping
    (``mallopt(M_MMAP_THRESHOLD)``), returned to the system when it is freed.

    glibc's default threshold rises with the largest block freed (up to 32 MiB), after which
    tensors of a few MiB to 32 MiB come from the heap and stay there when freed: a default
    ``sae train`` then peaked ~0.4 GB above what it held (2.26 vs 1.85 GB in a shorter run),
    for ~5% of its training speed (fresh pages for a batch's 25 MB tensors). Left alone when
    ``MALLOC_MMAP_THRESHOLD_`` is set, and elsewhere than glibc.

    Returns:
        Whether the threshold was set.
    """
    import ctypes
    import os

    if sys.platform != "linux" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl), or no mallopt
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    ok = bool(mallopt(m_mmap_threshold, HEAP_MMAP_BYTES))
    # Free memory at the top of the heap is given back above this (the fixed threshold no
    # longer moves it with the mmap threshold).
    mallopt(m_trim_threshold, HEAP_MMAP_BYTES)
    return ok


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
    folder (``--sae FOLDER``), of the neurons or of another site of the block (whose layer and
    site the folder says)."""
    from superposition.sae import SparseAutoencoder

    if (folder / "sae.safetensors").is_file() and (folder / "sae.json").is_file():
        return SparseAutoencoder.load(folder / "sae")
    if not (folder / "cfg.json").is_file():
        raise ValueError(
            f"--sae {str(folder)!r} holds no sae.safetensors (a folder written by "
            "`superposition sae train`) nor cfg.json (an SAELens or sparsify folder)"
        )
    return SparseAutoencoder.load(folder)
