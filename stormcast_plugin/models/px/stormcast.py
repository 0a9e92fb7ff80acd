"""StormCast as an earth2studio prognostic model.

:class:`StormCast` adapts the pure-tensor core (:mod:`stormcast_plugin.models.nn.stormcast_nets`)
to earth2studio's ``PrognosticModel`` protocol: coordinates in, coordinates
out, one hour per step. It fetches the conditioning at each step's valid time
from any earth2studio DataSource or ForecastSource, regrids it with weights
computed once, normalises, steps and de-normalises.

Coordinates are ``(batch, time, lead_time, variable, hrrr_y, hrrr_x)``; extra
leading dimensions such as ``ensemble`` fold into ``batch``. Variables are
matched by name. Each member's noise comes from a generator seeded by
``(seed, member, initial time, lead time)``, so a member's forecast does not
depend on the batch it runs in.
"""

from __future__ import annotations

import importlib
import sys
from collections import OrderedDict
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from earth2studio.models.batch import batch_coords, batch_func
from earth2studio.models.auto import AutoModelMixin
from earth2studio.utils.coords import CoordSystem, handshake_coords, handshake_dim

from stormcast_plugin.data.conditioning import ConditioningFetcher
from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions
from stormcast_plugin.models.px.noise import NoiseMemory, member_noise, member_seed, step_generators
from stormcast_plugin.utils.local_time import local_time_channels
from stormcast_plugin.package import DEFAULT_SOURCE, StormCastPackage, load_package
from stormcast_plugin.utils.variables import check_variables

__all__ = ["StormCast", "member_noise", "member_seed"]

_ONE_HOUR = np.timedelta64(1, "h")
_SPATIAL = ("hrrr_y", "hrrr_x")


def _prognostic_mixin() -> type:
    """earth2studio's ``PrognosticMixin`` (front and rear hooks).

    Importing it the usual way runs ``earth2studio.models.px/__init__``, which
    imports every model earth2studio ships (about 30 s). The mixin's own
    module needs none of them, so it is loaded alone under its real name:
    earth2studio's models import that same module object later, and the class
    is earth2studio's own.
    """
    name = "earth2studio.models.px.utils"
    if name not in sys.modules and "earth2studio.models.px" not in sys.modules:
        from importlib import util as importlib_util

        import earth2studio

        path = Path(earth2studio.__file__).parent / "models" / "px" / "utils.py"
        spec = importlib_util.spec_from_file_location(name, path)
        module = importlib_util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return importlib.import_module(name).PrognosticMixin


class StormCast(torch.nn.Module, AutoModelMixin, _prognostic_mixin()):
    """StormCast prognostic model (1-hour steps on a HRRR-like grid).

    Parameters
    ----------
    package : StormCastPackage
        Networks, variables, statistics, invariants, grid and sampler.
    conditioning_data_source : DataSource or ForecastSource, optional
        Source of the conditioning variables (ERA5 from ``ARCO`` or ``CDS``,
        ``GFS_FX``, a local store ...). Required before the first step; set
        it later with ``model.conditioning_data_source = source``.
    seed : int, optional
        Base seed of the diffusion noise. With a seed, each member's noise
        depends only on ``(seed, member, initial time, lead time)``: a run is
        reproduced exactly, whatever the batch size. With ``None`` (the
        default) every forecast (each ``__call__`` and each
        ``create_iterator``) draws its base seed from torch's global
        generator: repeated forecasts give fresh samples, and
        ``torch.manual_seed(s)`` before them reproduces them.
    sampler_steps : int, optional
        Number of sampler steps (default: the package's). Settable later as
        ``model.sampler_steps``.
    sampler_args : dict, optional
        Other sampler settings (``sigma_min``, ``sigma_max``, ``rho``,
        ``S_churn``, ``S_min``, ``S_max``, ``S_noise``, ``noise_memory_h``)
        overriding the package's. ``model.sampler_args`` is a plain dict read
        at every step: changes take effect on the next step.
    regression_only : bool
        Skip the diffusion residual (deterministic mean forecast).
    autocast_dtype : torch.dtype, optional
        Run the networks under autocast (``torch.bfloat16`` on recent GPUs).
    noise_on_device : bool
        Draw the sampler noise with generators on the model's device instead
        of the CPU (no host work and no copy per step). CUDA's random streams
        differ from the CPU's: a forecast is then reproduced exactly only with
        this setting on the same kind of device. Settable later as
        ``model.noise_on_device``.
    """

    def __init__(
        self,
        package: StormCastPackage,
        conditioning_data_source: Any = None,
        *,
        seed: int | None = None,
        sampler_steps: int | None = None,
        sampler_args: Mapping[str, Any] | None = None,
        regression_only: bool = False,
        autocast_dtype: torch.dtype | None = None,
        noise_on_device: bool = False,
    ) -> None:
        super().__init__()
        package.validate()
        self.package_info = dict(package.info)
        self.nets = package.nets()
        self.variables = np.array(package.state_variables)
        self.conditioning_variables = np.array(package.conditioning_variables)
        self.invariant_names = tuple(package.invariant_names)
        self.local_time = bool(package.local_time)
        self.grid = package.grid
        self.hrrr_y = np.asarray(self.grid.y)
        self.hrrr_x = np.asarray(self.grid.x)
        self.lat = np.asarray(self.grid.lat)
        self.lon = np.asarray(self.grid.lon)
        defaults = package.sampler.to_dict()
        self.sampler_steps = int(defaults.pop("num_steps") if sampler_steps is None else sampler_steps)
        defaults.pop("num_steps", None)
        self.sampler_args: dict[str, Any] = {**defaults, **dict(sampler_args or {})}
        _ = self.sampler  # refuse bad settings now rather than at the first step
        self.seed = seed
        self.regression_only = regression_only
        self.autocast_dtype = autocast_dtype
        self.noise_on_device = bool(noise_on_device)
        f32 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
        self.register_buffer("state_mean", f32(package.state_mean)[:, None, None])
        self.register_buffer("state_std", f32(package.state_std)[:, None, None])
        self.register_buffer("conditioning_mean", f32(package.conditioning_mean)[:, None, None])
        self.register_buffer("conditioning_std", f32(package.conditioning_std)[:, None, None])
        self.register_buffer("invariants", f32(package.invariants))
        self._source = conditioning_data_source
        self._fetcher: ConditioningFetcher | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load_default_package(cls) -> Any:
        """The official StormCast v1 package (Hugging Face, pinned revision).

        Returns an earth2studio ``Package``; :meth:`load_model` downloads it
        through huggingface-hub (honouring ``HF_HOME`` and ``HF_HUB_OFFLINE``).
        ``StormCast.from_pretrained()`` loads it in one call.
        """
        from earth2studio.models.auto import Package

        return Package(DEFAULT_SOURCE)

    @classmethod
    def load_model(
        cls,
        package: Any,
        conditioning_data_source: Any = None,
        *,
        sampler_steps: int | None = None,
        sampler_args: Mapping[str, Any] | None = None,
        seed: int | None = None,
        regression_only: bool = False,
        autocast_dtype: torch.dtype | None = None,
        noise_on_device: bool = False,
    ) -> "StormCast":
        """Load a model from a package.

        Parameters
        ----------
        package : Package, StormCastPackage, str or path
            An earth2studio ``Package``, a local folder (official or exported
            layout) or ``"hf://org/repo[@revision]"``.
        conditioning_data_source : DataSource or ForecastSource, optional
            Conditioning source. As in earth2studio's ``StormCast.load_model``,
            the default is earth2studio's ``GFS_FX()`` (GFS forecasts, which
            need network access at the first step); pass ``ARCO()``, ``CDS()``
            or a local source for ERA5 or offline use.
        sampler_steps, sampler_args, seed, regression_only, autocast_dtype, noise_on_device
            See :class:`StormCast`.
        """
        pkg = package if isinstance(package, StormCastPackage) else load_package(package)
        if conditioning_data_source is None:
            from earth2studio.data import GFS_FX

            conditioning_data_source = GFS_FX()
        return cls(
            pkg,
            conditioning_data_source,
            seed=seed,
            sampler_steps=sampler_steps,
            sampler_args=sampler_args,
            regression_only=regression_only,
            autocast_dtype=autocast_dtype,
            noise_on_device=noise_on_device,
        )

    # ------------------------------------------------------------------ sampler
    @property
    def sampler(self) -> SamplerOptions:
        """The sampler settings in force: ``sampler_steps`` and ``sampler_args``.

        Raises
        ------
        ValueError
            Naming an unknown setting or a bad value (and how to fix it).
        """
        try:
            return SamplerOptions.from_dict({**self.sampler_args, "num_steps": self.sampler_steps})
        except (TypeError, ValueError) as err:
            raise ValueError(f"bad sampler settings on the model ({err}); fix model.sampler_steps or "
                             "model.sampler_args") from None

    def compile_denoiser(self, **options: Any) -> None:
        """Compile the diffusion network in place with ``torch.compile(**options)``.

        A step evaluates it ``2 * sampler_steps - 1`` times; the regression
        network once. The first step (and each new batch size) compiles.
        """
        if self.nets.diffusion is not None:
            self.nets.diffusion.compile(**options)

    # -------------------------------------------------------------- conditioning
    @property
    def conditioning_data_source(self) -> Any:
        return self._source

    @conditioning_data_source.setter
    def conditioning_data_source(self, source: Any) -> None:
        self._source = source
        self._fetcher = None

    def _conditioning(self, times: np.ndarray, lead_time: np.timedelta64) -> torch.Tensor:
        if self._fetcher is None:
            if self._source is None:
                raise RuntimeError(
                    "StormCast has no conditioning data source; set one before the first step, for example "
                    "`model.conditioning_data_source = earth2studio.data.ARCO()` (ERA5), or pass it to "
                    "StormCast(...) / StormCast.load_model(package, conditioning_data_source)")
            self._fetcher = ConditioningFetcher(
                self._source, list(self.conditioning_variables), self.grid, device=self.device
            )
        self._fetcher.device = self.device
        cond = self._fetcher(times, lead_time)
        return (cond.to(self.device) - self.conditioning_mean) / self.conditioning_std

    # --------------------------------------------------------------- coordinates
    @property
    def device(self) -> torch.device:
        return self.state_mean.device

    def input_coords(self) -> CoordSystem:
        """Input coordinate system (a new OrderedDict on every call)."""
        return OrderedDict(
            batch=np.empty(0),
            time=np.empty(0),
            lead_time=np.array([np.timedelta64(0, "h")]),
            variable=np.array(self.variables),
            hrrr_y=self.hrrr_y.copy(),
            hrrr_x=self.hrrr_x.copy(),
        )

    @batch_coords()
    def output_coords(self, input_coords: CoordSystem) -> CoordSystem:
        """Validate ``input_coords`` and return the coordinates one hour later.

        Raises
        ------
        ValueError
            When dimensions, variables or the grid do not match the model.
        """
        self._check_coords(input_coords)
        out = OrderedDict((k, np.asarray(v).copy()) for k, v in input_coords.items())
        out["variable"] = np.array(self.variables)
        out["lead_time"] = np.asarray(input_coords["lead_time"]) + _ONE_HOUR
        return out

    def _check_coords(self, coords: CoordSystem) -> None:
        dims = list(coords)
        expected = list(self.input_coords())
        if dims[-5:] != expected[1:]:
            raise ValueError(
                f"coordinates have dimensions {dims}; expected [..., {', '.join(expected[1:])}]. "
                "Put leading dimensions (batch, ensemble) first and use the HRRR dim names"
            )
        n = len(dims)
        handshake_dim(coords, "hrrr_x", n - 1)
        handshake_dim(coords, "hrrr_y", n - 2)
        handshake_dim(coords, "variable", n - 3)
        handshake_dim(coords, "lead_time", n - 4)
        handshake_dim(coords, "time", n - 5)
        for dim in _SPATIAL:
            if len(coords[dim]) != len(getattr(self, dim)):
                raise ValueError(
                    f"{dim} has {len(coords[dim])} points; the model grid {self.grid.name!r} has "
                    f"{len(getattr(self, dim))}. Crop the data to the model grid"
                )
        try:
            handshake_coords(coords, self.input_coords(), list(_SPATIAL))
        except ValueError:
            self.grid.check_coords(np.asarray(coords["hrrr_y"]), np.asarray(coords["hrrr_x"]))
        given = [str(v) for v in coords["variable"]]
        extra = sorted(set(given) - set(self.variables.tolist()))
        if extra:
            raise ValueError(
                f"state has variables the model does not know: {extra}; select the model's "
                f"{len(self.variables)} variables (model.input_coords()['variable'])"
            )
        check_variables(given, self.variables.tolist(), "state")

    def _reorder(self, x: torch.Tensor, coords: CoordSystem) -> tuple[torch.Tensor, CoordSystem]:
        """Check a call's tensor and coordinates; put the variables in model order."""
        self._check_coords(coords)
        sizes = tuple(len(v) for v in coords.values())
        if tuple(x.shape) != sizes:
            raise ValueError(f"the state has shape {tuple(x.shape)} but its coordinates {list(coords)} have "
                             f"sizes {sizes}; give coordinates that describe the tensor")
        if x.numel() == 0:
            empty = [d for d, n in zip(coords, sizes) if n == 0]
            raise ValueError(f"the state is empty along {empty}; give at least one member and one time")
        if not torch.is_floating_point(x):
            raise TypeError(f"the state has dtype {x.dtype}; StormCast needs floating-point values in physical "
                            "units (convert with x.float())")
        axis = len(coords) - 3
        given = [str(v) for v in coords["variable"]]
        if given == self.variables.tolist():
            return x, coords
        index = check_variables(given, self.variables.tolist(), "state")
        x = torch.index_select(x, axis, torch.as_tensor(index, device=x.device))
        coords = coords.copy()
        coords["variable"] = np.array(self.variables)
        return x, coords

    # ------------------------------------------------------------------ stepping
    def _member_ids(self, coords: CoordSystem) -> np.ndarray:
        """Member id of every flattened leading entry: the ``ensemble``
        coordinate value where there is one (combined with the position in
        any other leading dimension), else the flat position."""
        lead = list(coords)[: len(coords) - 5]
        shape = [len(coords[d]) for d in lead]
        flat = np.arange(int(np.prod(shape)), dtype=np.int64)  # 1 entry when no leading dims
        if "ensemble" not in lead:
            return flat
        axes = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
        k = lead.index("ensemble")
        ens = np.asarray(coords["ensemble"]).astype(np.int64)[axes[k]]
        rest = np.ravel_multi_index([a for i, a in enumerate(axes) if i != k], [n for i, n in enumerate(shape) if i != k]) if len(lead) > 1 else 0
        return (ens + 1_000_003 * np.asarray(rest)).reshape(-1)

    def forecast_seed(self) -> int:
        """The base seed for one forecast: ``seed`` when set, else a fresh
        draw from torch's global generator (so ``torch.manual_seed``
        reproduces seedless runs)."""
        if self.seed is not None:
            return int(self.seed)
        return int(torch.randint(0, 2**31 - 1, (1,)).item())

    @property
    def noise_device(self) -> torch.device:
        """Where the sampler noise is drawn: the CPU, or the model's device with ``noise_on_device``."""
        return self.device if self.noise_on_device else torch.device("cpu")

    def _generators(self, seed: int, members: np.ndarray, coords: CoordSystem) -> list[torch.Generator]:
        lead = np.asarray(coords["lead_time"])[0]
        return step_generators(seed, members, np.asarray(coords["time"]), lead, self.noise_device)

    def _check_finite(self, x: torch.Tensor) -> None:
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            axis_var = x.ndim - 3
            per_var = bad.transpose(0, axis_var).reshape(x.shape[axis_var], -1).any(dim=1)
            names = self.variables[per_var.cpu().numpy()].tolist()
            raise ValueError(
                f"the state contains NaN or infinite values in {names[:10]}; fill or drop "
                "them before the forecast (StormCast needs complete fields)"
            )

    @torch.inference_mode()
    def _step(self, x: torch.Tensor, coords: CoordSystem, members: np.ndarray,
              seed: int, memory: NoiseMemory | None = None) -> tuple[torch.Tensor, CoordSystem]:
        """One hour for folded input ``[B, T, 1, C, H, W]``; ``memory`` keeps a
        rollout's noise innovations between steps (else they are drawn anew)."""
        out_coords = self.output_coords(coords)
        b, t, nl, c, h, w = x.shape
        if nl != 1:
            raise ValueError(f"StormCast steps one lead time at a time; got {nl} lead times")
        self._check_finite(x)
        sampler = self.sampler
        lead = np.asarray(coords["lead_time"])[0]
        cond = self._conditioning(np.asarray(coords["time"]), lead)  # [T, Ce, H, W]
        cond = cond.unsqueeze(0).expand(b, -1, -1, -1, -1).reshape(b * t, -1, h, w)
        state = (x.reshape(b * t, c, h, w).to(self.device, torch.float32) - self.state_mean) / self.state_std
        gens = None if self.regression_only else self._generators(seed, members, coords)
        noise = None
        if gens is not None and sampler.noise_memory_h > 0:
            times = np.asarray(coords["time"])
            if memory is not None:
                noise = memory(seed, members, times, lead, (c, h, w), sampler.noise_memory_h, self.noise_device)
            else:
                noise = torch.stack([member_noise(seed, int(m), tt, lead, (c, h, w), sampler.noise_memory_h,
                                                  device=self.noise_device) for m in members for tt in times])
            noise = noise.to(self.device)
        clock = None
        if self.local_time:  # [T, 2, H, W] at the valid time of the input state
            clock = torch.from_numpy(local_time_channels(np.asarray(coords["time"]) + lead, self.lon))
            clock = clock.to(self.device).unsqueeze(0).expand(b, -1, -1, -1, -1).reshape(b * t, -1, h, w)
        nxt = self.nets.step(
            state,
            cond,
            self.invariants,
            extra=clock,
            sampler=sampler,
            generators=gens,
            regression_only=self.regression_only,
            autocast_dtype=self.autocast_dtype,
            initial_noise=noise,
        )
        out = (nxt * self.state_std + self.state_mean).reshape(b, t, 1, c, h, w).to(x.dtype)
        return out, out_coords

    @batch_func()
    def _call(self, x: torch.Tensor, coords: CoordSystem, members: np.ndarray,
              seed: int) -> tuple[torch.Tensor, CoordSystem]:
        return self._step(x, coords, members, seed)

    # -------------------------------------------------------------------- call
    def __call__(self, x: torch.Tensor, coords: CoordSystem) -> tuple[torch.Tensor, CoordSystem]:
        """Advance the state one hour.

        Parameters
        ----------
        x : torch.Tensor
            ``[..., batch, time, lead_time, variable, hrrr_y, hrrr_x]`` state in
            physical units. Never modified.
        coords : CoordSystem
            Its coordinates.

        Returns
        -------
        tuple[torch.Tensor, CoordSystem]
            The state one hour later and its coordinates.
        """
        x, coords = self._reorder(x, coords)
        return self._call(x, coords, members=self._member_ids(coords), seed=self.forecast_seed())

    # ---------------------------------------------------------------- iterator
    def create_iterator(self, x: torch.Tensor, coords: CoordSystem, *,
                        seed: int | None = None) -> Iterator[tuple[torch.Tensor, CoordSystem]]:
        """Yield the initial condition, then one state per hour.

        Parameters
        ----------
        x : torch.Tensor
            Initial state ``[..., batch, time, lead_time, variable, hrrr_y, hrrr_x]``.
        coords : CoordSystem
            Its coordinates.
        seed : int, optional
            Base seed of this rollout; default :meth:`forecast_seed` (drawn
            once, when the iterator is created).
        """
        x, coords = self._reorder(x, coords)
        members = self._member_ids(coords)
        seed = self.forecast_seed() if seed is None else int(seed)
        yield from _Rollout(self, members, seed)._run(x, coords)


class _Rollout:
    """Binds one rollout's member ids, seed and noise memory to the batched generator."""

    def __init__(self, model: StormCast, members: np.ndarray, seed: int) -> None:
        self.model = model
        self.members = members
        self.seed = seed
        self.memory = NoiseMemory()

    def input_coords(self) -> CoordSystem:
        return self.model.input_coords()

    def output_coords(self, coords: CoordSystem) -> CoordSystem:
        return self.model.output_coords(coords)

    @batch_func()
    def _run(self, x: torch.Tensor, coords: CoordSystem) -> Generator[tuple[torch.Tensor, CoordSystem], None, None]:
        model = self.model
        coords = coords.copy()
        model.output_coords(coords)
        yield x, coords
        while True:
            x, coords = model.front_hook(x, coords)
            x, coords = model._step(x, coords, self.members, self.seed, self.memory)
            x, coords = model.rear_hook(x, coords)
            yield x, coords
