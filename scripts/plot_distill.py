#!/usr/bin/python3
"""Plots held-out cross-entropy against training steps from tinyllama_distill's --csv files.

    /usr/bin/python3 scripts/plot_distill.py OUT.png LABEL=run.csv [LABEL=run.csv ...]

Each CSV has the columns step, seconds, train_loss, heldout_ce (empty where not evaluated).
Horizontal lines mark the FP32 model, plain SVID and the best layer-wise distillation of
docs/results.md's tiny-Llama table.
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    steps, ce = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["heldout_ce"]:
                steps.append(int(row["step"]))
                ce.append(float(row["heldout_ce"]))
    return steps, ce


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    out = argv[1]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for spec in argv[2:]:
        label, _, path = spec.partition("=")
        steps, ce = read(path)
        ax.plot(steps, ce, marker=".", label=label)
    for value, name, style in ((1.2588, "FP32", ":"), (7.0984, "1-bit SVID", "--"),
                               (4.2824, "best layer-wise distillation", "-.")):
        ax.axhline(value, color="gray", linestyle=style, linewidth=1)
        ax.text(ax.get_xlim()[1], value, " " + name, va="center", fontsize=8, color="gray")
    ax.axhline(3.0, color="red", linestyle=":", linewidth=1)
    ax.set_ylim(0, 8)
    ax.set_xlabel("training step (8 teacher-sampled sequences each)")
    ax.set_ylabel("held-out cross-entropy (nats/token)")
    ax.set_title("stories260K, all 35 linear layers 1-bit: OneBit knowledge transfer")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv)
