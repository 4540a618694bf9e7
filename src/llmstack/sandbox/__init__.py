"""Run untrusted Python (model-written HumanEval solutions, RL rewards) in an OS-isolated process.

    from llmstack.sandbox import run_python
    result = run_python("print(1 + 1)", timeout_s=5.0, memory_mb=512)
    result.ok, result.stdout  # (True, "2\\n")

Each run is a fresh `python -I -B` in its own Linux namespaces (see `isolation`): no network, its
own PID space and /proc (it cannot see or signal the evaluator), a read-only file system except a
private work folder (its cwd, deleted afterwards), a clean environment, rlimits on address space,
CPU seconds, open files, file size and tasks, and its whole process tree killed when it ends.
`isolation="auto"` uses bubblewrap, else `unshare`, and raises `SandboxUnavailable` when neither
works; the weaker in-process mode (rlimits + audit hook, no namespaces) runs only with
`isolation="none"`.

`ok` is a proven pass: exit status 0 and a per-run nonce that the harness hands back only after the
program ran to its end (see `harness`). Outputs come back through pipes, capped; a run that prints
more than the cap is stopped and fails. An audit hook stays as a second layer (refusing process
spawning, signals to others, sockets, writes outside the work folder, heap introspection), never
in the way of honest code.

Known limit: the program runs in the same interpreter as the harness, so code written to attack
this harness in particular (reading the inherited nonce descriptor before the tests end) can forge
a pass; early exits, which a policy finds by itself, cannot.
"""

from __future__ import annotations

import math
import os
import resource
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from llmstack.sandbox.harness import CHILD
from llmstack.sandbox.isolation import ISOLATED, METHODS, SandboxUnavailable, launcher

__all__ = ["MAX_OUTPUT_CHARS", "SandboxResult", "SandboxUnavailable", "resolve_isolation", "run_python"]

MAX_OPEN_FILES = 64
MAX_FILE_BYTES = 16 * 2**20  # any single file the code writes
MAX_OUTPUT_CHARS = 64 * 1024  # what we read of stdout and of stderr; more stops the run
MAX_TASKS = 64  # processes + threads inside one sandbox (bounds fork bombs)
_PROOF_CAP = 128
_probed: dict[str, str] = {}  # method -> "" when it works, else why not (once per process)


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one run: ok means a proven pass (exit 0 and the end-of-program proof)."""

    ok: bool
    stdout: str
    stderr: str
    timed_out: bool
    returncode: int | None = None
    method: str = ""


def _probe(method: str) -> str:
    """Why `method` does not work here ("" when it does); tried once per process."""
    if method not in _probed:
        try:
            r = _run(method, "import os\nprint(os.getpid())", 10.0, 256, True)
            ok = r.ok and r.stdout.strip() != str(os.getpid())
            _probed[method] = "" if ok else (r.stderr.strip().splitlines() or ["no proof of a run"])[-1]
        except OSError as e:
            _probed[method] = str(e)
    return _probed[method]


def resolve_isolation(isolation: str = "auto") -> str:
    """The method to use: "auto" picks the first working isolated one; never degrades to "none"."""
    if isolation not in (*METHODS, "auto"):
        raise ValueError(f"sandbox: unknown isolation {isolation!r}; choose auto, {', '.join(METHODS)}")
    if isolation == "none":
        return "none"
    why = {}
    for method in ISOLATED if isolation == "auto" else (isolation,):
        why[method] = _probe(method)
        if not why[method]:
            return method
    reasons = "; ".join(f"{m}: {w}" for m, w in why.items())
    raise SandboxUnavailable(
        f"sandbox: no OS isolation works here ({reasons}); install bubblewrap or enable user "
        "namespaces, or opt in to the weaker in-process sandbox with isolation='none'"
    )


def _limit_resources(memory_mb: int, cpu_s: int) -> None:
    """Runs in the forked launcher before exec; inherited by everything in the sandbox."""
    memory = memory_mb * 2**20
    for limit, value in (
        (resource.RLIMIT_AS, memory),
        (resource.RLIMIT_CPU, cpu_s),
        (resource.RLIMIT_NOFILE, MAX_OPEN_FILES),
        (resource.RLIMIT_FSIZE, MAX_FILE_BYTES),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(limit, (value, value))


def _collect(streams: dict[str, int], deadline: float) -> tuple[dict[str, bytes], str]:
    """Read the pipes until all close; stop early at the deadline ("timeout") or a cap ("flood")."""
    caps = {"stdout": MAX_OUTPUT_CHARS, "stderr": MAX_OUTPUT_CHARS, "proof": _PROOF_CAP}
    data = {name: bytearray() for name in streams}
    stop = ""
    with selectors.DefaultSelector() as sel:
        for name, fd in streams.items():
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ, name)
        while sel.get_map() and not stop:
            left = deadline - time.monotonic()
            if left <= 0:
                stop = "timeout"
                break
            for key, _ in sel.select(left):
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                data[key.data] += chunk
                if len(data[key.data]) > caps[key.data]:
                    stop = "flood"
    return {name: bytes(buf) for name, buf in data.items()}, stop


def _text(data: bytes) -> str:
    text = data[:MAX_OUTPUT_CHARS].decode("utf-8", errors="replace")
    return text + ("\n[output truncated]" if len(data) > MAX_OUTPUT_CHARS else "")


def _spawn(method: str, root: str, memory_mb: int, cpu_s: int, fds: tuple[int, int], hook: bool):
    """Start the launcher + harness; the child inherits only the nonce and proof pipe ends."""
    nproc = MAX_TASKS if method in ISOLATED else 0  # outside a namespace it would count all our tasks
    env = {"PATH": "/usr/bin:/bin", "HOME": root, "TMPDIR": root, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # fmt: skip
    args = [str(fds[0]), str(fds[1]), str(nproc), str(int(hook)), str(Path(root) / "program.py")]
    return subprocess.Popen(
        [*launcher(method, root), sys.executable, "-I", "-B", "-c", CHILD, *args],
        cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        pass_fds=fds, start_new_session=True, preexec_fn=lambda: _limit_resources(memory_mb, cpu_s),
    )  # fmt: skip


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher's group; the namespace's PID 1 dies with it, and with it every process."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _run(method: str, code: str, timeout_s: float, memory_mb: int, hook: bool) -> SandboxResult:
    nonce = secrets.token_hex(16).encode()
    with tempfile.TemporaryDirectory(prefix="llmstack-sandbox-") as root:
        (Path(root) / "program.py").write_text(code, encoding="utf-8")
        nonce_r, nonce_w = os.pipe()
        proof_r, proof_w = os.pipe()
        os.write(nonce_w, nonce)
        os.close(nonce_w)
        try:
            proc = _spawn(method, root, memory_mb, math.ceil(timeout_s) + 1, (nonce_r, proof_w), hook)
        finally:
            os.close(nonce_r)
            os.close(proof_w)
        deadline = time.monotonic() + timeout_s
        streams = {"stdout": proc.stdout.fileno(), "stderr": proc.stderr.fileno(), "proof": proof_r}
        try:
            out, stop = _collect(streams, deadline)
            if not stop:
                try:
                    proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
                except subprocess.TimeoutExpired:
                    stop = "timeout"
        finally:
            _kill(proc)
            returncode = proc.wait()
            proc.stdout.close()
            proc.stderr.close()
            os.close(proof_r)
    stderr = _text(out["stderr"])
    if stop == "timeout":
        stderr += f"\n[killed after {timeout_s:g} s wall-clock timeout]"
    elif stop == "flood":
        stderr += "\n[stopped: output over the cap]"
    elif returncode < 0 or returncode > 128:
        stderr += f"\n[killed by signal {abs(returncode) % 128}]"
    proven = returncode == 0 and not stop and out["proof"] == b"passed " + nonce
    return SandboxResult(proven, _text(out["stdout"]), stderr, stop == "timeout", returncode, method)


def run_python(
    code: str,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    isolation: str = "auto",
    audit_hook: bool = True,
) -> SandboxResult:
    """Run `code` as a script in a fresh isolated interpreter; see the module docstring.

    `audit_hook=False` leaves only the OS layer (the tests use it to show that layer holds alone)."""
    if timeout_s <= 0 or memory_mb <= 0:
        raise ValueError(f"timeout_s and memory_mb must be positive, got {timeout_s} and {memory_mb}")
    return _run(resolve_isolation(isolation), code, timeout_s, memory_mb, audit_hook)
