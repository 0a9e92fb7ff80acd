"""Radially averaged power spectra, and forecast/truth power ratios.

:func:`radial_spectrum` is the one spectrum of the package: training
validation calls it on torch tensors, scoring (through
:func:`radial_power_spectrum`) on xarray fields, so both bin alike.
``scores`` has no spectra.

Binning. Modes are binned by their radial wavenumber counted in cycles per
``n = max(ny, nx)`` grid lengths (cycles across the longer side of the
domain), rounded to an integer; bins ``k = 1 .. n // 2`` are kept. On a
non-square grid this is the finer of the two natural choices: every mode of
the longer axis falls exactly on a bin (a wave of wavelength ``L`` lands in
the bin of wavelength ``L``), every bin holds at least one mode, and a wave
along the shorter axis is off by at most half a bin of this finer width.
Counting cycles per ``min(ny, nx)`` instead would shift waves along the
longer axis by up to half a (coarser) bin.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from stormcast_plugin.statistics.utils import (
    HRRR_SPACING_KM,
    align,
    as_dims,
    band_edges,
    check_dims,
    safe_divide,
)

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "DEFAULT_SPECTRAL_BANDS_KM",
    "radial_power_spectrum",
    "radial_spectrum",
    "radial_wavenumbers",
    "spectral_band_ratio",
    "spectral_ratio",
]

DEFAULT_SPECTRAL_BANDS_KM: tuple[float, ...] = (15.0, 60.0)
"""Wavelength band edges in km: below 15 km (storm cells, a few grid lengths
on the 3 km HRRR grid), 15 to 60 km, and 60 km and above."""


@lru_cache(maxsize=16)
def _bins(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices of the kept modes sorted by bin, the first position of each bin, modes per bin, bin of each."""
    n = max(ny, nx)
    ky = np.fft.fftfreq(ny) * n
    kx = np.fft.fftfreq(nx) * n
    k = np.rint(np.hypot(ky[:, None], kx[None, :])).astype(np.int64).ravel()
    nbins = n // 2
    flat = np.flatnonzero((k >= 1) & (k <= nbins))
    order = flat[np.argsort(k[flat], kind="stable")]
    index = k[order] - 1
    counts = np.bincount(index, minlength=nbins)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, starts, counts, index


def radial_wavenumbers(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """Wavenumbers ``1 .. max(ny, nx) // 2`` (cycles per ``max(ny, nx)`` grid lengths) and modes per bin."""
    counts = _bins(int(ny), int(nx))[2]
    return np.arange(1, counts.size + 1), counts


def radial_spectrum(field: Any, *, taper: bool = False) -> Any:
    """Radially averaged power spectrum of ``[..., ny, nx]`` fields.

    The field (mean removed) is Fourier transformed over its last two
    dimensions; ``|F|^2 / (ny nx)^2`` is the variance carried by each mode
    (the powers of all modes sum to the field's variance, Parseval). Modes are
    binned as the module docstring says and averaged within each bin.

    Parameters
    ----------
    field : numpy.ndarray or torch.Tensor
        Fields over their last two dimensions; a tensor stays on its device.
    taper : bool, optional
        Apply a 2-D Hann window (rescaled to keep the variance) to limit
        leakage from the edges; otherwise the fields are treated as periodic.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``[..., max(ny, nx) // 2]`` mean power per bin for wavenumbers
        ``1 .. max(ny, nx) // 2`` (see :func:`radial_wavenumbers`), float64
        for arrays, the field's dtype for tensors; NaN for a field holding
        NaN or infinite values.
    """
    ny, nx = (int(s) for s in field.shape[-2:])
    order, starts, counts, index = _bins(ny, nx)
    window = None
    if taper:
        window = np.outer(np.hanning(ny), np.hanning(nx))
        window = window / np.sqrt(np.mean(window ** 2))  # keep the total variance
    if not isinstance(field, np.ndarray) and type(field).__module__.startswith("torch"):
        import torch

        finite = torch.isfinite(field).flatten(-2).all(-1, keepdim=True)
        f = field - field.mean(dim=(-2, -1), keepdim=True)
        if window is not None:
            f = f * torch.as_tensor(window, dtype=f.dtype, device=f.device)
        power = torch.fft.fft2(f).abs().square().flatten(-2) / float(ny * nx) ** 2
        sel = power[..., torch.as_tensor(order, device=f.device)]
        out = torch.zeros(*sel.shape[:-1], counts.size, dtype=sel.dtype, device=sel.device)
        out.index_add_(-1, torch.as_tensor(index, device=f.device), sel)
        out = out / torch.as_tensor(counts, dtype=sel.dtype, device=sel.device)
        return torch.where(finite, out, torch.full_like(out, float("nan")))
    a = np.asarray(field, dtype=np.float64)
    finite = np.isfinite(a).all(axis=(-2, -1))[..., None]
    a = a - a.mean(axis=(-2, -1), keepdims=True)
    if window is not None:
        a = a * window
    power = (np.abs(np.fft.fft2(a)) ** 2).reshape(a.shape[:-2] + (ny * nx,)) / float(ny * nx) ** 2
    out = np.add.reduceat(power[..., order], starts, axis=-1) / counts
    return np.where(finite, out, np.nan)


def radial_power_spectrum(field: "xr.DataArray", dims: Any = None, *,
                          grid_spacing_km: float | None = HRRR_SPACING_KM,
                          taper: bool = False) -> "xr.DataArray":
    """Radially averaged power spectrum of each 2-D field of a DataArray.

    Parameters
    ----------
    field : xarray.DataArray
        One or many fields; other dimensions are kept.
    dims : sequence of two str, optional
        The ``(y, x)`` dimensions; default
        :func:`~stormcast_plugin.statistics.utils.spatial_dims`.
    grid_spacing_km : float or None, optional
        Grid spacing (3 km for HRRR); adds a ``wavelength_km`` coordinate
        ``n * grid_spacing_km / k``.
    taper : bool, optional
        Apply a Hann window before the transform (see :func:`radial_spectrum`).

    Returns
    -------
    xarray.DataArray
        Named ``power_spectrum`` with dimension ``wavenumber`` (int, cycles per
        ``n = max(ny, nx)`` grid lengths) replacing the spatial ones,
        coordinates ``modes`` (modes per bin) and ``wavelength_km``; in squared
        units of the field. Fields with NaN give NaN spectra.

    Raises
    ------
    ValueError
        If ``dims`` does not name two dimensions of ``field``, the field is
        smaller than 2 grid points along both, or the spacing is not positive.
    """
    import xarray as xr

    ydim, xdim = as_dims(dims, field)
    check_dims((ydim, xdim), field)
    ny, nx = field.sizes[ydim], field.sizes[xdim]
    if max(ny, nx) < 2:
        raise ValueError(f"a power spectrum needs at least 2 points along {ydim!r} or {xdim!r}, got {ny} x {nx}")
    if grid_spacing_km is not None and not grid_spacing_km > 0:
        raise ValueError(f"grid_spacing_km must be positive, got {grid_spacing_km}")
    k, counts = radial_wavenumbers(ny, nx)
    out = xr.apply_ufunc(
        radial_spectrum, field, input_core_dims=[[ydim, xdim]], output_core_dims=[["wavenumber"]],
        kwargs={"taper": bool(taper)}, dask="parallelized", output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"wavenumber": k.size}, "allow_rechunk": True},
    )
    coords: dict[str, Any] = {"wavenumber": k, "modes": ("wavenumber", counts)}
    if grid_spacing_km is not None:
        coords["wavelength_km"] = ("wavenumber", max(ny, nx) * float(grid_spacing_km) / k)
    out = out.assign_coords(coords).rename("power_spectrum")
    out.attrs.update(long_name="radially averaged power spectrum",
                     wavenumber_units=f"cycles per {max(ny, nx)} grid lengths")
    return out


def _mean_spectra(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any, mean_dims: Sequence[str],
                  grid_spacing_km: float | None, taper: bool) -> tuple["xr.DataArray", "xr.DataArray"]:
    f, t = align(forecast, truth)
    d = as_dims(dims, t)
    pf = radial_power_spectrum(f, d, grid_spacing_km=grid_spacing_km, taper=taper)
    pt = radial_power_spectrum(t, d, grid_spacing_km=grid_spacing_km, taper=taper)
    check_dims(mean_dims, pf, pt)
    return pf.mean([m for m in mean_dims if m in pf.dims]), pt.mean([m for m in mean_dims if m in pt.dims])


def spectral_ratio(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any = None, *,
                   mean_dims: Sequence[str] = (), grid_spacing_km: float | None = HRRR_SPACING_KM,
                   taper: bool = False) -> "xr.DataArray":
    """Forecast power over truth power, per wavenumber.

    1 means the forecast has the truth's variance at that scale; below 1
    over-smoothed (typical of deterministic regression at small scales),
    above 1 too noisy.

    Parameters
    ----------
    forecast, truth : xarray.DataArray
        Fields over the same spatial grid.
    dims : sequence of two str, optional
        The ``(y, x)`` dimensions; default the spatial dimensions of the truth.
    mean_dims : sequence of str, optional
        Dimensions over which each spectrum is averaged before the ratio
        (e.g. ``("ensemble", "time")``); each spectrum averages those it has.
    grid_spacing_km, taper : optional
        As for :func:`radial_power_spectrum`.

    Returns
    -------
    xarray.DataArray
        Named ``spectral_ratio`` over ``wavenumber`` and the dimensions left.
    """
    pf, pt = _mean_spectra(forecast, truth, dims, mean_dims, grid_spacing_km, taper)
    return safe_divide(pf, pt).rename("spectral_ratio")


def band_label(lo: float, hi: float) -> str:
    """``lt15km``, ``15_60km`` or ``ge60km``: a column-friendly name of a wavelength band."""
    if lo <= 0:
        return f"lt{hi:g}km"
    if not np.isfinite(hi):
        return f"ge{lo:g}km"
    return f"{lo:g}_{hi:g}km"


def spectral_band_ratio(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any = None, *,
                        edges_km: Sequence[float] = DEFAULT_SPECTRAL_BANDS_KM,
                        mean_dims: Sequence[str] = (), grid_spacing_km: float = HRRR_SPACING_KM,
                        taper: bool = False) -> "xr.DataArray":
    """Forecast variance over truth variance within wavelength bands.

    The power of the modes whose wavelength lies in ``[lo, hi)`` km is summed
    (mean power per bin times modes per bin) for each spectrum, and the
    forecast's sum is divided by the truth's. 1: the right variance at those
    scales; below 1 too smooth; above 1 too noisy.

    Parameters
    ----------
    forecast, truth : xarray.DataArray
        Fields over the same spatial grid.
    dims : sequence of two str, optional
        The ``(y, x)`` dimensions; default the spatial dimensions of the truth.
    edges_km : sequence of float, optional
        Increasing band edges in km; the bands run from 0 to the first edge,
        between edges, and from the last edge up. Default 15 and 60 km.
    mean_dims : sequence of str, optional
        Dimensions over which each spectrum is averaged first (as for
        :func:`spectral_ratio`).
    grid_spacing_km : float, optional
        Grid spacing in km.
    taper : bool, optional
        As for :func:`radial_power_spectrum`.

    Returns
    -------
    xarray.DataArray
        Named ``spectral_band_ratio`` with a ``band`` dimension labelled as
        :func:`band_label` does (coordinates ``wavelength_min_km`` and
        ``wavelength_max_km``); NaN for a band holding no mode of this grid.

    Raises
    ------
    ValueError
        For edges that are not positive and increasing.
    """
    import xarray as xr

    e = band_edges(edges_km)
    lows = np.concatenate([[0.0], e])
    highs = np.concatenate([e, [np.inf]])
    pf, pt = _mean_spectra(forecast, truth, dims, mean_dims, grid_spacing_km, taper)
    lam = pf["wavelength_km"]
    parts = []
    for lo, hi in zip(lows, highs):
        inside = (lam >= lo) & (lam < hi)
        fsum = (pf * pf["modes"]).where(inside).sum("wavenumber", min_count=1)
        tsum = (pt * pt["modes"]).where(inside).sum("wavenumber", min_count=1)
        parts.append(safe_divide(fsum, tsum))
    out = xr.concat(parts, dim="band").assign_coords(
        band=[band_label(lo, hi) for lo, hi in zip(lows, highs)],
        wavelength_min_km=("band", lows), wavelength_max_km=("band", highs))
    return out.drop_vars([c for c in ("modes", "wavelength_km") if c in out.coords]).rename("spectral_band_ratio")
