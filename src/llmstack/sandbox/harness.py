"""The code that runs inside the sandbox around the untrusted program: limits, audit hook, proof.

The proof of a pass: the parent writes a random nonce into a pipe whose read end the child inherits.
The harness reads it only after `exec` of the program returned normally (every test ran, nothing
raised, nothing exited) and writes it back on a second pipe. An early exit (`sys.exit`, `SystemExit`,
`os._exit`, an exit in `finally`, an `atexit` handler) never reaches that line, and the program
cannot write the proof itself without the nonce, which no file, argument or variable holds.
"""

CHILD = r"""
import os, sys

def _sandbox_hook_factory(root, own_pid, _str=str, _bytes=bytes, _int=int, _isinstance=isinstance,
                          _error=PermissionError, _abspath=os.path.abspath, _fsdecode=os.fsdecode):
    # Second layer only: namespaces already contain all of this; the hook gives clear errors and
    # keeps processes, signals and harness introspection out of reach where namespaces are absent.
    writes = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    spawns = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
              "os.forkpty", "pty.spawn", "gc.get_objects", "gc.get_referrers", "gc.get_referents"}
    mutations = {"os.remove", "os.rmdir", "os.rename", "os.truncate", "os.chmod", "os.chown",
                 "os.link", "os.symlink", "os.mkdir", "shutil.rmtree", "os.utime"}

    def inside(path):
        if _isinstance(path, _int):
            return True
        if not _isinstance(path, (_str, _bytes)):
            return False
        full = _abspath(_fsdecode(path))
        return full == "/dev/null" or (full + "/").startswith(root)

    def hook(event, args):
        refused = None
        if event.startswith("socket.") or event in spawns:
            refused = event
        elif event in ("os.kill", "os.killpg", "signal.pthread_kill") and args[0] != own_pid:
            refused = event
        elif event == "open" and len(args) >= 3:
            mode, flags = args[1], args[2]
            writing = (_isinstance(mode, _str) and any(c in mode for c in "wax+")) or (
                _isinstance(flags, _int) and flags & writes)
            if writing and not inside(args[0]):
                refused = "writing outside the work folder"
        elif event in mutations and not all(inside(a) for a in args[:2] if _isinstance(a, (_str, _bytes))):
            refused = event + " outside the work folder"
        if refused is not None:
            raise _error("sandbox: " + refused + " is not allowed")

    return hook

def _sandbox_main(read=os.read, write=os.write):
    import resource
    nonce_fd, proof_fd, nproc, hook = (int(a) for a in sys.argv[1:5])
    path = sys.argv[5]
    if nproc:  # set here, inside the user namespace, so it counts this sandbox's tasks only
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    os.set_inheritable(nonce_fd, False)
    os.set_inheritable(proof_fd, False)
    if hook:
        sys.addaudithook(_sandbox_hook_factory(os.getcwd() + "/", os.getpid()))
    with open(path, encoding="utf-8") as f:
        code = compile(f.read(), path, "exec")
    sys.argv = [path]
    program = type(sys)("__main__")  # a fresh __main__, as runpy gives a script
    program.__file__ = path
    sys.modules["__main__"] = program
    exec(code, program.__dict__)
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    write(proof_fd, b"passed " + read(nonce_fd, 64))  # reached only when the program ran to its end

_sandbox_main()
"""
