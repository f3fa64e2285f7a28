"""Reusable in-memory fakes for unit tests (no apiserver, no root)."""

from netkube.testing.fake_api import FakeApiClient

__all__ = ["FakeApiClient"]
