"""Python's multiprocessing side of multiproc's comparison harness.

The Rust harness (bench/src) runs this once per round and case:

    python3 bench/python/bench.py start_join --method spawn --iters 50

and reads one JSON object from stdout:

    {"case": "start_join", "method": "spawn", "unit": "s", "samples": [...]}

`samples` are in `unit`, the same unit the Rust side reports for the case
("s" per operation, "1/s" for rates, "B", "B/s"). Each invocation first runs
`--warmup` untimed iterations, because every round is a fresh interpreter
(spawn's first start also launches the resource tracker).

A start method the platform lacks exits with status 3 and a message on
stderr; the harness reports the method as unavailable. `--list` prints the
case names, one a line.

Adding a case: write `def case_NAME(ctx, iters, size, warmup)` returning
`(unit, samples)` and add it to CASES. Keep module-level code light: spawn
re-imports this file in every child.
"""

import argparse
import json
import multiprocessing
import sys
import time

EXIT_NO_METHOD = 3


def empty():
    pass


def case_start_join(ctx, iters, size, warmup):
    """Start and join a process running an empty function; seconds per op."""
    del size
    samples = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        p = ctx.Process(target=empty)
        p.start()
        p.join()
        elapsed = time.perf_counter() - t0
        if p.exitcode != 0:
            raise RuntimeError(f"child exited with {p.exitcode}")
        if i >= warmup:
            samples.append(elapsed)
    return "s", samples


CASES = {
    "start_join": case_start_join,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", nargs="?", choices=sorted(CASES))
    parser.add_argument("--method", default="spawn")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--list", action="store_true", help="print the case names")
    args = parser.parse_args()
    if args.list:
        print("\n".join(sorted(CASES)))
        return
    if args.case is None:
        parser.error("a case name is required")
    if args.method not in multiprocessing.get_all_start_methods():
        print(f"start method {args.method!r} is not available here", file=sys.stderr)
        sys.exit(EXIT_NO_METHOD)
    ctx = multiprocessing.get_context(args.method)
    unit, samples = CASES[args.case](ctx, args.iters, args.size, args.warmup)
    json.dump(
        {"case": args.case, "method": args.method, "unit": unit, "samples": samples},
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
