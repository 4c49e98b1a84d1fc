"""Compiled programs kept across processes: jax's persistent compilation cache, on by default
for every sweep (docs/ENGINE.md, "Compiled programs are kept").

A second run of the same sweep, a resume, a boundary search's later rounds and a new output
folder then load the programs earlier processes compiled instead of compiling them again. XLA
keys each entry by the program, the compile options and the jax and jaxlib versions, so a
cached executable is the one the compiler would make.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from w2sjax.engine.executables import host_tag

ENV = "W2SJAX_CACHE_DIR"
OFF = "off"
MAX_BYTES = 4 * 2**30  # least recently used entries go past this


def cache_folder(option: str | None = None) -> Path | None:
    """Where compiled programs are kept: `option` (a folder, or "off" for nowhere), else
    $W2SJAX_CACHE_DIR (the same), else $XDG_CACHE_HOME/w2sjax/xla, else ~/.cache/w2sjax/xla;
    each with a subfolder per jax and jaxlib version and processor (host_tag), whose entries
    only those read."""
    import jax
    import jaxlib

    chosen = option if option is not None else os.environ.get(ENV)
    if chosen == OFF:
        return None
    if chosen:
        base = Path(chosen).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = Path(xdg) / "w2sjax" / "xla"
    return base / f"jax-{jax.__version__}-jaxlib-{jaxlib.__version__}-{host_tag()}"


def _has_filelock() -> bool:
    """jax bounds its cache only with the filelock package (a dependency; an image without it
    keeps an unbounded cache rather than none)."""
    try:
        import filelock  # noqa: F401
    except ImportError:
        return False
    return True


def enable(folder: Path | None) -> None:
    """Point jax's persistent compilation cache at `folder` (None: no cache), bounded by
    MAX_BYTES where jax can. jax opens its cache at its first compile and keeps it, so a change
    of folder resets it (a notebook may have compiled before its first sweep)."""
    import jax

    path = None if folder is None else str(folder)
    if jax.config.jax_compilation_cache_dir == path:
        return
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # before any compile, so the command stops with its one line
            raise OSError(
                f"cannot keep compiled programs in {folder} ({err.strerror}); give --cache or "
                f"${ENV} a folder, or 'off' for none"
            ) from err
    jax.config.update("jax_compilation_cache_dir", path)
    # jax keeps only programs that took a second to compile by default; a sweep's short ones
    # (the step loop's, under a second on the CPU) are as often recompiled
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if hasattr(jax.config, "jax_compilation_cache_max_size") and _has_filelock():
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    _reopen()


def _reopen() -> None:
    """Make jax open its persistent cache again at its next compile, from its settings now (a
    no-op where jax has no reset_cache)."""
    from jax._src import compilation_cache

    getattr(compilation_cache, "reset_cache", lambda: None)()


# What `enable` sets, which `kept_in` restores.
SETTINGS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_compilation_cache_max_size",
)


@contextmanager
def kept_in(folder: Path | None) -> Iterator[None]:
    """The persistent cache in `folder` (None: none) inside the block; every setting `enable`
    changes as it was after."""
    import jax

    before = {k: getattr(jax.config, k) for k in SETTINGS if hasattr(jax.config, k)}
    enable(folder)
    try:
        yield
    finally:
        for key, value in before.items():
            jax.config.update(key, value)
        _reopen()
