#!/usr/bin/env bash
# Reproduce the embedded demonstration model (stormcast_plugin/assets/demo):
# the demo preset trained on four synthetic seasons (March-June, four weather
# seeds over one terrain) on a CPU,
# then scored on held-out synthetic weather of another seed over the same
# terrain (a whole season, and two 40-hour spells).
# Outputs in outputs/demo/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-venv.sh"
venv="${STORMCAST_VENV:-$root/.venv}"
cd "$root"
out=outputs/demo
# Four synthetic seasons of weather (seeds 0, 3, 4, 5) over one terrain (seed 0's).
"$venv/bin/stormcast" data synth --out $out/train.zarr --start 2024-03-01T00 --hours 2928 --grid 64x64 \
  --preset tiny --seed 0 --overwrite
for seed in 3 4 5; do
  "$venv/bin/stormcast" data synth --out $out/train_s$seed.zarr --start 2024-03-01T00 --hours 2928 --grid 64x64 \
    --preset tiny --seed $seed --terrain-seed 0 --overwrite
done
rm -rf "$out/run"  # a fresh run: `stormcast train` resumes from any checkpoint it finds there
"$venv/bin/stormcast" train demo --run-dir $out/run \
  --set "data.store=[$out/train.zarr, $out/train_s3.zarr, $out/train_s4.zarr, $out/train_s5.zarr]"
"$venv/bin/stormcast" export $out/run stormcast_plugin/assets/demo --overwrite --name stormcast-demo \
  --description "Demonstration model trained on the synthetic atmosphere (stormcast data synth, tiny preset, 64x64, March-June of weather seeds 0, 3, 4, 5 over the terrain of seed 0); it has never seen real weather."
# Held out: the weather of seed 1 over the same terrain. A whole season (24
# initial times 150 h apart, every time of day) and two 40-hour spells.
"$venv/bin/stormcast" data synth --out $out/heldout_season.zarr --start 2024-03-01T00 --hours 3672 --grid 64x64 \
  --preset tiny --seed 1 --terrain-seed 0 --overwrite
"$venv/bin/python" benchmarks/demo_skill.py --package stormcast_plugin/assets/demo --store $out/heldout_season.zarr \
  --members 8 --hours 6 --inits 24 --spacing 150 --json $out/skill_season.json
"$venv/bin/stormcast" data synth --out $out/heldout_apr.zarr --start 2024-04-22T00 --hours 40 --grid 64x64 \
  --preset tiny --seed 1 --terrain-seed 0 --overwrite
"$venv/bin/stormcast" data synth --out $out/heldout_jul.zarr --start 2024-07-01T00 --hours 40 --grid 64x64 \
  --preset tiny --seed 1 --terrain-seed 0 --overwrite
for period in apr jul; do
  "$venv/bin/python" benchmarks/demo_skill.py --package stormcast_plugin/assets/demo --store $out/heldout_$period.zarr \
    --members 8 --hours 6 --inits 6 --json $out/skill_$period.json
done
# Realism: band power, border/interior error and the sampled one-hour residual spectrum
# on other held-out weather (seed 17 over the same terrain); see BENCHMARKS.md.
"$venv/bin/stormcast" data synth --out $out/heldout_s17.zarr --start 2024-04-01T00 --hours 400 --grid 64x64 \
  --preset tiny --seed 17 --terrain-seed 0 --overwrite
"$venv/bin/python" benchmarks/realism.py --package stormcast_plugin/assets/demo --store $out/heldout_s17.zarr \
  --inits 2 --spacing 150 --hours 12 --leads 1,6,12 --sigma-check 16 --json $out/realism.json
