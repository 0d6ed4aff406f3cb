"""OmegaConf resolvers expkit's config tree uses. They must work outside a Hydra job too (sweep launcher)."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import OmegaConf


def stack(depth: Any, block: Any, *tail: Any) -> Any:
    """`${expkit.stack:N,BLOCK,HEAD}`: the layer list BLOCK repeated N times, then HEAD (a searchable depth)."""
    from omegaconf import Container

    def plain(node: Any) -> list[Any]:
        value = OmegaConf.to_container(node, resolve=True) if isinstance(node, Container) else node
        return list(value) if isinstance(value, list) else [value]

    count = int(depth)
    if count < 0:
        raise ValueError(f"expkit.stack: depth must be 0 or more, got {depth}")
    # A ListConfig (not a list), so that OmegaConf.resolve() can put it in place of the interpolation.
    return OmegaConf.create(plain(block) * count + [layer for part in tail for layer in plain(part)])


def register_resolvers() -> None:
    """`${expkit.cwd:}`: the absolute directory expkit was started from; `${expkit.stack:...}`: repeated layers."""
    if not OmegaConf.has_resolver("expkit.cwd"):
        OmegaConf.register_new_resolver("expkit.cwd", os.getcwd, use_cache=True)
    if not OmegaConf.has_resolver("expkit.stack"):
        OmegaConf.register_new_resolver("expkit.stack", stack)
