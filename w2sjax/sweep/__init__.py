"""Stage 4, sweep: a sweep's runs grouped into compiled programs and written as a dataset.

- buckets.py: grid points -> buckets (runs sharing a Shape: one program) -> memory-sized chunks.
- dataset.py: the dataset folder taken under its lock and made ready before any compute.
- execution.py: `execute`: every chunk simulated, sharded over the local devices, committed.
"""

from w2sjax._lazy import exports

__getattr__, __dir__ = exports(
    __name__,
    {
        "execute": "execution",
        "Summary": "execution",
        "OutOfMemory": "execution",
        "Processes": "dataset",
    },
)
