"""Compiled program sets kept whole, so that a later `w2sjax` process neither traces nor lowers
them.

jax's persistent cache (sweep/cache.py) keys a program by its lowered text, so a process must
trace and lower every program before it can look one up: about 1 s a program set on two CPU
cores (docs/notes/benchmarks.md, "compiled program sets kept whole"). This store keys a set by
what its tracing reads instead: the engine's and config's files, the versions of Python, jax and
the libraries the engine calls, jax's settings, XLA_FLAGS, the processor and the devices, and the
programs' static arguments and input types. Any change to those is another key, and the set is
compiled again (through jax's cache, which still holds it where the lowered text did not change).

Only the `w2sjax` program keeps sets (`kept_whole`, which cli.main.entry enters): its process
runs the package's files as they are. A notebook may have replaced a function or a registry
entry at run time, which no key made from the files can see, so the Python API compiles through
jax's cache alone. A process whose traced files changed after it started keeps none either.

The set lives in `programs/` beside jax's own entries, in the folder jax's cache was given,
least recently used sets removed past MAX_BYTES. An entry that cannot be read is removed and
compiled again; one that cannot be written, or a set with a host callback, is not kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jax

SUBFOLDER = "programs"
MAX_BYTES = 2**30
STALE_S = 3600.0  # a temporary file older than this was left by a process that died writing
# Stages whose code tracing runs: the engine and the config it reads (an import contract keeps
# the engine from importing the later stages).
TRACED = ("engine", "config")
PACKAGE = Path(__file__).resolve().parents[1]
LIBRARIES = ("jax", "jaxlib", "numpy", "optax", "chex", "ml_dtypes", "opt_einsum", "libtpu")
# jax settings that say where and whether programs are kept or logged, not what they compute.
BOOKKEEPING = ("jax_compilation_cache", "jax_persistent_cache", "jax_enable_compilation_cache")
QUIET = ("jax_log_compiles", "jax_explain_cache_misses", "jax_logging_level")


def host_tag() -> str:
    """The processor programs are built for: XLA compiles CPU programs for the host's
    instruction set, and a home folder shared between machines (a cluster's) must not hand one
    machine's programs to another (8 hex digits of its CPU flags; the machine type where the
    system does not list them)."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line for line in info if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return hashlib.sha1((flags or platform.machine()).encode()).hexdigest()[:8]


def _started() -> float:
    """When this process started (on Linux from /proc; elsewhere when this module was imported):
    its traced modules are the files as they were then at the latest."""
    try:
        after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        with open("/proc/stat") as stat:
            boot = next(float(line.split()[1]) for line in stat if line.startswith("btime"))
        return boot + int(after_name[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


_STARTED = _started()
_KEEPING = False  # whether this process keeps sets: kept_whole


@contextlib.contextmanager
def kept_whole() -> Iterator[None]:
    """Sets kept in and loaded from the store inside the block: the `w2sjax` program's process
    (cli.main.entry), whose code is the package's files as they are."""
    global _KEEPING
    before, _KEEPING = _KEEPING, True
    try:
        yield
    finally:
        _KEEPING = before


def _traced_files() -> list[Path]:
    """The traced stages' source files (not hidden names, such as an editor's lock links)."""
    found = (p for stage in TRACED for p in (PACKAGE / stage).rglob("*.py"))
    return sorted(p for p in found if not p.name.startswith(".") and p.is_file())


def _changed_since_start() -> bool:
    """Whether a traced file was written or renamed after this process started, or none is
    found. The change time too: installers and copies that keep an old modification time set a
    new one."""
    files = _traced_files()
    return not files or any(
        max(stat.st_mtime, stat.st_ctime) > _STARTED for stat in (p.stat() for p in files)
    )


def folder() -> Path | None:
    """Where program sets are kept: programs/ in jax's persistent cache folder; None outside
    kept_whole, with jax's cache off, or where the traced files cannot be read or changed after
    this process started (its code may not be theirs)."""
    import jax

    where = jax.config.jax_compilation_cache_dir
    if not _KEEPING or not where or not jax.config.jax_enable_compilation_cache:
        return None
    try:
        _fixed_digest()  # the files read first: any edit since the start, before or after, shows
        if _changed_since_start():
            return None
    except OSError:
        return None
    return Path(where) / SUBFOLDER


@cache
def _fixed_digest() -> str:
    """What cannot change within a process: the traced stages' files, and the versions,
    processor and devices they run on."""
    import jax

    digest = hashlib.sha256()
    for path in _traced_files():
        _add(digest, str(path.relative_to(PACKAGE)), path.read_bytes())
    # jax's device plugins (jax-cuda12-plugin and the like), by their entry points: reading every
    # installed distribution's metadata would take 0.2 s a process
    plugins = {p.dist.name for p in metadata.entry_points(group="jax_plugins") if p.dist}
    for name in sorted(set(LIBRARIES) | plugins):
        try:
            _add(digest, name, metadata.version(name))
        except metadata.PackageNotFoundError:
            _add(digest, name, "none")
    backend = jax.devices()[0].client
    devices = [(d.platform, d.device_kind) for d in jax.devices()]
    _add(digest, sys.version, host_tag(), backend.platform, backend.platform_version)
    _add(digest, repr(devices), str(jax.process_count()))
    return digest.hexdigest()


def _add(digest: hashlib._Hash, *parts: str | bytes) -> None:
    """Each part with its length first, so that no two lists of parts hash alike."""
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little") + data)


def _placed(leaf: object) -> str:
    """A program input's type: shape, dtype, weak type and placement (device ids included)."""
    sharding = getattr(leaf, "sharding", None)
    devices = "" if sharding is None else str(sorted(d.id for d in sharding.device_set))
    mesh = getattr(sharding, "mesh", None)
    order = "" if mesh is None else str([d.id for d in mesh.devices.flat])
    return (
        f"{getattr(leaf, 'shape', ())} {getattr(leaf, 'dtype', type(leaf).__name__)} "
        f"weak={getattr(leaf, 'weak_type', False)} {sharding!r} {devices} {order}"
    )


def inputs_key(static: object, args: object) -> str:
    """What selects a program set within one process, as jax's own caches select a trace:
    jax's settings, `static` (its repr) and the types and placement of `args` (a pytree of
    arrays)."""
    import jax

    settings = sorted(
        (k, repr(v))
        for k, v in jax.config.values.items()
        if not k.startswith(BOOKKEEPING) and k not in QUIET
    )
    leaves, tree = jax.tree_util.tree_flatten(args)
    digest = hashlib.sha256()
    _add(digest, repr(settings), repr(static), str(tree), *map(_placed, leaves))
    return digest.hexdigest()


def key(inputs: str) -> str:
    """The store's key for a program set whose inputs_key is `inputs`: that, the traced files,
    the versions, processor and devices, and XLA_FLAGS."""
    digest = hashlib.sha256()
    _add(digest, _fixed_digest(), os.environ.get("XLA_FLAGS", ""), inputs)
    return digest.hexdigest()


def load(where: Path, name: str) -> list[jax.stages.Compiled] | None:
    """The set kept under `name` (None: none, one this user may not read, or one that could not
    be loaded, now removed)."""
    from jax.experimental import serialize_executable

    path = where / name
    try:
        blobs = pickle.loads(path.read_bytes())
        programs = [serialize_executable.deserialize_and_load(*blob) for blob in blobs]
    except OSError:  # none, or another user's that this one may not read: compiled here
        return None
    except Exception:  # noqa: BLE001 - a torn or foreign entry is compiled again
        with contextlib.suppress(OSError):  # a folder this user cannot write
            path.unlink(missing_ok=True)
        return None
    with contextlib.suppress(OSError):  # removed meanwhile, or a folder this user cannot write
        os.utime(path)  # recently used
    return programs


def save(where: Path, name: str, programs: Sequence[jax.stages.Compiled]) -> None:
    """Keep `programs` under `name`, written whole (a temporary file renamed), then remove the
    least recently used sets past MAX_BYTES. A set with a host callback (Adam's projection on
    the CPU: a Python function no file can hold, which jax's own cache does not keep either), one
    jax cannot serialise, or a folder that cannot be written is skipped: the programs still run."""
    from jax.experimental import serialize_executable

    try:
        if any(_host_callbacks(p) for p in programs):
            return
        blob = pickle.dumps([serialize_executable.serialize(p) for p in programs])
    except Exception:  # noqa: BLE001 - this jax cannot serialise it: not kept
        return
    temporary = None
    try:
        where.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=where, prefix=f".{name}.")
        with os.fdopen(handle, "wb") as file:
            file.write(blob)
        os.chmod(temporary, 0o644)  # readable where a cache folder is shared (mkstemp: 0600)
        os.replace(temporary, where / name)
        _bounded(where)
    except OSError:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def _host_callbacks(program: jax.stages.Compiled) -> bool:
    """Whether `program` calls back into Python (where this jax says; else pickling it fails)."""
    unloaded = getattr(program._executable, "_unloaded_executable", None)
    return bool(getattr(unloaded, "host_callbacks", None))


def _bounded(where: Path) -> None:
    """Remove the least recently used sets until the folder holds at most MAX_BYTES, and
    temporary files left by processes that died writing them."""
    kept, now = [], time.time()
    for path in where.iterdir():
        with contextlib.suppress(OSError):  # removed meanwhile by another process
            stat = path.stat()
            if not path.name.startswith("."):
                kept.append((stat.st_mtime, stat.st_size, path))
            elif now - stat.st_mtime > STALE_S:
                path.unlink()
    total = sum(size for _, size, _ in kept)
    for _, size, path in sorted(kept):
        if total <= MAX_BYTES:
            break
        with contextlib.suppress(OSError):
            path.unlink()
        total -= size
