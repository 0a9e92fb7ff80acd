#!/usr/bin/env bash
# Set up .venv if needed, then run the whole test suite.
# Extra arguments go to pytest (e.g. -m "not slow", -k parity).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-venv.sh"
venv="${STORMCAST_VENV:-$root/.venv}"
cd "$root"
exec "$venv/bin/python" -m pytest -n "${STORMCAST_TEST_WORKERS:-2}" "$@"
