"""Radial power spectra: stormcast_plugin.statistics against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

xr = pytest.importorskip("xarray")

from stormcast_plugin import statistics as M  # noqa: E402


def field(values, dims=("y", "x")):
    return xr.DataArray(np.asarray(values, dtype=np.float64), dims=dims)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_plane_wave_spectrum_peaks_at_its_wavenumber(k):
    n = 32
    x = np.arange(n)
    wave = field(np.sin(2 * np.pi * k * x / n)[None, :] * np.ones((n, 1)))
    spec = M.radial_power_spectrum(wave, grid_spacing_km=3.0)
    assert spec.dims == ("wavenumber",)
    assert int(spec["wavenumber"][int(np.argmax(spec.values))]) == k
    assert float(spec["wavelength_km"].sel(wavenumber=k)) == pytest.approx(n * 3.0 / k)
    # all the variance (1/2) is in bin k; other bins are empty
    assert float((spec * spec["modes"]).sum()) == pytest.approx(0.5)
    assert float(spec.drop_sel(wavenumber=k).max()) < 1e-20

def test_spectrum_on_a_rectangular_grid_counts_cycles_along_the_longer_side():
    ny, nx, k = 16, 24, 5
    wave = field(np.cos(2 * np.pi * k * np.arange(nx) / nx)[None, :] * np.ones((ny, 1)))
    spec = M.radial_power_spectrum(wave)
    assert spec.sizes["wavenumber"] == nx // 2
    assert int(spec["wavenumber"][int(np.argmax(spec.values))]) == k

def test_spectral_ratio_of_identical_fields_is_one():
    rng = np.random.default_rng(7)
    a = xr.DataArray(rng.normal(size=(2, 20, 20)), dims=("time", "y", "x"))
    ratio = M.spectral_ratio(a, a)
    np.testing.assert_allclose(ratio.values, 1.0)
    smooth = M.spectral_ratio(0.5 * a, a, mean_dims=("time",))
    np.testing.assert_allclose(smooth.values, 0.25)


# ---------------------------------------------------------------- binning on a non-square grid

NY, NX, DX = 48, 64, 3.0


def _wave(k: int, axis: str) -> np.ndarray:
    """A cosine of k cycles across the domain along ``axis`` on the NY x NX grid."""
    y, x = np.meshgrid(np.arange(NY), np.arange(NX), indexing="ij")
    return np.cos(2 * np.pi * k * (x / NX if axis == "x" else y / NY))


def test_waves_along_the_longer_side_land_on_their_own_wavelength():
    # The known answer: a wave of wavelength L shows its power in the bin of wavelength L. Counting
    # cycles per max(ny, nx) grid lengths gives that exactly for every wave along the longer side;
    # counting per min(ny, nx) (the former training-validation binning) would put k = 7 of 64 at 48/5 grid
    # lengths instead of 64/7.
    for k in range(1, NX // 2):
        spec = M.radial_power_spectrum(field(_wave(k, "x")), grid_spacing_km=DX)
        peak = spec.isel(wavenumber=int(np.argmax(spec.values)))
        assert float(peak["wavelength_km"]) == pytest.approx(NX * DX / k), k
        assert float((spec * spec["modes"]).sum()) == pytest.approx(0.5)  # all the variance, in one bin


def test_waves_along_the_shorter_side_are_within_half_a_bin():
    for k in range(1, NY // 2):
        spec = M.radial_power_spectrum(field(_wave(k, "y")), grid_spacing_km=DX)
        peak = int(spec["wavenumber"][int(np.argmax(spec.values))])
        exact = k * NX / NY  # the wave's wavenumber in cycles per NX grid lengths
        assert abs(peak - exact) <= 0.5, k


def test_every_bin_holds_modes_and_a_band_limited_field_keeps_its_variance():
    k, modes = M.radial_wavenumbers(NY, NX)
    assert list(k) == list(range(1, NX // 2 + 1)) and (modes >= 1).all()
    rng = np.random.default_rng(3)
    f = np.fft.fft2(rng.normal(size=(NY, NX)))
    ky = np.fft.fftfreq(NY)[:, None] * NX
    kx = np.fft.fftfreq(NX)[None, :] * NX
    f[np.hypot(ky, kx) > NX // 2 - 1] = 0  # no power in the corners beyond the last bin
    a = np.fft.ifft2(f).real
    spec = M.radial_spectrum(a)
    assert (spec * modes).sum() == pytest.approx(a.var(), rel=1e-12)  # Parseval


def test_tensor_and_array_spectra_agree():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    a = rng.normal(size=(2, 3, NY, NX))
    a[1, 2, 5, 5] = np.nan
    got = M.radial_spectrum(torch.as_tensor(a))
    assert isinstance(got, torch.Tensor) and got.shape == (2, 3, NX // 2)
    np.testing.assert_allclose(got.numpy(), M.radial_spectrum(a), rtol=1e-10, equal_nan=True)
    assert np.isnan(got[1, 2].numpy()).all() and np.isfinite(got[1, 1].numpy()).all()
    f32 = M.radial_spectrum(torch.as_tensor(a[0], dtype=torch.float32), taper=True)
    np.testing.assert_allclose(f32.numpy(), M.radial_spectrum(a[0], taper=True), rtol=1e-4)


def test_training_validation_uses_the_same_spectrum():
    pytest.importorskip("torch")
    from stormcast_plugin.train import validate

    assert validate.radial_spectrum is M.radial_spectrum


def test_spectral_band_ratio_on_known_waves():
    # truth: waves of 96 km (k = 2), 32 km (k = 6) and 12 km (k = 16) along x; the forecast has the
    # first as is, the second doubled and the third halved
    truth = _wave(2, "x") + _wave(6, "x") + _wave(16, "x")
    forecast = _wave(2, "x") + 2 * _wave(6, "x") + 0.5 * _wave(16, "x")
    out = M.spectral_band_ratio(field(forecast), field(truth), grid_spacing_km=DX)
    assert list(out["band"].values) == ["lt15km", "15_60km", "ge60km"]
    np.testing.assert_allclose(out.values, [0.25, 4.0, 1.0], rtol=1e-9)
    with pytest.raises(ValueError, match="increasing positive wavelengths"):
        M.spectral_band_ratio(field(forecast), field(truth), edges_km=[60, 15])
