"""Read and write PhysicsNeMo ``.mdlus`` model archives without PhysicsNeMo.

An archive is a zip (PhysicsNeMo >= 2.2) or a tar (older Modulus/PhysicsNeMo
releases, which wrote the official StormCast files) holding

* ``model.pt``: a plain torch state dict,
* ``args.json``: ``{"__name__", "__module__", "__args__": constructor kwargs}``,
* ``metadata.json``: ``{"physicsnemo_version", "mdlus_file_version"}``.

The state dict is loaded with ``torch.load(weights_only=True)``: no code from
the file ever runs. The JSON constructor arguments are translated into a
:class:`~stormcast_plugin.models.nn.SongUNetConfig`; arguments that would change the
network in ways this package does not implement are rejected by name.

Reading is bounded: args.json is read first, the network it declares is
counted on the meta device (nothing allocated), and model.pt is read only
when its declared size fits that count and the archive's size on disk, so a
compression bomb or a forged size is refused before anything is inflated.

Archives written here load in PhysicsNeMo 2.2.2 with ``Module.from_checkpoint``
(the parity fixture holds such archives and PhysicsNeMo's outputs on them).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from stormcast_plugin.models.nn.networks import EDMPrecond, RegressionNet
from stormcast_plugin.models.nn.songunet import SongUNetConfig

__all__ = [
    "CheckpointError",
    "MdlusArchive",
    "load_mdlus",
    "load_state_dict_strict",
    "read_mdlus",
    "write_mdlus",
]

# PhysicsNeMo's SongUNet defaults: they apply to arguments an archive omits.
_SONGUNET_DEFAULTS: dict[str, Any] = dict(
    model_channels=128,
    channel_mult=[1, 2, 2, 2],
    channel_mult_emb=4,
    channel_mult_noise=1,
    num_blocks=4,
    attn_resolutions=[16],
    bottleneck_attention=True,
    dropout=0.10,
    embedding_type="positional",
    additive_pos_embed=False,
    resample_filter=[1, 1],
)
# Arguments that are accepted only with these values (anything else would
# need layers this package does not implement).
_REQUIRED_VALUES: dict[str, tuple[Any, ...]] = dict(
    model_type=("SongUNet",),
    encoder_type=("standard",),
    decoder_type=("standard",),
    act=("silu", None),
    label_dim=(0, None),
    augment_dim=(0, None),
    use_apex_gn=(False, None),
)
# Arguments with no effect on the weights or on CPU/GPU float32 inference.
_IGNORED = {
    "use_fp16", "sigma_min", "sigma_max", "checkpoint_level", "profile_mode",
    "amp_mode", "label_dropout", "img_channels", "img_in_channels", "img_out_channels",
    "img_resolution", "sigma_data",
}


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or does not match the network."""


# PhysicsNeMo refuses an archive unless metadata.json's "mdlus_file_version"
# equals the class's ``__model_checkpoint_version__`` string (2.2.2: "0.1.0"
# for both StormCastUNet and EDMPrecond).
_CHECKPOINT_VERSIONS = {"StormCastUNet": "0.1.0", "EDMPrecond": "0.1.0"}
_MODULES = {
    "StormCastUNet": "physicsnemo.models.diffusion_unets.unet",
    "EDMPrecond": "physicsnemo.diffusion.preconditioners.legacy",
}
_WANTED = ("model.pt", "args.json", "metadata.json")
# Limits that bound what a file can make the reader allocate.
_JSON_BYTES = 1 << 20  # args.json and metadata.json are a few hundred bytes
_MAX_INFLATION = 16  # float weights barely compress; PhysicsNeMo stores them uncompressed
_MAX_BLOCKS = 10_000  # U-Net blocks a network may declare (the paper nets have 55)
_TENSOR_OVERHEAD = 4096  # torch.save bytes per tensor beyond its data (names, headers, alignment)
_FILE_OVERHEAD = 1 << 20  # torch.save bytes per file beyond its tensors
_REDOWNLOAD = "the file is corrupt or not a StormCast checkpoint: download it again"


@dataclass
class MdlusArchive:
    """Contents of a ``.mdlus`` file."""

    path: Path
    name: str
    args: dict[str, Any]
    metadata: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    format: str


@dataclass
class _Member:
    size: int
    read: Callable[[], bytes]


def _list_members(path: Path, stack: contextlib.ExitStack) -> tuple[dict[str, _Member], str]:
    """Open the archive and list the wanted members (their declared sizes); nothing is read yet."""
    members: dict[str, _Member] = {}
    # A tar must be recognised first: old archives can look like zips.
    if tarfile.is_tarfile(path):
        tar = stack.enter_context(tarfile.open(path, "r"))
        for m in tar.getmembers():
            base = os.path.basename(m.name)
            if base in _WANTED and m.isfile():
                members[base] = _Member(m.size, lambda m=m: tar.extractfile(m).read(m.size))
        return members, "tar"
    if zipfile.is_zipfile(path):
        zf = stack.enter_context(zipfile.ZipFile(path))
        for info in zf.infolist():
            base = os.path.basename(info.filename)
            if base in _WANTED and not info.is_dir():
                # ZipExtFile never returns more than the declared size.
                members[base] = _Member(info.file_size, lambda info=info: zf.open(info).read(info.file_size))
        return members, "zip"
    raise CheckpointError(
        f"{path} is not a .mdlus archive (neither zip nor tar); it may be truncated or corrupt: download it again"
    )


def _json_member(members: Mapping[str, _Member], name: str, path: Path) -> dict[str, Any]:
    member = members.get(name)
    if member is None:
        return {}
    if member.size > _JSON_BYTES:
        raise CheckpointError(
            f"{name} in {path} declares {member.size} bytes, over the {_JSON_BYTES} a .mdlus {name} may hold; "
            + _REDOWNLOAD
        )
    try:
        value = json.loads(member.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{name} in {path} is not valid JSON ({err}); " + _REDOWNLOAD) from err
    if not isinstance(value, dict):
        raise CheckpointError(
            f"{name} in {path} holds a JSON {type(value).__name__}, not an object"
            + (' {"__name__": ..., "__args__": {...}}' if name == "args.json" else "")
            + "; re-save the network with PhysicsNeMo's Module.save or stormcast_plugin's write_mdlus"
        )
    return value


def _tensor_numel(name: str, config: SongUNetConfig) -> tuple[int, int]:
    """Elements and entries of the state dict of the network ``config``
    declares, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        net = _build(name, config, {"sigma_data": 0.5})
    return sum(t.numel() for t in net.state_dict().values()), len(net.state_dict())


def _check_model_size(name: str, config: SongUNetConfig, member: _Member, path: Path, disk: int) -> None:
    """Bound model.pt's declared size by the tensors args.json declares and by
    the bytes on disk, before anything is read or allocated."""
    levels = len(config.channel_mult)
    blocks = levels * (2 * config.num_blocks + 3)
    if blocks > _MAX_BLOCKS:
        raise CheckpointError(
            f"{path}: args.json declares {blocks} U-Net blocks ({levels} levels, num_blocks "
            f"{config.num_blocks}), over the {_MAX_BLOCKS} this reader accepts; " + _REDOWNLOAD
        )
    if member.size > _MAX_INFLATION * disk:
        raise CheckpointError(
            f"model.pt in {path} declares {member.size} bytes uncompressed, over {_MAX_INFLATION} times the "
            f"archive's {disk} bytes on disk (a compression bomb or a damaged archive); " + _REDOWNLOAD
        )
    # The upper bound allows the unused embedding layers of older regression
    # files and tensors stored in float64; the lower one float16.
    widest = config.replace(embedding_type="positional")
    numel_max, count_max = _tensor_numel(name, widest)
    numel = numel_max if widest == config else _tensor_numel(name, config)[0]
    low, high = 2 * numel, 8 * numel_max + _TENSOR_OVERHEAD * count_max + _FILE_OVERHEAD
    if not low <= member.size <= high:
        raise CheckpointError(
            f"model.pt in {path} declares {member.size} bytes, which does not match the network args.json "
            f"declares (a {name} of {numel} values: {low} to {high} bytes); the archive is damaged or its "
            "args.json belongs to another network: download it again"
        )


def read_mdlus(path: str | os.PathLike) -> MdlusArchive:
    """Read a ``.mdlus`` archive (zip or tar) safely.

    args.json is read first; model.pt is read only when its declared size fits
    the tensors of the network args.json declares (and the bytes on disk), so
    a compression bomb or a forged size is refused before anything is
    inflated or allocated. model.pt loads with ``weights_only=True`` and must
    hold only tensors.

    Raises
    ------
    CheckpointError
        When the file is missing, truncated, corrupt, not an archive, declares
        an unsupported network, or holds members whose sizes or contents do
        not match that network.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with contextlib.ExitStack() as stack:
            members, fmt = _list_members(path, stack)
            missing = [w for w in _WANTED[:2] if w not in members]
            if missing:
                raise CheckpointError(
                    f"{path} lacks {missing} (found {sorted(members)}); a .mdlus archive holds "
                    "model.pt, args.json and metadata.json"
                )
            args = _json_member(members, "args.json", path)
            metadata = _json_member(members, "metadata.json", path)
            name, ctor = args.get("__name__"), args.get("__args__")
            if not isinstance(name, str) or not isinstance(ctor, dict):
                raise CheckpointError(
                    f"args.json in {path} needs \"__name__\" (a string) and \"__args__\" (an object); found keys "
                    f"{sorted(args)}; re-save the network with PhysicsNeMo's Module.save or write_mdlus"
                )
            config, _ = _songunet_config(name, ctor, path)
            _check_model_size(name, config, members["model.pt"], path, path.stat().st_size)
            blob = members["model.pt"].read()
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error) as err:
        raise CheckpointError(f"{path} cannot be read as a .mdlus archive ({err}); download it again") from err
    try:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged pickle
        raise CheckpointError(f"model.pt in {path} cannot be loaded: {_load_error(err)}; " + _REDOWNLOAD) from err
    del blob
    if not isinstance(state, Mapping):
        raise CheckpointError(f"model.pt in {path} holds a {type(state).__name__}, not a state dict")
    for key, value in state.items():
        what = None if isinstance(key, str) else f"key {key!r} is a {type(key).__name__}, not a parameter name"
        if what is None and not isinstance(value, torch.Tensor):
            what = f"entry {key!r} is a {type(value).__name__}, not a tensor"
        if what is not None:
            raise CheckpointError(
                f"model.pt in {path}: {what}; a .mdlus state dict maps parameter names to tensors: "
                "re-save the network with PhysicsNeMo's Module.save or stormcast_plugin's write_mdlus"
            )
    return MdlusArchive(path, name, dict(ctor), metadata, dict(state), fmt)


def _load_error(err: Exception) -> str:
    """One line on why torch.load refused model.pt (torch's own text for a
    refused object spans many lines and suggests loading unsafely)."""
    text = " ".join(str(err).split())
    marker = "WeightsUnpickler error:"
    if marker in text:
        reason = text.split(marker, 1)[1].split(" Check the documentation", 1)[0].split(" Please use", 1)[0]
        reason = reason.strip().rstrip(".")
        return f"it holds objects other than tensors, which loading without running code refuses ({reason})"
    return f"{type(err).__name__}: {text}"


def _songunet_config(name: str, args: Mapping[str, Any], path: Path) -> tuple[SongUNetConfig, dict]:
    kwargs = dict(args)
    nested = kwargs.pop("model_kwargs", None) or {}
    if not isinstance(nested, dict):
        raise CheckpointError(f"{path}: args.json's model_kwargs is a {type(nested).__name__}, not an object")
    kwargs.update(nested)
    for key, allowed in _REQUIRED_VALUES.items():
        if key in kwargs and kwargs[key] not in allowed:
            raise CheckpointError(
                f"{path}: {key}={kwargs[key]!r} is not supported (supported: {allowed[0]!r})"
            )
    res = kwargs.get("img_resolution")
    if res is None:
        raise CheckpointError(f"{path}: args.json has no img_resolution")
    if name == "StormCastUNet":
        in_ch, out_ch = kwargs.get("img_in_channels"), kwargs.get("img_out_channels")
        extra = {}
    elif name == "EDMPrecond":
        out_ch = kwargs.get("img_out_channels") or kwargs.get("img_channels")
        in_ch = kwargs.get("img_in_channels") or kwargs.get("img_channels")
        extra = {"sigma_data": kwargs.get("sigma_data", 0.5)}
    else:
        raise CheckpointError(f"{path}: network {name!r} is not supported; expected StormCastUNet or EDMPrecond")
    if in_ch is None or out_ch is None:
        raise CheckpointError(f"{path}: args.json lacks the input/output channel counts")
    known = set(_SONGUNET_DEFAULTS) | set(_REQUIRED_VALUES) | _IGNORED
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise CheckpointError(f"{path}: unknown constructor arguments {unknown}")
    net_args = {k: kwargs.get(k, v) for k, v in _SONGUNET_DEFAULTS.items()}
    try:
        if isinstance(res, int):
            res = [res, res]
        config = SongUNetConfig(img_resolution=tuple(res), in_channels=int(in_ch), out_channels=int(out_ch),
                                **net_args)
        extra = {k: float(v) for k, v in extra.items()}
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: args.json does not describe a valid {name} ({err})") from err
    return config, extra


def _build(name: str, config: SongUNetConfig, extra: Mapping[str, Any]) -> nn.Module:
    return RegressionNet(config) if name == "StormCastUNet" else EDMPrecond(config, **extra)


def load_state_dict_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module`` requiring the same keys and shapes.

    Raises
    ------
    CheckpointError
        Listing the first missing, unexpected and mis-shaped entries and the
        source file.
    """
    _check_shapes(module, state, source)
    # Non-strict so that the modules' pre-hooks can rename legacy keys first;
    # strictness is enforced on the result.
    result = module.load_state_dict(dict(state), strict=False)
    if result.missing_keys or result.unexpected_keys:
        problems = []
        if result.missing_keys:
            problems.append(f"{len(result.missing_keys)} missing keys, first: {result.missing_keys[:5]}")
        if result.unexpected_keys:
            problems.append(f"{len(result.unexpected_keys)} unexpected keys, first: {result.unexpected_keys[:5]}")
        raise CheckpointError(
            f"checkpoint {source} does not match the network: " + "; ".join(problems)
            + ". Check that the configuration matches the one the checkpoint was trained with"
        )


def _legacy_key(key: str) -> str:
    for old, new in ((".norm2.", ".attn.norm."), (".qkv.", ".attn.qkv."), (".proj.", ".attn.proj.")):
        if old in key and ".attn." not in key:
            return key.replace(old, new)
    return key


def _check_shapes(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    own = module.state_dict()
    bad = []
    for key, value in state.items():
        target = own.get(key, own.get(_legacy_key(key)))
        if target is not None and tuple(target.shape) != tuple(value.shape):
            bad.append(f"{key}: file {tuple(value.shape)} vs network {tuple(target.shape)}")
    if bad:
        raise CheckpointError(
            f"checkpoint {source} has {len(bad)} tensors of the wrong shape, first: {bad[:5]}. "
            "The checkpoint was trained with another configuration (channels, grid or levels)"
        )


def load_mdlus(path: str | os.PathLike, expected: str | None = None) -> nn.Module:
    """Build the network stored in a ``.mdlus`` archive and load its weights.

    Parameters
    ----------
    path : path-like
        ``StormCastUNet.*.mdlus`` or ``EDMPrecond.*.mdlus``.
    expected : str, optional
        ``"StormCastUNet"`` or ``"EDMPrecond"``: fail if the file holds the
        other network.

    Returns
    -------
    RegressionNet or EDMPrecond
        In evaluation mode, on the CPU.
    """
    archive = read_mdlus(path)
    if expected is not None and archive.name != expected:
        raise CheckpointError(f"{archive.path} holds a {archive.name}, expected a {expected}")
    config, extra = _songunet_config(archive.name, archive.args, archive.path)
    net = _build(archive.name, config, extra)
    load_state_dict_strict(net, archive.state_dict, str(archive.path))
    return net.eval()


def write_mdlus(net: nn.Module, path: str | os.PathLike, fmt: str = "zip") -> Path:
    """Write ``net`` as a ``.mdlus`` archive (atomically) that PhysicsNeMo's
    ``Module.from_checkpoint`` loads as a ``StormCastUNet`` or ``EDMPrecond``.

    Parameters
    ----------
    net : RegressionNet or EDMPrecond
        The network.
    path : path-like
        Destination file.
    fmt : str
        ``"zip"`` (PhysicsNeMo >= 2.2) or ``"tar"`` (older readers).
    """
    c: SongUNetConfig = net.config
    song = {k: (list(v) if isinstance(v, tuple) else v) for k, v in c.to_dict().items()
            if k in _SONGUNET_DEFAULTS}
    if isinstance(net, RegressionNet):
        if net.residual:
            raise ValueError("a residual regression net has no PhysicsNeMo StormCastUNet equivalent; "
                             "export it with save_package (the stormcast-plugin layout) instead")
        name = "StormCastUNet"
        args = dict(img_resolution=list(c.img_resolution), img_in_channels=c.in_channels,
                    img_out_channels=c.out_channels, model_type="SongUNet", **song)
    elif isinstance(net, EDMPrecond):
        if net.has_residual_scale:
            raise ValueError("a denoiser trained on a scaled residual (residual_scale != 1) has no PhysicsNeMo "
                             "EDMPrecond equivalent; export it with save_package (the stormcast-plugin layout) "
                             "instead")
        name = "EDMPrecond"
        args = dict(img_resolution=list(c.img_resolution), img_channels=c.out_channels,
                    img_in_channels=c.in_channels, img_out_channels=c.out_channels,
                    sigma_data=float(net.sigma_data), model_type="SongUNet", **song)
    else:
        raise TypeError(f"cannot write a {type(net).__name__} as .mdlus; expected RegressionNet or EDMPrecond")
    blobs = {
        "model.pt": _tensor_bytes({k: v.detach().cpu() for k, v in net.state_dict().items()
                                   if k != "residual_scale"}),
        "args.json": json.dumps({"__name__": name, "__module__": _MODULES[name], "__args__": args}).encode(),
        "metadata.json": json.dumps({"physicsnemo_version": "2.2.2",
                                     "mdlus_file_version": _CHECKPOINT_VERSIONS[name]}).encode(),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        if fmt == "zip":
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
                for n, b in blobs.items():
                    zf.writestr(n, b)
        elif fmt == "tar":
            with tarfile.open(tmp, "w") as tar:
                for n, b in blobs.items():
                    info = tarfile.TarInfo(n)
                    info.size = len(b)
                    tar.addfile(info, io.BytesIO(b))
        else:
            raise ValueError(f"fmt {fmt!r} must be 'zip' or 'tar'")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _tensor_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    buf = io.BytesIO()
    torch.save(dict(state), buf)
    return buf.getvalue()
