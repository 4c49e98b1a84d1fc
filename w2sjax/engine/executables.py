"""Compiled program sets kept whole, so that a later process neither traces nor lowers them.

jax's persistent cache (sweep/cache.py) keys a program by its lowered text, so a process must
trace and lower every program before it can look one up: about 1 s a program set on two CPU
cores (docs/notes/benchmarks.md, "compiled program sets kept whole"). This store keys a set by
what its tracing reads instead: the engine's and config's code (their files, and the functions
and registries live in their modules, which a notebook may have replaced), the versions of
Python, jax and the libraries the engine calls, jax's settings, XLA_FLAGS, the devices and the
processor, and the programs' static arguments and input types. Any change to those is another
key, and the set is compiled again (through jax's cache, which still holds it where the lowered
text did not change).

The set lives in `programs/` beside jax's own entries, in the folder jax's cache was given
(none where jax's cache is off, or where a traced file changed after this process started: its
code may then not be what the files say), least recently used sets removed past
MAX_BYTES. An entry that cannot be read is removed and compiled again; one that cannot be
written, or a set with a host callback, is not kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import pickle
import pkgutil
import platform
import sys
import tempfile
import time
import types
from collections.abc import Iterator, Sequence
from functools import cache
from importlib import metadata
from pathlib import Path

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


def _traced_files() -> list[Path]:
    return sorted(p for stage in TRACED for p in (PACKAGE / stage).rglob("*.py"))


def folder() -> Path | None:
    """Where program sets are kept: programs/ in jax's persistent cache folder (None: off, or a
    traced file changed since this process started)."""
    where = jax.config.jax_compilation_cache_dir
    if not where or not jax.config.jax_enable_compilation_cache:
        return None
    if any(path.stat().st_mtime > _STARTED for path in _traced_files()):
        return None
    return Path(where) / SUBFOLDER


@cache
def _fixed_digest() -> str:
    """What cannot change within a process: the traced stages' files, every module of them
    imported first (so that the live digest does not depend on which were), and the versions,
    processor and devices they run on."""
    for stage in TRACED:
        where = importlib.import_module(f"w2sjax.{stage}")
        for module in pkgutil.walk_packages(where.__path__, f"{where.__name__}."):
            importlib.import_module(module.name)
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


def _code(code: types.CodeType) -> Iterator[bytes]:
    """A code object's instructions, names and constants (nested code included), without the
    memory addresses a repr would hold."""
    yield code.co_code
    yield repr((code.co_names, code.co_varnames, code.co_freevars)).encode()
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code(const)
        elif isinstance(const, frozenset):  # its repr's order changes with the hash seed
            yield repr(sorted(map(repr, const))).encode()
        else:
            yield repr(const).encode()


def _live(value: object, seen: set[int]) -> Iterator[bytes]:
    """What of `value` tracing may call: a function's code and the values it closes over or
    defaults to, a registry's entries (a dict keyed by names; not a count kept by Shape), a named
    tuple's or dataclass's fields."""
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, types.FunctionType):
        yield value.__qualname__.encode()
        yield from _code(value.__code__)
        for cell in value.__closure__ or ():
            try:
                yield from _live(cell.cell_contents, seen)
            except ValueError:  # a cell not yet filled
                continue
        for default in value.__defaults__ or ():
            yield from _live(default, seen)
    elif hasattr(value, "__wrapped__"):  # functools.cache, jax.jit
        yield from _live(value.__wrapped__, seen)
    elif hasattr(value, "func") and callable(value):  # functools.partial
        yield from _live(value.func, seen)
        yield from _live(getattr(value, "args", ()), seen)
    elif isinstance(value, dict) and all(isinstance(k, str) for k in value):  # a registry
        for key in sorted(value, key=repr):
            yield repr(key).encode()
            yield from _live(value[key], seen)
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _live(item, seen)
    elif hasattr(value, "__dataclass_fields__") and not isinstance(value, type):
        for name in value.__dataclass_fields__:
            yield from _live(getattr(value, name), seen)
    elif isinstance(value, int | float | str | bool | bytes | type(None)):
        yield repr(value).encode()


def _live_digest() -> str:
    """The traced stages' modules as they are in this process: each public module-level function
    and value (a registry and its entries), so that one replaced at run time is another key.
    Private names (a leading underscore) are module state, such as simulate's loaded sets."""
    digest, seen = hashlib.sha256(), set()
    prefixes = tuple(f"w2sjax.{stage}" for stage in TRACED)
    for name in sorted(m for m in list(sys.modules) if m.startswith(prefixes)):
        for attr, value in sorted(vars(sys.modules[name]).items()):
            if attr.startswith("_") or isinstance(value, types.ModuleType | type):
                continue
            _add(digest, name, attr, *_live(value, seen))
    return digest.hexdigest()


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


def key(static: object, args: object, live: bool = True) -> str:
    """The store's key for a program set traced with `static` (its repr) and taking `args` (a
    pytree of arrays). live=False leaves out the modules as they are in this process (a few ms
    to read): a key within one process, where jax's own caches do not retrace either."""
    settings = sorted(
        (k, repr(v))
        for k, v in jax.config.values.items()
        if not k.startswith(BOOKKEEPING) and k not in QUIET
    )
    leaves, tree = jax.tree_util.tree_flatten(args)
    digest = hashlib.sha256()
    _add(digest, _fixed_digest(), _live_digest() if live else "", os.environ.get("XLA_FLAGS", ""))
    _add(digest, repr(settings), repr(static), str(tree), *map(_placed, leaves))
    return digest.hexdigest()


def load(where: Path, name: str) -> list[jax.stages.Compiled] | None:
    """The set kept under `name` (None: none, or one that could not be read, now removed)."""
    from jax.experimental import serialize_executable

    path = where / name
    try:
        blobs = pickle.loads(path.read_bytes())
        programs = [serialize_executable.deserialize_and_load(*blob) for blob in blobs]
    except FileNotFoundError:
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
