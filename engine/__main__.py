"""``python -m engine``: the QuantMatrix command line."""

from engine.cli import main

raise SystemExit(main())
