"""Nothing lost: one writer per dataset, damaged parts found and recomputed, safe --fresh and names.

Each damage is done to a copy of one pristine dataset (6 chunks of 2 runs, with the filters table);
a resume must give back tables equal, bit for bit, to the pristine ones (same chunk size, same
compiled program)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import SWEEP_TEXT, assert_same_tables, cli, finish

import w2sjax
import w2sjax.tables.store as store
from w2sjax.cli.main import main
from w2sjax.config.grid import load_sweep
from w2sjax.config.options import EngineOptions
from w2sjax.sweep.execution import execute
from w2sjax.tables.damage import DamagedDataset
from w2sjax.tables.integrity import inspect
from w2sjax.tables.layout import TABLES, deleting_path, lock_path, parts
from w2sjax.tables.lock import DatasetLock, LockHeld
from w2sjax.tables.reading import read_table
from w2sjax.tables.store import SpecMismatch

CHUNK = 2  # runs per chunk: 12 runs, 6 chunks


def _sweep(tmp_path, **overrides):
    path = tmp_path / "sw.toml"
    path.write_text(SWEEP_TEXT)
    return load_sweep(path, overrides)


def _resume(sweep, out):
    return execute(sweep, out, EngineOptions(max_chunk=CHUNK, filters=True), quiet=True)


def _filters(root) -> pd.DataFrame:
    return read_table(root, "filters").sort_values(["run_id", "step", "j", "r"], ignore_index=True)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """An undamaged dataset with filters, and its sweep."""
    tmp = tmp_path_factory.mktemp("pristine")
    sweep = _sweep(tmp)
    _resume(sweep, tmp / "out")
    return sweep, tmp / "out" / "sw"


@pytest.fixture
def copy(pristine, tmp_path):
    """A fresh copy of the pristine dataset: (sweep, root)."""
    sweep, root = pristine
    shutil.copytree(root, tmp_path / "out" / "sw")
    return sweep, tmp_path / "out" / "sw"


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path):
    path.write_text("not a parquet file\n")


def _rows(keep):
    """Rewrite a part with only its rows [:keep(n)]: footer, schema and spec record intact."""

    def harm(path):
        table = pq.read_table(path)
        pq.write_table(table.slice(0, keep(table.num_rows)), path, write_page_checksum=True)

    return harm


def _spec_byte(path):
    """One byte of the spec recorded in the footer (which has no checksum) turned to 0xff."""
    data = bytearray(path.read_bytes())
    data[data.index(b'name = "sw"') + 8] = 0xFF
    path.write_bytes(bytes(data))


def _folder(path):
    path.unlink()
    path.mkdir()  # an empty folder where the part belongs


DAMAGES = {  # name: (table of the damaged part, harm, tables whose parts quarantine then holds)
    "runs-truncated": ("runs", _truncate, TABLES),
    "runs-garbage": ("runs", _garbage, TABLES),
    "runs-no-rows": ("runs", _rows(lambda n: 0), TABLES),
    "runs-spec-byte": ("runs", _spec_byte, TABLES),
    "steps-truncated": ("steps", _truncate, TABLES),
    "steps-garbage": ("steps", _garbage, TABLES),
    "steps-a-row-short": ("steps", _rows(lambda n: n - 1), TABLES),
    "steps-missing": ("steps", lambda path: path.unlink(), ("runs", "filters")),
    "steps-a-folder": ("steps", _folder, TABLES),
    "filters-truncated": ("filters", _truncate, TABLES),
    "filters-garbage": ("filters", _garbage, TABLES),
    "filters-a-row-short": ("filters", _rows(lambda n: n - 1), TABLES),
    "filters-missing": ("filters", lambda path: path.unlink(), ("runs", "steps")),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_part_is_named_quarantined_and_its_chunk_recomputed(
    damage, copy, pristine, capsys
):
    sweep, root = copy
    table, harm, moved_tables = DAMAGES[damage]
    victim = parts(root, table)[1]
    harm(victim)
    rel = victim.relative_to(root)

    with pytest.raises(DamagedDataset) as info:  # readers name the file and the repair
        w2sjax.load(root)
    message = str(info.value)
    assert "\n" not in message and str(root / rel) in message and "check" in message
    assert main(["report", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(rel) in err and "--repair" in err

    summary = _resume(sweep, root.parent)
    assert (summary.ran, summary.skipped) == (CHUNK, 12 - CHUNK)  # exactly the damaged chunk
    assert "1 damaged chunk(s)" in capsys.readouterr().err
    assert_same_tables(w2sjax.load(root), w2sjax.load(pristine[1]), exact=True)
    pd.testing.assert_frame_equal(_filters(root), _filters(pristine[1]))
    moved = {p.parts[-3] for p in (root / "quarantine").rglob(victim.name)}
    assert moved == set(moved_tables)  # the chunk's parts, all of them, kept for inspection
    assert main(["check", str(root)]) == 0


def test_a_damaged_page_behind_a_sound_footer_is_found_by_readers_and_check(copy, pristine, capsys):
    sweep, root = copy
    victim = parts(root, "steps")[2]
    meta = pq.ParquetFile(victim).metadata
    column = meta.row_group(0).column(meta.schema.names.index("test_acc"))
    data = bytearray(victim.read_bytes())
    data[column.data_page_offset + column.total_compressed_size - 3] ^= 0xFF  # inside a page
    victim.write_bytes(bytes(data))
    assert inspect(root).clean  # the cheap check reads footers only
    with pytest.raises(DamagedDataset, match=victim.name):  # the page checksum catches it
        w2sjax.load(root)
    assert main(["check", str(root)]) == 1 and victim.name in capsys.readouterr().out
    assert main(["check", str(root), "--repair"]) == 0
    assert _resume(sweep, root.parent).ran == CHUNK
    assert_same_tables(w2sjax.load(root), w2sjax.load(pristine[1]), exact=True)


def test_stray_entries_are_quarantined_hidden_ones_ignored(copy, pristine, capsys):
    sweep, root = copy
    bucket = parts(root, "steps")[0].parent
    strays = [root / "runs" / "notes.txt", bucket / "part-x.csv", root / "filters" / "junk" / "a"]
    for path in strays:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine\n")
    (root / "my_analysis.txt").write_text("not a table file\n")
    for hidden in (root / "runs" / ".DS_Store", bucket / ".nfs0001", bucket / "_SUCCESS"):
        hidden.write_text("the file system's or another tool's, never w2sjax's to move")
    with pytest.raises(DamagedDataset, match="not a"):
        w2sjax.load(root)
    summary = _resume(sweep, root.parent)
    assert summary.ran == 0 and "0 damaged chunk(s) and 3 stray file(s)" in capsys.readouterr().err
    assert not any(p.exists() for p in strays) and (root / "my_analysis.txt").exists()
    assert (bucket / ".nfs0001").exists() and (root / "runs" / ".DS_Store").exists()
    assert_same_tables(w2sjax.load(root), w2sjax.load(pristine[1]), exact=True)


@pytest.mark.parametrize("damage", [b"", b"\xff\xfe not text", b'name = "sw"\n[data\n'])
def test_a_damaged_spec_toml_is_restored_from_the_parts(damage, copy, pristine, capsys):
    sweep, root = copy
    original = (root / "spec.toml").read_text()
    (root / "spec.toml").write_bytes(damage)
    assert main(["check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "spec.toml is damaged" in out and "--repair restores it" in out
    assert "\ndamaged: " not in out  # the parts are sound: none is called another spec's
    assert main(["check", str(root), "--repair"]) == 0
    assert (root / "spec.toml").read_text() == original
    (root / "spec.toml").write_bytes(damage)  # a resume restores it too, recomputing nothing
    assert _resume(sweep, root.parent).ran == 0
    assert "was damaged" in capsys.readouterr().err
    assert (root / "spec.toml").read_text() == original
    (root / "spec.toml").write_bytes(damage)  # but not for a sweep its parts do not record
    with pytest.raises(SpecMismatch, match="damaged"):
        _resume(_sweep(root.parent, eta=0.7), root.parent)


def test_parts_of_another_spec_or_repeated_runs_are_damage(copy, pristine, tmp_path):
    sweep, root = copy
    again = parts(root, "runs")[0]
    other = _sweep(tmp_path, eta=0.7)
    _resume(other, tmp_path / "other")
    foreign = parts(tmp_path / "other" / "sw", "runs")[0]
    for table in ("runs", "steps"):  # a whole chunk of another sweep copied in
        source = foreign.parent.parent.parent / table / foreign.parent.name / foreign.name
        target = root / table / foreign.parent.name / foreign.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    for table in TABLES:  # and a committed chunk repeated under another chunk id
        source = root / table / again.parent.name / again.name
        shutil.copy(source, source.with_name("part-0000000000000000.parquet"))
    found = inspect(root)
    reasons = sorted(f.reason for f in found.damaged)
    assert len(reasons) == 2 and "another spec" in reasons[1] and "repeats run" in reasons[0]
    assert _resume(sweep, root.parent).ran == 0
    assert_same_tables(w2sjax.load(root), w2sjax.load(pristine[1]), exact=True)


def test_check_reports_repairs_and_the_sweep_recomputes_exactly_those_runs(copy, capsys):
    sweep, root = copy
    assert main(["check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "6 whole chunk(s) with 12 run(s) of the 12 in spec.toml" in out and "clean" in out
    _garbage(parts(root, "steps")[0])
    parts(root, "runs")[3].unlink()  # an uncommitted chunk, as a kill leaves it: not damage
    (root / "runs" / "stray.txt").write_text("x")
    assert main(["check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "4 whole chunk(s) with 8 run(s)" in out and "damaged: steps/" in out
    assert "stray: runs/stray.txt" in out and "chunks never committed" in out
    assert "--repair" in out.splitlines()[-1]
    assert main(["check", str(root), "--repair"]) == 0
    out = capsys.readouterr().out
    assert "moved to" in out and out.splitlines()[-1] == "clean"
    assert main(["check", str(root)]) == 0  # quarantine/ is the project's own, not stray
    summary = _resume(sweep, root.parent)
    assert summary.ran == 2 * CHUNK  # the damaged chunk and the uncommitted one
    assert main(["check", str(root)]) == 0


def test_check_while_a_writer_holds_the_lock(copy, capsys, monkeypatch):
    _, root = copy
    in_flight = root / "steps" / parts(root, "steps")[0].parent.name / "part-inflight.parquet"
    in_flight.write_text("half written")  # a chunk in flight: its runs part comes last
    (root.parent / "link").symlink_to(root)
    with DatasetLock(root):
        for spelling in (str(root), str(root.parent / "link"), "."):  # one lock, any spelling
            monkeypatch.chdir(root)
            assert main(["check", spelling]) == 0
            out = capsys.readouterr().out
            assert f"being written by pid {os.getpid()}" in out and "1 file(s) of chunks" in out
            assert main(["check", spelling, "--repair"]) == 2
            assert "being written by" in capsys.readouterr().err
    assert in_flight.exists() and not (root / "..lock").exists()
    assert main(["check", "/nonexistent/sw"]) == 2
    assert "not a w2sjax dataset" in capsys.readouterr().err


def test_the_lock_names_its_holder_and_takes_over_only_what_it_can_check(tmp_path, capsys):
    root = tmp_path / "sw"
    with DatasetLock(root, wait_s=0.0):
        holder = json.loads(lock_path(root).read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(LockHeld) as info:
            DatasetLock(root, wait_s=0.0).__enter__()
        assert f"pid {os.getpid()} on {holder['host']} since {holder['since']}" in str(info.value)
        with pytest.raises(LockHeld):  # a reader asking whether a writer is at work learns it
            DatasetLock(root, shared=True, wait_s=0.0).__enter__()
    assert lock_path(root).read_text() == ""  # released cleanly: no holder left behind
    since = "2026-01-01T00:00:00Z"
    records = {  # a record left behind: which a writer on this host may take over
        "dead": ({"pid": 2**22 + 12345, "host": holder["host"], "since": since}, "no longer"),
        "alive, lock free": (
            {"pid": os.getppid(), "host": holder["host"], "since": since},
            "does not hold it",
        ),
        "another host": ({"pid": 77, "host": "node-elsewhere", "since": since}, None),
        "garbage": ({"pid": "77", "host": 3}, ""),
    }
    for record, notice in records.values():
        lock_path(root).write_text(json.dumps(record))
        if notice is None:
            with pytest.raises(LockHeld, match="cannot check; if that process is gone, delete"):
                DatasetLock(root, wait_s=0.0).__enter__()
            continue
        with DatasetLock(root, wait_s=0.0):
            pass
        err = capsys.readouterr().err
        if notice:
            assert f"taking over the lock of {root} left by pid {record['pid']}" in err
            assert notice in err and len(err.strip().splitlines()) == 1
        else:
            assert err == ""
    (tmp_path / "notes.txt").write_text("mine")
    lock_path(root).unlink()
    lock_path(root).symlink_to(tmp_path / "notes.txt")
    with pytest.raises(OSError):  # a lock file planted as a link truncates nothing
        DatasetLock(root, wait_s=0.0).__enter__()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_without_file_system_locks_the_record_decides(tmp_path, monkeypatch, capsys):
    import errno
    import fcntl

    def no_locks(fd, mode):
        raise OSError(errno.ENOLCK, "No locks available")

    root = tmp_path / "sw"
    monkeypatch.setattr(fcntl, "flock", no_locks)
    with DatasetLock(root, wait_s=0.0):
        with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
            DatasetLock(root, wait_s=0.0).__enter__()
    capsys.readouterr()
    dead = {"pid": 2**22 + 12345, "host": socket.gethostname(), "since": "2026-01-01T00:00:00Z"}
    lock_path(root).write_text(json.dumps(dead))
    with DatasetLock(root, wait_s=0.0):
        pass
    err = capsys.readouterr().err
    assert f"left by pid {dead['pid']}" in err and "refuses locks" in err


def test_a_dataset_named_like_a_deletion_is_left_alone(tmp_path, capsys):
    spec = tmp_path / "sw.toml"
    spec.write_text(SWEEP_TEXT)  # as the session's reference sweep: its programs are compiled
    out = tmp_path / "out"
    assert (
        main(["sweep", str(spec), "--out", str(out), "--quiet", "--set", 'name="sw.deleting-1"'])
        == 0
    )
    assert main(["sweep", str(spec), "--out", str(out), "--quiet"]) == 0
    assert "removing" not in capsys.readouterr().err
    assert (out / ".sw.deleting-1.lock").exists() and (out / "sw.deleting-1" / "runs").is_dir()


def test_bench_keep_refuses_a_dataset_another_writer_holds(tmp_path, capsys):
    spec = tmp_path / "sw.toml"
    spec.write_text(SWEEP_TEXT)
    keep = tmp_path / "keep"
    with DatasetLock(keep / "sw"):
        args = ["bench", "--sizes", "none", "--no-torch", "--sweep", str(spec), "--seeds", "1"]
        assert main([*args, "--keep", str(keep), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "being written by" in err


def test_a_second_writer_is_refused_and_the_first_completes(tmp_path, reference, capsys):
    spec = tmp_path / "sw.toml"
    spec.write_text(SWEEP_TEXT)
    args = ["sweep", str(spec), "--out", str(tmp_path / "out"), "--quiet", "--max-chunk", "1"]
    first = cli(*args)
    lock = lock_path(tmp_path / "out" / "sw")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        if lock.exists() and lock.read_text():
            break
        time.sleep(0.01)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"being written by pid {first.pid}" in err
    finish(first)
    assert_same_tables(w2sjax.load(tmp_path / "out" / "sw"), reference)


@pytest.mark.parametrize("name", [".", "..", ".x"])
@pytest.mark.parametrize("fresh", [False, True])
def test_names_that_are_not_one_folder_are_refused(name, fresh, tmp_path, capsys):
    out = tmp_path / "scratch" / "out"
    out.mkdir(parents=True)
    (tmp_path / "scratch" / "sibling.txt").write_text("keep me")
    (out / "other").mkdir()
    spec = tmp_path / "sw.toml"
    spec.write_text(SWEEP_TEXT.replace('name = "sw"', f'name = "{name}"'))
    args = ["sweep", str(spec), "--out", str(out), "--quiet", *(["--fresh"] if fresh else [])]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("w2sjax: error: name:")
    assert (tmp_path / "scratch" / "sibling.txt").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["other"]


def test_fresh_deletes_only_a_w2sjax_dataset_inside_out(tmp_path, capsys):
    spec = tmp_path / "sw.toml"
    spec.write_text(SWEEP_TEXT.replace("seeds = 3", "seeds = 1"))
    out = tmp_path / "out"
    (out / "sw").mkdir(parents=True)
    (out / "sw" / "thesis.tex").write_text("years of work")
    args = ["sweep", str(spec), "--out", str(out), "--quiet", "--fresh"]
    assert main(args) == 2
    assert "holds no w2sjax spec.toml" in capsys.readouterr().err
    assert (out / "sw" / "thesis.tex").exists()
    (out / "sw" / "thesis.tex").rename(tmp_path / "thesis.tex")
    (out / "sw").rmdir()
    (out / "sw").symlink_to(tmp_path)  # a link out of --out is not deleted either
    assert main(args) == 2
    assert "not a folder inside" in capsys.readouterr().err
    (out / "sw").unlink()
    (out / "sw").mkdir()  # an empty folder simply proceeds
    assert main(args) == 0


def test_a_kill_during_fresh_leaves_no_old_part_and_the_rerun_finishes(
    tmp_path, reference, monkeypatch
):
    old = _sweep(tmp_path, eta=0.7)
    execute(old, tmp_path / "out", quiet=True)
    real_rmtree = shutil.rmtree

    def killed(path, *args, **kwargs):  # the process dies with the old folder renamed aside
        raise KeyboardInterrupt

    monkeypatch.setattr(store.shutil, "rmtree", killed)
    new = _sweep(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        execute(new, tmp_path / "out", quiet=True, fresh=True)
    root = tmp_path / "out" / "sw"
    assert not root.exists() and deleting_path(root, os.getpid()).is_dir()
    monkeypatch.setattr(store.shutil, "rmtree", real_rmtree)
    assert execute(new, tmp_path / "out", quiet=True, fresh=True).ran == 12
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".sw.lock", "sw"]
    assert_same_tables(w2sjax.load(root), reference)


def _io_log(monkeypatch, refuse_folders: bool = False) -> list[tuple[str, ...]]:
    """Every os.fsync ("fsync", path) and os.replace ("replace", src, dst), in order; with
    `refuse_folders`, a folder's fsync fails as on file systems that cannot flush one (EINVAL)."""
    import errno

    events: list[tuple[str, ...]] = []
    fsync, replace = os.fsync, os.replace

    def logged_fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        events.append(("fsync", path))
        if refuse_folders and Path(path).is_dir():
            raise OSError(errno.EINVAL, "Invalid argument")
        fsync(fd)

    def logged_replace(src, dst) -> None:
        events.append(("replace", str(src), str(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", logged_fsync)
    monkeypatch.setattr(os, "replace", logged_replace)
    return events


def _flushed(events: list[tuple[str, ...]]) -> list[str]:
    return [e[1] for e in events if e[0] == "fsync"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names an fd through /proc")
def test_each_part_is_flushed_before_its_commit_rename_and_its_folder_after(tmp_path, monkeypatch):
    """A power cut costs at most the chunk in flight: every part (and every new folder) is on
    disk before the runs part, the chunk's commit, is renamed into place, and that rename is
    flushed in its folder before write_chunk returns."""
    events = _io_log(monkeypatch)
    table = pd.DataFrame({"run_id": ["a", "b"], "step": [0, 1]})
    root = tmp_path / "ds"
    store.write_chunk(root, "b0", "c0", {"runs": table, "steps": table}, {})
    flushed = _flushed(events)
    renames = [e for e in events if e[0] == "replace"]
    assert [Path(dst).parts[-3] for _, _, dst in renames] == ["steps", "runs"]  # runs last
    for _, src, dst in renames:
        at = events.index(("replace", src, dst))
        assert ("fsync", src) in events[:at]  # the part's bytes, before the rename
        assert ("fsync", str(Path(dst).parent)) in events[at:]  # the rename, after it
    commit = events.index(renames[-1])
    for folder in (root, root / "steps", root / "steps" / "bucket=b0"):
        assert ("fsync", str(folder.parent)) in events[:commit]  # each new folder's name
    assert len(flushed) == len(events) - len(renames)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names an fd through /proc")
def test_a_new_dataset_and_its_output_folder_are_flushed_in_their_parents(tmp_path, monkeypatch):
    from w2sjax.sweep.dataset import set_up

    events = _io_log(monkeypatch)
    out = tmp_path / "new" / "out"
    with DatasetLock(out / "ds"):
        set_up(out / "ds", 'name = "ds"\n', fresh=False, filters=False)
    flushed = _flushed(events)
    for folder in (tmp_path / "new", out, out / "ds"):
        assert str(folder.parent) in flushed, folder  # its name, in its parent
    spec_tmp = str(out / "ds" / ".spec.toml.tmp-")
    assert any(p.startswith(spec_tmp) for p in flushed)  # spec.toml's bytes, before its rename


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names an fd through /proc")
def test_a_file_system_that_cannot_flush_folders_still_takes_commits(tmp_path, monkeypatch):
    import errno

    events = _io_log(monkeypatch, refuse_folders=True)
    table = pd.DataFrame({"run_id": ["a"], "step": [0]})
    store.write_chunk(tmp_path / "ds", "b0", "c0", {"runs": table, "steps": table}, {})
    assert (tmp_path / "ds" / "runs" / "bucket=b0" / "part-c0.parquet").is_file()
    assert any(Path(p).is_dir() for p in _flushed(events))  # it tried

    def failing(fd: int) -> None:  # a file's fsync failing is a real error, never ignored
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError, match="Input/output"):
        store.write_chunk(tmp_path / "ds", "b0", "c1", {"runs": table}, {})
