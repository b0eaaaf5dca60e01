"""Providers turn a LabPlan into running nodes and back. See `labctl.providers.base`."""

from labctl.providers.base import NodeAccess, Provider, get_provider, provider_names

__all__ = ["NodeAccess", "Provider", "get_provider", "provider_names"]
