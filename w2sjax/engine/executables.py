"""Compiled program sets kept whole, so that a later process neither traces nor lowers them.

jax's persistent cache (sweep/cache.py) keys a program by its lowered text, so a process must
trace and lower every program before it can look one up: about 1.5 s a program set on two CPU
cores (docs/notes/benchmarks.md, "compiled program sets kept whole"). This store keys a set by
what its tracing reads instead: the engine's and config's code (their files, and the functions
and registries live in their modules, which a notebook may have replaced), the versions of jax
and of the libraries the engine calls, jax's settings, XLA_FLAGS, the devices, and the programs'
static arguments and input types. Any change to those is another key, and the set is compiled
again (through jax's cache, which still holds it where the lowered text did not change).

The set lives in `programs/` beside jax's own entries, in the folder jax's cache was given
(none where jax's cache is off), least recently used sets removed past MAX_BYTES. An entry that
cannot be read is removed and compiled again; one that cannot be written is skipped.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import types
from collections.abc import Iterator, Sequence
from functools import cache
from importlib import metadata
from pathlib import Path

import jax

SUBFOLDER = "programs"
MAX_BYTES = 2**30
# Stages whose code tracing runs: the engine and the config it reads (an import contract keeps
# the engine from importing the later stages).
TRACED = ("engine", "config")
LIBRARIES = ("jax", "jaxlib", "numpy", "optax", "chex", "ml_dtypes")
# jax settings that say where and whether programs are kept or logged, not what they compute.
BOOKKEEPING = ("jax_compilation_cache", "jax_persistent_cache", "jax_enable_compilation_cache")
QUIET = ("jax_log_compiles", "jax_explain_cache_misses", "jax_logging_level")


def folder() -> Path | None:
    """Where program sets are kept: programs/ in jax's persistent cache folder (None: off, or a
    jax whose settings `key` cannot read)."""
    where = jax.config.jax_compilation_cache_dir
    if not where or not jax.config.jax_enable_compilation_cache or not _settings_readable():
        return None
    return Path(where) / SUBFOLDER


def _settings_readable() -> bool:
    return hasattr(jax.config, "values")


@cache
def _files_digest() -> str:
    """The traced stages' source files, and the versions they run on, as one digest."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for stage in TRACED:
        for path in sorted((package / stage).rglob("*.py")):
            digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    for name in LIBRARIES:
        try:
            digest.update(f"{name}={metadata.version(name)};".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name}=none;".encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()


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
    for name in sorted(m for m in sys.modules if m.startswith(prefixes)):
        digest.update(name.encode())
        for attr, value in sorted(vars(sys.modules[name]).items()):
            if attr.startswith("_") or isinstance(value, types.ModuleType | type):
                continue
            digest.update(attr.encode())
            for part in _live(value, seen):
                digest.update(part)
    return digest.hexdigest()


def _placed(leaf: object) -> str:
    """A program input's type: shape, dtype, weak type and placement (device ids included)."""
    sharding = getattr(leaf, "sharding", None)
    devices = "" if sharding is None else str(sorted(d.id for d in sharding.device_set))
    mesh = getattr(sharding, "mesh", None)
    order = "" if mesh is None else str([d.id for d in mesh.devices.flat])
    return (
        f"{getattr(leaf, 'shape', ())}{getattr(leaf, 'dtype', type(leaf).__name__)}"
        f"w{getattr(leaf, 'weak_type', False)}{sharding!r}{devices}{order}"
    )


def key(static: object, args: object) -> str:
    """The store's key for a program set traced with `static` (its repr) and taking `args` (a
    pytree of arrays)."""
    backend = jax.devices()[0].client
    settings = sorted(
        (k, repr(v))
        for k, v in getattr(jax.config, "values", {}).items()
        if not k.startswith(BOOKKEEPING) and k not in QUIET
    )
    leaves, tree = jax.tree_util.tree_flatten(args)
    parts = (
        _files_digest(),
        _live_digest(),
        os.environ.get("XLA_FLAGS", ""),
        backend.platform,
        backend.platform_version,
        repr(settings),
        repr(static),
        str(tree),
        *(_placed(leaf) for leaf in leaves),
    )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


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
        path.unlink(missing_ok=True)
        return None
    os.utime(path)  # recently used
    return programs


def save(where: Path, name: str, programs: Sequence[jax.stages.Compiled]) -> None:
    """Keep `programs` under `name`, written whole (a temporary file renamed), then remove the
    least recently used sets past MAX_BYTES. A set with a host callback (Adam's projection on
    the CPU: a Python function no file can hold, which jax's own cache does not keep either), one
    jax cannot serialise, or a folder that cannot be written is skipped: the programs still run."""
    from jax.experimental import serialize_executable

    if any(_host_callbacks(p) for p in programs):
        return
    try:
        blob = pickle.dumps([serialize_executable.serialize(p) for p in programs])
    except Exception:  # noqa: BLE001 - this jax cannot serialise it: not kept
        return
    try:
        where.mkdir(parents=True, exist_ok=True)
        temporary = where / f".{name}.{os.getpid()}"
        temporary.write_bytes(blob)
        os.replace(temporary, where / name)
        _bounded(where)
    except OSError:
        return


def _host_callbacks(program: jax.stages.Compiled) -> bool:
    """Whether `program` calls back into Python (where this jax says; else pickling it fails)."""
    unloaded = getattr(program._executable, "_unloaded_executable", None)
    return bool(getattr(unloaded, "host_callbacks", None))


def _bounded(where: Path) -> None:
    """Remove the least recently used sets until the folder holds at most MAX_BYTES."""
    kept = sorted(
        (p.stat().st_mtime, p.stat().st_size, p)
        for p in where.iterdir()
        if p.is_file() and not p.name.startswith(".")  # not another process's file in writing
    )
    total = sum(size for _, size, _ in kept)
    for _, size, path in kept:
        if total <= MAX_BYTES:
            break
        path.unlink(missing_ok=True)
        total -= size
