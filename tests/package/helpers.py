"""Names, comparisons and a fake Hugging Face cache shared by the package tests (and the model tests)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from stormcast_plugin.package import StormCastPackage

STATE = ("u10m", "v10m", "t2m", "msl", "q5hl", "Z5hl", "p5hl", "refc")
COND = ("u10m", "t2m", "tcwv", "sp", "z500", "q850")
INV = ("lsm", "orography")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def inputs(pkg: StormCastPackage) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded state and conditioning batches of two for ``pkg``'s networks."""
    g = torch.Generator().manual_seed(0)
    h, w = pkg.invariants.shape[1:]
    c, ce = len(pkg.state_variables), len(pkg.conditioning_variables)
    x = torch.randn(2, c, h, w, generator=g)
    e = torch.randn(2, ce, h, w, generator=g)
    return x, e


def outputs(pkg: StormCastPackage) -> tuple[torch.Tensor, torch.Tensor]:
    """Regression mean and one denoiser output of ``pkg`` on :func:`inputs`."""
    x, e = inputs(pkg)
    inv = torch.from_numpy(pkg.invariants)[None].expand(2, -1, -1, -1)
    with torch.no_grad():
        r = pkg.regression(torch.cat([x, e, inv], 1))
        d = pkg.diffusion(x, torch.tensor([0.3, 5.0]), torch.cat([x, r, inv], 1))
    return r, d


def assert_same(a: StormCastPackage, b: StormCastPackage) -> None:
    """``a`` and ``b`` hold the same names, statistics, networks, sampler and grid."""
    assert a.state_variables == b.state_variables
    assert a.conditioning_variables == b.conditioning_variables
    assert a.invariant_names == b.invariant_names
    for name in ("state_mean", "state_std", "conditioning_mean", "conditioning_std", "invariants"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert getattr(b, name).dtype == np.float32
    assert a.regression.config == b.regression.config
    assert a.diffusion.config == b.diffusion.config
    assert float(a.diffusion.sigma_data) == float(b.diffusion.sigma_data)
    for na, nb in ((a.regression, b.regression), (a.diffusion, b.diffusion)):
        sa, sb = na.state_dict(), nb.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.sampler == b.sampler
    assert a.grid.fingerprint() == b.grid.fingerprint()
    np.testing.assert_array_equal(a.grid.lat, b.grid.lat)
    np.testing.assert_array_equal(a.grid.x, b.grid.x)
    for oa, ob in zip(outputs(a), outputs(b)):
        assert torch.equal(oa, ob)


def _fake_hub_cache(cache: Path, repo_id: str, files_from: Path, commit: str, ref: str | None) -> None:
    """Lay out ``files_from`` as a Hugging Face cache snapshot of ``repo_id`` at ``commit``."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    for f in files_from.iterdir():
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        try:
            (snap / f.name).symlink_to(os.path.relpath(blob, snap))
        except OSError:
            shutil.copyfile(blob, snap / f.name)
    if ref is not None:
        (repo / "refs").mkdir()
        (repo / "refs" / ref).write_text(commit)


class RemotePackage:
    """Duck-typed like earth2studio's Package for, say, s3:// or ngc://, serving the files of ``folder``."""

    def __init__(self, folder, root="s3://bucket/stormcast"):
        self.folder, self.root = folder, root

    def resolve(self, name):
        if not (self.folder / name).is_file():
            raise FileNotFoundError(name)
        return str(self.folder / name)
