"""OmegaConf resolvers expkit's config tree uses. They must work outside a Hydra job too (sweep launcher)."""

from __future__ import annotations

import os

from omegaconf import OmegaConf


def register_resolvers() -> None:
    """`${expkit.cwd:}`: the absolute directory expkit was started from."""
    if not OmegaConf.has_resolver("expkit.cwd"):
        OmegaConf.register_new_resolver("expkit.cwd", os.getcwd, use_cache=True)
