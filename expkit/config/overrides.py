"""Check command-line overrides before Hydra runs, so a typo gets a did-you-mean instead of a stack of text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from expkit.config.locate import conf_dir, group_options, groups
from expkit.errors import ExpkitError, did_you_mean, suggestion

# Hydra flags that take a value; the value is not an override.
FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
}


def config_dir(value: str) -> Path:
    """A `--config-dir` folder as an absolute path; `~user` naming no user is the user's error, not a crash."""
    try:
        return Path(value).expanduser().resolve()
    except RuntimeError:  # pathlib: "Could not determine home directory"
        raise ExpkitError(
            f"cannot expand '{value.split('/')[0]}' in {value}: no such user's home folder",
            key="--config-dir",
            hint="give the folder's full path",
        ) from None


def split_args(args: list[str]) -> tuple[list[str], list[Path]]:
    """(overrides, extra config dirs) from a Hydra command line."""
    overrides: list[str] = []
    dirs: list[Path] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in FLAGS_WITH_VALUE:
            if arg in ("--config-dir", "-cd") and i + 1 < len(args):
                dirs.append(config_dir(args[i + 1]))
            i += 2
            continue
        if arg.startswith("--config-dir="):
            dirs.append(config_dir(arg.split("=", 1)[1]))
        elif not arg.startswith("-"):
            overrides.append(arg)
        i += 1
    return overrides, dirs


#: The sweeper that understands interval(...) search spaces (expkit's Optuna sweeper plugin).
SEARCH_SWEEPER = "hydra_plugins.expkit_optuna_sweeper.optuna_sweeper.OptunaSweeper"


def is_interval(override: Any) -> bool:
    from hydra.core.override_parser.types import IntervalSweep

    return override.is_sweep_override() and isinstance(override.value(), IntervalSweep)


def first_choice(override: Any) -> str:
    """A sweep override `a=1,2` reduced to its first value `a=1` (an interval to its lower end), so it can be composed once."""
    if not override.is_sweep_override():
        return str(override.input_line)
    if is_interval(override):
        return f"{override.get_key_element()}={override.value().start}"
    value = next(iter(override.sweep_string_iterator()))
    return f"{override.get_key_element()}={value}"


def _check_sweeper_for_intervals(parsed: list[Any], overrides: list[str], dirs: list[Path]) -> None:
    """interval(...) is a search space: only the Optuna sweeper (hydra/sweeper=optuna) can sample it."""
    intervals = [o for o in parsed if is_interval(o)]
    if not intervals:
        return
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    hydra_choices = [o.input_line for o in parsed if o.key_or_group.startswith("hydra")]
    extra = [f"hydra.searchpath=[{','.join('file://' + str(d) for d in dirs)}]"] if dirs else []
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=extra + hydra_choices + overrides, return_hydra_config=True)
    if OmegaConf.select(cfg, "hydra.sweeper._target_") != SEARCH_SWEEPER:
        raise ExpkitError(
            f"'{intervals[0].input_line}' is a search space, which the basic sweeper cannot enumerate",
            key=intervals[0].get_key_element(),
            hint="add hydra/sweeper=optuna (and -m), or list values: a,b,c",
        )


def _compose(overrides: list[str], dirs: list[Path]) -> Any:
    from hydra import compose, initialize_config_dir

    from expkit.config.resolvers import register_resolvers

    register_resolvers()

    extra = [f"hydra.searchpath=[{','.join('file://' + str(d) for d in dirs)}]"] if dirs else []
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose("config", overrides=extra + overrides)


def picks_files(key: str, dirs: list[Path]) -> bool:
    """Whether an override of `key` can change which files Hydra composes: a config group choice (`optimizer=sgd`,
    `+experiment=X`, `a/b=c`, `x@pkg=y`) or a Hydra setting. Any other key only sets a value."""
    bare = key.lstrip("+~")
    return bare.startswith("hydra") or "/" in bare or "@" in bare or bool(group_options(bare, dirs))


def with_values(base: Any, values: list[str]) -> Any:
    """A copy of the composed `base` with value overrides (`a.b=1`, `+c=2`, `~d`) applied by Hydra's own override step,
    as Hydra's composition applies them once the files are merged: the config a full composition of the same command
    line gives, when no override in `values` picks files (`picks_files`). Raises as that composition would.

    The step is Hydra's `ConfigLoaderImpl._apply_overrides_to_config` (hydra-core 1.3, pinned below 1.4); tests compare
    the result with full compositions (tests/test_preflight.py), so a Hydra that changes it fails there first."""
    import copy

    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = copy.deepcopy(base)
    ConfigLoaderImpl._apply_overrides_to_config(OverridesParser.create().parse_overrides(values), cfg)
    return cfg


def _explain_missing_key(key: str, overrides: list[str], dirs: list[Path]) -> ExpkitError:
    """An unknown key: suggest the nearest existing key under the same parent."""
    from omegaconf import DictConfig, OmegaConf

    rest = [o for o in overrides if not re.match(rf"^{re.escape(key)}=", o)]
    try:
        cfg = _compose(rest, dirs)
    except Exception:  # the remaining overrides fail too; report the key alone
        cfg = None
    parent, _, leaf = key.rpartition(".")
    try:
        node = OmegaConf.select(cfg, parent, throw_on_resolution_failure=False) if cfg is not None and parent else cfg
        choices = list(node.keys()) if isinstance(node, DictConfig) else []
    except Exception:  # a broken node on the way to the key: no suggestion, the error still names the key
        choices = []
    best = did_you_mean(leaf, [str(c) for c in choices])
    if best:
        hint = f"did you mean '{parent + '.' if parent else ''}{best}'? "
    elif choices:
        hint = f"keys under '{parent or 'the root'}': {', '.join(map(str, choices))}. "
    else:
        hint = ""
    return ExpkitError("unknown config key", key=key, hint=f"{hint}To add a new key on purpose, write +{key}=...")


def check_overrides(args: list[str]) -> Any:
    """Raise ExpkitError for malformed overrides, unknown keys and unknown group options; return the composed config.

    A sweep (`a=1,2`) is checked with its first value.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    raw, dirs = split_args(args)
    for d in dirs:
        if not d.is_dir():
            raise ExpkitError(f"config dir {d} does not exist", key="--config-dir")
    try:
        parsed = OverridesParser.create().parse_overrides(raw)
    except OverrideParseException as exc:
        raise ExpkitError(
            f"cannot parse override: {str(exc).splitlines()[0]}", hint="overrides look like key=value, +new_key=value, ~key, group=option"
        ) from None
    overrides = [first_choice(o) for o in parsed if not o.key_or_group.startswith("hydra")]
    try:
        cfg = _compose(overrides, dirs)
    except MissingConfigException as exc:
        text = str(exc)
        missing = re.search(r"Could not find '([^']+)/([^']+)'", text)
        if missing:
            group, name = missing.groups()
            options = group_options(group, dirs)
            label = "preset" if group == "experiment" else f"{group} option"
            raise ExpkitError(f"unknown {label} '{name}'", key=group, hint=suggestion(name, options, noun="available")) from None
        raise ExpkitError(text.splitlines()[0], hint=f"config groups: {', '.join(groups(dirs))}") from None
    except ConfigCompositionException as exc:
        text = str(exc)
        unknown = re.search(r"Could not override '([^']+)'", text) or re.search(r"Could not delete from config\. '?([\w.]+)'?", text)
        if unknown:
            raise _explain_missing_key(unknown.group(1), overrides, dirs) from None
        located = yaml_problem(exc)
        raise ExpkitError(f"cannot compose the config: {located}" if located else _first_line(text)) from None
    except Exception as exc:  # composing touches only the config files and the overrides, so any failure is theirs
        located = yaml_problem(exc)
        if located:
            raise ExpkitError(f"cannot compose the config: {located}", hint="fix the YAML at that line") from None
        raise ExpkitError(
            f"cannot compose the config: {_first_line(str(exc)) or exc.__class__.__name__}", hint="check the overrides and preset files"
        ) from None

    _check_interpolations(cfg)
    _check_sweeper_for_intervals(parsed, overrides, dirs)
    return cfg


def _check_interpolations(cfg: Any) -> None:
    """Resolve every ${...} now (Hydra's run-time paths stubbed), so a broken one is named before Hydra starts."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    probe = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.update(probe, "paths.output_dir", "<output_dir>", force_add=True)
    try:
        resolved = OmegaConf.to_container(probe, resolve=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "config"
        raise ExpkitError(_first_line(str(exc)), key=key, hint="fix or quote the ${...} interpolation") from None
    # Hydra builds its run folder from these before expkit's schema sees the config.
    for key in ("name", "paths.log_dir", "paths.root_dir"):
        value: Any = resolved
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, str) or not value.strip():
            raise ExpkitError(f"must be a non-empty string (it names the run folder), got {value!r}", key=key)


def yaml_problem(exc: BaseException) -> str | None:
    """A YAML error (or one caused by it) as 'found duplicate key epochs in FILE, line 5 (while constructing a mapping)'."""
    import yaml

    while exc is not None and not isinstance(exc, yaml.YAMLError):
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    if not isinstance(exc, yaml.MarkedYAMLError):
        return None
    mark = exc.problem_mark or exc.context_mark
    where = f" in {mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = f" ({exc.context})" if exc.context else ""
    return f"{exc.problem or exc.context}{where}{context}"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
