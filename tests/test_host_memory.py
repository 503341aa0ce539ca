"""`host_memory.keep_freed_memory`: freed large blocks are reused instead of faulted in again."""

import platform
import subprocess
import sys

import pytest

# Allocates and frees a 64 MiB block (above glibc's largest mmap threshold, 32 MiB) five times after a
# first round, and prints the minor page faults of those five rounds.
FAULTS_PER_CYCLE = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    assert host_memory.keep_freed_memory()
elif sys.argv[1] == "runtime":  # What every experiment gets through `python -m ctxfuse_jax.main` on CPU.
    from ctxfuse_jax import runtime
    runtime.setup(distributed=False)
def touch():
    block = np.empty(64 << 20, np.uint8)
    block[::4096] = 1
    del block
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_CYCLE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc",
                    reason="glibc's malloc only")
@pytest.mark.parametrize("mode", ["keep", "runtime"])
def test_freed_memory_is_reused_instead_of_faulted_in_again(mode):
    system, kept = _faults("system"), _faults(mode)
    # glibc's default maps the block afresh every cycle: at least one fault per page, or per 2 MiB
    # page where numpy asks for transparent huge pages.
    assert system >= 5 * (64 << 20) // (2 << 20)
    assert kept * 50 < system  # kept: the pages faulted in by the first cycle serve all five
