"""Writing files safely: atomic replacement that respects the umask, and one naming convention.

Every file the library writes (figures, reports, JSON, safetensors) goes through
:func:`atomic_path`: the data is written to a hidden temporary file in the destination's folder
and moved into place with :func:`os.replace`, so a reader sees either the old file or the whole
new one, and a failure leaves nothing behind. The temporary file is created with mode ``0o666``
filtered by the process umask, exactly like :func:`open`, so results are readable by whoever
could read a file the user wrote by hand (``tempfile`` would make them ``0o600``). Its name holds
the writer's host and process id, so a temporary file left by a writer that was killed mid-write
(``SIGKILL``, an out-of-memory kill) is removed by the next process that writes to that folder.

Saved objects follow one convention: ``save("run/acts")`` writes ``run/acts.safetensors`` (the
tensors) and ``run/acts.json`` (everything else); passing ``"run/acts.safetensors"`` means the
same thing, and ``load`` takes either spelling.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import socket
import stat
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "atomic_path",
    "atomic_write",
    "check_digest",
    "damaged",
    "load_saved",
    "read_json",
    "read_tensors",
    "save_tensors",
    "save_with_config",
    "saved_paths",
    "tensor_digest",
    "unreadable",
    "writer_lock",
]

TENSOR_SUFFIX = ".safetensors"


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``.

    Whatever the body writes to the yielded path replaces ``path`` atomically when the block
    ends without an error; on an error the temporary file is removed and ``path`` is untouched.
    A write that runs out of room (a full disk, ``RLIMIT_FSIZE``, a quota) becomes one
    ``OSError`` that names ``path`` and says so, whoever wrote the file (safetensors included).
    The file's permissions follow the umask (``0o644`` under the usual ``022``).

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     with atomic_path(f"{d}/out.txt") as tmp:
        ...         _ = tmp.write_text("hello")
        ...     sorted(p.name for p in Path(d).iterdir())
        ['out.txt']
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {str(target)!r}: its folder {str(target.parent)!r} does not exist; "
            "create it first"
        )
    # Same folder, so os.replace is a rename within one filesystem; the suffix is kept because
    # some writers (matplotlib) choose the format from it. The process id tells a later writer
    # whether the file's writer is gone (killed mid-write): then its temporary file is removed.
    _remove_dead_writers_files(target.parent)
    tag = f"{_HOST}-{os.getpid()}-{uuid.uuid4().hex}"
    temp = target.with_name(f".{target.name}.{tag}.tmp{target.suffix}")
    # os.open applies the umask to 0o666, as open() does (tempfile would force 0o600). Some
    # writers (safetensors) replace the file with one of their own 0o600 files, so the mode
    # read here, which is the umask's without touching the process-wide umask, is set again
    # after the body has written.
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        mode = stat.S_IMODE(temp.stat().st_mode)
        yield temp
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException as err:
        temp.unlink(missing_ok=True)
        full = _out_of_space(err)
        if full is None:
            raise
        raise OSError(
            full,
            f"cannot write {str(target)!r}: {os.strerror(full).lower()} (the disk is full or "
            "a file-size or quota limit was reached); nothing was written and any previous "
            "file there is unchanged; free some space (or raise the limit) and run again",
        ) from err


# What atomic_path names its temporary files: .NAME.HOST-PID-HEX.tmpSUFFIX. The host's tag
# keeps a process on another machine sharing the folder (NFS) from being taken for a dead one.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMP_NAME = re.compile(
    r"\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-[0-9a-f]{32}\.tmp(?P<suffix>.*)"
)
_SWEPT: set[str] = set()  # the folders this process has cleared of dead writers' files


def _remove_dead_writers_files(folder: Path) -> None:
    """Remove the temporary files of :func:`atomic_path` in ``folder`` whose writer is gone.

    A writer killed mid-write (``SIGKILL``: no ``except`` or ``finally`` runs) leaves its
    temporary file; this removes it the first time this process writes to ``folder`` (a killed
    run leaves nothing behind once it is resumed or rerun). Files of live processes, and any
    name not of the form ``.NAME.HOST-PID-HEX.tmpSUFFIX`` of this host, are kept.
    """
    key = os.path.abspath(folder)
    if key in _SWEPT:
        return
    _SWEPT.add(key)
    try:
        entries = [e.name for e in os.scandir(folder) if e.name.startswith(".")]
    except OSError:
        return
    for name in entries:
        match = _TEMP_NAME.fullmatch(name)
        if match is None or match["suffix"] != Path(match["name"]).suffix:
            continue
        if match["host"] != _HOST:  # another machine's writer: its liveness is unknown here
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and not _alive(pid):
            with contextlib.suppress(OSError):  # another process removed it first
                os.unlink(os.path.join(folder, name))


# The errors a write that ran out of room gives: the OS's own, or safetensors' (Rust's
# io::ErrorKind names) wrapped in its SafetensorError.
_FULL = {
    errno.ENOSPC: ("StorageFull", "No space left", "os error 28"),
    errno.EFBIG: ("FileTooLarge", "File too large", "os error 27"),
    errno.EDQUOT: ("FilesystemQuotaExceeded", "Disk quota exceeded", "os error 122"),
}


def _out_of_space(err: BaseException) -> int | None:
    """The errno of a write that ran out of room (disk full, file-size limit, quota), else
    ``None``."""
    if isinstance(err, OSError) and err.errno in _FULL:
        return err.errno
    if type(err).__name__ == "SafetensorError":
        text = str(err)
        for code, marks in _FULL.items():
            if any(mark in text for mark in marks):
                return code
    return None


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically; returns ``path``.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     atomic_write(f"{d}/x.json", "{}").read_text()
        '{}'
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as temp:
        temp.write_bytes(payload)
    return Path(path)


@contextmanager
def writer_lock(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Hold the lock file ``path`` (it holds this process's id) while writing ``what``.

    A lock held by a live process is a ``RuntimeError`` that names the process, before any
    write; one left by a process that is gone (killed) is taken over. The file is removed when
    the block ends, also on an error.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     with writer_lock(f"{d}/lock", "the cache"):
        ...         with writer_lock(f"{d}/lock", "the cache"):
        ...             pass  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        RuntimeError: the cache is being written by this process (it holds '.../lock')...
    """
    lock = Path(path)
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or "0")
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                who = "this process" if pid == os.getpid() else f"process {pid}"
                raise RuntimeError(
                    f"{what} is being written by {who} (it holds {str(lock)!r}); wait for it "
                    "to finish, or use another folder"
                ) from None
            lock.unlink(missing_ok=True)  # left by a writer that is gone
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        break
    else:
        raise RuntimeError(f"cannot take the lock {str(lock)!r} of {what}; try again")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def saved_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(tensors, sidecar)`` for a save/load path: ``x`` and ``x.safetensors`` both give
    ``(x.safetensors, x.json)``.

    Examples:
        >>> [p.name for p in saved_paths("run/acts")]
        ['acts.safetensors', 'acts.json']
        >>> [p.name for p in saved_paths("run/acts.safetensors")]
        ['acts.safetensors', 'acts.json']
        >>> [p.name for p in saved_paths("run/v1.2")]
        ['v1.2.safetensors', 'v1.2.json']
    """
    p = Path(path)
    base = p.with_name(p.name[: -len(TENSOR_SUFFIX)]) if p.name.endswith(TENSOR_SUFFIX) else p
    if not base.name:
        raise ValueError(f"expected a file name such as 'run/acts', got {str(path)!r}")
    return base.with_name(base.name + TENSOR_SUFFIX), base.with_name(base.name + ".json")


# The key of a safetensors header that holds :func:`tensor_digest` of the file's tensors.
DIGEST_KEY = "superposition_digest"


def tensor_digest(tensors: Mapping[str, Tensor]) -> str:
    """A checksum of ``tensors``: names, dtypes, shapes and bytes, in name order (BLAKE2b,
    128 bits, hex). Written into the header of every safetensors file the library saves and
    checked on load, so a bit that flipped on disk or in a copy is an error, not a wrong
    number.

    Examples:
        >>> import torch
        >>> a = {"w": torch.ones(2, 3)}
        >>> tensor_digest(a) == tensor_digest({"w": torch.ones(2, 3)})
        True
        >>> tensor_digest(a) == tensor_digest({"w": torch.ones(3, 2)})
        False
    """
    import torch

    h = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            data: Any = t.reshape(-1).view(torch.uint8).numpy()  # a buffer, no copy
            h.update(data)
    return h.hexdigest()


def save_tensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, Tensor],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """safetensors' ``save_file`` of ``tensors`` (detached, on the CPU, contiguous) with
    ``metadata`` and their :func:`tensor_digest` in the header. ``path`` is written as it is:
    pass the temporary path of :func:`atomic_path`."""
    from safetensors.torch import save_file

    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    save_file(flat, str(path), metadata={**(metadata or {}), DIGEST_KEY: tensor_digest(flat)})


def check_digest(
    path: str | os.PathLike[str], want: str | None, tensors: Mapping[str, Tensor], fix: str
) -> None:
    """Raise a ValueError naming ``path`` when ``tensors`` (read from it) do not match the
    digest ``want`` written with them; ``None`` (a file written before digests) passes.
    ``fix`` says what to do ("save the SparseAutoencoder again")."""
    if want is not None and tensor_digest(tensors) != want:
        raise ValueError(
            f"{str(path)!r} is damaged: its tensors do not match the checksum written with "
            f"them (a bit flipped on disk or in a copy, or the file was edited); {fix}"
        )


def read_tensors(
    path: str | os.PathLike[str], what: str
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """``(tensors, header metadata)`` of a safetensors file, its digest checked; a file that
    cannot be read is one ValueError naming it (:func:`damaged`)."""
    from safetensors import safe_open

    with damaged(path, what), safe_open(str(path), framework="pt") as f:
        header = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iter
    check_digest(path, header.get(DIGEST_KEY), tensors, f"save the {what} again")
    return tensors, header


def save_with_config(
    path: str | os.PathLike[str], tensors: dict[str, Tensor], meta: dict[str, Any]
) -> Path:
    """Write ``tensors`` to ``path.safetensors`` and ``meta`` to ``path.json``, atomically.

    The convention of every model's ``save``: tensors are detached and moved to the CPU, nothing
    is pickled. Returns the tensor file's path.
    """
    weights, config = saved_paths(path)
    with atomic_path(weights) as temp:
        save_tensors(temp, tensors)
    atomic_write(config, json.dumps(meta, indent=2) + "\n")
    return weights


def load_saved(
    path: str | os.PathLike[str], what: str, format_version: int
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors, meta)`` written by :func:`save_with_config`, checked before use.

    Args:
        path: with or without its ``.safetensors`` suffix.
        what: the class being loaded, for the messages.
        format_version: the ``meta["format_version"]`` this reader understands.

    Raises:
        FileNotFoundError: either file is missing.
        ValueError: the files were written in another format version.
    """
    weights, config = saved_paths(path)
    for p in (weights, config):
        if not p.exists():
            raise FileNotFoundError(
                f"cannot load a {what} from {str(path)!r}: {str(p)!r} does not exist"
            )
    meta = read_json(config, what)
    if not isinstance(meta, dict) or meta.get("format_version") != format_version:
        got = meta.get("format_version") if isinstance(meta, dict) else None
        raise ValueError(
            f"{str(config)!r} has format_version {got!r}, expected {format_version}; "
            f"it was not written by this version's {what}.save"
        )
    return read_tensors(weights, what)[0], meta


def read_json(path: str | os.PathLike[str], what: str) -> Any:
    """The JSON in ``path``; a damaged file is a ValueError that names it and says what to do.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = Path(d, "x.json").write_text('{"a": 1')
        ...     read_json(Path(d, "x.json"), "SparseAutoencoder")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: '.../x.json' is damaged (not valid JSON: ...); save the SparseAutoencoder again
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{str(path)!r} is damaged (not valid JSON: {err}); save the {what} again"
        ) from err


def unreadable(err: BaseException) -> bool:
    """Whether ``err`` is how safetensors says a file cannot be read: its own SafetensorError
    (a header that does not parse, offsets past the end), an OSError or a RuntimeError."""
    return type(err).__name__ == "SafetensorError" or isinstance(err, (OSError, RuntimeError))


@contextmanager
def damaged(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Within the block, safetensors' errors about ``path`` (truncated, empty, a header that
    does not parse) become one ValueError that names the file and says what to do."""
    try:
        yield
    except Exception as err:
        if not unreadable(err) or isinstance(err, FileNotFoundError):
            raise
        raise ValueError(
            f"{str(path)!r} is damaged or not a safetensors file ({err}): it may have been cut "
            f"short or overwritten; save the {what} again (or delete the file)"
        ) from err
