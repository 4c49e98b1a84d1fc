"""Stage 3, tables: a dataset on disk, its parquet tables, and the guarantees around them.

- layout.py: where a dataset's files live and which names belong to w2sjax (jax-free).
- lock.py: one writer per dataset (`DatasetLock`, flock on `.<name>.lock`).
- durable.py: writing so that a power cut cannot take back a commit (fsync, new folders).
- store.py: a chunk's tables (runs, steps, filters) and their atomic commit.
- integrity.py: which chunks are whole and which files are damaged or stray (reads only).
- damage.py: what is done about damage (quarantine, refusal).
- reading.py: `load` and `read_table`: committed chunks only, as pandas.
- check.py: `w2sjax check DIR [--repair]`.
"""

from w2sjax._lazy import exports

__getattr__, __dir__ = exports(
    __name__,
    {
        "DatasetRefused": "layout",
        "DatasetLock": "lock",
        "LockHeld": "lock",
        "DamagedDataset": "damage",
        "load": "reading",
        "read_table": "reading",
        "provenance": "reading",
        "inspect": "integrity",
    },
)
