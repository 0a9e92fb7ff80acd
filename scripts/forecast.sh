#!/usr/bin/env bash
# The main job: set up .venv if needed, then run a forecast with the embedded
# offline default and draw it. Extra arguments go to `stormcast forecast`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-venv.sh"
venv="${STORMCAST_VENV:-$root/.venv}"
cd "$root"
exec "$venv/bin/stormcast" demo --out "${STORMCAST_OUT:-outputs/demo}" "$@"
