#!/usr/bin/python3
"""Draw bench_model's JSON and print its tables (markdown, for the README).

    ./build/benchmarks/bench_model --json=build/bench_model.json
    /usr/bin/python3 benchmarks/plot_model.py build/bench_model.json [build/model.png]

Tables: tokens/s of decode (per context) and prefill for each model, weights and thread count;
the 1-bit runner against the FP16 one of the same shape; decode against the bandwidth bound;
where the time goes (share of products, attention, classifier and the rest); peak memory.
"""

import json
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        return json.load(f)


def phase_name(run):
    return f"decode @{run['context']}" if run["phase"] == "decode" else f"prefill {run['tokens']}"


def tables(data):
    ctx = data["context"]
    runs = data["runs"]
    out = [f"CPU: {ctx['cpu']} ({ctx['hardware_threads']} threads), onebit path {ctx['onebit_isa']}, "
           f"1-bit kernel {ctx['kernel']}, FP16 path {ctx['fp16_path']}.\n"]
    bw = ", ".join(f"{b['threads']} thread{'s' if b['threads'] > 1 else ''}: "
                   f"{b['bytes_per_second'] / 1e9:.1f} GB/s" for b in data["bandwidth"])
    out.append(f"Streaming read bandwidth: {bw}.\n")

    phases = list(dict.fromkeys(phase_name(r) for r in runs))
    out.append("Tokens per second (wall time).\n")
    out.append("| model | weights | threads | " + " | ".join(phases) + " |")
    out.append("|---|---|---|" + "---|" * len(phases))
    cells = defaultdict(dict)
    for r in runs:
        cells[(r["model"], r["weights"], r["threads"])][phase_name(r)] = r
    for (model, weights, threads), row in cells.items():
        vals = [f"{row[p]['tokens_per_second']:.2f}" if p in row else "" for p in phases]
        out.append(f"| {model} | {weights} | {threads} | " + " | ".join(vals) + " |")
    out.append("")

    # 1-bit against FP16, same model, threads and phase.
    ratios = []
    for (model, weights, threads), row in cells.items():
        if weights == "fp16":
            continue
        base = cells.get((model, "fp16", threads))
        if not base:
            continue
        vals = []
        for p in phases:
            if p in row and p in base:
                vals.append(f"{row[p]['tokens_per_second'] / base[p]['tokens_per_second']:.1f}x")
            else:
                vals.append("")
        ratios.append(f"| {model} | {weights} / fp16 | {threads} | " + " | ".join(vals) + " |")
    if ratios:
        out.append("1-bit against FP16 (tokens/s ratio, same run).\n")
        out.append("| model | weights | threads | " + " | ".join(phases) + " |")
        out.append("|---|---|---|" + "---|" * len(phases))
        out += ratios
        out.append("")

    out.append("Decode against the bandwidth bound (weights read per token / streaming bandwidth; "
               "the second bound adds the float KV cache a token reads).\n")
    out.append("| model | weights | threads | context | tokens/s | bound | share of bound | bound with KV |")
    out.append("|---|---|---|---|---|---|---|---|")
    for r in runs:
        if r["phase"] != "decode":
            continue
        out.append(f"| {r['model']} | {r['weights']} | {r['threads']} | {r['context']} | "
                   f"{r['tokens_per_second']:.2f} | {r['bound_tokens_per_second']:.2f} | "
                   f"{100 * r['fraction_of_bound']:.0f}% | {r['bound_with_kv_tokens_per_second']:.2f} |")
    out.append("")

    out.append("Where the time goes (share of the wall time; ms per token for decode, s for prefill).\n")
    out.append("| model | weights | threads | phase | products | attention | classifier | rest |")
    out.append("|---|---|---|---|---|---|---|---|")
    for r in runs:
        total = r["linear_seconds"] + r["attention_seconds"] + r["classifier_seconds"] + r["rest_seconds"]
        scale, unit = (1e3 / r["tokens"], "ms") if r["phase"] == "decode" else (1.0, "s")
        parts = []
        for key in ("linear_seconds", "attention_seconds", "classifier_seconds", "rest_seconds"):
            share = 100 * r[key] / total if total else 0
            parts.append(f"{share:.0f}% ({r[key] * scale:.2f} {unit})")
        out.append(f"| {r['model']} | {r['weights']} | {r['threads']} | {phase_name(r)} | " + " | ".join(parts) + " |")
    out.append("")

    out.append("| model | weights | weights (GiB) | read per token (GiB) | peak memory (GiB) | build (s) |")
    out.append("|---|---|---|---|---|---|")
    for m in data["models"]:
        out.append(f"| {m['model']} | {m['weights']} | {m['weight_bytes'] / 2**30:.2f} | "
                   f"{m['weight_bytes_per_token'] / 2**30:.2f} | {m['peak_rss_bytes'] / 2**30:.2f} | "
                   f"{m['build_seconds']:.1f} |")
    out.append("")
    return "\n".join(out)


def plot(data, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = data["runs"]
    phases = list(dict.fromkeys(phase_name(r) for r in runs))
    series = list(dict.fromkeys((r["model"], r["weights"], r["threads"]) for r in runs))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.8))
    width = 0.8 / max(1, len(series))
    for n, key in enumerate(series):
        ys = []
        for p in phases:
            match = [r for r in runs if (r["model"], r["weights"], r["threads"]) == key and phase_name(r) == p]
            ys.append(match[0]["tokens_per_second"] if match else 0)
        xs = [i + (n - len(series) / 2 + 0.5) * width for i in range(len(phases))]
        ax.bar(xs, ys, width, label=f"{key[0]} {key[1]}, {key[2]} thr")
    ax.set_xticks(range(len(phases)))
    ax.set_xticklabels(phases)
    ax.set_yscale("log")
    ax.set_ylabel("tokens / s")
    ax.set_title("Llama-shaped models, random weights")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, axis="y", alpha=0.3)

    labels, bottoms = [], None
    keys = ("linear_seconds", "attention_seconds", "classifier_seconds", "rest_seconds")
    names = ("products", "attention", "classifier", "rest")
    rows = [r for r in runs]
    shares = {k: [] for k in keys}
    for r in rows:
        total = sum(r[k] for k in keys) or 1.0
        for k in keys:
            shares[k].append(100 * r[k] / total)
        labels.append(f"{r['model']} {r['weights'][:6]} {r['threads']}t {phase_name(r)}")
    bottoms = [0.0] * len(rows)
    for k, name in zip(keys, names):
        bx.barh(range(len(rows)), shares[k], left=bottoms, label=name)
        bottoms = [b + s for b, s in zip(bottoms, shares[k])]
    bx.set_yticks(range(len(rows)))
    bx.set_yticklabels(labels, fontsize=6)
    bx.invert_yaxis()
    bx.set_xlabel("share of wall time (%)")
    bx.set_title("where the time goes")
    bx.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}", file=sys.stderr)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    data = load(argv[1])
    if not data.get("runs"):
        print(f"{argv[1]}: no runs", file=sys.stderr)
        return 1
    print(tables(data))
    plot(data, argv[2] if len(argv) > 2 else "model.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
