"""Host memory settings for XLA:CPU: freed memory kept for reuse, programs scheduled to use less.

Keeping freed host memory in the process heap is what makes XLA:CPU steps fast.

XLA:CPU allocates each execution's temporaries afresh (~0.5 GiB for a ResNet18 step at 64 px,
batch 64). glibc serves blocks that large with mmap and returns them to the kernel when freed, so
every step page-faults its whole working set in again: ~115,000 faults, ~0.2 s of a 0.6 s step
(bench/README.md). Kept in the heap, the memory is reused from step to step: the same effect as
`GLIBC_TUNABLES=glibc.malloc.mmap_max=0:...`, set from inside the process so that nobody has to
remember an environment variable. The price is a higher resident size (freed memory stays mapped),
which the second setting more than pays back: XLA:CPU's default scheduler orders a program for
concurrency and keeps many more buffers alive at once, at no gain in speed on a CPU's few cores
(ResNet18 step: same time, peak 1.7 -> 1.0 GiB; temporaries 5x smaller).
"""

import ctypes
import os
import platform

# mallopt(3) parameters, from glibc's <malloc.h>.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX, M_ARENA_MAX = -1, -2, -4, -8
KEEP_FREED_MEMORY = {
    M_MMAP_MAX: 0,  # Large blocks come from the heap too, so freeing them keeps them for reuse...
    M_TRIM_THRESHOLD: 2**31 - 1,  # ...and the heap's top is never handed back to the kernel.
    M_TOP_PAD: 256 << 20,  # Grow the heap in 256 MiB steps rather than a fault-sized sbrk at a time.
    M_ARENA_MAX: 1,  # One arena: memory freed by one XLA worker thread is reused by the next.
}

# Read by XLA when JAX creates its clients; CPU-only flags, ignored by GPU and TPU compilers.
MEMORY_SAVING_XLA_FLAGS = {"xla_cpu_enable_concurrency_optimized_scheduler": "false"}


def use_memory_saving_schedule() -> None:
    """Adds `MEMORY_SAVING_XLA_FLAGS` to XLA_FLAGS, unless the user already set them.

    Call before JAX computes anything: XLA reads the flags once, when its CPU client starts.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    extra = [f"--{name}={value}" for name, value in MEMORY_SAVING_XLA_FLAGS.items() if f"--{name}" not in flags]
    os.environ["XLA_FLAGS"] = " ".join([flags, *extra]).strip()


def keep_freed_memory() -> bool:
    """Tells glibc's malloc to keep freed memory for reuse; False (nothing done) if not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    for parameter, value in KEEP_FREED_MEMORY.items():
        if libc.mallopt(parameter, value) != 1:
            raise OSError(f"glibc refused mallopt({parameter}, {value})")
    return True
