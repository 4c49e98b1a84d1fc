"""w2sjax: vectorized JAX simulations of weak-to-strong generalization (docs/MODEL.md says what
it simulates). The public API, everything else may change:

- `run(spec, *, overrides, out, seeds, fresh, quiet, options)`: run a sweep (a path, TOML text
  or a mapping) into <out>/<name>/ with the command line's checks, lock, resume and integrity
  guarantees; returns its Dataset.
- `load(path)`: a dataset as a `Dataset` (runs, steps, filters, spec, summary(), report(),
  to_xarray()); `runs, steps = w2sjax.load(path)` unpacks it.
- `EngineOptions`, `Distributed`: how the engine computes (form, precision, noise sampler,
  filters table, chunk and memory limits, several processes).
- `ConfigError`, `DatasetRefused`, `DamagedDataset`, `OutOfMemory`: what goes wrong, each with
  the command line's one-line message.

Names load lazily, so `import w2sjax` stays fast and jax-free.
"""

from w2sjax._lazy import exports

__version__ = "0.6.6"

_NAMES = {
    "run": "api.runner",
    "load": "api.dataset",
    "Dataset": "api.dataset",
    "EngineOptions": "config.options",
    "Distributed": "config.options",
    "ConfigError": "config.fields",
    "DatasetRefused": "tables.layout",
    "DamagedDataset": "tables.damage",
    "OutOfMemory": "sweep.execution",
}
__getattr__, __dir__ = exports(__name__, _NAMES)
__all__ = ["__version__", *_NAMES]
