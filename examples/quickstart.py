# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # w2sjax from Python: a phase diagram, its boundary, and learning curves
#
# A weak linear-CNN teacher labels data with easy and hard signals; a two-layer ReLU-CNN student
# trains on those pseudo-labels (docs/MODEL.md). Theorem 3.4 says the student overfits benignly,
# learning the hard signal the teacher cannot see, once benign_snr = n_st p_b^2 ||nu||^4 /
# (sigma_p^4 d) passes a constant. This notebook runs a small (n_st x p_b) sweep in the setting of
# docs/BOUNDARY.md's measurements (d = 10^6, data-scarce, the coin control), then reads the phase
# diagram, fits its boundary and draws learning curves by category. About a minute on 2 CPU
# cores.
#
# It is a percent-format script: Jupyter (with jupytext), VS Code and PyCharm open it as a
# notebook, and `python examples/quickstart.py` runs it whole.

# %%
import matplotlib.pyplot as plt
import numpy as np

import w2sjax

SPEC = """
name = "quickstart"
seeds = 3

[data]
d = 1000000
p_e = "rest"
p_h = 0.3
mu_norm = 21.3
nu_norm = 17.8

[weak]
teacher = "clean"    # the true labels, with fair coins on hard-only samples:
hard_labels = "coin" # the teacher of Proposition 2.1, at chance where only nu is present

[strong]
m = 10
sigma_0 = "0.1 / (sigma_p * d^0.5)"          # formulas hold at every grid point
eta = "0.5 * n_st * m / (sigma_p^2 * d)"
steps = 300

[eval]
n_test = 500
n_val = 100
log_points = 12

[grid]
n_st = [128, 512, 2048]
p_b = [0.2, 0.4, 0.6]
"""

# %% [markdown]
# ## Run the sweep
# `w2sjax.run` takes a file, TOML text or a dict. It checks every grid point before any compute,
# writes `results/quickstart/` (parquet tables, resumable: running this cell again writes
# nothing) and returns the dataset.

# %%
data = w2sjax.run(SPEC, quiet=True)
print(data)
runs, steps = data  # pandas: one row per run; one row per run and logged step

# %% [markdown]
# ## The phase diagram
# Final hard-only test accuracy, Theorem 3.4's order parameter, as a seed mean per grid point
# (`summary()` is the table `w2sjax report` writes, with 95% intervals and the regime).

# %%
table = data.summary()
print(table[["n_st", "p_b", "final_test_acc_hard", "final_test_acc_hard_lo", "regime"]])
grid = table.pivot(index="p_b", columns="n_st", values="final_test_acc_hard")
fig, ax = plt.subplots(figsize=(4.5, 3.5))
image = ax.imshow(grid.to_numpy(), origin="lower", vmin=0.5, vmax=1.0, cmap="viridis")
ax.set_xticks(range(grid.shape[1]), grid.columns)
ax.set_yticks(range(grid.shape[0]), grid.index)
ax.set_xlabel("n_st")
ax.set_ylabel("p_b")
fig.colorbar(image, label="final hard-only test accuracy")
plt.show()

# %% [markdown]
# ## The boundary
# For each p_b, the n_st where the seed-mean final hard-only accuracy crosses 0.85 (interpolated
# in log n_st), and the log-log slope of that n_crit against p_b: Theorem 3.4 says -2.
# `w2sjax boundary` finds such a boundary by bisection instead, with bootstrap intervals over
# many more seeds (docs/BOUNDARY.md measured -1.74 [-1.97, -1.32] in this setting).

# %%
n_crit = {}
for p_b, row in table.groupby("p_b"):
    hard, n_st = row.final_test_acc_hard.to_numpy(), row.n_st.to_numpy()
    if hard.min() < 0.85 <= hard.max():  # np.interp needs the rising order it has here
        n_crit[p_b] = float(np.exp(np.interp(0.85, hard, np.log(n_st))))
print({p_b: round(n) for p_b, n in n_crit.items()})
slope = np.polyfit(np.log(list(n_crit)), np.log(list(n_crit.values())), 1)[0]
print(f"n_crit ~ p_b^{slope:.2f} (theory: p_b^-2)")

# %% [markdown]
# ## Learning curves by category
# Test accuracy on easy-only, hard-only and both-signal samples against the step, seed means at
# p_b = 0.4: the easy signal is learned at every n_st; the hard one only where n_st is large
# enough.

# %%
at = steps.merge(runs[["run_id", "n_st", "p_b"]], on="run_id").query("p_b == 0.4")
fig, axes = plt.subplots(1, 3, figsize=(11, 3), sharey=True)
for ax, category in zip(axes, ("easy", "hard", "both"), strict=True):
    for n_st, curve in at.groupby("n_st"):
        mean = curve.groupby("step")[f"test_acc_{category}"].mean()
        ax.plot(np.maximum(mean.index, 1), mean.to_numpy(), label=f"n_st = {n_st}")
    ax.set_xscale("log")
    ax.set_title(f"{category}-only" if category != "both" else "both-signal")
    ax.set_xlabel("step")
axes[0].set_ylabel("test accuracy")
axes[0].legend()
plt.show()
