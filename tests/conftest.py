"""Shared fixtures: run the real `expkit` command in a clean folder and read what it recorded, or compose a config in-process."""

from __future__ import annotations

import functools
import io
import json
import os
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EXPKIT_SHARED_DATA", REPO.parent / "shared" / "datasets"))
# On CI (CI=true, as GitHub Actions and most CI services set it) a missing shared dataset is an error, not a skip.
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


#: The files that take longest (servers, sweeps, crashes and real data in real processes), longest first, from CI's
#: durations. pytest-xdist (`--dist loadfile`) hands files to workers in collection order, and by default sorts them by
#: their number of tests first, which put these few-test files last: a worker ran the outage tests alone for the last
#: minute and a half. Started first, the many short files fill the gaps at the end.
LONGEST_FILES = (
    "test_reliability.py", "test_team_server.py", "test_cluster.py", "test_quiet.py", "test_runs.py",
    "test_fuzz.py", "test_server_load.py", "test_vision.py", "test_table_source.py", "test_cli.py", "test_serving.py",
    "test_selection.py", "test_mixed_precision.py", "test_ui_glance.py", "test_text_dir.py", "test_preflight.py",
    "test_table_boston.py", "test_reproduce_margin.py", "test_sweeper.py",
)  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist >= 3.6: keep the order below
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the other files keep their order


def pytest_collection_finish(session: pytest.Session) -> None:
    freeze_survivors()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield
    if nextitem is None or nextitem.module is not item.module:  # type: ignore[attr-defined]
        freeze_survivors()  # after the module's fixtures are gone


def freeze_survivors() -> None:
    """Collect, then freeze what survives (`gc.freeze`): no later collection in this process walks it again.

    A test process keeps what imports, collection and finished test modules leave (TensorFlow, Keras, MLflow, cached
    fixtures: millions of objects). Every full collection walked them all again: Keras' `clear_session`, which every
    in-process command and training calls, took 0.3-0.7 s each, about 35 % of the quick set's time. A process expkit
    runs freezes after TensorFlow's import for the same reason (`backend.import_tensorflow`)."""
    import gc

    gc.collect()
    gc.freeze()


def offline_env(proxy: str = "http://127.0.0.1:9") -> dict[str, str]:
    """Environment variables that send every urllib download (so `keras.datasets`' download) to `proxy`, whether or
    not the machine has network access. With nothing listening there (port 9 by default), the download fails at once."""
    names = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
    return {**dict.fromkeys(names, proxy), "no_proxy": "", "NO_PROXY": ""}


@dataclass
class BlockedDownloads:
    """A local proxy that refuses every request (403) and remembers them; `env` points downloads at it."""

    env: dict[str, str]
    requests: list[str]


@pytest.fixture
def blocked_downloads() -> Iterator[BlockedDownloads]:
    """Downloads fail on purpose, the same way with or without network; `requests` proves one was attempted."""
    seen: list[str] = []

    class Refuse(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            seen.append(self.rfile.readline(2000).decode(errors="replace").strip())
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Refuse) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield BlockedDownloads(offline_env(f"http://127.0.0.1:{server.server_address[1]}"), seen)
        finally:
            server.shutdown()


def expkit_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "EXPKIT_", "HYDRA_"))}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_expkit(*args: str, cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m expkit.cli ARGS` in `cwd` (the same entry point as the `expkit` script)."""
    return subprocess.run(
        [sys.executable, "-m", "expkit.cli", *args], cwd=cwd, env=expkit_env(**env), capture_output=True, text=True, timeout=timeout
    )


# Environment variables expkit's modules set with setdefault when imported: a new process has them from the import on.
IMPORT_TIME_ENV = {"expkit.serving": {"TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}}
_INPROCESS = threading.Lock()  # one in-process command at a time: cwd, environment, streams and Hydra are process-wide


def run_inprocess(*args: str, cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """`expkit ARGS` run inside this test process, as `run_expkit` runs it in a new one, without paying the imports again.

    Isolated like a process: the working folder, the environment (`expkit_env` plus `env`; restored afterwards, with
    whatever the command set), sys.argv, the streams (file descriptors 1 and 2 too, so C++ and child-process output is
    caught), the logging handlers Hydra installs, signal handlers and warning filters; a SystemExit becomes the return code
    and any other exception a traceback on stderr and code 1, as the interpreter would do. Hydra's global state, Keras'
    session, the dtype policy, TensorFlow's op determinism and MLflow's active run are reset afterwards.

    Use `run_expkit` where the process itself is under test: signals and kill -9, exit codes of the real process,
    library output at import, servers, joblib/Ray sweeps, and variables read at import (KERAS_HOME). `timeout` is ignored.
    """
    import contextlib
    import logging
    import signal
    import tempfile
    import traceback
    import warnings

    del timeout
    if "KERAS_HOME" in env and "keras" in sys.modules:
        raise ValueError("Keras read KERAS_HOME when this process imported it: use run_expkit")
    with _INPROCESS, tempfile.TemporaryDirectory(prefix="expkit-inprocess-") as capture:
        saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv[:]
        saved_streams = (sys.stdout, sys.stderr)
        saved_fds = (os.dup(1), os.dup(2))
        saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        root = logging.getLogger()
        saved_root = (root.level, root.handlers[:])
        saved_loggers = {
            name: (lg.level, lg.handlers[:], lg.propagate, lg.disabled)
            for name, lg in logging.Logger.manager.loggerDict.items()
            if isinstance(lg, logging.Logger)
        }
        determinism = _op_determinism()
        handler_streams = {
            h: h.stream
            for h in (ref() for ref in logging._handlerList)  # type: ignore[attr-defined]
            if isinstance(h, logging.StreamHandler) and any(vars(h).get("stream") is s for s in saved_streams)  # not lastResort's property
        }
        paths = (Path(capture) / "stdout", Path(capture) / "stderr")
        files = [_Capture(path, name) for path, name in zip(paths, ("stdout", "stderr"), strict=True)]
        code = 0
        try:
            for name in [k for k in os.environ if k.startswith(("MLFLOW_", "EXPKIT_", "HYDRA_"))]:
                del os.environ[name]
            os.environ.update(expkit_env(**env))
            for module, names in IMPORT_TIME_ENV.items():  # what a module set when this process imported it, before this command
                if module in sys.modules:
                    for name, value in names.items():
                        os.environ.setdefault(name, value)
            os.chdir(cwd)
            sys.argv = ["expkit", *args]
            sys.stdout.flush(), sys.stderr.flush()
            for fd, stream in zip((1, 2), files, strict=True):
                os.dup2(stream.file.fileno(), fd)  # O_APPEND: the descriptor and the Python stream both write at the end
            sys.stdout, sys.stderr = files  # type: ignore[assignment]
            # Handlers made before (absl's, MLflow's) write to the command's streams too. This also keeps this process's own
            # streams open: absl's handler closes its stream unless it is the current sys.stderr, and Hydra's
            # logging.config.dictConfig closes every handler.
            for handler, stream in handler_streams.items():
                handler.stream = files[saved_streams.index(stream)]  # type: ignore[attr-defined]
            _reset_hydra()
            with warnings.catch_warnings():
                _interpreter_warnings()  # pytest records warnings; a process prints them to stderr
                from expkit import cli

                cli.quiet_start()
                # MLflow reads MLFLOW_LOGGING_LEVEL when imported: here it may have been imported before this command set it.
                logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"].upper())
                try:
                    cli.app(args=list(args), prog_name="expkit")
                except SystemExit as done:
                    code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
                    if isinstance(done.code, str):
                        print(done.code, file=sys.stderr)
                except BaseException:  # as the interpreter: a traceback and exit code 1
                    traceback.print_exc()
                    code = 1
                finally:
                    cli.stop_idle_workers()
        finally:
            with contextlib.suppress(Exception):
                _end_active_mlflow_run()
            for stream in (*files, *saved_streams):
                with contextlib.suppress(Exception):
                    stream.flush()
            sys.stdout, sys.stderr = saved_streams
            for handler, stream in handler_streams.items():
                handler.stream = stream  # type: ignore[attr-defined]
            for fd, saved in zip((1, 2), saved_fds, strict=True):
                os.dup2(saved, fd)
                os.close(saved)
            for stream in files:
                stream.release()
            os.chdir(saved_cwd)
            sys.argv = saved_argv
            os.environ.clear()
            os.environ.update(saved_env)
            for signum, handler in saved_signals.items():
                signal.signal(signum, handler)
            for handler in root.handlers[:]:
                if handler not in saved_root[1]:
                    root.removeHandler(handler)
                    handler.close()
            root.setLevel(saved_root[0])
            root.handlers[:] = saved_root[1]
            for name, (level, handlers, propagate, disabled) in saved_loggers.items():
                logger = logging.getLogger(name)
                for handler in logger.handlers:
                    if handler not in handlers:
                        handler.close()
                if logger.level != level:  # setLevel clears every logger's cache: thousands of loggers, each time
                    logger.setLevel(level)
                logger.handlers[:] = handlers
                logger.propagate, logger.disabled = propagate, disabled
            _reset_hydra()
            _reset_keras(determinism)
        stdout, stderr = (path.read_text(encoding="utf-8", errors="replace") for path in paths)
    return subprocess.CompletedProcess(["expkit", *args], code, stdout, stderr)


class _Capture(io.TextIOBase):
    """sys.stdout / sys.stderr while `run_inprocess` runs a command: a file the command's output is appended to.

    Whatever keeps a reference after the command (a logging handler made during it, MLflow's logger configured on its
    first import) then writes to the process's stream of the moment (`release`), not to a closed file.
    """

    def __init__(self, path: Path, name: str) -> None:
        self.file: io.TextIOWrapper | None = open(path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
        self.name = name

    def _target(self) -> Any:
        return self.file if self.file is not None else getattr(sys, self.name)

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def fileno(self) -> int:
        return self._target().fileno()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def close(self) -> None:
        """Nothing: a handler closing its stream (absl's, logging.shutdown) must not end the capture; see `release`."""

    def release(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _interpreter_warnings() -> None:
    """The warning filters and printer a new `python` process starts with (CPython's defaults, then PYTHONWARNINGS)."""
    import warnings

    warnings.resetwarnings()
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__", append=True)
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category, append=True)
    for spec in filter(None, os.environ.get("PYTHONWARNINGS", "").split(",")):
        warnings._setoption(spec)  # type: ignore[attr-defined]  # as `python -W SPEC` does
    warnings.showwarning = warnings._showwarning_orig  # type: ignore[attr-defined]


def _reset_hydra() -> None:
    """No Hydra app, config or job state left from an earlier command in this process."""
    if "hydra" not in sys.modules:
        return
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None  # type: ignore[assignment]


def _op_determinism() -> bool | None:
    if "tensorflow" not in sys.modules:
        return None
    from tensorflow.python.framework import config as tf_config

    return bool(tf_config.is_op_determinism_enabled())


def _reset_keras(determinism: bool | None) -> None:
    """The next command starts from a fresh Keras session, the float32 policy and the op determinism it found."""
    if "keras" in sys.modules:
        import keras

        keras.config.set_dtype_policy("float32")
        keras.utils.clear_session()
    if "tensorflow" in sys.modules and not determinism:
        from tensorflow.python.framework import config as tf_config

        if tf_config.is_op_determinism_enabled():
            tf_config.disable_op_determinism()


def _end_active_mlflow_run() -> None:
    """What MLflow's exit handler does at the end of a process: end a run left active (FINISHED)."""
    if "mlflow" not in sys.modules:
        return
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


def assert_clean_error(done, *needles: str) -> None:  # type: ignore[no-untyped-def]
    """A bad-input failure: exit 2, no traceback, exactly one `error:` line, naming each of `needles`."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def output_dirs(root: Path) -> list[Path]:
    """Every run folder (one holding metrics.json or run_id) below root/outputs."""
    return sorted({p.parent for p in (root / "outputs").rglob("config.yaml") if p.parent.name != ".hydra"})


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty folder to run expkit from."""
    return tmp_path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets folder (../shared/datasets): skipped when missing locally, an error on CI."""
    missing = [name for name in ("mnist.npz", "boston_housing.npz") if not (SHARED_DATA / name).is_file()]
    if missing:
        message = f"real datasets {', '.join(missing)} not found in {SHARED_DATA} (set EXPKIT_SHARED_DATA)"
        if IN_CI:
            pytest.fail(message + "; on CI (CI=true) the shared data must be present", pytrace=False)
        pytest.skip(message)
    return SHARED_DATA


@functools.cache
def _files_composed(overrides: tuple[str, ...]) -> Any:
    """Hydra's composition of the overrides that pick files (presets, group options), once per test process. Only
    copied, never changed."""
    from expkit.config.overrides import _compose

    return _compose(list(overrides), [])


def compose_config(*overrides: str) -> Any:
    """The config Hydra composes for `expkit train OVERRIDES` (without its `hydra` node), as the launch check composes a
    sweep's points: the overrides that pick files composed once per process, the values set on a copy by Hydra's own
    override step (`expkit.config.overrides.with_values`; that it equals a full composition is tested in
    test_preflight.py). A test composes in about 2 ms instead of 70."""
    from expkit.config.overrides import picks_files, with_values

    picks = [picks_files(o.split("=", 1)[0], []) for o in overrides]
    files = tuple(o for o, p in zip(overrides, picks, strict=True) if p)
    return with_values(_files_composed(files), [o for o, p in zip(overrides, picks, strict=True) if not p])


def compose(*overrides: str, root: Path) -> Any:
    """The validated ExperimentConfig `expkit train OVERRIDES` would run, composed in-process (paths under `root`)."""
    from expkit.config import validate_config

    return validate_config(compose_config(*overrides, f"paths.root_dir={root}", f"paths.output_dir={root}/run"))


def mlflow_runs(root: Path, experiment: str) -> list:
    """All runs of `experiment` in root/mlflow.db."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r} in {root / 'mlflow.db'}"
    return client.search_runs([exp.experiment_id])
