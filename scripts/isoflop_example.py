"""Write a synthetic IsoFLOP sweep to try `corral plan scaling fit` and `isoflop` on:
six budgets from 1e18 to 1e22 FLOPs, nine model sizes each around the optimum of Epoch AI's
replication of Chinchilla (Besiroglu et al. 2024), the loss with 0.5% multiplicative noise.

    python scripts/isoflop_example.py [--out runs.csv] [--seed 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from corral.plan.scaling import LAWS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs.csv"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    law, rng = LAWS["epoch-2024"], np.random.default_rng(args.seed)
    lines = ["params,tokens,loss,flops"]
    for flops in np.logspace(18, 22, 6):
        best, _ = law.optimal(flops)
        for factor in np.logspace(-0.8, 0.8, 9):
            params = best * factor
            tokens = flops / (6 * params)
            loss = law.loss(params, tokens) * np.exp(rng.normal(0, 0.005))
            lines.append(f"{params:.6g},{tokens:.6g},{loss:.5f},{flops:.3g}")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}: {len(lines) - 1} runs")


if __name__ == "__main__":
    main()
