"""``python -m superposition.cli``: the same as the ``superposition`` command (as when the CLI
was one module)."""

from superposition.cli._main import main

raise SystemExit(main())
