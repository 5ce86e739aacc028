"""The command line, one module per command beside its parser; :func:`main` runs it.

``superposition = "superposition.cli:main"`` (the console script) and ``python -m superposition``
both call :func:`main`.
"""

from superposition.cli._main import main

__all__ = ["main"]
