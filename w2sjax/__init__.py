"""w2sjax: vectorized JAX simulations of weak-to-strong generalization (see SPEC.md)."""

__version__ = "0.1.0"
