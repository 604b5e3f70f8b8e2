"""The ``mds`` command line: one module per subcommand group; :func:`main` is the entry point."""

from mds_core.cli.main import main

__all__ = ["main"]
