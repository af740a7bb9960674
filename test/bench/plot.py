"""Plots for BENCHMARKS.md from bench.py's results.json: converge time vs N, RSS vs N.

    python plot.py RESULTS.json OUTDIR   (prints the PNG paths it wrote)
Runs in the matplotlib venv under ~/.cache/worker-controller/bench-venv (build.sh makes it).
"""
import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main():
    R = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    written = []

    # converge time vs N: controller and floor per backend (medians), plus the footprint runs
    # (controller only, pod backend).
    pts: dict = {}
    for g in R.get("converge", {}).values():
        for mode in ("controller", "floor"):
            t = med([r.get("t_running_s") for r in g[mode]])
            if t is not None:
                pts.setdefault((g["backend"], mode), []).append((g["n"], t))
    for r in R.get("footprint", []):
        if r["n"] > 0 and r.get("t_running_s"):
            pts.setdefault(("pod", "controller (footprint runs)"), []).append((r["n"], r["t_running_s"]))
    if pts:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for (backend, mode), xy in sorted(pts.items()):
            xy = sorted(xy)
            ax.plot([x for x, _ in xy], [y for _, y in xy], marker="s" if mode == "floor" else "o",
                    linestyle="--" if mode == "floor" else "-", label=f"{backend} {mode}" + (" (median)" if mode in ("controller", "floor") else ""))
        ax.set_xlabel("Workers created (N)")
        ax.set_ylabel("seconds to all Running")
        ax.set_title("Convergence time vs N (stand-ins prompt)")
        ax.grid(True, alpha=0.3)
        ax.legend()
        p = os.path.join(out, "converge_vs_n.png")
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        written.append(p)

    fp = sorted(R.get("footprint", []), key=lambda r: r["n"])
    if fp:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        ns = [r["n"] for r in fp]
        ax.plot(ns, [(r.get("peak_rss_kib") or 0) / 1024 for r in fp], marker="o", label="peak RSS (VmHWM)")
        ax.plot(ns, [(r.get("steady_rss_kib") or 0) / 1024 for r in fp], marker="s", label="steady RSS")
        ax.axhline(30, color="red", linestyle=":", label="target at 10k: 30 MiB")
        ax.set_xlabel("Workers (each with its Pod)")
        ax.set_ylabel("MiB")
        ax.set_title("worker-controller RSS vs N")
        ax.grid(True, alpha=0.3)
        ax.legend()
        p = os.path.join(out, "rss_vs_n.png")
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        written.append(p)
    print(" ".join(written))


if __name__ == "__main__":
    main()
