"""``python -m mmsim.training.experiments.paper_tables``: the same as ``mmsim experiments paper-tables``."""

from mmsim.training.experiments.paper_tables.cli import main

raise SystemExit(main())
