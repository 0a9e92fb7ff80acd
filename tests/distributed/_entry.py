"""The ``stormcast`` command for the multi-process tests, with two probes.

``STORMCAST_TEST_COUNT=PATH``: every rank appends each member-hour it
computes to ``PATH.RANK`` (one JSON line: member, initial time, lead hour).
``STORMCAST_TEST_KILL=RANK:N``: rank RANK kills itself with SIGKILL when it
is about to compute its N-th step.
"""

import json
import os
import signal
import sys

import numpy as np

from stormcast_plugin.cli.app import main
from stormcast_plugin.models.px.stormcast import StormCast

_real_step = StormCast._step
_steps = {"n": 0}


def _probed_step(self, x, coords, members, seed, memory=None):
    rank = os.environ.get("RANK", "0")
    _steps["n"] += 1
    kill = os.environ.get("STORMCAST_TEST_KILL", "")
    if kill and kill == f"{rank}:{_steps['n']}":
        os.kill(os.getpid(), signal.SIGKILL)
    count = os.environ.get("STORMCAST_TEST_COUNT")
    if count:
        lead = int(coords["lead_time"][0] / np.timedelta64(1, "h")) + 1
        with open(f"{count}.{rank}", "a") as f:
            for m in members:
                for t in coords["time"]:
                    f.write(json.dumps([int(m), str(np.datetime64(t, "h")), lead]) + "\n")
    return _real_step(self, x, coords, members, seed, memory)


StormCast._step = _probed_step

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
