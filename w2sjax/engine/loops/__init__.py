"""The student's training loop in its two exact forms (docs/MODEL.md sections 3 and 4), by
name (`LOOPS`, chosen by Shape.form): "dense" carries W (2, m, D) and costs 8 m n_st D FLOPs a
step; "coef" carries the coefficients (gamma, rho) and costs 4 m n_st^2 a step from a Gram matrix
computed once. Both give the same curves to float32 round-off (a test runs 1000 steps of each).
Each step is GD's increment -eta grad L_S mapped to an update by the run's optimizer
(optimizers.py); the coefficient form takes only optimizers that keep the span.

The forms are engine/loops/dense.py and engine/loops/coef.py, what they share (states, Views, Loop)
engine/loops/state.py; this registry is the one place that names them."""

from __future__ import annotations

from w2sjax.engine.loops.coef import coef_loop, coef_setup
from w2sjax.engine.loops.dense import dense_loop, dense_setup
from w2sjax.engine.loops.state import Form

LOOPS: dict[str, Form] = {
    "dense": Form(dense_setup, dense_loop),
    "coef": Form(coef_setup, coef_loop, reads_noise=False),
}
