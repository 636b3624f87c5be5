"""The workers' memory setting: glibc keeps freed large buffers instead of page-faulting them in again."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from local.malloc import keep_freed_buffers

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is a glibc feature")


@glibc
def test_the_setting_is_accepted_by_glibc_and_can_be_repeated():
    assert keep_freed_buffers() is True
    assert keep_freed_buffers() is True


@glibc
def test_a_process_with_the_setting_stops_page_faulting_for_each_large_buffer():
    probe = (
        "import os, resource, sys\n"
        "from local.malloc import keep_freed_buffers\n"
        "if sys.argv[1] == 'tuned': keep_freed_buffers()\n"
        "img = os.urandom(300_000)\n"
        "def request(): return img[:2] + b'tag' + img[2:]  # a slice and a copy: two large buffers, then freed\n"
        "for _ in range(5): request()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(200): request()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    run = [sys.executable, "-c", probe]
    faults = {}
    for mode in ("default", "tuned"):
        faults[mode] = int(subprocess.run([*run, mode], capture_output=True, text=True, check=True).stdout)
    assert faults["tuned"] < 50 and faults["default"] > 1000, faults  # ~110 faults per request without the setting
