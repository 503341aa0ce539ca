"""Keeping freed host memory in the process heap, the one setting that makes XLA:CPU steps fast.

XLA:CPU allocates each execution's temporaries afresh (~0.5 GiB for a ResNet18 step at 64 px,
batch 64). glibc serves blocks that large with mmap and returns them to the kernel when freed, so
every step page-faults its whole working set in again: ~115,000 faults, ~0.2 s of a 0.6 s step
(bench/README.md). Kept in the heap, the memory is reused from step to step: the same effect as
`GLIBC_TUNABLES=glibc.malloc.mmap_max=0:...`, set from inside the process so that nobody has to
remember an environment variable. The price is a higher resident size (freed memory stays mapped).
"""

import ctypes
import platform

# mallopt(3) parameters, from glibc's <malloc.h>.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX, M_ARENA_MAX = -1, -2, -4, -8
KEEP_FREED_MEMORY = {
    M_MMAP_MAX: 0,  # Large blocks come from the heap too, so freeing them keeps them for reuse...
    M_TRIM_THRESHOLD: 2**31 - 1,  # ...and the heap's top is never handed back to the kernel.
    M_TOP_PAD: 256 << 20,  # Grow the heap in 256 MiB steps rather than a fault-sized sbrk at a time.
    M_ARENA_MAX: 1,  # One arena: memory freed by one XLA worker thread is reused by the next.
}


def keep_freed_memory() -> bool:
    """Tells glibc's malloc to keep freed memory for reuse; False (nothing done) if not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    for parameter, value in KEEP_FREED_MEMORY.items():
        if libc.mallopt(parameter, value) != 1:
            raise OSError(f"glibc refused mallopt({parameter}, {value})")
    return True
