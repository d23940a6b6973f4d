"""The CPU allocator setting: applied on glibc, and switched off by the environment variable."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

CHECK = """
import ctypes, ctypes.util, json, sys
from translate_kit.allocator import keep_freed_memory
applied = keep_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.sbrk.restype = libc.malloc.restype = ctypes.c_void_p  # pointers, not C ints
libc.sbrk.argtypes, libc.malloc.argtypes, libc.free.argtypes = [ctypes.c_ssize_t], [ctypes.c_size_t], [ctypes.c_void_p]
before = libc.sbrk(0)
block = libc.malloc(64 << 20)  # 64 MiB: above glibc's default mmap threshold
inside_heap = libc.sbrk(0) != before  # served from the heap, not by mmap
libc.free(block)
print(json.dumps([applied, inside_heap]))
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
@pytest.mark.parametrize(("env", "expected"), [({}, [True, True]), ({"TRANSLATE_KIT_KEEP_FREED_MEMORY": "0"}, [False, False])])
def test_large_blocks_come_from_the_heap_unless_switched_off(env, expected):
    import json
    import os

    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    assert json.loads(out.stdout) == expected
