"""The attack catalogue: one test per class, each refused or contained, each bounded in time.

Most attacks run with the audit hook switched off, to show the OS isolation holds by itself."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from llmstack.calculator import calculate
from llmstack.sandbox import MAX_TASKS, run_python

SECRET = "llmstack-test-secret-8d1f"


pytestmark = pytest.mark.usefixtures("sandbox_method")  # skips where no OS isolation exists


@pytest.fixture
def outside():
    """A folder outside the sandbox that the sandbox can see (/var/tmp is not replaced by a tmpfs)."""
    parent = "/var/tmp" if os.access("/var/tmp", os.W_OK) else None
    root = Path(tempfile.mkdtemp(prefix="llmstack-outside-", dir=parent))
    (root / "keep.txt").write_text("important")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def untouched(folder: Path) -> bool:
    return sorted(p.name for p in folder.iterdir()) == ["keep.txt"] and (folder / "keep.txt").read_text() == "important"


EARLY_EXITS = [
    "import sys\nsys.exit(0)",
    "raise SystemExit",
    "raise SystemExit(0)",
    "import os\nos._exit(0)",
    "try:\n    assert False\nfinally:\n    import sys\n    sys.exit(0)",
    "import atexit, os\natexit.register(os._exit, 0)\nraise AssertionError",
    "import builtins, sys\nbuiltins.print = lambda *a, **k: None\nsys.stdout.write = len\nprint('passed')\nsys.exit(0)",
    "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'passed ' + b'0' * 32)\n"
    "    except OSError:\n        pass\nos._exit(0)",
    "import threading, os\nthreading.Thread(target=os._exit, args=(0,)).start()\nimport time\ntime.sleep(5)",
]


@pytest.mark.parametrize("exit_code", EARLY_EXITS)
def test_early_exits_never_count_as_a_pass(exit_code):
    result = run_python(exit_code + "\nassert False, 'the tests would fail here'\n", timeout_s=5.0)
    assert not result.ok and not result.timed_out


def test_shell_commands_cannot_escape(outside, monkeypatch):
    monkeypatch.setenv("LLMSTACK_SECRET", SECRET)
    shell = f"touch {outside}/evil; rm -f {outside}/keep.txt; echo env=$LLMSTACK_SECRET; cat /proc/*/environ; ps ax"
    code = f"import subprocess, os\nsubprocess.run({shell!r}, shell=True)\nos.system('id > {outside}/id')"
    result = run_python(code, audit_hook=False)
    assert SECRET not in result.stdout + result.stderr and untouched(outside)
    hooked = run_python(code)
    assert not hooked.ok and "sandbox: subprocess.Popen" in hooked.stderr


def test_proc_shows_no_evaluator_environment(monkeypatch):
    monkeypatch.setenv("LLMSTACK_SECRET", SECRET)
    code = (
        "import os\nfound = []\nfor pid in [p for p in os.listdir('/proc') if p.isdigit()] + [PID]:\n"
        "    try:\n        found.append(open(f'/proc/{pid}/environ', 'rb').read())\n"
        "    except OSError:\n        pass\nprint(b''.join(found))\nprint(os.environ)\n"
    ).replace("PID", repr(str(os.getpid())))
    result = run_python(code, audit_hook=False)
    assert result.ok and SECRET not in result.stdout


def test_subinterpreters_cannot_escape(outside):
    code = (
        "try:\n    import _xxsubinterpreters as interpreters\nexcept ImportError:\n"
        "    import _interpreters as interpreters\n"
        f"interpreters.run_string(interpreters.create(), \"open('{outside}/evil', 'w').write('x')\")\n"
    )
    result = run_python(code, audit_hook=False)
    assert not result.ok and untouched(outside)


def test_fd_relative_and_symlink_writes_stay_inside(outside):
    code = (
        "import os\nfd = os.open({!r}, os.O_RDONLY)\n"
        "for attempt in (lambda: os.open('evil', os.O_WRONLY | os.O_CREAT, dir_fd=fd),\n"
        "                lambda: os.unlink('keep.txt', dir_fd=fd),\n"
        "                lambda: os.chmod('keep.txt', 0o777, dir_fd=fd),\n"
        "                lambda: (os.symlink({!r}, 'link'), open('link/evil', 'w')),\n"
        "                lambda: (os.symlink({!r}, 'file'), open('file', 'w').write('gone'))):\n"
        "    try:\n        attempt()\n    except OSError as e:\n        print(type(e).__name__)\n"
    ).format(str(outside), str(outside), str(outside / "keep.txt"))
    result = run_python(code, audit_hook=False)
    assert result.ok and result.stdout.count("Error") == 5 and untouched(outside)


def test_patching_the_checks_gains_nothing(outside):
    """The hook refuses heap introspection; with the hook gone, the OS still holds."""
    code = (
        "import gc, os\nfor obj in gc.get_objects():\n"
        "    if getattr(obj, '__name__', '') == 'hook':\n"
        "        obj.__code__ = (lambda event, args: None).__code__\n"
        f"os.system('touch {outside}/evil')\n"
    )
    hooked = run_python(code)
    assert not hooked.ok and "sandbox: gc.get_objects" in hooked.stderr
    assert not run_python(code.replace("os.system", "raise SystemExit#"), audit_hook=False).ok
    run_python(code, audit_hook=False)
    assert untouched(outside)


def test_signals_cannot_reach_the_evaluator():
    victim = subprocess.Popen(["sleep", "30"])
    try:
        code = (
            "import os, signal\n"
            f"for target in (lambda: os.kill(os.getppid(), 9), lambda: os.killpg(os.getpgid(0), 9),\n"
            f"               lambda: os.kill({victim.pid}, 9), lambda: os.kill({os.getpid()}, 9),\n"
            "               lambda: os.kill(-1, 9)):\n"
            "    try:\n        target()\n    except OSError:\n        pass\n"
        )
        run_python(code, audit_hook=False)
        assert victim.poll() is None  # still alive, and so are we
        hooked = run_python(f"import os\nos.kill({victim.pid}, {int(signal.SIGKILL)})")
        assert not hooked.ok and "sandbox: os.kill" in hooked.stderr and victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_output_swaps_and_lingering_children_cannot_hang_the_evaluator():
    t0 = time.monotonic()
    swap = "import os, sys\nfor name in ('stdout.txt', 'stderr.txt'):\n    os.mkfifo(name)\nos.close(1)\nos.close(2)\n"
    result = run_python(swap + "assert False", timeout_s=5.0, audit_hook=False)
    assert not result.ok and not result.timed_out
    linger = "import os, time\nif os.fork() == 0:\n    time.sleep(60)\n"  # the child keeps our pipes open
    result = run_python(linger, timeout_s=5.0, audit_hook=False)
    assert result.ok and not result.timed_out  # the program ended; its namespace took the child along
    assert time.monotonic() - t0 < 4


def test_fork_bomb_is_bounded():
    """RLIMIT_NPROC bounds it, except for root: the kernel exempts uid 0 from that limit even in a
    user namespace, so there the audit hook refuses the fork and the clock bounds the rest."""
    as_root = os.geteuid() == 0
    t0 = time.monotonic()
    code = (
        "import os, time\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
        "    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    n += 1\nprint(n)\n"
    )
    result = run_python(code, timeout_s=3.0, audit_hook=as_root)
    assert result.ok and int(result.stdout) < (1 if as_root else MAX_TASKS)
    assert time.monotonic() - t0 < 4


def test_memory_hog_and_infinite_loop_are_contained():
    assert not run_python("x = ' ' * (2 * 1024**3)", memory_mb=256, audit_hook=False).ok
    t0 = time.monotonic()
    assert run_python("while True:\n    pass", timeout_s=1.0, audit_hook=False).timed_out
    assert time.monotonic() - t0 < 2.5


def test_network_is_unreachable():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.2)
        port = server.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        result = run_python(code, audit_hook=False)
        assert not result.ok and ("ConnectionRefused" in result.stderr or "unreachable" in result.stderr)
        with pytest.raises(TimeoutError):
            server.accept()


CALCULATOR_ATTACKS = [
    "__import__('os').system('id')",
    "exit(0)",
    "quit()",
    "open('/etc/passwd').read()",
    "(lambda: 0)()",
    "().__class__.__base__.__subclasses__()",
    "'a'.__class__",
    "globals()",
    "exec('1')",
    "eval('1')",
    "breakpoint()",
    "import os",
    "[x for x in range(10**9)]",
    "9 ** 9 ** 9 ** 9",
    "'x' * 10 ** 9",
    "'{0.__class__}'.format(1)",
    "len.__self__",
]


@pytest.mark.parametrize("expression", CALCULATOR_ATTACKS)
def test_calculator_refuses_the_attacks(expression):
    t0 = time.monotonic()
    assert calculate(expression).startswith("error:")
    assert time.monotonic() - t0 < 1.5
