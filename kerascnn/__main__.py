"""``python -m kerascnn`` runs the CLI."""

import sys

from kerascnn.cli import main

sys.exit(main())
