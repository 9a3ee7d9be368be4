"""What the leaderboard's rating costs as the number of side-by-side campaigns grows.

``annotation.bradley_terry.leaderboard`` fits one Bradley–Terry model and ``--bootstrap`` more on
items resampled within each campaign; the page and ``GET /api/dashboard/leaderboard/`` do it on
every request. This script times that part alone (the database read is one
``side_by_side_outcomes`` per campaign, which ``bench/campaign_dashboard.py`` times as "GSB") on
synthetic campaigns between 10 systems whose true strengths are 0.3 logits apart, and checks the
ranking it recovers. Prints a table (median of 3 calls) and one line:

    result: <x> ms for <n> campaigns of <m> items; Spearman rank correlation with the truth <r>

Usage: python bench/leaderboard.py [--campaigns 10,30,100] [--items 100] [--bootstrap 200]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from annotation.bradley_terry import PairItems, leaderboard  # noqa: E402

SYSTEMS = 10
STEP = 0.3  # logits between neighbouring systems
VOTES = 3  # judgments per item


def campaigns(n: int, items: int, seed: int) -> list[PairItems]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b = rng.choice(SYSTEMS, 2, replace=False)
        p = 1 / (1 + np.exp(-(a - b) * STEP))
        wins = rng.binomial(VOTES, p, items)
        out.append(PairItems(f"s{a}", f"s{b}", np.stack([wins, VOTES - wins, np.zeros(items)], axis=1).astype(float)))
    return out


def spearman(board: list[dict]) -> float:
    ranks = [SYSTEMS - 1 - int(r["system"][1:]) for r in board]  # s9 is the strongest: true rank 0
    d = np.subtract(ranks, range(len(ranks)))
    n = len(ranks)
    return 1 - 6 * float((d ** 2).sum()) / (n * (n * n - 1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--campaigns", default="10,30,100")
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--bootstrap", type=int, default=200)
    args = parser.parse_args()
    print(f"{'campaigns':>9} {'items':>6} {'bootstrap':>9} {'ms':>8} {'systems':>7} {'spearman':>8}")
    last = None
    for n in (int(x) for x in args.campaigns.split(",")):
        data = campaigns(n, args.items, seed=n)
        times, board = [], []
        for _ in range(3):
            t = time.perf_counter()
            board = leaderboard(data, bootstrap=args.bootstrap)
            times.append((time.perf_counter() - t) * 1000)
        ms = statistics.median(times)
        last = (ms, n, spearman(board))
        print(f"{n:>9} {args.items:>6} {args.bootstrap:>9} {ms:>8.1f} {len(board):>7} {last[2]:>8.3f}")
    ms, n, rho = last
    print(f"result: {ms:.0f} ms for {n} campaigns of {args.items} items; Spearman rank correlation with the truth {rho:.3f}")


if __name__ == "__main__":
    main()
