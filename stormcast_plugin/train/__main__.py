"""``python -m stormcast_plugin.train CONFIG --run-dir DIR [--set key=value ...]``.

The arguments of ``stormcast train`` (:mod:`stormcast_plugin.cli.train`);
under torchrun every rank runs this and rank 0 writes checkpoints and logs.
"""

import sys

from stormcast_plugin.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
