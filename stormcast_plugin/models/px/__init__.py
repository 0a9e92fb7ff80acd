"""Prognostic models in earth2studio's ``PrognosticModel`` shape."""

from stormcast_plugin.models.px.stormcast import StormCast, member_noise, member_seed

__all__ = ["StormCast", "member_noise", "member_seed"]
