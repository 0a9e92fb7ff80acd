"""Tests of the synthetic storm-resolving atmosphere (stormcast_plugin.datagen.synth)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from stormcast_plugin.io.dataset_store import DatasetStore
from stormcast_plugin.datagen.synth import SynthConfig, SyntheticAtmosphere, level_height, synthesize
from stormcast_plugin.datagen.synth.physics import G, RD
from stormcast_plugin.utils.grid import ModelGrid
from stormcast_plugin.utils.variables import CONDITIONING_VARIABLES, PRESSURE_HYBRID_LEVELS, STATE_VARIABLES

N_SMALL = 96  # hours of the small-preset run shared by the tests


@pytest.fixture(scope="module")
def small():
    """96 hours of the 'small' preset on the default 64 x 64 crop (seed 0)."""
    atm = SyntheticAtmosphere(SynthConfig(grid=(64, 64), preset="small", seed=0))
    state = np.stack([atm.state(i) for i in range(N_SMALL)])
    cond = np.stack([atm.conditioning(i) for i in range(N_SMALL)])
    return atm, state, cond


@pytest.fixture(scope="module")
def full():
    """24 hours of all 99 / 26 variables on a 24 x 32 crop."""
    atm = SyntheticAtmosphere(SynthConfig(grid=(24, 32), preset="full", seed=3))
    state = np.stack([atm.state(i) for i in range(24)])
    cond = np.stack([atm.conditioning(i) for i in range(24)])
    return atm, state, cond


def channel(atm: SyntheticAtmosphere, data: np.ndarray, name: str) -> np.ndarray:
    return data[:, atm.state_variables.index(name)].astype(np.float64)


def max_filter(a: np.ndarray, radius: int) -> np.ndarray:
    """Maximum over the (2 radius + 1)^2 square around each point (edges padded)."""
    fill = False if a.dtype == bool else -np.inf
    padded = np.pad(a, radius, constant_values=fill)
    return sliding_window_view(padded, (2 * radius + 1, 2 * radius + 1)).max(axis=(-2, -1))


def peaks(field: np.ndarray, threshold: float) -> np.ndarray:
    """(row, col) of the local maxima (5 x 5) above ``threshold``."""
    return np.argwhere((field > threshold) & (field >= max_filter(field, 2)))


# ---------------------------------------------------------------------------
# Names, ranges and units
# ---------------------------------------------------------------------------


def test_full_preset_has_the_stormcast_names(full):
    atm, state, cond = full
    assert atm.state_variables == STATE_VARIABLES and len(STATE_VARIABLES) == 99
    assert atm.conditioning_variables == CONDITIONING_VARIABLES and len(CONDITIONING_VARIABLES) == 26
    assert atm.invariant_names == ("lsm", "orography")
    assert state.shape == (24, 99, 24, 32) and state.dtype == np.float32
    assert cond.shape == (24, 26, atm.cond_lat.size, atm.cond_lon.size)
    assert np.isfinite(state).all() and np.isfinite(cond).all()


def test_ranges_per_variable_family(full):
    atm, state, cond = full
    ranges = {"t": (180, 330), "q": (0, 0.03), "u": (-80, 80), "v": (-80, 80), "p": (1e4, 1.1e5),
              "Z": (-500, 20000)}
    for i, name in enumerate(atm.state_variables):
        x = state[:, i]
        family = "msl" if name == "msl" else name[0]
        if name in ("u10m", "v10m"):
            lo, hi = -80, 80
        elif name == "t2m":
            lo, hi = 180, 330
        elif name == "msl":
            lo, hi = 95000, 106000
        elif name == "refc":
            lo, hi = -10, 75
        else:
            lo, hi = ranges[family]
        assert lo <= x.min() and x.max() <= hi, (name, float(x.min()), float(x.max()))
    refc = channel(atm, state, "refc")
    assert refc.min() < -5.0  # clear-air background
    c = {n: cond[:, i] for i, n in enumerate(atm.conditioning_variables)}
    assert 1 <= c["tcwv"].min() and c["tcwv"].max() <= 80
    assert 50000 < c["sp"].min() and c["sp"].max() <= c["msl"].max() + 1.0
    assert 95000 <= c["msl"].min() and c["msl"].max() <= 106000
    for lev in (1000, 850, 500, 250):
        assert 180 <= c[f"t{lev}"].min() and c[f"t{lev}"].max() <= 330
        assert 0 <= c[f"q{lev}"].min() and c[f"q{lev}"].max() <= 0.03
        assert np.abs(c[f"u{lev}"]).max() < 80 and np.abs(c[f"v{lev}"]).max() < 80
    # z is geopotential (m2/s2): 500 hPa near 5.5 km, 250 hPa near 10.5 km.
    assert 50000 < c["z500"].mean() < 60000 and 95000 < c["z250"].mean() < 112000
    assert (c["z1000"] < c["z850"]).all() and (c["z850"] < c["z500"]).all() and (c["z500"] < c["z250"]).all()
    assert (c["t1000"].mean() > c["t850"].mean() > c["t500"].mean() > c["t250"].mean())


def test_winds_increase_with_height(full):
    atm, state, _ = full
    speed = {k: np.hypot(channel(atm, state, f"u{k}hl"), channel(atm, state, f"v{k}hl")).mean() for k in (5, 15, 30)}
    assert speed[5] < speed[15] < speed[30]
    assert 5 <= speed[30] <= 40


# ---------------------------------------------------------------------------
# Vertical structure and hydrostatics
# ---------------------------------------------------------------------------


def test_heights_and_pressures_are_monotonic(full):
    atm, state, _ = full
    hl = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 20, 25, 30]
    z = np.stack([channel(atm, state, f"Z{k}hl") for k in hl])
    assert (np.diff(z, axis=0) > 0).all()
    orog = atm.invariants()[1]
    assert (z[0] > orog).all()
    p = np.stack([channel(atm, state, f"p{k}hl") for k in PRESSURE_HYBRID_LEVELS])
    assert (np.diff(p, axis=0) < 0).all()
    # Heights follow the documented nominal table to within 15 %.
    agl = (z - orog).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(agl[4:], level_height(np.array(hl[4:])), rtol=0.15)


def test_temperature_and_humidity_decrease_upward(full):
    atm, state, _ = full
    above_bl = [10, 11, 13, 15, 20, 25, 30]
    t = np.array([channel(atm, state, f"t{k}hl").mean() for k in above_bl])
    assert (np.diff(t) < 0).all()
    # Lapse rate between 2 and 10 km close to 6.5 K/km.
    z = np.array([channel(atm, state, f"Z{k}hl").mean() for k in (15, 30)])
    lapse = (channel(atm, state, "t15hl").mean() - channel(atm, state, "t30hl").mean()) / (z[1] - z[0])
    assert 0.005 < lapse < 0.008
    q = np.array([channel(atm, state, f"q{k}hl").mean() for k in [5, 8, 11, 15, 20, 25, 30]])
    assert (np.diff(q) < 0).all()


def _tv(t: np.ndarray, q: np.ndarray) -> np.ndarray:
    return t * (1.0 + 0.608 * q)


@pytest.mark.parametrize("k1,k2,rtol", [(1, 2, 2e-3), (10, 11, 2e-3), (5, 9, 5e-3), (11, 15, 5e-3), (15, 20, 1e-2)])
def test_hypsometric_consistency(full, k1, k2, rtol):
    """Z2 - Z1 = Rd / g * <Tv> * ln(p1 / p2) with the layer-mean virtual temperature."""
    atm, state, _ = full
    tv = 0.5 * (_tv(channel(atm, state, f"t{k1}hl"), channel(atm, state, f"q{k1}hl"))
                + _tv(channel(atm, state, f"t{k2}hl"), channel(atm, state, f"q{k2}hl")))
    p1, p2 = channel(atm, state, f"p{k1}hl"), channel(atm, state, f"p{k2}hl")
    dz = channel(atm, state, f"Z{k2}hl") - channel(atm, state, f"Z{k1}hl")
    expect = RD / G * tv * np.log(p1 / p2)
    np.testing.assert_allclose(dz, expect, rtol=rtol, atol=0.05)


def test_surface_pressure_reduction(full):
    """msl and the first hybrid level are consistent with the terrain height."""
    atm, state, _ = full
    orog = atm.invariants()[1].astype(np.float64)
    msl, p1 = channel(atm, state, "msl"), channel(atm, state, "p1hl")
    t2m = channel(atm, state, "t2m")
    sp_est = msl * np.exp(-G * orog / (RD * (t2m + 0.0065 * orog / 2)))
    np.testing.assert_allclose(p1, sp_est, rtol=5e-3)


# ---------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------


def test_deterministic_for_a_seed_and_random_access():
    cfg = dict(grid=(32, 32), preset="tiny")
    a = SyntheticAtmosphere(SynthConfig(seed=7, **cfg))
    b = SyntheticAtmosphere(SynthConfig(seed=7, **cfg))
    seq = [a.state(i) for i in range(6)]
    np.testing.assert_array_equal(b.state(5), seq[5])  # random access from scratch
    np.testing.assert_array_equal(a.state(2), seq[2])  # going back re-simulates
    np.testing.assert_array_equal(a.conditioning(3), b.conditioning(3))
    np.testing.assert_array_equal(a.invariants(), b.invariants())
    other = SyntheticAtmosphere(SynthConfig(seed=8, **cfg))
    assert not np.allclose(other.state(5), seq[5])
    assert not np.allclose(other.conditioning(5), a.conditioning(5))


def test_cell_seed_gives_an_ensemble_in_the_same_weather():
    base = SynthConfig(grid=(48, 48), preset="small", seed=0)
    a = SyntheticAtmosphere(base)
    b = SyntheticAtmosphere(SynthConfig(grid=(48, 48), preset="small", seed=0, cell_seed=1))
    same = SyntheticAtmosphere(SynthConfig(grid=(48, 48), preset="small", seed=0, cell_seed=0))
    h = 18
    np.testing.assert_array_equal(a.conditioning(h), b.conditioning(h))
    np.testing.assert_array_equal(a.state(h), same.state(h))
    sa, sb = a.state(h), b.state(h)
    refc = a.state_variables.index("refc")
    assert np.abs(sa[refc] - sb[refc]).max() > 20  # the cells differ
    # while the large-scale mid-level wind (no cell outflow at 3.6 km) agrees closely.
    u20 = a.state_variables.index("u20hl")
    assert np.abs(sa[u20] - sb[u20]).max() < 0.1


def test_terrain_seed_keeps_the_domain_and_changes_the_weather():
    cfg = dict(grid=(32, 32), preset="tiny")
    home = SyntheticAtmosphere(SynthConfig(seed=0, **cfg))
    other = SyntheticAtmosphere(SynthConfig(seed=1, **cfg))
    held_out = SyntheticAtmosphere(SynthConfig(seed=1, terrain_seed=0, **cfg))
    orog = list(home.invariant_names).index("orography")
    # seed 1 alone has its own mountains; with terrain_seed 0 it has seed 0's, exactly.
    assert np.abs(other.invariants()[orog] - home.invariants()[orog]).max() > 50.0
    np.testing.assert_array_equal(held_out.invariants(), home.invariants())
    # The weather is seed 1's: its large-scale flow (conditioning msl and
    # 10 m wind, which the terrain barely touches) is that of seed 1, hundreds
    # of Pa and metres per second away from seed 0's.
    names = list(other.conditioning_variables)
    msl, v10 = names.index("msl"), names.index("v10m")
    c_held, c_other, c_home = held_out.conditioning(3), other.conditioning(3), home.conditioning(3)
    assert np.abs(c_held[msl] - c_other[msl]).max() < 10.0 < 100.0 < np.abs(c_held[msl] - c_home[msl]).max()
    assert np.abs(c_held[v10] - c_other[v10]).max() < 0.1 < 1.0 < np.abs(c_held[v10] - c_home[v10]).max()
    # terrain_seed equal to seed (or None) is the default world.
    np.testing.assert_array_equal(SyntheticAtmosphere(SynthConfig(seed=0, terrain_seed=0, **cfg)).state(2),
                                  home.state(2))
    with pytest.raises(ValueError, match="terrain_seed -2 must be a non-negative integer"):
        SynthConfig(terrain_seed=-2)


# ---------------------------------------------------------------------------
# Diurnal cycle, cells, cold pools, outflow
# ---------------------------------------------------------------------------


def test_diurnal_cycle(small):
    atm, state, _ = small
    t2m = channel(atm, state, "t2m").mean(axis=(1, 2))
    hours = np.arange(t2m.size)
    X = np.stack([np.ones_like(hours), hours, np.cos(2 * np.pi * hours / 24), np.sin(2 * np.pi * hours / 24)], 1)
    coef, *_ = np.linalg.lstsq(X, t2m, rcond=None)
    amp = np.hypot(coef[2], coef[3])
    resid = t2m - X @ coef
    explained = 1 - resid.var() / (t2m - X[:, :2] @ np.linalg.lstsq(X[:, :2], t2m, rcond=None)[0]).var()
    assert amp > 2.0 and explained > 0.6
    for day in range(N_SMALL // 24):
        one = t2m[24 * day:24 * (day + 1)]
        assert one.max() - one.min() > 3.0
    peak_utc = (np.degrees(np.arctan2(coef[3], coef[2])) / 15.0) % 24  # 2 m temperature peaks mid-afternoon
    assert 18.0 <= peak_utc <= 24.0


def test_cells_exist_in_most_hours(small):
    atm, state, _ = small
    refc = channel(atm, state, "refc")
    assert (refc.reshape(N_SMALL, -1).max(axis=1) > 35).mean() > 0.5
    # Storms are compact: strong echoes cover a small part of the domain.
    assert (refc > 35).mean() < 0.1
    assert refc.max() > 50


def test_cells_move_with_the_steering_wind(small):
    atm, state, _ = small
    # In the cell table: displacement = steering wind + the cell's own propagation.
    ex, ey = [], []
    for h in range(10, 90, 8):
        c0, c1 = atm.cells(h), atm.cells(h + 1)
        common, i0, i1 = np.intersect1d(c0["id"], c1["id"], return_indices=True)
        dy = (c1["y"][i1] - c0["y"][i0]) / 3600
        dx = (c1["x"][i1] - c0["x"][i0]) / 3600
        u, v = atm.steering_wind(0.5 * (c0["y"][i0] + c1["y"][i1]), 0.5 * (c0["x"][i0] + c1["x"][i1]), h + 0.5)
        ex.extend(dx - u)
        ey.extend(dy - v)
    ex, ey = np.array(ex), np.array(ey)
    assert ex.size > 20
    sd = atm.config.propagation_ms  # the cells' own motion: zero mean, this spread
    assert abs(ex.mean()) < sd and abs(ey.mean()) < sd
    assert np.sqrt((ex ** 2).mean()) < 2 * sd and np.sqrt((ey ** 2).mean()) < 2 * sd
    # In the reflectivity: cores at h + 1 lie closer to the h cores moved by
    # the steering wind than to where they were.
    refc = channel(atm, state, "refc")
    moved, still = [], []
    for h in range(N_SMALL - 1):
        c0 = peaks(refc[h], 35.0).astype(np.float64)
        c1 = peaks(refc[h + 1], 35.0).astype(np.float64)
        if len(c0) == 0 or len(c1) == 0:
            continue
        y = np.interp(c0[:, 0], np.arange(64), atm.grid.y)
        x = np.interp(c0[:, 1], np.arange(64), atm.grid.x)
        u, v = atm.steering_wind(y, x, h + 0.5)
        shifted = c0 + np.stack([v, u], 1) * 3600 / 3000.0
        for p, q in ((shifted, moved), (c0, still)):
            d = np.hypot(*(p[:, None, :] - c1[None, :, :]).transpose(2, 0, 1)).min(axis=1)
            q.extend(d.tolist())
    assert len(moved) > 50
    assert np.median(moved) < 0.7 * np.median(still)


def test_cold_pools_and_outflow_under_cells(small):
    atm, state, _ = small
    refc, t2m = channel(atm, state, "refc"), channel(atm, state, "t2m")
    u10, v10 = channel(atm, state, "u10m"), channel(atm, state, "v10m")
    diffs, div_core, div_all = [], [], []
    for h in range(N_SMALL):
        strong = refc[h] > 40
        if strong.sum() < 3:
            continue
        near = max_filter(strong, 4)
        ring = max_filter(strong, 14) & ~near
        if ring.sum() < 20:
            continue
        diffs.append(t2m[h][strong].mean() - t2m[h][ring].mean())
        div = np.gradient(u10[h], axis=1) + np.gradient(v10[h], axis=0)
        div_core.append(div[near].mean())
        div_all.append(div.mean())
    assert len(diffs) > 20
    assert np.mean(diffs) < -1.0  # colder under strong cells
    assert np.mean(div_core) > 0 and np.mean(div_core) > np.mean(div_all)  # divergent outflow


def test_cell_lifecycle_envelopes(small):
    atm, _, _ = small
    c = atm.cells(30)
    assert c["id"].size > 0
    assert ((c["age"] >= 0) & (c["age"] <= c["tg"] + c["tm"] + c["td"])).all()
    assert ((c["a"] >= 0) & (c["a"] <= 1) & (c["b"] >= 0) & (c["b"] <= 1)).all()
    assert (c["peak"] <= atm.config.max_dbz).all()
    assert np.all(np.diff(c["id"]) > 0)


# ---------------------------------------------------------------------------
# Predictability: persistence degrades with lead, a linear model beats it
# ---------------------------------------------------------------------------


def test_persistence_error_grows_with_lead(small):
    atm, state, _ = small
    x = state.astype(np.float64)
    std = x.std(axis=(0, 2, 3))
    err = {}
    for lead in (1, 3, 6):
        d = (x[lead:] - x[:-lead]) / std[None, :, None, None]
        err[lead] = np.sqrt((d ** 2).mean(axis=(0, 2, 3)))  # per channel
    assert (err[1] < err[6]).all()
    assert ((err[1] < err[3]) & (err[3] < err[6])).mean() >= 0.85
    assert err[1].mean() < 0.8 * err[3].mean() < 0.8 * 0.8 * err[6].mean()


def test_linear_model_beats_persistence(small):
    """A per-channel linear model of the +1 h increment beats persistence on held-out hours.

    Features: the small-scale anomaly (x_t minus its 13 x 13 box mean: decaying
    cells), the last tendency x_t - x_{t-1} (advection, diurnal cycle) and 1;
    fit on hours 1..69, tested on 71..94.
    """
    atm, state, _ = small
    x = state.astype(np.float64)
    r = 6  # box mean by cumulative sums
    c = np.pad(x, [(0, 0), (0, 0), (r + 1, r), (r + 1, r)], mode="edge").cumsum(-2).cumsum(-1)
    n = 2 * r + 1
    smooth = (c[..., n:, n:] - c[..., :-n, n:] - c[..., n:, :-n] + c[..., :-n, :-n]) / n ** 2
    train, test = range(1, 70), range(71, N_SMALL - 1)

    def design(c: int, hours: range) -> tuple[np.ndarray, np.ndarray]:
        feats = np.concatenate([np.stack([x[i, c] - smooth[i, c], x[i, c] - x[i - 1, c], np.ones_like(x[i, c])],
                                         -1).reshape(-1, 3) for i in hours])
        target = np.concatenate([(x[i + 1, c] - x[i, c]).ravel() for i in hours])
        return feats, target

    ratios = []
    for c in range(x.shape[1]):
        a, b = design(c, train)
        coef, *_ = np.linalg.lstsq(a, b, rcond=None)
        at, bt = design(c, test)
        persistence = np.sqrt((bt ** 2).mean())
        model = np.sqrt(((bt - at @ coef) ** 2).mean())
        ratios.append(model / persistence)
    ratios = np.array(ratios)
    assert ratios.mean() < 0.9
    assert (ratios < 1.0).mean() >= 0.75
    for name in ("t2m", "refc"):
        assert ratios[atm.state_variables.index(name)] < 1.0, name


# ---------------------------------------------------------------------------
# Conditioning
# ---------------------------------------------------------------------------


def test_conditioning_grid_covers_the_domain(small):
    atm, _, cond = small
    lat, lon = atm.cond_lat, atm.cond_lon
    assert (np.diff(lat) < 0).all() and (np.diff(lon) > 0).all()
    np.testing.assert_allclose(np.diff(lat), -0.25)
    np.testing.assert_allclose(np.diff(lon), 0.25)
    assert ((lon >= 0) & (lon < 360)).all()
    assert lat[0] >= atm.grid.lat.max() + 1.0 - 1e-9 and lat[-1] <= atm.grid.lat.min() - 1.0 + 1e-9
    assert lon[0] <= atm.grid.lon.min() - 1.0 + 1e-9 and lon[-1] >= atm.grid.lon.max() + 1.0 - 1e-9
    assert cond.shape[2:] == (lat.size, lon.size)


def test_conditioning_is_smooth_and_has_no_cells(small):
    atm, _, cond = small
    calm = SyntheticAtmosphere(SynthConfig(grid=(64, 64), preset="small", seed=atm.config.seed,
                                           birth_rate=0.0, daughter_rate=0.0))
    for h in (0, 17, 45):
        np.testing.assert_array_equal(calm.conditioning(h), cond[h])
    # Second differences relative to first: 2 sin(pi dx / wavelength), sqrt(3)
    # for white noise. Fields away from the terrain are synoptically smooth;
    # the others carry the (smoothed) orography and coastlines.
    for i, name in enumerate(atm.conditioning_variables):
        f = cond[:, i].astype(np.float64)
        terrain = name in ("u10m", "v10m", "t2m", "sp", "tcwv") or name.endswith(("850", "1000"))
        for axis in (1, 2):
            d1 = np.sqrt((np.diff(f, axis=axis) ** 2).mean())
            d2 = np.sqrt((np.diff(f, n=2, axis=axis) ** 2).mean())
            assert d2 < (1.4 if terrain else 0.6) * d1, (name, axis, d2 / d1)
    # No cold pools: the coarse 2 m temperature has no sharp minima.
    t2m = cond[:, atm.conditioning_variables.index("t2m")]
    assert np.abs(np.diff(t2m, n=2, axis=1)).max() < 5 and np.abs(np.diff(t2m, n=2, axis=2)).max() < 5


def test_conditioning_matches_the_large_scale_state(small):
    """Regridded conditioning and the state agree where there are no cells."""
    from stormcast_plugin.utils.interpolation import BilinearRegridder

    atm, state, cond = small
    rg = BilinearRegridder(atm.cond_lat, atm.cond_lon, atm.grid.lat, atm.grid.lon)
    for name, tol in (("t2m", 2.5), ("msl", 150.0), ("u10m", 3.0)):
        c = rg(cond[:, atm.conditioning_variables.index(name)]).numpy()
        s = channel(atm, state, name)
        refc = channel(atm, state, "refc")
        calm = refc < 0
        assert np.abs(np.median((s - c)[calm])) < tol / 3, name
        assert np.sqrt(((s - c)[calm] ** 2).mean()) < tol, name


# ---------------------------------------------------------------------------
# Invariants, grids, configuration
# ---------------------------------------------------------------------------


def test_invariants(small):
    atm, _, _ = small
    inv = atm.invariants()
    assert inv.shape == (2, 64, 64) and inv.dtype == np.float32
    lsm, orog = inv
    assert set(np.unique(lsm)) <= {0.0, 1.0}
    assert lsm[32, 32] == 1.0  # a continental domain
    assert orog.min() >= 0 and orog.max() <= atm.config.orography_max_m
    assert (orog[lsm == 0] < 50).all()
    # Smooth: slopes under 5 % (150 m per 3 km).
    assert np.abs(np.diff(orog, axis=0)).max() < 150 and np.abs(np.diff(orog, axis=1)).max() < 150


def test_grid_specs_and_custom_grid():
    assert SynthConfig(grid=(64, 80)).grid.native_window == (529 - 32, 529 + 32, 899 - 40, 899 + 40)
    with pytest.raises(ValueError, match="does not fit"):
        SynthConfig(grid=(2000, 64))
    with pytest.raises(ValueError, match=r"ModelGrid or an \(H, W\) pair, got '64x64'; .* pass \(64, 64\)"):
        SynthConfig(grid="64x64")
    lat, lon = np.meshgrid(np.linspace(35.0, 36.0, 12), np.linspace(260.0, 261.5, 16), indexing="ij")
    grid = ModelGrid.from_arrays(np.arange(12) * 1e4, np.arange(16) * 1e4, lat, lon)
    atm = SyntheticAtmosphere(SynthConfig(grid=grid, preset="tiny", seed=1))
    s = atm.state(3)
    assert s.shape == (6, 12, 16) and np.isfinite(s).all()
    assert atm.cond_lat[0] >= 37.0 and atm.cond_lat[-1] <= 34.0
    assert np.isfinite(atm.conditioning(3)).all()


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="preset 'huge' is unknown"):
        SynthConfig(preset="huge")
    with pytest.raises(ValueError, match="cannot be synthesised"):
        SynthConfig(state_variables=("t2m", "t2"), conditioning_variables=("t2m",))
    with pytest.raises(ValueError, match="whole hour"):
        SynthConfig(start="2024-05-01T00:30")
    with pytest.raises(ValueError, match="max_dbz"):
        SynthConfig(max_dbz=90)
    with pytest.raises(ValueError, match="decay_hours"):
        SynthConfig(decay_hours=(3.0, 1.0))
    with pytest.raises(ValueError, match="seed"):
        SynthConfig(seed=-1)
    with pytest.raises(ValueError, match="hour_index"):
        SyntheticAtmosphere(SynthConfig(grid=(16, 16), preset="tiny")).state(-100)


# ---------------------------------------------------------------------------
# Writing a store
# ---------------------------------------------------------------------------


def test_synthesize_writes_a_valid_store(tmp_path):
    path = tmp_path / "synth.zarr"
    store = synthesize(path, "2024-05-01T00", 12, grid=(32, 32), preset="tiny", seed=1, progress=False)
    again = DatasetStore.open(path)
    assert again.written.all() and len(again) == 12
    assert again.state_variables == store.state_variables and len(store.state_variables) == 6
    assert again.grid.shape == (32, 32)
    stats = again.statistics()  # finite and std > 0, or it raises
    data = again.read_state(slice(None)).astype(np.float64)
    np.testing.assert_allclose(stats["state_mean"], data.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["state_std"], data.std(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    cdata = again.read_conditioning(slice(None)).astype(np.float64)
    np.testing.assert_allclose(stats["conditioning_mean"], cdata.mean(axis=(0, 2, 3)), rtol=1e-5)
    attrs = again.attrs
    assert attrs["source"] == "synthetic" and attrs["seed"] == 1
    cfg = json.loads(attrs["config"])
    assert cfg["preset"] == "tiny" and cfg["grid"]["kind"] == "hrrr"
    atm = SyntheticAtmosphere(SynthConfig(grid=(32, 32), preset="tiny", seed=1))
    np.testing.assert_allclose(again.read_state(5)[0], atm.state(5), rtol=0, atol=0)
    np.testing.assert_allclose(again.read_invariants(), atm.invariants())
    np.testing.assert_allclose(again.cond_lat, atm.cond_lat)
    assert str(again.times[0]).startswith("2024-05-01T00")
    with pytest.raises(FileExistsError):
        synthesize(path, "2024-05-01T00", 2, grid=(32, 32), preset="tiny", progress=False)
    synthesize(path, "2024-05-01T00", 2, grid=(32, 32), preset="tiny", progress=False, overwrite=True)
    with pytest.raises(ValueError, match="hours"):
        synthesize(tmp_path / "x.zarr", "2024-05-01T00", 0, progress=False)
