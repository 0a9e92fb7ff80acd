"""Parameters of the synthetic atmosphere and the variables it can make."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from stormcast_plugin.utils.grid import ModelGrid, hrrr_crop
from stormcast_plugin.utils.time import as_time
from stormcast_plugin.utils.variables import CONDITIONING_VARIABLES, PRESETS, STATE_VARIABLES

__all__ = ["HYBRID_NAME", "PRESSURE_NAME", "SURFACE_CONDITIONING", "SURFACE_STATE", "SynthConfig"]

SURFACE_STATE = ("u10m", "v10m", "t2m", "msl", "sp", "tcwv", "refc")
"""Single-level state variables the atmosphere makes."""
SURFACE_CONDITIONING = ("u10m", "v10m", "t2m", "msl", "sp", "tcwv")
"""Single-level conditioning variables the atmosphere makes."""
HYBRID_NAME = re.compile(r"^([uvtqZp])(\d+)hl$")
"""A state variable on a hybrid level: field letter, level."""
PRESSURE_NAME = re.compile(r"^([uvztq])(\d+)$")
"""A conditioning variable on a pressure level: field letter, level in hPa."""


def _as_grid(grid: Any) -> ModelGrid:
    if isinstance(grid, ModelGrid):
        return grid
    if isinstance(grid, Sequence) and not isinstance(grid, str):
        return hrrr_crop(grid)
    raise ValueError(
        f"grid must be a ModelGrid or an (H, W) pair, got {grid!r}; for a size such as '64x64' pass (64, 64)"
    )


def _check_names(kind: str, names: Sequence[str]) -> tuple[str, ...]:
    """The variable names, checked to be ones the atmosphere can make."""
    out = tuple(str(n) for n in names)
    if not out:
        raise ValueError(f"{kind} variables are empty; pass at least one name or a preset")
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        raise ValueError(f"{kind} variables {dup} are duplicated; list each once")
    surface = SURFACE_STATE if kind == "state" else SURFACE_CONDITIONING
    known = STATE_VARIABLES if kind == "state" else CONDITIONING_VARIABLES
    bad = []
    for n in out:
        if n in surface:
            continue
        if kind == "state":
            m = HYBRID_NAME.match(n)
            ok = m is not None and 1 <= int(m.group(2)) <= 30
        else:
            m = PRESSURE_NAME.match(n)
            ok = m is not None and 50 <= int(m.group(2)) <= 1000
        if not ok:
            bad.append(n)
    if bad:
        form = ("u/v/t/q/Z/p + hybrid level 1..30 + 'hl' (e.g. t5hl)" if kind == "state"
                else "u/v/z/t/q + pressure level 50..1000 hPa (e.g. t850)")
        raise ValueError(
            f"{kind} variables {bad} cannot be synthesised; use surface names {list(surface)} or {form}, "
            f"for example the StormCast names {list(known[:6])}..."
        )
    return out


@dataclass
class SynthConfig:
    """Parameters of a :class:`~stormcast_plugin.datagen.synth.atmosphere.SyntheticAtmosphere`.

    Parameters
    ----------
    grid : ModelGrid or (int, int)
        The model grid, or a size ``(H, W)`` for an HRRR crop centred on the
        StormCast v1 domain (:func:`~stormcast_plugin.utils.grid.hrrr_crop`).
    start : str or datetime-like
        The first hour (hour index 0), on a whole hour.
    preset : str
        Variable preset of :data:`~stormcast_plugin.utils.variables.PRESETS`
        (``"full"``, ``"small"``, ``"tiny"``), unless the variables are given.
    state_variables, conditioning_variables : sequence of str, optional
        Explicit channel lists (override the preset).
    seed : int
        Seed of every random choice.
    cell_seed : int, optional
        Seed of the convective cells alone (births, attributes); by default
        ``seed``. Varying it with a fixed ``seed`` gives an ensemble of cell
        realisations in the same large-scale weather.
    terrain_seed : int, optional
        Seed of the static fields alone (orography and land, the same as
        ``seed = terrain_seed`` would give); by default ``seed``. Varying
        ``seed`` with a fixed ``terrain_seed`` gives other weather over the same
        domain, as other years of a real one do: a held-out period for a
        model trained on that domain.
    birth_rate : float
        Expected cell births per 10^4 km² per hour where the instability is
        well above ``instability_threshold_k``.
    instability_threshold_k, instability_width_k : float
        :math:`I_0` and :math:`\\Delta I` of the birth probability
        ``sigmoid((I - I0) / dI)`` (K).
    growth_hours : float
        Mean duration of the growth phase (h).
    mature_hours, decay_hours : (float, float)
        Ranges of the mature and decay phase durations (h).
    radius_km : float
        Median core radius :math:`\\sigma` of the reflectivity Gaussian (km).
    max_dbz : float
        Highest peak reflectivity of a cell (dBZ), 40..75.
    cold_pool_k : (float, float)
        Range of the cold-pool depth :math:`\\Delta T` (K).
    outflow_ms : float
        Typical peak outflow speed (m/s).
    propagation_ms : float
        Standard deviation of each cell's motion relative to the steering
        wind (m/s).
    daughter_rate : float
        Expected new cells per hour triggered on the gust front of a cell at
        the peak of its outflow (where the air is unstable): multicell
        clusters and lines.
    cell_margin_km : float
        Cells are simulated this far beyond the grid, so they can move in.
    candidate_spacing_km : float
        Size of the boxes in which births are drawn.
    spinup_hours : int
        Hours of cell simulation before hour 0, so hour 0 has a mature
        population.
    diurnal_amplitude_k : float
        Diurnal amplitude of 2 m temperature over land (K; a quarter of it
        over sea).
    orography_max_m : float
        Highest orography (m).
    cond_resolution : float
        Spacing of the conditioning latitude/longitude grid (degrees).
    cond_margin : float
        Margin of the conditioning grid beyond the model grid (degrees).
    """

    grid: Any = (64, 64)
    start: Any = "2024-05-01T00"
    preset: str = "small"
    state_variables: Sequence[str] | None = None
    conditioning_variables: Sequence[str] | None = None
    seed: int = 0
    cell_seed: int | None = None
    terrain_seed: int | None = None
    birth_rate: float = 0.35
    instability_threshold_k: float = -1.0
    instability_width_k: float = 3.0
    growth_hours: float = 1.0
    mature_hours: tuple[float, float] = (0.5, 2.0)
    decay_hours: tuple[float, float] = (2.0, 4.0)
    radius_km: float = 8.0
    max_dbz: float = 62.0
    cold_pool_k: tuple[float, float] = (2.0, 6.0)
    outflow_ms: float = 7.0
    propagation_ms: float = 2.0
    daughter_rate: float = 0.4
    cell_margin_km: float = 150.0
    candidate_spacing_km: float = 12.0
    spinup_hours: int = 12
    diurnal_amplitude_k: float = 6.0
    orography_max_m: float = 1500.0
    cond_resolution: float = 0.25
    cond_margin: float = 1.0

    def __post_init__(self) -> None:
        self.grid = _as_grid(self.grid)
        self.start = as_time(self.start, "start", whole_hours=True).astype("datetime64[h]")
        if self.state_variables is None or self.conditioning_variables is None:
            if self.preset not in PRESETS:
                raise ValueError(
                    f"preset {self.preset!r} is unknown; choose one of {sorted(PRESETS)} or pass "
                    "state_variables and conditioning_variables"
                )
        if self.state_variables is None:
            self.state_variables = PRESETS[self.preset]["state"]
        if self.conditioning_variables is None:
            self.conditioning_variables = PRESETS[self.preset]["conditioning"]
        self.state_variables = _check_names("state", self.state_variables)
        self.conditioning_variables = _check_names("conditioning", self.conditioning_variables)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed {self.seed!r} must be a non-negative integer")
        self.seed = int(self.seed)
        for name in ("cell_seed", "terrain_seed"):
            v = getattr(self, name)
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                    raise ValueError(f"{name} {v!r} must be a non-negative integer or None")
                setattr(self, name, int(v))

        def positive(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            ok = isinstance(v, (int, float, np.number)) and math.isfinite(float(v)) and (
                float(v) >= 0 if allow_zero else float(v) > 0)
            if not ok:
                need = "non-negative" if allow_zero else "positive"
                raise ValueError(f"{name} = {v!r} must be a {need} finite number")

        for name in ("growth_hours", "radius_km", "instability_width_k", "cell_margin_km",
                     "candidate_spacing_km", "cond_resolution"):
            positive(name)
        for name in ("birth_rate", "daughter_rate", "outflow_ms", "propagation_ms", "diurnal_amplitude_k",
                     "orography_max_m", "cond_margin"):
            positive(name, allow_zero=True)
        for name in ("mature_hours", "decay_hours", "cold_pool_k"):
            v = getattr(self, name)
            try:
                lo, hi = (float(x) for x in v)
            except (TypeError, ValueError):
                raise ValueError(f"{name} = {v!r} must be a (low, high) pair of numbers") from None
            low_ok = lo > 0 if name == "decay_hours" else lo >= 0
            if not (low_ok and hi >= lo and math.isfinite(hi)):
                raise ValueError(f"{name} = {v!r} must satisfy 0 <= low <= high (decay: low > 0)")
            setattr(self, name, (lo, hi))
        if not 40.0 <= float(self.max_dbz) <= 75.0:
            raise ValueError(f"max_dbz = {self.max_dbz!r} must lie in [40, 75] dBZ")
        if not float(self.instability_threshold_k) == float(self.instability_threshold_k):
            raise ValueError("instability_threshold_k is NaN; pass a temperature difference in K")
        if int(self.spinup_hours) != self.spinup_hours or self.spinup_hours < 0:
            raise ValueError(f"spinup_hours = {self.spinup_hours!r} must be a non-negative integer")
        self.spinup_hours = int(self.spinup_hours)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (the grid via :meth:`ModelGrid.to_dict`)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["grid"] = self.grid.to_dict()
        d["start"] = str(self.start)
        d["state_variables"] = list(self.state_variables)
        d["conditioning_variables"] = list(self.conditioning_variables)
        for k in ("mature_hours", "decay_hours", "cold_pool_k"):
            d[k] = list(d[k])
        return d
