"""Freed heap memory goes back to the operating system between strips."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pipelines.scoring import heap
from pipelines.scoring.heap import release_free_memory

FRAGMENT = textwrap.dedent("""
    import sys
    from pipelines.scoring.heap import release_free_memory

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


def test_without_malloc_trim_nothing_is_called_and_it_says_so(monkeypatch):
    monkeypatch.setattr(heap, "_malloc_trim", lambda: None)  # a C library other than glibc
    assert release_free_memory() is False
