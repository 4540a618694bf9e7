"""The code sandbox: results, limits, honest code, isolation choice and failing closed."""

from __future__ import annotations

import time

import pytest

import llmstack.sandbox as sandbox
from llmstack.sandbox import MAX_OUTPUT_CHARS, SandboxUnavailable, resolve_isolation, run_python


def test_success_and_failure(sandbox_method):
    ok = run_python("import math\nprint(math.factorial(5))")
    assert ok.ok and ok.stdout == "120\n" and not ok.timed_out and ok.method == sandbox_method
    bad = run_python("assert 1 + 1 == 3, 'wrong sum'")
    assert not bad.ok and not bad.timed_out and "AssertionError: wrong sum" in bad.stderr
    assert not run_python("def f(:\n    pass").ok  # syntax error


HONEST = """
import collections, dataclasses, inspect, threading, traceback, unittest
Point = collections.namedtuple("Point", "x y", defaults=(0,))
assert Point(1) == (1, 0)

@dataclasses.dataclass
class Box:
    size: int = 1
    tags: list = dataclasses.field(default_factory=list)

assert Box().size == 1 and inspect.signature(Box).parameters["size"].default == 1
try:
    1 / 0
except ZeroDivisionError:
    assert "ZeroDivisionError" in traceback.format_exc()

class T(unittest.TestCase):
    def test_it(self):
        self.assertEqual(sum([1, 2]), 3)

result = unittest.TextTestRunner(stream=open("unittest.log", "w")).run(
    unittest.defaultTestLoader.loadTestsFromTestCase(T))
assert result.wasSuccessful()
with open("scratch.txt", "w") as f:
    f.write("hi")
assert open("scratch.txt").read() == "hi"
out = []
threads = [threading.Thread(target=out.append, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert sorted(out) == [0, 1, 2, 3]
try:
    import numpy
except ImportError:
    pass
else:
    assert int(numpy.arange(4).sum()) == 6
print("honest")
"""


@pytest.mark.parametrize("isolation", ["auto", "none"])
def test_honest_code_passes(sandbox_method, isolation):
    result = run_python(HONEST, timeout_s=20.0, isolation=isolation)
    assert result.ok and result.stdout == "honest\n", result.stderr


def test_runaway_code_is_killed_at_the_timeout(sandbox_method):
    t0 = time.monotonic()
    result = run_python("import time\ntime.sleep(60)", timeout_s=1.0)
    assert result.timed_out and not result.ok and "timeout" in result.stderr
    assert time.monotonic() - t0 < 2.5


def test_memory_output_and_environment_limits(sandbox_method):
    memory = run_python("x = bytearray(1024 * 1024 * 1024)", memory_mb=256)
    assert not memory.ok and "MemoryError" in memory.stderr
    t0 = time.monotonic()
    flood = run_python("while True:\n    print('x' * 1000)", timeout_s=5.0)
    assert not flood.ok and not flood.timed_out and "over the cap" in flood.stderr
    assert time.monotonic() - t0 < 3 and flood.stdout.endswith("[output truncated]")
    assert len(flood.stdout) <= MAX_OUTPUT_CHARS + 100
    env = run_python("import os, sys\nprint(sorted(set(os.environ) - {'PWD', 'OLDPWD'}))")
    names = "['HOME', 'LANG', 'LC_ALL', 'MKL_NUM_THREADS', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'PATH', 'TMPDIR']"
    assert env.ok and env.stdout == names + "\n"


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="positive"):
        run_python("pass", timeout_s=0)
    with pytest.raises(ValueError, match="unknown isolation"):
        run_python("pass", isolation="docker")


def test_fails_closed_without_isolation(monkeypatch):
    """No working method: "auto" raises one line instead of silently running unisolated."""
    monkeypatch.setattr(sandbox, "_probed", {})
    monkeypatch.setattr(sandbox.isolation.shutil, "which", lambda name: f"/nonexistent/{name}")
    for isolation in ("auto", "bwrap", "unshare"):
        with pytest.raises(SandboxUnavailable, match="isolation='none'") as info:
            run_python("print(1)", isolation=isolation)
        assert "\n" not in str(info.value)
    assert run_python("print(1)", isolation="none").ok  # the weaker mode, only when asked for


def test_probe_runs_once_per_process(sandbox_method, monkeypatch):
    calls = []
    monkeypatch.setattr(sandbox, "_probed", {})
    real = sandbox._run
    monkeypatch.setattr(sandbox, "_run", lambda *a: calls.append(a[0]) or real(*a))
    run_python("pass")
    run_python("pass")
    assert calls.count(sandbox_method) == 3  # one probe, two runs


def test_unshare_method_isolates_too(sandbox_method):
    try:
        resolve_isolation("unshare")
    except SandboxUnavailable as e:
        pytest.skip(str(e))
    code = "import os\nprint(os.getpid())\nopen('/var/tmp/llmstack-escape', 'w')"
    result = run_python(code, isolation="unshare", audit_hook=False)
    assert not result.ok and result.stdout == "1\n" and "Read-only file system" in result.stderr
