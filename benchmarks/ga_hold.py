"""Does a method keep guided attention up until its run aligns (issue #29)?

Reads finished compared runs (``controller.compare`` records, no new training) and, per method, counts
the runs in which ``ga_weight`` stayed at or above its reference at every decision before the run's
confirmed alignment (``steps_to_align``, from the free-running test checks; a run that never aligns
must hold it to the end), with the first step it went below where it did not, and the runs that aligned.

    python benchmarks/ga_hold.py reacting_dev4/reacting_dev4_runs --name reacting_dev4/ga_hold
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict

from common import RESULTS, write_results
from tacotron.knobs import KNOB_DEFS

REFERENCE = KNOB_DEFS["ga_weight"].reference


def first_release(record: dict) -> int | None:
    """The first decision step before alignment at which ``ga_weight`` was below its reference (None: held)."""
    align = record["steps_to_align"]
    return next((row["step"] for row in record["knob_trajectory"]
                 if (align is None or row["step"] < align) and row["ga_weight"] < REFERENCE - 1e-9), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", help="a compared runs folder under benchmarks/results/")
    parser.add_argument("--name", required=True, help="output name under benchmarks/results/")
    args = parser.parse_args()
    by_method: dict[str, list[dict]] = defaultdict(list)
    for path in sorted((RESULTS / args.runs).glob("*__*.json")):
        by_method[path.name.split("__")[0]].append(json.loads(path.read_text()))
    if not by_method:
        parser.error(f"no compared runs in {RESULTS / args.runs}")
    rows = []
    for method, records in sorted(by_method.items()):
        releases = [first_release(r) for r in records]
        rows.append({"method": method, "runs": len(records),
                     "held until alignment": sum(s is None for s in releases),
                     "aligned": sum(r["steps_to_align"] is not None for r in records),
                     "first release before alignment (steps)": sorted(s for s in releases if s is not None) or "-"})
    write_results(args.name, {"runs": args.runs, "ga_reference": REFERENCE}, rows,
                  f"Guided attention held at or above {REFERENCE:g} until alignment ({args.runs})")


if __name__ == "__main__":
    main()
