"""The ``stormcast`` command line: every argparse parser lives here."""

from stormcast_plugin.cli.app import main

__all__ = ["main"]
