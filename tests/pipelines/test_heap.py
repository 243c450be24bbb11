"""Freed heap memory goes back to the operating system between strips."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pipelines.heap import release_free_memory

FRAGMENT = textwrap.dedent("""
    import sys
    from pipelines.heap import release_free_memory

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    bytearray(4 << 20)  # freeing a large mapped block makes glibc serve later 1 MB blocks from its heap
    blocks = [bytearray(1 << 20) for _ in range(300)]
    del blocks[::2]  # holes in the heap: freed, but held by the allocator
    before = rss_mb()
    assert release_free_memory()
    print(before - rss_mb())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc only")
def test_freed_holes_in_the_heap_are_returned_to_the_os():
    done = subprocess.run([sys.executable, "-c", FRAGMENT], capture_output=True, text=True, check=True)
    assert float(done.stdout) > 100  # of the 150 MB freed


def test_release_is_safe_to_call_repeatedly():
    assert release_free_memory() == release_free_memory()
