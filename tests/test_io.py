"""Files the library writes: atomic, readable as the umask allows, one naming convention."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from superposition import plot
from superposition._io import atomic_path, atomic_write, saved_paths
from superposition.probe import Activations, StreamingStatistics
from superposition.toy import ToyModel


@pytest.fixture(params=[0o022, 0o027, 0o077], ids=["umask022", "umask027", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield int(request.param)
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _acts() -> Activations:
    return Activations(
        torch.rand(3, 4),
        tokens=["a", "b", "c"],
        token_ids=torch.tensor([1, 2, 3]),
        text_index=torch.tensor([0, 0, 1]),
        position=torch.tensor([0, 1, 0]),
    )


WRITERS: dict[str, Callable[[Path], list[Path]]] = {
    "atomic_write": lambda d: [atomic_write(d / "x.json", "{}")],
    "save_figure": lambda d: [
        plot.save_figure(plot.activation_sums(torch.rand(5, 3)), d / "f.png")
    ],
    "Activations.save": lambda d: list(saved_paths(_acts().save(d / "acts"))),
    "StreamingStatistics.save": lambda d: [
        StreamingStatistics().update(torch.rand(5, 3)).save(d / "stats")
    ],
    "ToyModel.save": lambda d: list(saved_paths(ToyModel(3, 2, seed=0).save(d / "toy"))),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_written_files_follow_the_umask(writer: str, umask: int, tmp_path: Path) -> None:
    written = WRITERS[writer](tmp_path)
    assert written
    for p in written:
        assert _mode(p) == 0o666 & ~umask, f"{p.name}: {oct(_mode(p))} under umask {oct(umask)}"
    # nothing but the promised files: no temporary left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)


def test_atomic_path_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def write_half_then_fail() -> None:
        with atomic_path(target) as temp:
            temp.write_bytes(b"half")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_half_then_fail()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path: Path) -> None:
    """A writer killed mid-write leaves its temporary file (named with its process id); the
    next write to the folder removes it, and keeps a live writer's and any other file."""
    import hashlib
    import socket
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    hexes = "0123456789abcdef" * 2
    host = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
    far = "0" * 8 if host != "0" * 8 else "1" * 8  # a writer on another machine (NFS)
    dead = tmp_path / f".ckpt.safetensors.{host}-{gone.pid}-{hexes}.tmp.safetensors"
    live = tmp_path / f".ckpt.safetensors.{host}-{os.getppid()}-{hexes}.tmp.safetensors"
    remote = tmp_path / f".ckpt.safetensors.{far}-{gone.pid}-{hexes}.tmp.safetensors"
    other = tmp_path / f".notes.{gone.pid}-tmp.json"
    for p in (dead, live, remote, other):
        p.write_bytes(b"half")
    atomic_write(tmp_path / "x.json", "{}")
    kept = sorted([live.name, remote.name, other.name, "x.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == kept


def test_atomic_path_into_a_missing_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        atomic_write(tmp_path / "nope" / "x.json", "{}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("spelling", ["acts", "acts.safetensors"])
def test_one_naming_convention_for_every_saved_object(spelling: str, tmp_path: Path) -> None:
    acts = _acts()
    assert acts.save(tmp_path / spelling) == tmp_path / "acts.safetensors"
    ToyModel(3, 2, seed=0).save(tmp_path / spelling.replace("acts", "toy"))
    StreamingStatistics().update(acts.values).save(tmp_path / spelling.replace("acts", "stats"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "acts.json",
        "acts.safetensors",
        "stats.safetensors",
        "toy.json",
        "toy.safetensors",
    ]
    # every load takes either spelling
    for name in ("acts", "acts.safetensors"):
        torch.testing.assert_close(Activations.load(tmp_path / name).values, acts.values)
    for name in ("stats", "stats.safetensors"):
        loaded = StreamingStatistics.load(tmp_path / name)
        assert loaded.count == acts.n_tokens
    for name in ("toy", "toy.safetensors"):
        assert ToyModel.load(tmp_path / name).n_features == 3


def test_activations_saved_under_the_old_sidecar_name_still_load(tmp_path: Path) -> None:
    acts = _acts()
    acts.save(tmp_path / "acts")
    (tmp_path / "acts.json").rename(tmp_path / "acts.safetensors.json")
    assert Activations.load(tmp_path / "acts.safetensors").tokens == acts.tokens


def test_a_name_that_keeps_a_dot_is_not_truncated(tmp_path: Path) -> None:
    ToyModel(3, 2, seed=0).save(tmp_path / "run.v2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.v2.json", "run.v2.safetensors"]
