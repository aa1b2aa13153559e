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

import pool_cases

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


def echo(conn, trips):
    # A count, not EOF: a forked child holds a copy of the parent's end too.
    for _ in range(trips):
        conn.send(conn.recv())


def case_pipe_roundtrip(ctx, iters, size, warmup):
    """send + recv of a `size`-byte bytes object to an echoing child; s per trip."""
    ours, theirs = ctx.Pipe()
    p = ctx.Process(target=echo, args=(theirs, warmup + iters))
    p.start()
    theirs.close()
    message = b"x" * size
    samples = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        ours.send(message)
        back = ours.recv()
        elapsed = time.perf_counter() - t0
        if back != message:
            raise RuntimeError(f"echoed {back!r}")
        if i >= warmup:
            samples.append(elapsed)
    ours.close()
    join(p)
    return "s", samples


def join(p):
    p.join()
    if p.exitcode != 0:
        raise RuntimeError(f"child exited with {p.exitcode}")


def ready_then_wait_for_go(control):
    control.send("ready")
    if control.recv() != "go":
        raise RuntimeError("the parent did not say go")


class Crew:
    """Children started with a control pipe each, ready when start returns."""

    def __init__(self, ctx, target, args_list):
        self.processes, self.controls = [], []
        for args in args_list:
            ours, theirs = ctx.Pipe()
            p = ctx.Process(target=target, args=(theirs,) + tuple(args))
            p.start()
            theirs.close()
            self.processes.append(p)
            self.controls.append(ours)
        self.expect("ready")

    def go(self):
        for c in self.controls:
            c.send("go")

    def expect(self, what):
        for c in self.controls:
            got = c.recv()
            if got != what:
                raise RuntimeError(f"a child said {got!r}, not {what!r}")

    def join(self):
        for c in self.controls:
            c.close()
        for p in self.processes:
            join(p)


def produce(control, q, count, size):
    payload = bytes(size) if size else None
    ready_then_wait_for_go(control)
    if payload is None:
        for i in range(count):
            q.put(i)
    else:
        for _ in range(count):
            q.put(payload)


def many_to_one(ctx, producers, messages, size):
    """`producers` children put `messages` in all, the parent gets them; the
    elapsed seconds from go to the last get."""
    q = ctx.Queue()
    shares = [messages // producers + (i < messages % producers) for i in range(producers)]
    crew = Crew(ctx, produce, [(q, n, size) for n in shares])
    t0 = time.perf_counter()
    crew.go()
    got = 0
    for _ in range(messages):
        m = q.get()
        got += len(m) if size else m
    elapsed = time.perf_counter() - t0
    crew.join()
    expected = messages * size if size else sum(n * (n - 1) // 2 for n in shares)
    if got != expected:
        raise RuntimeError(f"got {got}, expected {expected}")
    return elapsed


def case_queue_small(ctx, iters, size, warmup):
    """Queue put/get of small ints, 1 producer -> 1 consumer; msgs/s."""
    del size
    many_to_one(ctx, 1, warmup, 0)
    return "1/s", [iters / many_to_one(ctx, 1, iters, 0)]


def produce_records(control, q, count):
    ready_then_wait_for_go(control)
    for i in range(count):
        q.put({"id": i, "name": f"item-{i}", "tags": ["alpha", "beta"], "score": i * 0.5})


def case_queue_record(ctx, iters, size, warmup):
    """Queue put/get of a small dict (a record), 1 -> 1; records/s."""
    del size

    def once(count):
        q = ctx.Queue()
        crew = Crew(ctx, produce_records, [(q, count)])
        t0 = time.perf_counter()
        crew.go()
        got = sum(q.get()["id"] for _ in range(count))
        elapsed = time.perf_counter() - t0
        crew.join()
        if got != count * (count - 1) // 2:
            raise RuntimeError(f"the record ids sum to {got}")
        return elapsed

    once(warmup)
    return "1/s", [iters / once(iters)]


def case_queue_4to1(ctx, iters, size, warmup):
    """Queue put/get of small ints, 4 producers -> 1 consumer; msgs/s."""
    del size, warmup  # starting the 4 children is warm-up enough
    return "1/s", [iters / many_to_one(ctx, 4, iters, 0)]


def case_queue_1mib(ctx, iters, size, warmup):
    """Queue put/get of a `size`-byte bytes object, 1 -> 1; bytes/s."""
    del warmup
    return "B/s", [iters * size / many_to_one(ctx, 1, iters, size)]


def hammer(lock, times):
    for _ in range(times):
        with lock:
            pass


def contend(control, lock, times):
    ready_then_wait_for_go(control)
    hammer(lock, times)
    control.send("done")


def case_lock_contended(ctx, iters, size, warmup):
    """`with lock: pass` by the parent and one child at once; acquisitions/s."""
    del size, warmup
    lock = ctx.Lock()
    ours = iters // 2
    crew = Crew(ctx, contend, [(lock, iters - ours)])
    t0 = time.perf_counter()
    crew.go()
    hammer(lock, ours)
    crew.expect("done")
    elapsed = time.perf_counter() - t0
    crew.join()
    return "1/s", [iters / elapsed]


def case_lock_uncontended(ctx, iters, size, warmup):
    """`with lock: pass` in one process, no child; acquisitions/s."""
    del size
    lock = ctx.Lock()
    hammer(lock, warmup)
    t0 = time.perf_counter()
    hammer(lock, iters)
    return "1/s", [iters / (time.perf_counter() - t0)]


def answer(ping, pong, trips):
    for _ in range(trips):
        ping.wait()
        ping.clear()
        pong.set()


def case_event_pingpong(ctx, iters, size, warmup):
    """Set `ping`, wait for `pong` (a child answers); s per round trip."""
    del size
    ping, pong = ctx.Event(), ctx.Event()
    p = ctx.Process(target=answer, args=(ping, pong, warmup + iters))
    p.start()
    samples = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        ping.set()
        pong.wait()
        pong.clear()
        elapsed = time.perf_counter() - t0
        if i >= warmup:
            samples.append(elapsed)
    join(p)
    return "s", samples


def passes(barrier, count):
    for _ in range(count):
        barrier.wait()


def case_barrier(ctx, iters, size, warmup):
    """Barrier(2).wait() by the parent and a child; passes/s."""
    del size
    barrier = ctx.Barrier(2)
    p = ctx.Process(target=passes, args=(barrier, warmup + 1 + iters))
    p.start()
    passes(barrier, warmup + 1)
    t0 = time.perf_counter()
    passes(barrier, iters)
    elapsed = time.perf_counter() - t0
    join(p)
    return "1/s", [iters / elapsed]


def increment(v, times):
    for _ in range(times):
        with v.get_lock():
            v.value += 1


def add(control, v, times):
    ready_then_wait_for_go(control)
    increment(v, times)
    control.send("done")


def case_value_counter(ctx, iters, size, warmup):
    """`with v.get_lock(): v.value += 1` by the parent and a child; increments/s."""
    del size, warmup
    v = ctx.Value("Q", 0)
    ours = iters // 2
    crew = Crew(ctx, add, [(v, iters - ours)])
    t0 = time.perf_counter()
    crew.go()
    increment(v, ours)
    crew.expect("done")
    elapsed = time.perf_counter() - t0
    crew.join()
    if v.value != iters:
        raise RuntimeError(f"the counter reached {v.value}, not {iters}")
    return "1/s", [iters / elapsed]


def case_array_copy(ctx, iters, size, warmup):
    """Copy `size` bytes into and out of Array('B', size) under its lock,
    through memoryviews (faster than slicing the Array, a[:] = src, by
    ~300x, and than bytearray slice assignment); bytes/s, both ways counted."""
    a = ctx.Array("B", size, lock=True)
    shared = memoryview(a.get_obj()).cast("B")
    src = bytes(range(251)) * (size // 251) + bytes(range(size % 251))
    out = memoryview(bytearray(size))

    def copy_in_and_out():
        with a.get_lock():
            shared[:] = src
        with a.get_lock():
            out[:] = shared

    for _ in range(max(warmup, 1)):
        copy_in_and_out()
    t0 = time.perf_counter()
    for _ in range(iters):
        copy_in_and_out()
    elapsed = time.perf_counter() - t0
    if out != src:
        raise RuntimeError("the copy out differs from the copy in")
    return "B/s", [2 * iters * size / elapsed]


CASES = {
    "start_join": case_start_join,
    # The same Python runs: only multiproc's start method differs.
    "start_join_fork": case_start_join,
    "start_join_forkserver": case_start_join,
    "pipe_roundtrip": case_pipe_roundtrip,
    "queue_small": case_queue_small,
    "queue_1mib": case_queue_1mib,
    "queue_4to1": case_queue_4to1,
    "queue_record": case_queue_record,
    # The same Python run: only multiproc's codec differs.
    "queue_record_self_describing": case_queue_record,
    "lock_contended": case_lock_contended,
    "lock_uncontended": case_lock_uncontended,
    "event_pingpong": case_event_pingpong,
    "barrier": case_barrier,
    "value_counter": case_value_counter,
    "array_copy": case_array_copy,
}
CASES.update(pool_cases.CASES)


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
