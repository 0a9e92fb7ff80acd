"""Plot error and spectral power ratio against lead time from realism.py JSON files.

    python benchmarks/realism_plot.py --out benchmarks/figures/demo_rollout.png \
        regression-240h=/tmp/reg240.json shipped=/tmp/full.json fix=/tmp/fix.json

One column per variable (u10m, t2m, msl, refc): RMSE over the truth's standard
deviation (sqrt(2) is the error of a random draw from climatology), and the
forecast/truth power below 15 km and at 60 km and above (1 is right; the grey
band is [0.5, 2]).
"""

from __future__ import annotations

import argparse
import json
import sys

VARIABLES = ("u10m", "t2m", "msl", "refc")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", metavar="LABEL=JSON")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(VARIABLES), figsize=(3.0 * len(VARIABLES), 5.2), sharex=True)
    for item in args.runs:
        label, _, path = item.partition("=")
        with open(path) as fh:
            rollout = json.load(fh)["rollout"]
        for j, v in enumerate(VARIABLES):
            keys = sorted((k for k in rollout if k.split("@")[0] == v), key=lambda k: int(k.split("@")[1][:-1]))
            leads = [int(k.split("@")[1][:-1]) for k in keys]
            err = [rollout[k]["rmse"] / rollout[k]["std"] for k in keys]
            small = [rollout[k]["bands"][0] for k in keys]
            large = [rollout[k]["bands"][2] for k in keys]
            line, = axes[0, j].plot(leads, err, "o-", ms=3, label=label)
            axes[1, j].plot(leads, small, "o-", ms=3, color=line.get_color(), label=f"{label} <15 km")
            axes[1, j].plot(leads, large, "s--", ms=3, color=line.get_color(), label=f"{label} >=60 km")
    for j, v in enumerate(VARIABLES):
        axes[0, j].set_title(v)
        axes[0, j].axhline(2 ** 0.5, color="k", lw=0.8, ls=":")
        axes[1, j].axhspan(0.5, 2.0, color="0.85")
        axes[1, j].set_yscale("log")
        axes[1, j].set_xscale("symlog", linthresh=12)
        axes[1, j].set_xlabel("lead (h)")
    axes[0, 0].set_ylabel("RMSE / truth std")
    axes[1, 0].set_ylabel("power forecast / truth")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(args.out, dpi=70)
    return 0


if __name__ == "__main__":
    sys.exit(main())
