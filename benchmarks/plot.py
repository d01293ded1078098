#!/usr/bin/python3
"""Draw bench_gemm's JSON: speed-up against the FP16 baseline versus batch, one line per
kernel, one panel per shape; print the same numbers as markdown tables for the README.

    ./build/benchmarks/bench_gemm --benchmark_out=results.json --benchmark_out_format=json
    /usr/bin/python3 benchmarks/plot.py results.json [speedup.png]

The speed-up is recomputed here from the JSON times (the FP16 row of the same section, shape,
batch and thread count over the row's own time), so it is there even for rows whose FP16 row
ran in another process. Times are the ones Google Benchmark reports for the row: CPU time for
one thread, wall time for rows registered with UseRealTime (two threads). With repetitions,
the median aggregate is used.
"""

import json
import re
import sys
from collections import defaultdict

NAME = re.compile(
    r"^(?P<section>gemm|streamed)/(?P<out>\d+)x(?P<inn>\d+)/batch:(?P<batch>\d+)"
    r"/threads:(?P<threads>\d+)/(?P<kernel>[A-Za-z0-9_]+)"
)
BASELINE = "fp16"


def load(path):
    """{(section, out, in, batch, threads, kernel): (seconds, weights/s, label)}, in run order"""
    with open(path) as f:
        data = json.load(f)
    rows, medians = {}, {}
    for b in data.get("benchmarks", []):
        m = NAME.match(b.get("run_name", b["name"]))
        if not m or b.get("error_occurred"):
            continue
        key = (m["section"], int(m["out"]), int(m["inn"]), int(m["batch"]),
               int(m["threads"]), m["kernel"])
        real = "/real_time" in b["name"]
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b.get("time_unit", "ns")]
        seconds = (b["real_time"] if real else b["cpu_time"]) * scale
        value = (seconds, b.get("weights/s", 0.0), b.get("label", ""))
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[key] = value
        else:
            rows.setdefault(key, value)
    rows.update(medians)
    return data.get("context", {}), rows


def speedups(rows):
    """{(section, out, in, threads, kernel): {batch: (speed-up or None, weights/s)}}"""
    lines = defaultdict(dict)
    for (section, out, inn, batch, threads, kernel), (t, wps, _) in rows.items():
        base = rows.get((section, out, inn, batch, threads, BASELINE))
        ratio = base[0] / t if base and t > 0 else None
        lines[(section, out, inn, threads, kernel)][batch] = (ratio, wps)
    return lines


def kernel_order(kernels):
    baselines = [BASELINE, "eigen_fp32_sse2", "eigen_fp32_avx2"]
    first = [k for k in baselines if k in kernels]
    return first + sorted(k for k in kernels if k not in baselines)


def markdown(context, lines):
    out = []
    cpu = context.get("host_name", "")
    out.append(
        f"Speed-up against the FP16 F16C+FMA baseline ({context.get('fp16_path', '?')}) of the same "
        f"shape, batch and threads, and GWeights/s (out·in·batch per second). "
        f"{context.get('num_cpus', '?')} CPUs at {context.get('mhz_per_cpu', '?')} MHz"
        + (f", host {cpu}" if cpu else "") + ", onebit path "
        + context.get("onebit_isa", "?") + ".\n"
    )
    groups = sorted(dict.fromkeys((s, o, i) for (s, o, i, _, _) in lines),
                    key=lambda g: g[0] != "gemm")  # run order, the streamed section last
    for section, o, i in groups:
        keys = [k for k in lines if k[:3] == (section, o, i)]
        batches = sorted({b for k in keys for b in lines[k]})
        title = f"{o}x{i} (out x in)" + (", weights streamed from memory" if section == "streamed" else "")
        out.append(f"**{title}**\n")
        out.append("| kernel | threads | " + " | ".join(f"batch {b}" for b in batches) + " |")
        out.append("|---|---|" + "---|" * len(batches))
        for threads in sorted({k[3] for k in keys}):
            for kernel in kernel_order({k[4] for k in keys if k[3] == threads}):
                cells = []
                for b in batches:
                    v = lines[(section, o, i, threads, kernel)].get(b)
                    if v is None:
                        cells.append("")
                    else:
                        ratio, wps = v
                        r = f"{ratio:.2f}x" if ratio is not None else "-"
                        cells.append(f"{r} ({wps / 1e9:.1f})")
                out.append(f"| {kernel} | {threads} | " + " | ".join(cells) + " |")
        out.append("")
    out.append(against_eigen(lines))
    out.append(scaling(lines))
    return "\n".join(out)


def scaling(lines, batch=1):
    """Two threads against one: weights/s of each kernel at batch 1, and their ratio."""
    out = [f"Two threads against one, batch {batch}: GWeights/s and the ratio (same run).\n",
           "| shape | kernel | 1 thread | 2 threads | ratio |", "|---|---|---|---|---|"]
    for (section, o, i, threads, kernel) in lines:
        if section != "gemm" or threads != 1:
            continue
        one = lines[(section, o, i, 1, kernel)].get(batch)
        two = lines.get((section, o, i, 2, kernel), {}).get(batch)
        if one and two and one[1]:
            out.append(f"| {o}x{i} | {kernel} | {one[1] / 1e9:.1f} | {two[1] / 1e9:.1f} | "
                       f"{two[1] / one[1]:.2f}x |")
    return "\n".join(out) + "\n"


def round_trips(path):
    """The empty parallel round trip rows (parallel/round_trip/threads:<t>/...), in µs."""
    with open(path) as f:
        data = json.load(f)
    out = []
    for b in data.get("benchmarks", []):
        m = re.match(r"^parallel/round_trip/threads:(\d+)/(\w+)", b.get("run_name", b["name"]))
        if m and not b.get("error_occurred") and b.get("run_type") != "aggregate":
            scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b.get("time_unit", "ns")]
            out.append(f"| {m[2]} | {m[1]} | {b['real_time'] * scale:.2f} |")
    if not out:
        return ""
    return ("Empty parallel round trip (parallel_for of one empty index per thread), wall time.\n\n"
            "| pool | threads | µs per call |\n|---|---|---|\n" + "\n".join(out) + "\n")


def against_eigen(lines, eigen="eigen_fp32_avx2"):
    """Speed-up of every kernel against Eigen's FP32 GEMM (the AVX2+FMA build), one thread."""
    out = [f"Speed-up against Eigen FP32 ({eigen}), one thread, weights/s ratio of the same run.\n"]
    for o, i in dict.fromkeys((o, i) for (s, o, i, t, _) in lines if s == "gemm" and t == 1):
        base = lines.get(("gemm", o, i, 1, eigen))
        if not base:
            continue
        batches = sorted(base)
        out.append(f"**{o}x{i} (out x in)**\n")
        out.append("| kernel | " + " | ".join(f"batch {b}" for b in batches) + " |")
        out.append("|---|" + "---|" * len(batches))
        for kernel in kernel_order({k[4] for k in lines if k[:4] == ("gemm", o, i, 1)}):
            if kernel == eigen:
                continue
            row = lines[("gemm", o, i, 1, kernel)]
            cells = [f"{row[b][1] / base[b][1]:.2f}x" if b in row and base[b][1] else "" for b in batches]
            out.append(f"| {kernel} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def plot(lines, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = list(dict.fromkeys((o, i) for (s, o, i, _, _) in lines if s == "gemm"))
    if not shapes:
        print("no gemm rows to plot", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, len(shapes), figsize=(5.2 * len(shapes), 4.4), squeeze=False)
    kernels = kernel_order({k[4] for k in lines})
    colors = {k: plt.cm.tab10(n % 10) for n, k in enumerate(kernels)}
    for ax, (o, i) in zip(axes[0], shapes):
        ax.axhline(1.0, color=colors.get(BASELINE, "gray"), lw=1.2, label=f"{BASELINE} (the 1.0 line)")
        for threads, style in ((1, "-"), (2, "--")):
            for kernel in kernels:
                if kernel == BASELINE:
                    continue
                points = lines.get(("gemm", o, i, threads, kernel))
                if not points:
                    continue
                xs = sorted(b for b, (r, _) in points.items() if r is not None)
                if not xs:
                    continue
                ys = [points[b][0] for b in xs]
                ax.plot(xs, ys, style, marker="o", ms=3, color=colors[kernel],
                        label=f"{kernel}, {threads} thread{'s' if threads > 1 else ''}")
        ax.set_xscale("log", base=2)
        batches = sorted({b for k, v in lines.items() if k[:3] == ("gemm", o, i) for b in v})
        ax.set_xticks(batches)
        ax.set_xticklabels([str(b) for b in batches])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_title(f"{o}x{i} (out x in)")
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("speed-up against FP16 (F16C+FMA)")
    seen = {}  # label -> handle, over all panels
    for ax in axes[0]:
        handles, labels = ax.get_legend_handles_labels()
        for handle, label in zip(handles, labels):
            seen.setdefault(label, handle)
    fig.legend(list(seen.values()), list(seen.keys()), loc="lower center",
               ncol=min(4, len(seen)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.035 * ((len(seen) + 3) // 4), 1, 1))
    fig.savefig(path, dpi=120)
    print(f"wrote {path}", file=sys.stderr)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    context, rows = load(argv[1])
    if not rows:
        print(f"{argv[1]}: no bench_gemm rows", file=sys.stderr)
        return 1
    lines = speedups(rows)
    print(markdown(context, lines))
    print(round_trips(argv[1]))
    plot(lines, argv[2] if len(argv) > 2 else "speedup.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
