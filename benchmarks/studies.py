"""Every study on this machine, run twice in a row: the verdicts, and whether any flipped
between *borne out* and *contradicted* from one run to the next.

    python benchmarks/studies.py [--quick] [--passes 2] [--device cpu] [--studies g1,g2]

Prints one line per study and pass, then the flips (none is the goal); the run is
recorded in benchmarks/results/ (record.py).
"""

from __future__ import annotations

import argparse
import time

from record import recorded  # the benchmarks folder is the script's own

from deploylens.studies import BORNE_OUT, CONTRADICTED, STUDIES, run_study


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each study's 30 s budget instead of 90 s")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--studies", default=None, help="comma-separated (default: every study for the device)")
    args = parser.parse_args()
    names = args.studies.split(",") if args.studies else [n for n, s in STUDIES.items() if args.device in s.devices]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for index in range(args.passes):
        for name in names:
            began = time.perf_counter()
            result = run_study(name, device=args.device, quick=args.quick)
            seconds = time.perf_counter() - began
            runs[name].append({"verdict": result.verdict, "seconds": round(seconds, 1),
                               "comparisons": [[c.a, c.b, c.ratio, c.ci_low, c.ci_high, c.paper_ratio, c.verdict]
                                               for c in result.comparisons]})
            print(f"pass {index + 1} {name:20s} {result.verdict:13s} {seconds:6.1f} s  "
                  + "; ".join(f"{c.ratio:.2f} [{c.ci_low:.2f}-{c.ci_high:.2f}] {c.verdict}" if c.ci_low else
                              f"{c.verdict}" for c in result.comparisons), flush=True)
    flips = [name for name, passes in runs.items()
             if {BORNE_OUT, CONTRADICTED} <= {p["verdict"] for p in passes}]
    print(f"flips between borne out and contradicted: {', '.join(flips) or 'none'}")
    return {"studies": runs, "flips": flips, "quick": args.quick}


if __name__ == "__main__":
    with recorded("studies") as run:
        run.results = main() or {}
