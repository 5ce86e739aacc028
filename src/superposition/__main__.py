"""``python -m superposition``: the same as the ``superposition`` command."""

from superposition.cli import main

raise SystemExit(main())
