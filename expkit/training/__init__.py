"""Compile, callbacks, and the fit/evaluate loop. Never imports expkit.tracking."""
