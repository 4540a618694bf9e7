"""The HumanEval sandbox: results, time and memory limits, and the refusals of its audit hook."""

from __future__ import annotations

import time

import pytest

from llmstack.sandbox import MAX_OUTPUT_CHARS, run_python


def test_success_and_failure():
    ok = run_python("import math\nprint(math.factorial(5))")
    assert ok.ok and ok.stdout == "120\n" and not ok.timed_out
    bad = run_python("assert 1 + 1 == 3, 'wrong sum'")
    assert not bad.ok and not bad.timed_out and "AssertionError: wrong sum" in bad.stderr
    assert not run_python("def f(:\n    pass").ok  # syntax error


@pytest.mark.parametrize("code", ["while True:\n    pass", "import time\ntime.sleep(60)"])
def test_runaway_code_is_killed_at_the_timeout(code):
    t0 = time.monotonic()
    result = run_python(code, timeout_s=1.0)
    assert result.timed_out and not result.ok
    assert time.monotonic() - t0 < 2.5
    assert "timeout" in result.stderr


@pytest.mark.parametrize(
    "code, refused",
    [
        ("import socket\nsocket.socket()", "network access"),
        ("import socket\nsocket.create_connection(('127.0.0.1', 9))", "network access"),
        ("import subprocess\nsubprocess.run(['true'])", "_posixsubprocess"),
        ("import os\nos.system('true')", "os.system"),
        ("import os\nos.execv('/bin/true', ['true'])", "os.exec"),
        ("import os\nos.fork()", "os.fork"),
        ("import os\nos.posix_spawn('/bin/true', ['true'], {})", "os.posix_spawn"),
        ("import multiprocessing as mp\nmp.Process(target=print).start()", "not allowed"),
        ("import os\nos.kill(1, 0)", "os.kill"),
        ("import ctypes", "_ctypes"),
    ],
)
def test_network_and_process_spawning_are_refused(code, refused):
    result = run_python(code)
    assert not result.ok
    assert "PermissionError: sandbox:" in result.stderr and refused in result.stderr


def test_files_outside_the_sandbox_folder_are_protected(tmp_path):
    target = tmp_path / "escape.txt"
    victim = tmp_path / "keep.txt"
    victim.write_text("important")
    result = run_python(f"open({str(target)!r}, 'w').write('x')")
    assert not result.ok and "writing outside" in result.stderr and not target.exists()
    result = run_python(f"import os\nos.remove({str(victim)!r})")
    assert not result.ok and victim.read_text() == "important"
    inside = run_python("open('scratch.txt', 'w').write('hi')\nprint(open('scratch.txt').read())")
    assert inside.ok and inside.stdout == "hi\n"


def test_hook_cannot_be_swapped_out():
    code = (
        "import gc\n"
        "for obj in gc.get_objects():\n"
        "    if getattr(obj, '__name__', '') == '_sandbox_hook':\n"
        "        obj.__code__ = (lambda event, args: None).__code__\n"
        "import os\nos.system('true')\n"
    )
    result = run_python(code)
    assert not result.ok and "changing __code__" in result.stderr


def test_memory_output_and_environment_limits():
    memory = run_python("x = bytearray(1024 * 1024 * 1024)", memory_mb=256)
    assert not memory.ok and "MemoryError" in memory.stderr
    flood = run_python("while True:\n    print('x' * 1000)", timeout_s=5.0)
    assert not flood.ok and not flood.timed_out  # stopped by the file-size limit, not the clock
    assert len(flood.stdout) <= MAX_OUTPUT_CHARS + 100 and flood.stdout.endswith("[output truncated]")
    env = run_python("import os, sys\nprint(sorted(os.environ))\nprint(sys.flags.isolated)")
    assert env.ok and env.stdout == "['HOME', 'LANG', 'LC_ALL', 'PATH']\n1\n"


def test_bad_limits_are_rejected():
    with pytest.raises(ValueError, match="positive"):
        run_python("pass", timeout_s=0)
