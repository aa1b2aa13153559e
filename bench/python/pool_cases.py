"""The Pool cases of bench.py: multiprocessing.Pool doing what
bench/src/cases/pool_*.rs time in multiproc.

bench.py merges CASES into its own. Each function has bench.py's signature,
`case_NAME(ctx, iters, size, warmup)`, returning `(unit, samples)`; the pool
itself is started (and used once) before timing except in pool_start.
"""

import asyncio
import time


def identity(x):
    return x


def increment(x):
    return x + 1


def square(x):
    return x * x


def one():
    return 1


def echo(payload):
    return payload


def getpid(_task):
    import os

    return os.getpid()


def case_pool_apply(ctx, iters, size, warmup):
    """pool.apply(identity, (x,)) on Pool(1); seconds per call."""
    del size
    samples = []
    with ctx.Pool(1) as pool:
        for i in range(max(warmup, 1) + iters):
            t0 = time.perf_counter()
            got = pool.apply(identity, (i,))
            elapsed = time.perf_counter() - t0
            if got != i:
                raise RuntimeError(f"apply returned {got!r}, not {i}")
            if i >= max(warmup, 1):
                samples.append(elapsed)
        pool.close()
        pool.join()
    return "s", samples


def case_pool_imap(ctx, iters, size, warmup):
    """imap(increment, range(iters), chunksize=1) on Pool(2); tasks per second."""
    del size, warmup
    with ctx.Pool(2) as pool:
        pool.map(increment, [0, 1], chunksize=1)
        t0 = time.perf_counter()
        expected = 1
        for got in pool.imap(increment, range(iters), chunksize=1):
            if got != expected:
                raise RuntimeError(f"imap yielded {got}, not {expected}")
            expected += 1
        elapsed = time.perf_counter() - t0
        if expected != iters + 1:
            raise RuntimeError(f"imap yielded {expected - 1} results")
        pool.close()
        pool.join()
    return "1/s", [iters / elapsed]


def increments_per_second(pool, iters):
    """iters apply_async(increment, (i,)), then get() each, checked; tasks/s."""
    t0 = time.perf_counter()
    pending = [pool.apply_async(increment, (i,)) for i in range(iters)]
    for i, result in enumerate(pending):
        got = result.get()
        if got != i + 1:
            raise RuntimeError(f"task {i} returned {got!r}")
    return iters / (time.perf_counter() - t0)


def case_pool_apply_async(ctx, iters, size, warmup):
    """iters apply_async(increment, (i,)) on Pool(2), then get() each; tasks/s."""
    del size, warmup
    with ctx.Pool(2) as pool:
        pool.map(increment, [0, 1], chunksize=1)
        rate = increments_per_second(pool, iters)
        pool.close()
        pool.join()
    return "1/s", [rate]


def nap(x):
    time.sleep(0.01)
    return x


def case_pool_scale(ctx, iters, size, warmup):
    """iters apply_async(increment, (i,)) on Pool(size), every worker up (a
    10 ms task each) before timing, then get() each; tasks/s."""
    del warmup
    with ctx.Pool(size) as pool:
        pool.map(nap, range(size), chunksize=1)
        rate = increments_per_second(pool, iters)
        pool.close()
        pool.join()
    return "1/s", [rate]


def case_pool_await(ctx, iters, size, warmup):
    """iters apply_async(increment, (i,)) awaited from `size` asyncio tasks on
    Pool(2): each result reaches its coroutine through apply_async's callback
    and loop.call_soon_threadsafe (asyncio's way to await a thread's result);
    tasks per second."""
    del warmup
    tasks = max(size, 1)
    per_task = -(-iters // tasks)

    async def main(pool):
        loop = asyncio.get_running_loop()

        async def one(i):
            future = loop.create_future()

            def done(value):
                loop.call_soon_threadsafe(future.set_result, value)

            def failed(error):
                loop.call_soon_threadsafe(future.set_exception, error)

            pool.apply_async(increment, (i,), callback=done, error_callback=failed)
            return await future

        async def task(t):
            for i in range(t * per_task, (t + 1) * per_task):
                got = await one(i)
                if got != i + 1:
                    raise RuntimeError(f"task {i} returned {got}")

        await asyncio.gather(*(task(t) for t in range(tasks)))

    with ctx.Pool(2) as pool:
        pool.map(increment, [0, 1], chunksize=1)
        t0 = time.perf_counter()
        asyncio.run(main(pool))
        elapsed = time.perf_counter() - t0
        pool.close()
        pool.join()
    return "1/s", [per_task * tasks / elapsed]


def case_pool_map(ctx, iters, size, warmup):
    """map(square, range(size)) on Pool(2), default chunksize; items per second."""
    del warmup
    with ctx.Pool(2) as pool:
        pool.map(square, [0, 1], chunksize=1)
        t0 = time.perf_counter()
        for _ in range(iters):
            squares = pool.map(square, range(size))
        elapsed = time.perf_counter() - t0
        if len(squares) != size or any(s != i * i for i, s in enumerate(squares)):
            raise RuntimeError("map returned the wrong squares")
        pool.close()
        pool.join()
    return "1/s", [iters * size / elapsed]


def case_pool_start(ctx, iters, size, warmup):
    """Pool(2) + apply(one) + close + join; seconds per pool."""
    del size
    samples = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        pool = ctx.Pool(2)
        got = pool.apply(one)
        pool.close()
        pool.join()
        elapsed = time.perf_counter() - t0
        if got != 1:
            raise RuntimeError(f"apply returned {got!r}")
        if i >= warmup:
            samples.append(elapsed)
    return "s", samples


def case_pool_payload(ctx, iters, size, warmup):
    """pool.apply(echo, (payload,)) of a `size`-byte bytes object on Pool(1),
    the echo checked after each call; seconds per call."""
    payload = bytes(range(251)) * (size // 251) + bytes(range(size % 251))
    samples = []
    with ctx.Pool(1) as pool:
        for i in range(max(warmup, 1) + iters):
            t0 = time.perf_counter()
            got = pool.apply(echo, (payload,))
            elapsed = time.perf_counter() - t0
            if got != payload:
                raise RuntimeError(f"the echo differs: {len(got)} bytes back for {size} sent")
            if i >= max(warmup, 1):
                samples.append(elapsed)
        pool.close()
        pool.join()
    return "s", samples


def vm_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def case_pool_idle_rss(ctx, iters, size, warmup):
    """VmRSS of each worker of Pool(iters) after a task each and 200 ms idle; B."""
    del size, warmup
    with ctx.Pool(iters) as pool:
        pool.map(getpid, range(iters * 4), chunksize=1)
        time.sleep(0.2)
        samples = [vm_rss(p.pid) for p in pool._pool]
        pool.close()
        pool.join()
    return "B", samples


CASES = {
    "pool_apply": case_pool_apply,
    "pool_imap": case_pool_imap,
    "pool_apply_async": case_pool_apply_async,
    "pool_await": case_pool_await,
    "pool_map": case_pool_map,
    "pool_scale_2": case_pool_scale,
    "pool_scale_8": case_pool_scale,
    "pool_scale_32": case_pool_scale,
    "pool_scale_128": case_pool_scale,
    "pool_start": case_pool_start,
    "pool_start_forkserver": case_pool_start,
    "pool_idle_rss": case_pool_idle_rss,
    # The same run: only the payload's size differs.
    "pool_payload_1mib": case_pool_payload,
    "pool_payload_8mib": case_pool_payload,
}
