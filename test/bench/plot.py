"""Plots for BENCHMARKS.md from bench.py's results.json: converge time vs N and RSS vs N, the
product beside its controller-runtime peer (and the floor's converge time).

    python plot.py RESULTS.json OUTDIR   (prints the PNG paths it wrote)
Runs in the matplotlib venv under ~/.cache/worker-controller/bench-venv (build.sh makes it).
Each point is the median of the rounds at that N; the thin marks are the rounds themselves.
"""
import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {"controller": ("product (worker-controller)", "o", "-"), "peer": ("peer (controller-runtime)", "s", "-"),
         "floor": ("floor (minimal client)", "^", "--")}
COLOR = {"controller": "tab:blue", "peer": "tab:orange", "floor": "tab:green"}


def series(R, mode, field, scale=1.0, with_idle=False):
    by_n = {}
    for r in R.get("runs", []):
        if (r.get("backend") == "pod" and r.get("mode") == mode and (r.get("n", 0) > 0 or with_idle)
                and not r.get("error")):
            v = r.get(field)
            if v is not None:
                by_n.setdefault(r["n"], []).append(v * scale)
    ns = sorted(by_n)
    return ns, [statistics.median(by_n[n]) for n in ns], by_n


def draw(ax, R, mode, field, scale=1.0, label_suffix="", linestyle=None, marker=None, with_idle=False):
    ns, ys, raw = series(R, mode, field, scale, with_idle)
    if not ns:
        return False
    label, mk, ls = STYLE[mode]
    ax.plot(ns, ys, marker=marker or mk, linestyle=linestyle or ls, label=label + label_suffix, color=COLOR[mode],
            fillstyle="none" if linestyle == "--" else "full")
    for n, vs in raw.items():
        ax.scatter([n] * len(vs), vs, s=8, alpha=0.4, color=COLOR[mode])
    return True


def main():
    R = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    written = []
    when = R.get("started", "")[:10]

    fig, ax = plt.subplots(figsize=(6.6, 4.3))
    if any([draw(ax, R, m, "t_running_s") for m in ("controller", "peer", "floor")]):
        ax.set_xlabel("Workers created (N), pod backend")
        ax.set_ylabel("seconds to all Running")
        ax.set_title(f"Converge time vs N, real bed ({when})")
        ax.grid(True, alpha=0.3)
        ax.legend()
        p = os.path.join(out, "converge_vs_n.png")
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        written.append(p)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.6, 4.3))
    drew = False
    for m in ("controller", "peer"):
        drew |= draw(ax, R, m, "peak_rss_kib", 1 / 1024, " peak", linestyle="--", with_idle=True)
        drew |= draw(ax, R, m, "steady_rss_kib", 1 / 1024, " steady", with_idle=True)
    if drew:
        ax.set_xlabel("Workers (each with its ServiceAccount and Pod; 0 = idle)")
        ax.set_ylabel("MiB")
        ax.set_yscale("log")
        ax.set_title(f"RSS vs N: product and controller-runtime peer ({when})")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8)
        p = os.path.join(out, "rss_vs_n.png")
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        written.append(p)
    plt.close(fig)
    print(" ".join(written))


if __name__ == "__main__":
    main()
