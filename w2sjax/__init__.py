"""w2sjax: vectorized JAX simulations of weak-to-strong generalization (docs/MODEL.md says
what it simulates).

`w2sjax.load(path)` reads a sweep folder into (runs, steps) DataFrames.
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy, so `import w2sjax` (and the CLI's input checks) stay fast and jax-free.
    if name == "load":
        from w2sjax.tables.reading import load

        return load
    raise AttributeError(f"module 'w2sjax' has no attribute {name!r}")
