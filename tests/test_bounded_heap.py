"""The command line's bounded heap (issue 27): with glibc, blocks of a few MiB (a tensor's
storage) are given back to the system when freed, where glibc's moving threshold keeps them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHILD = r"""
import ctypes, sys
from superposition.cli._common import bounded_heap

class MallInfo2(ctypes.Structure):  # glibc >= 2.33
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2

def mapped():  # bytes in blocks that have their own mapping
    return libc.mallinfo2().hblkhd

set_ = bounded_heap() if sys.argv[1] == "bounded" else False
libc.free(libc.malloc(30 << 20))  # mapped; freeing it lifts glibc's own threshold to 30 MiB
before = mapped()
p = libc.malloc(8 << 20)  # a batch-sized tensor's storage
own = mapped() - before >= 8 << 20
libc.free(p)
print(set_, own, mapped() - before)
"""


def _child(mode: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    return subprocess.run(
        [sys.executable, "-c", CHILD, mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_a_block_of_a_few_mib_gets_its_own_mapping_and_goes_back_when_freed() -> None:
    # After a 30 MiB block is freed, glibc serves 8 MiB from its heap, where a freed block stays
    # (mallinfo2's hblkhd counts the bytes in blocks with their own mapping).
    assert _child("default") == ["False", "False", "0"]
    # With the bounded heap the block is mapped on its own and unmapped when freed.
    assert _child("bounded") == ["True", "True", "0"]


def test_a_users_own_malloc_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from superposition.cli._common import bounded_heap

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert bounded_heap() is False
