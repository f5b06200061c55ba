"""Process helpers shared by the services, the trainer and the main job."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import socket
import sys

# How long a busy Python thread keeps the interpreter lock while another waits. CPython's default
# is 5 ms; a health check needs several hand-offs between threads (gRPC's poller, the event loop),
# so while handlers compute the default adds up to hundreds of milliseconds (measured with
# benchmarks/abuse.py: reward-service health p99 334 ms at 5 ms, 37 ms at 0.5 ms).
SERVER_SWITCH_INTERVAL_S = 0.0005


def responsive_server() -> None:
    """Called by every server process once it is loaded, before it serves: short interpreter-lock
    slices, so the event loop answering health checks is never starved by threads doing the work;
    and everything allocated at start-up (a model, its tokenizer, imported modules) moved out of the
    garbage collector's reach (``gc.freeze``), so a full collection during traffic does not walk
    millions of long-lived objects while the loop waits."""
    sys.setswitchinterval(SERVER_SWITCH_INTERVAL_S)
    gc.collect()
    gc.freeze()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Returns memory that glibc's allocator holds but no object uses to the OS (``malloc_trim``).
    After a burst of large requests a server's RSS otherwise stays at its peak: the freed buffers
    stay in the allocator's arenas. ctypes releases the interpreter lock during the call. False
    where there is no glibc."""
    return bool(_TRIM is not None and _TRIM(0))


async def release_memory_every(seconds: float) -> None:
    """Hands freed allocator memory back to the OS every ``seconds`` (``release_free_memory`` in a
    worker thread), so a burst of large requests (many images, big bodies) does not leave a server
    at its peak RSS. Run it as a task for the server's lifetime."""
    while True:
        await asyncio.sleep(seconds)
        await asyncio.to_thread(release_free_memory)
