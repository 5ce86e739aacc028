"""No space left: writes that hit a file-size limit (``RLIMIT_FSIZE``, set in a child process,
the way a full disk or a quota stops a write) fail in one ``OSError`` that names the file and
says what happened; the previous good file stays intact and no partial or temporary file is
left (issue 26)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

import superposition as sp

CHILD = r"""
import resource, sys
from pathlib import Path
import superposition as sp
from superposition import _io

d = Path(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
writes = {
    "safetensors": lambda: sp.SparseAutoencoder(256, 1024, k=8, seed=1).save(d / "sae"),
    "text": lambda: _io.atomic_write(d / "notes.json", "x" * 300_000),
}
for name, write in writes.items():
    try:
        write()
        print(name, "WROTE")
    except OSError as err:
        print(name, type(err).__name__, err.errno, err)
"""


def test_a_write_past_the_size_limit_fails_cleanly_and_keeps_the_old_file(tmp_path: Path) -> None:
    good = sp.SparseAutoencoder(4, 8, k=2, seed=0)
    good.save(tmp_path / "sae")
    (tmp_path / "notes.json").write_text('{"old": true}')
    before = sorted(p.name for p in tmp_path.iterdir())
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in out] == ["safetensors", "text"], out
    for line in out:
        _, kind, code, message = line.split(" ", 3)
        assert kind == "OSError", line
        assert code == "27", line  # EFBIG: the file-size limit
        assert "file too large" in message
        assert "disk is full or a file-size or quota limit was reached" in message
        assert "any previous file there is unchanged" in message
    assert "sae.safetensors" in out[0]
    assert "notes.json" in out[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no partial or temp file
    back = sp.SparseAutoencoder.load(tmp_path / "sae")
    assert torch.equal(back.params, good.params)
    assert (tmp_path / "notes.json").read_text() == '{"old": true}'
