"""Compiled programs kept across processes (sweep/cache.py, engine/executables.py): where,
switched off, that a bucket's programs are all kept, and the store's sets, keys and bound."""

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path

import jax
import jaxlib
import numpy as np
import pytest
from conftest import REPO, cli, finish
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import w2sjax
from w2sjax.config.fields import ConfigError
from w2sjax.config.options import EngineOptions
from w2sjax.config.settings import build
from w2sjax.engine import executables
from w2sjax.engine import simulate as simulate_module
from w2sjax.engine.batch import Shape, stack_params
from w2sjax.engine.executables import SUBFOLDER, host_tag, kept_whole
from w2sjax.engine.simulate import (
    TRACES,
    compile_programs,
    forget,
    lowered_programs,
    simulate,
)
from w2sjax.sweep.cache import ENV, SETTINGS, cache_folder, enable, kept_in

VERSIONS = f"jax-{jax.__version__}-jaxlib-{jaxlib.__version__}-{host_tag()}"


def test_the_option_then_the_environment_then_the_users_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder(str(tmp_path / "opt")) == tmp_path / "opt" / VERSIONS
    assert cache_folder() == tmp_path / "env" / VERSIONS
    assert cache_folder("off") is None
    monkeypatch.setenv(ENV, "off")
    assert cache_folder() is None
    monkeypatch.delenv(ENV)
    assert cache_folder() == tmp_path / "xdg" / "w2sjax" / "xla" / VERSIONS
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_folder() == Path(tmp_path / "home" / ".cache" / "w2sjax" / "xla" / VERSIONS)
    with pytest.raises(ConfigError, match="--cache: must be a folder or 'off'"):
        EngineOptions(cache="")
    assert len(host_tag()) == 8 and int(host_tag(), 16) >= 0  # the processor, in 8 hex digits


def test_a_folder_that_cannot_be_made_is_one_line_naming_the_option(tmp_path):
    """A cache folder under a file: an OSError naming --cache and $W2SJAX_CACHE_DIR and what
    they take, and jax's settings untouched (the CLI prints it and exits with status 2)."""
    (tmp_path / "a_file").write_text("")
    before = jax.config.jax_compilation_cache_dir
    named = r"^cannot keep compiled programs in .*; give --cache or \$W2SJAX_CACHE_DIR a .*'off'"
    with pytest.raises(OSError, match=named):
        enable(cache_folder(str(tmp_path / "a_file")))
    assert jax.config.jax_compilation_cache_dir == before


def test_kept_in_leaves_jax_as_it_found_it(tmp_path):
    """A notebook's jax settings survive a block with the cache elsewhere."""
    before = {k: getattr(jax.config, k) for k in SETTINGS if hasattr(jax.config, k)}
    with kept_in(tmp_path / "elsewhere"):
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "elsewhere")
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    assert {k: getattr(jax.config, k) for k in before} == before


def test_a_compile_lands_in_the_folder_and_off_keeps_none(tmp_path):
    """A program that takes its time to compile is written to the folder enabled, and with the
    cache off nothing is written."""
    before = jax.config.jax_compilation_cache_dir
    low = jax.config.jax_persistent_cache_min_compile_time_secs
    try:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        enable(tmp_path / "on")
        jax.jit(lambda x: jax.numpy.sin(x) * 3)(1.0).block_until_ready()
        kept = sorted((tmp_path / "on").iterdir())
        assert kept  # the program, written for the next process
        enable(None)
        jax.jit(lambda x: jax.numpy.cos(x) * 5)(1.0).block_until_ready()
        assert jax.config.jax_compilation_cache_dir is None
        assert sorted((tmp_path / "on").iterdir()) == kept
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", low)
        enable(None if before is None else Path(before))


def test_a_new_process_loads_every_program_of_a_bucket_from_the_cache(tmp_path):
    """simulate's three programs carry no host callback, so all three are kept in jax's cache
    (which serves a process whose store misses): with jax's in-memory caches cleared (as in a
    new process) each is a persistent-cache hit. The control: a program with a host callback
    (what the progress reports once were) is never kept."""
    hits = []

    def listen(event: str, **kwargs) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            hits.append(event)

    config = build({"d": 40, "n_st": 6, "m": 3, "steps": 5, "n_test": 20, "log_points": 2})
    shape, params = Shape.of(config), stack_params([(config, 0), (config, 1)])
    jax.monitoring.register_event_listener(listen)
    try:
        with kept_in(tmp_path):
            for lowered in lowered_programs(shape, params):
                lowered.compile()
            jax.clear_caches()
            for lowered in lowered_programs(shape, params):
                lowered.compile()
            assert len(hits) == 3
            noted = jax.jit(lambda x: (jax.debug.callback(lambda _: None, x), x * 2)[1])
            noted(1.0).block_until_ready()
            jax.clear_caches()
            noted(1.0).block_until_ready()
            assert len(hits) == 3
    finally:
        jax.monitoring.unregister_event_listener(listen)


def _compiles(fn) -> tuple[object, int]:
    """fn()'s result and how many programs XLA compiled for it."""
    compiled = []

    def listen(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        return fn(), len(compiled)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def _as_new_process() -> None:
    jax.clear_caches()
    forget()


@contextmanager
def stored(folder: Path) -> Iterator[None]:
    """jax's cache in `folder`, and the store kept there as the `w2sjax` program keeps it, with
    this process's sets dropped first."""
    with kept_in(folder), kept_whole():
        _as_new_process()
        yield


def test_a_bucket_compiled_ahead_compiles_nothing_when_it_runs():
    """compile_programs (what --compile-ahead runs in a thread) compiles the very programs a
    sweep's chunk then calls, its runs placed as run_chunk places them: however many steps the
    host takes, the calls compile nothing more."""
    config = build({"d": 36, "n_st": 7, "m": 3, "steps": 6, "n_test": 20, "log_points": 3})
    shape = Shape.of(config)
    mesh = Mesh(np.array(jax.local_devices()), ("runs",))
    params = jax.device_put(
        stack_params([(config, 0), (config, 1)]), NamedSharding(mesh, PartitionSpec("runs"))
    )
    with kept_in(None):
        _as_new_process()
        ahead = _compiles(lambda: compile_programs(shape, params))[1]
        calls = _compiles(
            lambda: (simulate(shape, params, 1, lambda step: None), simulate(shape, params))
        )[1]
    assert ahead >= 3 and calls == 0


def test_a_set_from_the_store_is_neither_traced_nor_compiled_and_runs_the_same(tmp_path):
    """A new process (jax's caches and this process's sets dropped) loads a bucket's set from
    programs/ and its results are the compiled set's, bit for bit; the control, the same with
    the store emptied, traces the set again."""
    config = build({"d": 41, "n_st": 6, "m": 3, "steps": 5, "n_test": 20, "log_points": 2})
    shape, params = Shape.of(config), stack_params([(config, 0), (config, 1)])
    with stored(tmp_path):
        first, compiled = _compiles(lambda: simulate(shape, params))
        assert compiled == 3 and len(list((tmp_path / SUBFOLDER).iterdir())) == 1
        _as_new_process()
        traced = TRACES[shape]
        again, compiled = _compiles(lambda: simulate(shape, params))
        assert compiled == 0 and TRACES[shape] == traced
        jax.tree_util.tree_map(np.testing.assert_array_equal, again, first)
        for entry in (tmp_path / SUBFOLDER).iterdir():
            entry.unlink()
        _as_new_process()
        simulate(shape, params)  # from jax's cache, once traced and lowered
        assert TRACES[shape] == traced + 1


def test_the_key_follows_what_tracing_reads_and_nothing_else(monkeypatch):
    """Another Shape, input type, placement, jax setting or XLA_FLAGS is another key; the cache's
    folder and compile logging are not."""
    config = build({"d": 40, "n_st": 6, "m": 3, "steps": 5, "n_test": 20, "log_points": 2})
    shape, params = Shape.of(config), stack_params([(config, 0), (config, 1)])
    base = key(shape, params)
    assert key(shape, stack_params([(config, 2), (config, 3)])) == base  # other runs, same types
    assert key(dataclasses.replace(shape, steps=6), params) != base
    assert key(shape, jax.tree_util.tree_map(lambda a: a[:1], params)) != base
    mesh = Mesh(np.array(jax.local_devices()[:1]), ("runs",))
    placed = jax.device_put(params, NamedSharding(mesh, PartitionSpec("runs")))
    assert key(shape, placed) != base
    with jax.default_matmul_precision("bfloat16"):
        assert key(shape, params) != base
    with jax.log_compiles(True), kept_in(None):
        assert key(shape, params) == base
    flags = os.environ.get("XLA_FLAGS", "")
    monkeypatch.setenv("XLA_FLAGS", f"{flags} --xla_cpu_use_fusion_emitters=false")
    assert key(shape, params) != base
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert key(shape, params) == base


def test_a_torn_entry_is_compiled_again_and_the_folder_stays_bounded(tmp_path, monkeypatch):
    """An entry that cannot be read is removed and the set compiled and written again; past
    MAX_BYTES the least recently used sets go; with a traced file newer than the process, or the
    cache off, nothing is read or written."""
    config = build({"d": 42, "n_st": 6, "m": 3, "steps": 5, "n_test": 20, "log_points": 2})
    shape, params = Shape.of(config), stack_params([(config, 0), (config, 1)])
    with stored(tmp_path):
        compile_programs(shape, params)
        (entry,) = (tmp_path / SUBFOLDER).iterdir()
        whole = entry.read_bytes()
        entry.write_bytes(whole[: len(whole) // 2])
        _as_new_process()
        traced = TRACES[shape]
        compile_programs(shape, params)
        assert TRACES[shape] == traced + 1
        assert entry.read_bytes() != whole[: len(whole) // 2] and entry.stat().st_size > 0
        # room for one set of this size, not two: the older one goes
        monkeypatch.setattr(executables, "MAX_BYTES", entry.stat().st_size * 3 // 2)
        other = dataclasses.replace(shape, steps=6)
        compile_programs(other, params)
        assert [p.name for p in (tmp_path / SUBFOLDER).iterdir()] == [key(other, params)]
        monkeypatch.setattr(executables, "_STARTED", 0.0)  # the files changed since it started
        assert executables.folder() is None
    with kept_in(None), kept_whole():
        assert executables.folder() is None
        third = dataclasses.replace(shape, steps=7)
        assert _compiles(lambda: compile_programs(third, params))[1] == 3
    assert [p.name for p in (tmp_path / SUBFOLDER).iterdir()] == [key(other, params)]


KEY_SCRIPT = """
from w2sjax.config.settings import build
from w2sjax.engine.batch import Shape, stack_params
from w2sjax.engine.executables import inputs_key, key
config = build({"d": 40, "n_st": 6, "m": 3, "steps": 5, "n_test": 20, "log_points": 2})
print(key(inputs_key(Shape.of(config), (stack_params([(config, 0), (config, 1)]), None))))
"""


def test_the_key_is_the_same_in_another_process():
    """A new process, another hash seed: the same key as this process's; the control, a process
    with other XLA_FLAGS, has another."""
    config = build({"d": 40, "n_st": 6, "m": 3, "steps": 5, "n_test": 20, "log_points": 2})
    here = key(Shape.of(config), stack_params([(config, 0), (config, 1)]))

    def keyed(seed: str, **env: str) -> str:
        environ = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": seed, **env}
        run = subprocess.run(
            [sys.executable, "-c", KEY_SCRIPT], env=environ, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout.strip()

    assert keyed("1") == keyed("2") == here
    flags = os.environ.get("XLA_FLAGS", "")
    assert keyed("1", XLA_FLAGS=f"{flags} --xla_cpu_use_fusion_emitters=false") != here


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="a host callback on the CPU only")
def test_a_set_with_a_host_callback_runs_and_is_not_kept(tmp_path):
    """Dense Adam's `begin` solves its Gram matrices on the host on the CPU: its set runs, and no
    file is written (a Python callback cannot be kept)."""
    config = build(
        {"d": 40, "n_st": 6, "m": 3, "steps": 4, "n_test": 20, "log_points": 2, "eta": 0.01}
        | {"optimizer": "adam"}
    )
    shape = Shape.of(config)
    assert shape.form == "dense"
    with stored(tmp_path):
        per_run, _ = simulate(shape, stack_params([(config, 0), (config, 1)]))
        assert not (tmp_path / SUBFOLDER).exists() or not any((tmp_path / SUBFOLDER).iterdir())
    assert np.isfinite(per_run["weak_test_acc"]).all()


def key(shape: Shape, params) -> str:
    """The store's key of `shape`'s set for `params` (synthetic: no images)."""
    return executables.key(executables.inputs_key(shape, (params, None)))


def test_a_held_set_runs_while_another_thread_fetches_one(tmp_path):
    """A chunk's call of a set this process holds never waits for the lock a missing set is
    fetched under (the compile-ahead thread may hold it for seconds); the control, a set in the
    store but not held, which would load in a fraction of a second, waits for it."""
    config = build({"d": 43, "n_st": 6, "m": 3, "steps": 5, "n_test": 20, "log_points": 2})
    shape, params = Shape.of(config), stack_params([(config, 0), (config, 1)])
    other = dataclasses.replace(shape, steps=6)
    with stored(tmp_path):
        compile_programs(other, params)
        forget()
        simulate(shape, params)
        traced = TRACES[other]
        fetching = simulate_module._lock(executables.inputs_key(other, (params, None)))
        with ThreadPoolExecutor(1) as pool, fetching:
            assert pool.submit(simulate, shape, params).result(timeout=120)
            missing = pool.submit(compile_programs, other, params)
            assert not wait([missing], timeout=2.0).done
        missing.result(timeout=120)
        assert TRACES[other] == traced  # loaded from the store, once the lock was free


def test_the_python_api_keeps_no_sets_and_the_program_does(tmp_path, sweep_file):
    """Outside the `w2sjax` program a notebook may have replaced engine code at run time, so
    `w2sjax.run` compiles through jax's cache alone and writes no set; the program writes its
    buckets' sets, and its next run into a new folder traces nothing."""
    api = EngineOptions(cache=str(tmp_path / "api"))
    w2sjax.run(sweep_file, out=tmp_path / "o", quiet=True, options=api)
    assert list((tmp_path / "api").glob("*/*")) and not list(
        (tmp_path / "api").glob(f"*/{SUBFOLDER}")
    )
    cache = ("--cache", str(tmp_path / "cache"))
    finish(cli("sweep", str(sweep_file), "--out", str(tmp_path / "a"), "--quiet", *cache))
    assert list((tmp_path / "cache").glob(f"*/{SUBFOLDER}/*"))
    again = cli(
        "sweep", str(sweep_file), "--out", str(tmp_path / "b"), "--quiet", *cache,
        env={"JAX_LOG_COMPILES": "1"},
    )  # fmt: skip
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-2000:]
    assert not [name for name in ("_begin", "_advance", "_look") if name in err]  # not traced


def test_the_key_follows_the_traced_files(tmp_path, monkeypatch):
    """One byte changed in an engine file is another key; a hidden file (an editor's lock link)
    is not read."""
    for stage in executables.TRACED:
        shutil.copytree(executables.PACKAGE / stage, tmp_path / stage)
    monkeypatch.setattr(executables, "PACKAGE", tmp_path)
    config = build({"d": 40, "n_st": 6, "m": 3, "steps": 5, "n_test": 20, "log_points": 2})
    shape, params = Shape.of(config), stack_params([(config, 0), (config, 1)])

    def fresh_key() -> str:
        executables._fixed_digest.cache_clear()
        return key(shape, params)

    try:
        base = fresh_key()
        (tmp_path / "engine" / ".#train.py").symlink_to(tmp_path / "nowhere")
        assert fresh_key() == base
        train = tmp_path / "engine" / "train.py"
        train.write_bytes(train.read_bytes() + b"\n")
        assert fresh_key() != base
    finally:
        monkeypatch.undo()
        executables._fixed_digest.cache_clear()
