"""How much does a notebook that starts busy processes slow the notebook graded beside it, with
and without a CPU group per kernel (:mod:`graders.cpushare`)?

Two sandboxed kernels with one thread each, as two grading workers would run them: the honest
one times a fixed pure-Python loop (best of ``--repeats``); the hostile one first starts
``--busy`` processes that spin, each in a new session (so the scheduler's per-session groups do
not hold them back). Rows: the honest loop alone, beside the hostile kernel without CPU groups,
and beside it with them. Needs bubblewrap, and root (or a delegated cgroup hierarchy) for the
last row.

    python scripts/bench_cpushare.py [--busy 8] [--repeats 3]

Prints a Markdown table (seconds, and the slowdown against the loop alone).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from graders import cpushare, sandbox  # noqa: E402

LOOP = "import time\nt = time.perf_counter()\nsum(i * i for i in range(6_000_000))\n" \
       "print(time.perf_counter() - t)"
SPIN = ("import os, subprocess, sys\n"
        "for _ in range({n}):\n"
        "    subprocess.Popen([sys.executable, '-c', 'while True: pass'], "
        "start_new_session=True)\n"
        "print('spinning')")


async def _run(kc, code: str) -> str:
    msg_id = kc.execute(code)
    out = []
    while True:
        msg = await kc.get_iopub_msg(timeout=600)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return "".join(out).strip()


async def _kernel(cwd: Path):
    km = sandbox.SandboxKernelManager(kernel_name="python3")
    await km.start_kernel(cwd=str(cwd))
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=60)
    return km, kc


async def measure(busy: int, repeats: int, cwd: Path) -> float:
    """The honest loop's best time, beside a kernel spinning ``busy`` processes (0: alone)."""
    kernels = [await _kernel(cwd)]
    try:
        if busy:
            kernels.append(await _kernel(cwd))
            await _run(kernels[1][1], SPIN.format(n=busy))
            await asyncio.sleep(1)
        return min([float(await _run(kernels[0][1], LOOP)) for _ in range(repeats)])
    finally:
        for km, kc in kernels:
            kc.stop_channels()
            await km.shutdown_kernel(now=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import os

    os.environ["OMP_NUM_THREADS"] = "1"
    cwd = Path(tempfile.mkdtemp(prefix="bench-cpushare-", dir="/var/tmp"))
    rows = [("alone", asyncio.run(measure(0, args.repeats, cwd)))]
    with mock.patch.object(cpushare, "create", lambda *a, **k: None):
        rows.append((f"beside {args.busy} busy processes, no CPU groups",
                     asyncio.run(measure(args.busy, args.repeats, cwd))))
    if cpushare.hierarchy() is not None:
        rows.append((f"beside {args.busy} busy processes, a CPU group per kernel",
                     asyncio.run(measure(args.busy, args.repeats, cwd))))
    else:
        print(f"(no CPU groups here: {cpushare.unavailable_reason()})", file=sys.stderr)
    cwd.rmdir()
    print(f"| honest kernel ({time.strftime('%Y-%m-%d')}) | loop, s | slowdown |")
    print("| --- | ---: | ---: |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {seconds / rows[0][1]:.1f}x |")


if __name__ == "__main__":
    main()
