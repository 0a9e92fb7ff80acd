"""Pure-torch StormCast networks (state-dict compatible with PhysicsNeMo),
the pure-tensor step around them and the ``.mdlus`` archive format."""

from stormcast_plugin.models.nn.layers import Conv2d, GroupNorm, Linear, PositionalEmbedding, UNetAttention, UNetBlock
from stormcast_plugin.models.nn.networks import (
    EDMPrecond,
    RegressionNet,
    count_parameters,
    paper_diffusion_config,
    paper_regression_config,
)
from stormcast_plugin.models.nn.songunet import SongUNet, SongUNetConfig
from stormcast_plugin.models.nn.mdlus import CheckpointError, MdlusArchive, load_mdlus, read_mdlus, write_mdlus
from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions, StormCastNets

__all__ = [
    "CheckpointError",
    "MdlusArchive",
    "SamplerOptions",
    "StormCastNets",
    "load_mdlus",
    "read_mdlus",
    "write_mdlus",
    "Conv2d",
    "EDMPrecond",
    "GroupNorm",
    "Linear",
    "PositionalEmbedding",
    "RegressionNet",
    "SongUNet",
    "SongUNetConfig",
    "UNetAttention",
    "UNetBlock",
    "count_parameters",
    "paper_diffusion_config",
    "paper_regression_config",
]
