"""Process helpers of every server: memory handed back to the OS, prompt lock hand-over."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit


def test_release_free_memory_returns_freed_heap_pages_to_the_os() -> None:
    # In a fresh interpreter: 200 MB of 50 KB buffers (below glibc's mmap threshold, so they live in
    # the heap), all freed but the last one (which pins the heap's top, so free() alone trims nothing).
    code = textwrap.dedent(
        """
        from pathlib import Path
        from mvp.common.procs import release_free_memory

        def rss_mb():
            line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS:"))
            return int(line.split()[1]) // 1024

        blocks = [bytearray(50_000) for _ in range(4000)]
        pin = blocks[-1]
        del blocks
        before = rss_mb()
        released = release_free_memory()
        print(released, before, rss_mb())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    released, before, after = out[0] == "True", int(out[1]), int(out[2])
    assert released and before - after > 100, (before, after)


def test_responsive_server_shortens_the_switch_interval_and_freezes_startup_objects() -> None:
    code = "import gc, sys; from mvp.common.procs import responsive_server; responsive_server(); "
    code += "print(sys.getswitchinterval(), gc.get_freeze_count() > 0)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert float(out[0]) == pytest.approx(0.0005) and out[1] == "True"
