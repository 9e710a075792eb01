"""Benchmark of the compute allocator on synthetic rounds (src/sovstack/compute/synthetic.py).

Scenarios: 2,000 requests x 50 offers with the concentration cap binding (budget 0.45 of the
demand's subsidy, provider cap 0.4) and with the budget binding (0.20), and a 200 x 20 round.
Prints time, objective, LP bound, proven gap, greedy objective and its gap, and our time
against the reference CP-SAT 2-worker time (15-25 s, docs: compute-exchange §4).

    python bench/compute.py [--seed 7] [--requests 2000] [--offers 50] [--providers 12] [--time-limit 10] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform

from sovstack.compute.allocator import solve
from sovstack.compute.synthetic import generate

REFERENCE_CP_SAT = (15.0, 25.0)   # seconds to 1% gap, 2 workers, reference doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--offers", type=int, default=50)
    parser.add_argument("--providers", type=int, default=12)
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="only the 200 x 20 round")
    args = parser.parse_args()
    scenarios: list[tuple[str, dict[str, float]]] = [
        ("200x20", {"requests": 200, "offers": 20, "providers": 6, "budget_ratio": 0.45})]
    if not args.quick:
        big = {"requests": args.requests, "offers": args.offers, "providers": args.providers}
        scenarios = [("cap binds (budget 0.45)", {**big, "budget_ratio": 0.45}),
                     ("budget binds (budget 0.20)", {**big, "budget_ratio": 0.20}), *scenarios]
    print(f"sovstack compute bench — seed {args.seed}, {platform.node()}, Python {platform.python_version()}")
    print(f"{'scenario':<28}{'columns':>8}{'time s':>8}{'objective':>14}{'LP bound':>14}{'gap':>8}"
          f"{'greedy':>14}{'greedy gap':>11}{'vs CP-SAT 15-25 s':>19}  solver")
    for name, sizes in scenarios:
        round = dataclasses.replace(generate(args.seed, **sizes), time_limit=args.time_limit)  # type: ignore[arg-type]
        result = solve(round)
        columns = next((line.split()[-2] for line in result.log if "columns" in line and "prepared" in line), "?")
        greedy_gap = (result.bound - result.greedy_objective) / result.bound if result.bound else 0.0
        ratio = f"{result.seconds / REFERENCE_CP_SAT[0]:.2f}-{result.seconds / REFERENCE_CP_SAT[1]:.2f}x"
        print(f"{name:<28}{columns:>8}{result.seconds:>8.2f}{result.objective:>14,.0f}{result.bound:>14,.0f}"
              f"{result.gap:>8.2%}{result.greedy_objective:>14,.0f}{greedy_gap:>11.2%}{ratio:>19}  {result.solver}"
              f" ({result.status})")


if __name__ == "__main__":
    main()
