"""Stage 1, config: what a run and a sweep are, checked before any compute (jax-free).

- fields.py: the field table (FIELDS), the choices each field takes, one field's check, ConfigError.
- formulas.py: numeric fields given as formulas of other fields, a safe evaluator.
- toml.py: TOML and `--set` text to flat {field: value} and back.
- sources.py: the image sources (`SOURCES`: digits, npz), read and checked (numpy only).
- settings.py: `Config` built from flat fields, checked across fields and hashed; engine checks.
- grid.py: sweep files ([grid], [zip]) expanded into validated grid points (`Sweep`).
"""

from w2sjax._lazy import exports

__getattr__, __dir__ = exports(
    __name__,
    {
        "FIELDS": "fields",
        "ConfigError": "fields",
        "Config": "settings",
        "build": "settings",
        "Sweep": "grid",
        "load_sweep": "grid",
        "sweep_from": "grid",
    },
)
