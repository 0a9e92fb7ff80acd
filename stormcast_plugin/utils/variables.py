"""StormCast variable lists, in the order the official checkpoints use.

Names follow earth2studio's lexicon: ``u1hl`` is the u wind on hybrid level
1, ``Z30hl`` the geopotential height on hybrid level 30, ``z500`` the
geopotential at 500 hPa.
"""

from __future__ import annotations

from typing import Sequence

__all__ = [
    "HYBRID_LEVELS",
    "PRESSURE_HYBRID_LEVELS",
    "STATE_VARIABLES",
    "CONDITIONING_VARIABLES",
    "INVARIANTS",
    "PRESETS",
    "check_variables",
]

HYBRID_LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 20, 25, 30)
PRESSURE_HYBRID_LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 20)
CONDITIONING_LEVELS: tuple[int, ...] = (1000, 850, 500, 250)

STATE_VARIABLES: tuple[str, ...] = (
    ("u10m", "v10m", "t2m", "msl")
    + tuple(f"{v}{lev}hl" for v in ("u", "v", "t", "q", "Z") for lev in HYBRID_LEVELS)
    + tuple(f"p{lev}hl" for lev in PRESSURE_HYBRID_LEVELS)
    + ("refc",)
)
"""The 99 HRRR state channels."""

CONDITIONING_VARIABLES: tuple[str, ...] = (
    "u10m", "v10m", "t2m", "tcwv", "sp", "msl",
) + tuple(f"{v}{p}" for v in ("u", "v", "z", "t", "q") for p in CONDITIONING_LEVELS)
"""The 26 ERA5 conditioning channels."""

INVARIANTS: tuple[str, ...] = ("lsm", "orography")
"""Static fields: land-sea mask and orography."""

# Small variable sets for quick experiments and tests: a few surface fields,
# two or three model levels and reflectivity.
PRESETS: dict[str, dict[str, tuple[str, ...]]] = {
    "full": {"state": STATE_VARIABLES, "conditioning": CONDITIONING_VARIABLES},
    "small": {
        "state": ("u10m", "v10m", "t2m", "msl", "u5hl", "v5hl", "t5hl", "q5hl", "Z5hl",
                  "u20hl", "v20hl", "t20hl", "q20hl", "Z20hl", "p5hl", "refc"),
        "conditioning": ("u10m", "v10m", "t2m", "tcwv", "sp", "msl", "u850", "v850",
                         "z500", "t850", "q850"),
    },
    "tiny": {
        "state": ("u10m", "v10m", "t2m", "msl", "q5hl", "refc"),
        "conditioning": ("u10m", "v10m", "t2m", "msl", "tcwv", "z500"),
    },
}

assert len(STATE_VARIABLES) == 99 and len(CONDITIONING_VARIABLES) == 26


def check_variables(given: Sequence[str], expected: Sequence[str], what: str) -> list[int]:
    """Match ``given`` names to ``expected`` by name.

    Returns the index into ``given`` of each expected name, so
    ``data[..., idx, ...]`` reorders the data into the expected order.

    Raises
    ------
    ValueError
        Naming the missing names (and the duplicated ones); extra names are
        ignored only by the caller's choice, never by position.
    """
    given = [str(v) for v in given]
    dup = sorted({v for v in given if given.count(v) > 1})
    if dup:
        raise ValueError(f"{what} variables are duplicated: {dup}")
    missing = [v for v in expected if v not in given]
    if missing:
        raise ValueError(
            f"{what} lacks variables {missing} (of {len(expected)} expected); "
            f"got {given[:8]}{'...' if len(given) > 8 else ''}. Provide all of: {list(expected)}"
        )
    pos = {v: i for i, v in enumerate(given)}
    return [pos[v] for v in expected]
