"""The one exception type for failures a user can cause."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ExpkitError(Exception):
    """A user-caused failure: bad config, missing file, bad data. The CLI exits 2 on it."""

    def __init__(self, message: str, *, key: str | None = None, hint: str | None = None) -> None:
        self.message = message
        self.key = key
        self.hint = hint
        text = f"{key}: {message}" if key else message
        if hint:
            text = f"{text}\n  hint: {hint}"
        super().__init__(text)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest of `choices` to `word`, or None if nothing is close."""
    pool = list(choices)
    lowered = {c.lower(): c for c in pool}
    if word.lower() in lowered:
        return lowered[word.lower()]
    if len(word) > 1:  # an abbreviation made of the words' initials: lr -> learning_rate, spe -> steps_per_execution
        initials = [c for c in pool if "".join(part[:1] for part in c.lower().split("_")) == word.lower()]
        if len(initials) == 1:
            return initials[0]
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def suggestion(word: str, choices: Iterable[str], noun: str = "one of") -> str:
    """A hint sentence: 'did you mean X?' plus the allowed values when they are few."""
    pool = sorted(set(choices))
    best = did_you_mean(word, pool)
    parts = [f"did you mean '{best}'?"] if best else []
    if len(pool) <= 30:
        parts.append(f"{noun}: {', '.join(pool)}")
    return " ".join(parts) if parts else f"{len(pool)} names are known"
