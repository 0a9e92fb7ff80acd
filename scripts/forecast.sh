#!/usr/bin/env bash
# The main job: set up .venv if needed, then run a 12-hour, 2-member forecast
# with the embedded offline default and draw refc and t2m. Output: outputs/.
# Extra arguments go to `stormcast forecast` (e.g. --hours 24 --members 4).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-venv.sh"
venv="${STORMCAST_VENV:-$root/.venv}"
cd "$root"
exec "$venv/bin/stormcast" forecast --start 2024-05-01T00 --hours 12 --members 2 \
  --out outputs/forecast.zarr --overwrite --plot refc,t2m "$@"
