"""Which operating-system isolation this machine offers, and the command that applies it.

- "bwrap": bubblewrap (Debian package `bubblewrap`), the preferred, well-kept tool.
- "unshare": util-linux `unshare` + `mount` + `setpriv`, when bubblewrap is missing.
- "none": no namespaces, only rlimits and the audit hook; used only when asked for by name.

Both isolated methods give: new user, PID (own /proc), network (loopback only, down), mount, IPC and
UTS namespaces; the whole file system read-only except the work folder; no capabilities left for
the program; and the sandbox's PID 1 killed when the evaluator (or our timeout) kills the launcher,
which makes the kernel kill every process left in the namespace.
"""

from __future__ import annotations

import shutil

METHODS = ("bwrap", "unshare", "none")
ISOLATED = ("bwrap", "unshare")


class SandboxUnavailable(RuntimeError):
    """No requested isolation method works on this machine (fail closed)."""


def bwrap_command(workdir: str) -> list[str]:
    """bubblewrap: read-only root, fresh /proc, /dev and /tmp, writable work folder, no caps."""
    bwrap = shutil.which("bwrap") or "bwrap"
    return [
        bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
        "--cap-drop", "ALL", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
        "--tmpfs", "/tmp", "--bind", workdir, workdir, "--chdir", workdir, "--",
    ]  # fmt: skip


# Runs as root of the new user namespace: make the work folder its own mount, turn every mount
# read-only (the read-only flag we set is then kept: the program has no capability to undo it),
# then drop every capability for good before the program starts.
_UNSHARE_SETUP = r"""set -e
w=$1; shift
mount --bind "$w" "$w"
for m in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
  [ "$m" = "$w" ] || mount -o remount,bind,ro "$m"
done
cd "$w"
exec setpriv --bounding-set=-all --inh-caps=-all --no-new-privs -- "$@"
"""


def unshare_command(workdir: str) -> list[str]:
    """util-linux: the same namespaces as bwrap; `--kill-child` ties the namespace to our launcher."""
    unshare = shutil.which("unshare") or "unshare"
    return [
        unshare, "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child",
        "--mount", "--mount-proc", "--ipc", "--uts", "--", "/bin/sh", "-c", _UNSHARE_SETUP, "sh",
        workdir,
    ]  # fmt: skip


def launcher(method: str, workdir: str) -> list[str]:
    """The command prefix that runs a program under `method` with `workdir` writable."""
    if method == "bwrap":
        return bwrap_command(workdir)
    if method == "unshare":
        return unshare_command(workdir)
    if method == "none":
        return []
    raise ValueError(f"sandbox: unknown isolation {method!r}; choose one of {', '.join(METHODS)} or 'auto'")
