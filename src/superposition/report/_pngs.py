"""The report's figures encoded as PNG in a helper process while the report computes.

Drawing the report's figures (constrained layout, then Agg) costs about 15 s of one core in a
quick run, a fifth of it, and needs none of the numbers still to come. So each section's
figures go, pickled, to a child Python (``python -m superposition.report._pngs``) as soon as
the section returns, and the main process goes on computing. matplotlib draws an unpickled
figure exactly as the original (``tests/test_report_pngs.py`` compares the bytes). Any
figure the child could not encode (it failed to start or died, or the figure does not pickle)
is encoded in this process at the end, so the output never depends on the child.

The child reads figure numbers on stdin, one per line, loads ``N.fig`` from a private temporary
folder, writes ``N.png`` and ``N.width`` (the first axes' width in inches once laid out, for
captions that state a heatmap's resolution); it stops at the end of stdin.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from matplotlib.figure import Figure

from superposition._io import atomic_write

__all__ = ["PngEncoder", "encode"]


def encode(fig: Figure, dpi: int) -> tuple[bytes, float]:
    """``fig`` as PNG bytes at ``dpi``, and its first axes' width in inches as laid out."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    width = fig.axes[0].get_window_extent().width / fig.dpi if fig.axes else 0.0
    return buf.getvalue(), float(width)


class PngEncoder:
    """Encode figures in a child process as they are handed over; collect them at the end.

    Use as a context manager: leaving it stops the child and removes its folder, also when
    the report fails half-way.
    """

    def __init__(self, dpi: int) -> None:
        self.dpi = dpi
        self._tmp = tempfile.TemporaryDirectory(prefix="superposition-png-")
        self._dir = Path(self._tmp.name)
        self._names: dict[str, int] = {}
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> PngEncoder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        import matplotlib as mpl

        rc = {k: v for k, v in mpl.rcParams.items() if not k.startswith("backend")}
        atomic_write(self._dir / "rc.pickle", pickle.dumps(rc))
        argv = [sys.executable, "-m", "superposition.report._pngs", str(self._dir), str(self.dpi)]
        env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
        with open(self._dir / "stderr", "w") as err:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
                env=env,
            )

    def submit(self, figures: dict[str, Figure]) -> None:
        """Hand over the figures of ``figures`` not handed over yet (they must not change
        afterwards). A figure that does not pickle, or a child that cannot start, is left to
        :meth:`results`."""
        for name, fig in figures.items():
            if name in self._names:
                continue
            i = self._names[name] = len(self._names)
            try:
                data = pickle.dumps(fig)
            except Exception:  # e.g. a lambda formatter: encoded here at the end
                continue
            try:
                if self._proc is None:
                    self._start()
                atomic_write(self._dir / f"{i}.fig", data)
                assert self._proc is not None
                assert self._proc.stdin is not None
                self._proc.stdin.write(f"{i}\n")
                self._proc.stdin.flush()
            except OSError:  # no child (no interpreter, or it died): encoded here at the end
                continue

    def results(self, figures: dict[str, Figure]) -> tuple[dict[str, bytes], dict[str, float]]:
        """Every figure's PNG bytes and first-axes width (inches), in the order of
        ``figures``: the child's where it made them, this process's for the rest."""
        self.submit(figures)
        if self._proc is not None:
            with contextlib.suppress(OSError):
                assert self._proc.stdin is not None
                self._proc.stdin.close()
            self._proc.wait()
        images: dict[str, bytes] = {}
        widths: dict[str, float] = {}
        for name, fig in figures.items():
            i = self._names[name]
            png, width = self._dir / f"{i}.png", self._dir / f"{i}.width"
            if png.is_file() and width.is_file():
                images[name], widths[name] = png.read_bytes(), float(width.read_text())
            else:
                images[name], widths[name] = encode(fig, self.dpi)
        return images, widths

    def close(self) -> None:
        """Stop the child (if still running) and remove the temporary folder."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._tmp.cleanup()


def _child(folder: Path, dpi: int) -> None:
    import matplotlib as mpl

    mpl.use("Agg")
    rc: dict[Any, Any] = pickle.loads((folder / "rc.pickle").read_bytes())
    mpl.rcParams.update(rc)
    for line in sys.stdin:
        i = int(line)
        fig = pickle.loads((folder / f"{i}.fig").read_bytes())
        png, width = encode(fig, dpi)
        atomic_write(folder / f"{i}.png", png)
        atomic_write(folder / f"{i}.width", repr(width).encode())
        (folder / f"{i}.fig").unlink()


if __name__ == "__main__":
    _child(Path(sys.argv[1]), int(sys.argv[2]))
