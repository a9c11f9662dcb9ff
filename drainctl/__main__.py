"""``python -m drainctl`` runs the CLI."""

from drainctl.cli import main

main()
