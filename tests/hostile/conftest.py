"""The package fixtures of tests/package, for the hostile-input tests."""

from tests.package.conftest import grid, official_dir, offline, own_dir, pkg  # noqa: F401
