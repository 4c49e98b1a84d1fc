"""Stage 2, engine: one run of docs/MODEL.md as pure jax functions, and its batched program.

- batch.py: `Shape` (static: selects the compiled program) and `Params` (dynamic: runs axis).
- data.py: the distribution of section 1 (samples as labels, category, sign and noise patch).
- draw.py: the synthetic source's draws of one run, from its key.
- threefry.py: jax's random hash lowered as straight-line code on the CPU, and `drawn_once`,
  a draw made once rather than copied into each consumer (both: faster compiles).
- images.py: the constructions (`CONSTRUCTIONS`: synthetic, planted, natural; section 9) and
  the image pool a bucket's runs share.
- noise.py: the noise samplers (`SAMPLERS`: full, reduced).
- activations.py, optimizers.py, teachers.py: registries (`ACTIVATIONS`, `OPTIMIZERS`,
  `TEACHERS`), a name mapping to a small object.
- models.py: the weak and strong models; the second layer (`SECOND_LAYERS`).
- loops/: the student's training loop in its two exact forms (`LOOPS`: dense, coef).
- projection.py: Adam's coefficients, a projection onto the span.
- metrics.py: what a run records (`STEP_METRICS`, `RUN_METRICS`).
- train.py: one run as begin (draws, the teacher's labels, the loop's setup), advance (steps)
  and look (the records), and all three in one program (`simulate_run`).
- simulate.py: `simulate(shape, params)`, those three vmapped over runs, compiled once per Shape
  and called in turn by the host.
- executables.py: a Shape's three compiled programs kept together on disk, keyed by what
  tracing reads, so that a later process neither traces nor lowers them.
- progress.py: the progress bar the host moves between calls.
- theory.py: benign_snr, abundance, PGR (section 6).
"""

from w2sjax._lazy import exports

__getattr__, __dir__ = exports(
    __name__,
    {
        "Shape": "batch",
        "Params": "batch",
        "stack_params": "batch",
        "run_id": "batch",
        "SAMPLERS": "noise",
        "ACTIVATIONS": "activations",
        "OPTIMIZERS": "optimizers",
        "TEACHERS": "teachers",
        "SECOND_LAYERS": "models",
        "CONSTRUCTIONS": "images",
        "pool_of": "images",
        "LOOPS": "loops",
        "STEP_METRICS": "metrics",
        "RUN_METRICS": "metrics",
        "draw_run": "train",
        "prepare_run": "train",
        "simulate_run": "train",
        "benign_snr": "theory",
        "abundance": "theory",
        "pgr": "theory",
    },
)
