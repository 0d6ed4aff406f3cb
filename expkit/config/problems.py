"""The problems a config check collects: every one is shown at once."""

from __future__ import annotations

from typing import Any

from expkit.errors import ExpkitError


class Problems:
    """Collects config problems so the user sees all of them at once."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, message: str, hint: str | None = None) -> None:
        self.items.append(f"{key}: {message}" + (f" ({hint})" if hint else ""))

    def raise_if_any(self) -> None:
        if len(self.items) == 1:
            raise ExpkitError(self.items[0])
        if self.items:
            raise ExpkitError(f"{len(self.items)} problems in the config:\n  - " + "\n  - ".join(self.items))


def dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)
