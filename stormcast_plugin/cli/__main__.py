"""``python -m stormcast_plugin.cli`` (also under torchrun)."""

import sys

from stormcast_plugin.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
