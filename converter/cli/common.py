"""What every workstation command shares: its flags, logging set-up, one-line errors and exit codes, quiet TensorFlow imports.

The error report, the exit codes (``ToolExitCode``) and the stderr log handler are ``edge_app.errors``'s, shared with ``edge-app``.

``-q`` means nothing but warnings and the one-line error on stderr. TensorFlow prints start-up notices from C++
static initialisers when it is imported ("oneDNN custom operations are on", the CPU feature guard), before absl's
logging exists and whatever TF_CPP_MIN_LOG_LEVEL says, so only closing the file descriptor keeps them out. Two
places do that: a command started with ``-q`` (and without ``--debug``) closes it around the first import of
``keras`` / ``tensorflow`` from the moment this module is imported (``converter.cli.train`` imports Keras at module
load, before any flag is parsed; it imports this module first), and ``run_cli`` does the same for a command whose flags
say ``-q``. Import errors still surface, as Python exceptions once stderr is back.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from converter.errors import ConverterError
from edge_app.errors import LOG_FORMAT, log_to_stderr, report_error

# the console scripts (pyproject.toml); python -m converter.cli.<module> runs one too
COMMANDS = frozenset({"train-model", "convert-model", "evaluate-model", "compare-models", "retrain-model", "check-decode", "imagenet-bundle"})
QUIET_IMPORTS = ("keras", "tensorflow")  # top-level packages whose first import runs with stderr closed under -q
CACHE_ENV = "EDGE_RECOGNITION_CACHE"


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def add_cache_flag(parser: argparse.ArgumentParser) -> None:
    """``--cache-dir``, for the commands that cache decoded datasets and backbone features."""
    parser.add_argument(
        "--cache-dir", type=Path, metavar="DIR",
        help="cache for decoded datasets and backbone features (default: $EDGE_RECOGNITION_CACHE, else ~/.cache/edge-recognition); "
        "kept under $EDGE_RECOGNITION_CACHE_LIMIT (default 4G), least recently used entries removed first",
    )  # fmt: skip


def setup_logging(debug: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    log_to_stderr(level, LOG_FORMAT)
    if not debug:  # TensorFlow's C++ start-up chatter is noise for a user
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        logging.getLogger("absl").setLevel(logging.ERROR)


@contextlib.contextmanager
def stderr_closed() -> Iterator[None]:
    """File descriptor 2 points at /dev/null inside (native code's writes included); a no-op without a real stderr."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (a test's capture, an embedded interpreter)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    """The real loader of a package, its module code run with stderr closed."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        with stderr_closed():
            self._loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ...: the real loader's
        return getattr(self._loader, name)


class _QuietImporter(importlib.abc.MetaPathFinder):
    """Finds ``QUIET_IMPORTS`` with the other finders and wraps their loader in :class:`_QuietLoader`."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in QUIET_IMPORTS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


def quiet_tensorflow_imports() -> _QuietImporter | None:
    """From now on, the first import of Keras or TensorFlow runs with stderr closed (for ``-q``); the hook, if new."""
    if any(isinstance(f, _QuietImporter) for f in sys.meta_path):
        return None
    hook = _QuietImporter()
    sys.meta_path.insert(0, hook)
    return hook


def argv_asks_quiet(argv: Sequence[str]) -> bool:
    """Whether ``argv`` runs one of the workstation commands with ``-q`` and without ``--debug``."""
    if not argv:
        return False
    prog = Path(argv[0])
    if prog.name not in COMMANDS and prog.parent.parts[-2:] != ("converter", "cli"):  # a console script, or python -m converter.cli.<module>
        return False
    flags = list(argv[1:argv.index("--")] if "--" in argv else argv[1:])
    return ("-q" in flags or "--quiet" in flags) and "--debug" not in flags


def import_tensorflow_quietly() -> None:
    """Import Keras (and TensorFlow) now, with stderr closed: for ``-q``."""
    if "keras" in sys.modules:
        return
    with stderr_closed():
        import keras  # noqa: F401, PLC0415


@contextlib.contextmanager
def cache_dir_override(cache_dir: Path | None) -> Iterator[None]:
    """``--cache-dir``: ``$EDGE_RECOGNITION_CACHE`` for the command's duration (every cache reads it)."""
    if cache_dir is None:
        yield
        return
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(cache_dir)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = before


def run_cli(prog: str, body: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run ``body``; domain errors (and ``OSError``) become one line on stderr and a named exit code (``ToolExitCode``).

    With ``--debug`` they propagate with their traceback instead.
    """
    quiet = bool(getattr(args, "quiet", False))
    setup_logging(args.debug, quiet)
    hook = quiet_tensorflow_imports() if quiet and not args.debug else None
    try:
        with cache_dir_override(getattr(args, "cache_dir", None)):
            return body(args)
    except KeyboardInterrupt as exc:
        return report_error(prog, exc)
    except (ConverterError, OSError) as exc:
        if args.debug:
            raise
        return report_error(prog, exc, expected=(OSError,))
    finally:
        if hook is not None and hook in sys.meta_path:  # main() called in-process (tests): later imports are not ours to quiet
            sys.meta_path.remove(hook)


if argv_asks_quiet(getattr(sys, "argv", [])):  # before converter.cli.train's Keras import (see the docstring)
    quiet_tensorflow_imports()
