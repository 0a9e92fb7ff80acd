#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv and install
# stormcast-plugin with its test extras. torch is pinned in the same pip
# command so that pip never swaps in a different (CUDA) build; override it with
# STORMCAST_TORCH (for example STORMCAST_TORCH="torch==2.13.0+cu126" with a
# matching --extra-index-url in PIP_EXTRA_INDEX_URL on a GPU machine).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${STORMCAST_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
torch_spec="${STORMCAST_TORCH:-torch==2.13.0}"

if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtual environment in $venv" >&2
  "$python" -m venv "$venv"
fi
stamp="$venv/.stormcast-installed"
want="$(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1) $torch_spec"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing stormcast-plugin and dependencies ($torch_spec); log: $venv/install.log" >&2
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check -q \
        "$torch_spec" -e "$root[test]" >"$venv/install.log" 2>&1; then
    grep -v "is ignored: it is neither a file nor a directory" "$venv/install.log" | tail -n 30 >&2
    echo "[setup] installation failed; see $venv/install.log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
