"""Run untrusted Python (model-written HumanEval solutions) in a throwaway subprocess.

    from llmstack.sandbox import run_python
    result = run_python("print(1 + 1)", timeout_s=5.0, memory_mb=512)
    result.ok, result.stdout  # (True, "2\\n")

What each run gets:
- a fresh `python -I -B` interpreter (isolated: no user site, no PYTHON* env vars, cwd not on sys.path)
  whose working directory is a new temporary folder, deleted afterwards;
- an environment holding only PATH, HOME (the temp folder) and a UTF-8 locale;
- kernel resource limits set before exec: address space (`memory_mb`), CPU seconds (a backstop to the
  wall-clock timeout), open files, size of any file written (stdout/stderr go to files in the temp
  folder, so a print loop cannot fill our memory) and no core files;
- its own process group, killed as a whole (SIGKILL) at `timeout_s` wall-clock seconds;
- an audit hook (PEP 578), installed before the code runs, that refuses socket creation, process
  spawning (subprocess, os.system, os.exec*, os.fork, posix_spawn), signalling other processes,
  loading ctypes, and writing, deleting or renaming files outside the temp folder.

Limits, honestly: the audit hook is a tripwire for the mistakes a model makes, not a security
boundary. Code running in the same interpreter can in principle defeat it (for example through a
memory-corruption bug or a C extension that makes raw syscalls), and reading files is allowed. No
network namespace, seccomp filter or container is used because those need root or extra tooling.
To run code from an untrusted party, run the whole evaluation inside a container or VM without
network access, as the HumanEval authors advise.
"""

from __future__ import annotations

import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MAX_OPEN_FILES = 64
MAX_FILE_BYTES = 16 * 2**20  # any single file the code writes, stdout/stderr included
MAX_OUTPUT_CHARS = 64 * 1024  # what we read back of stdout and of stderr

# Runs inside the child before the user's code. The hook keeps everything it needs in default
# arguments (bound once, before user code exists) and refuses later edits of its own attributes.
_PRELUDE = r"""
import os, sys

def _sandbox_inside(path, _root=os.path.realpath(os.getcwd()) + os.sep, _abspath=os.path.abspath,
                    _fsdecode=os.fsdecode, _isinstance=isinstance, _str=str, _bytes=bytes, _int=int):
    if _isinstance(path, _int):  # an already-open descriptor
        return True
    if not _isinstance(path, (_str, _bytes)):
        return False
    full = _abspath(_fsdecode(path))
    return full == "/dev/null" or (full + "/").startswith(_root)

def _sandbox_hook(event, args, _inside=_sandbox_inside, _isinstance=isinstance, _str=str,
                  _bytes=bytes, _int=int, _error=PermissionError,
                  _write_flags=os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC):
    refused = None
    if event.startswith("socket."):
        refused = "network access (" + event + ")"
    elif event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                 "os.fork", "os.forkpty", "pty.spawn", "os.kill", "os.killpg",
                 "signal.pthread_kill", "ctypes.dlopen", "ctypes.dlsym"):
        refused = event
    elif event == "import" and args[0] in ("_ctypes", "_posixsubprocess"):
        refused = "importing " + args[0]
    elif event == "object.__setattr__" and args[1] in ("__code__", "__defaults__", "__kwdefaults__"):
        refused = "changing " + args[1]
    elif event == "open" and len(args) >= 3:
        mode, flags = args[1], args[2]
        writing = (_isinstance(mode, _str) and any(c in mode for c in "wax+")) or (
            _isinstance(flags, _int) and flags & _write_flags)
        if writing and not _inside(args[0]):
            refused = "writing outside the sandbox folder"
    elif event in ("os.remove", "os.rmdir", "os.rename", "os.truncate", "os.chmod", "os.chown",
                 "os.link", "os.symlink", "os.mkdir", "shutil.rmtree", "os.utime"):
        paths = [a for a in args[:2] if _isinstance(a, (_str, _bytes))]
        if not all(_inside(p) for p in paths):
            refused = event + " outside the sandbox folder"
    if refused is not None:
        raise _error("sandbox: " + refused + " is not allowed")

sys.addaudithook(_sandbox_hook)
del _sandbox_hook, _sandbox_inside
_path = sys.argv[1]
with open(_path, encoding="utf-8") as _f:
    _code = compile(_f.read(), _path, "exec")
sys.argv = [_path]
_globals = {"__name__": "__main__", "__file__": _path, "__builtins__": __builtins__}
del _f, _path
exec(_code, _globals)
"""


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one run: ok means exit status 0 within the time limit."""

    ok: bool
    stdout: str
    stderr: str
    timed_out: bool


def _limit_resources(memory_mb: int, cpu_s: int) -> None:
    """Runs in the forked child before exec (only C-level setrlimit calls: safe after fork)."""
    memory = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_OPEN_FILES, MAX_OPEN_FILES))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _read_capped(path: Path) -> str:
    with open(path, "rb") as f:
        data = f.read(MAX_OUTPUT_CHARS + 1)
    text = data[:MAX_OUTPUT_CHARS].decode("utf-8", errors="replace")
    return text + ("\n[output truncated]" if len(data) > MAX_OUTPUT_CHARS else "")


def run_python(code: str, *, timeout_s: float = 5.0, memory_mb: int = 512) -> SandboxResult:
    """Run `code` as a script in a fresh, resource-limited interpreter; see the module docstring."""
    if timeout_s <= 0 or memory_mb <= 0:
        raise ValueError(f"timeout_s and memory_mb must be positive, got {timeout_s} and {memory_mb}")
    cpu_s = math.ceil(timeout_s) + 1
    with tempfile.TemporaryDirectory(prefix="llmstack-sandbox-") as tmp:
        root = Path(tmp)
        script = root / "program.py"
        script.write_text(code, encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        with open(root / "stdout.txt", "wb") as out, open(root / "stderr.txt", "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", _PRELUDE, str(script)],
                cwd=tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # own process group, so the kill reaches every child
                preexec_fn=lambda: _limit_resources(memory_mb, cpu_s),
            )
            timed_out = False
            try:
                returncode = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                returncode = proc.wait()
        stdout, stderr = _read_capped(root / "stdout.txt"), _read_capped(root / "stderr.txt")
    if timed_out:
        stderr += f"\n[killed after {timeout_s:g} s wall-clock timeout]"
    elif returncode < 0:
        stderr += f"\n[killed by signal {-returncode}]"
    return SandboxResult(
        ok=returncode == 0 and not timed_out, stdout=stdout, stderr=stderr, timed_out=timed_out
    )
