"""``python -m kerascnn`` runs the CLI."""

from kerascnn.cli import run

run()
