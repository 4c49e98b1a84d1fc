"""The Python entry point (what `w2sjax/__init__.py` offers): run a sweep with the command line's
guarantees, and load a dataset as one object.

- runner.py: `run(spec, ...)`, `load_spec` (a path, TOML text or a mapping, checked jax-free).
- dataset.py: `Dataset`: runs, steps, filters, spec, summary, report, to_xarray.
"""

from w2sjax._lazy import exports

__getattr__, __dir__ = exports(
    __name__,
    {
        "run": "runner",
        "load_spec": "runner",
        "figures": "runner",
        "Dataset": "dataset",
        "load": "dataset",
    },
)
