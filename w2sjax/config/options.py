"""How the engine computes a sweep, as opposed to what it computes: one frozen record that the
command line and the Python API both hand to the sweep. None of these choices changes a run's
setting, point_hash or run_id; docs/ENGINE.md says what each does."""

from __future__ import annotations

from dataclasses import dataclass

from w2sjax.config.fields import FORMS, NOISES, PADS, PRECISIONS, ConfigError
from w2sjax.config.grid import Sweep
from w2sjax.config.settings import check_engine, check_span


def _at_least(option: str, value: object, low: int) -> None:
    """ConfigError unless `value` is None or an integer >= low (not a bool)."""
    if value is not None and (type(value) is not int or value < low):
        raise ConfigError(f"--{option}: must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class Distributed:
    """Several processes (jax.distributed.initialize): each runs its share of every bucket. With
    every field None, jax reads the SLURM or Open MPI settings itself."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    def __post_init__(self) -> None:
        if self.coordinator is not None and not isinstance(self.coordinator, str):
            raise ConfigError(f"--coordinator: must be host:port, got {self.coordinator!r}")
        _at_least("num-processes", self.num_processes, 1)
        _at_least("process-id", self.process_id, 0)


@dataclass(frozen=True)
class EngineOptions:
    """form: the GD loop's state (auto, dense, coef); precision: the noise products' (highest,
    tf32, bf16); noise: the sampler (auto, full, reduced); filters: also write the per-filter
    table; max_chunk: at most this many runs per compiled call; memory_budget: bytes a chunk may
    plan to use per device (None: 60% of a GPU, 25% of host memory); distributed: None for one
    process; cache: the folder compiled programs are kept in, or "off" (None: $W2SJAX_CACHE_DIR,
    else the user's cache folder; sweep/cache.py); compile_ahead: compile each bucket's programs
    while the one before it computes; pad: runs that differ only in their sample counts (n_st,
    n_test, n_val) share a program padded to larger counts where a cost model says it saves
    time (auto), never (off), or always, one program per group at its largest counts (max)
    (sweep/padding.py)."""

    form: str = "auto"
    precision: str = "highest"
    noise: str = "auto"
    filters: bool = False
    max_chunk: int | None = None
    memory_budget: int | None = None
    distributed: Distributed | None = None
    cache: str | None = None
    compile_ahead: bool = False
    pad: str = "auto"

    def __post_init__(self) -> None:
        if self.cache is not None and (not isinstance(self.cache, str) or not self.cache):
            raise ConfigError(f"--cache: must be a folder or 'off', got {self.cache!r}")
        for name, value, allowed in (
            ("form", self.form, FORMS),
            ("precision", self.precision, PRECISIONS),
            ("noise", self.noise, NOISES),
            ("pad", self.pad, PADS),
        ):
            if value not in allowed:
                raise ConfigError(f"--{name}: must be one of {', '.join(allowed)}, got {value!r}")
        _at_least("max-chunk", self.max_chunk, 1)
        _at_least("memory-budget", self.memory_budget, 1)
        for name, flag in (("filters", self.filters), ("compile-ahead", self.compile_ahead)):
            if type(flag) is not bool:
                raise ConfigError(f"--{name}: must be true or false, got {flag!r}")
        if self.distributed is not None and not isinstance(self.distributed, Distributed):
            raise ConfigError(
                f"distributed: must be None or a Distributed(...), got {self.distributed!r}"
            )
        check_engine(self.noise, self.precision)

    def check(self, sweep: Sweep) -> None:
        """ConfigError before anything is written where a point's optimizer leaves the span
        that form coef or noise reduced needs (settings.check_span)."""
        for config in sweep.points:
            check_span(config.optimizer, self.form, self.noise)
