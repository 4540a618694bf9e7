"""A real Slurm cluster of two nodes on this one host, for tests: Debian's munge, slurmctld and slurmd.

`SlurmCluster` starts a private munged (its own key and socket), one slurmctld and one slurmd per
node, all configured by a slurm.conf in a fresh folder (SLURM_CONF points the client commands and
every job at it), and stops exactly the processes it started. Nothing under /etc is touched.
Without cgroups here: proctrack/linuxproc and task/none (see STACK-NOTES, "Slurm").

By hand: `python tests/slurmcluster.py` brings one up and prints the SLURM_CONF to export.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue")
NODES = ("n1", "n2")
CPUS_PER_NODE = 64  # more than this host has (config_overrides): the profile's job sizes fit unchanged


def unavailable() -> str | None:
    """Why a cluster cannot start here (None when it can), installing the packages if missing."""
    if os.geteuid() != 0:
        return "a test Slurm needs root (munged runs as user munge, slurmd as root)"
    if not all(shutil.which(d) for d in DAEMONS):
        if shutil.which("apt-get") is None:
            return "Slurm is not installed and there is no apt-get to install " + " ".join(PACKAGES)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        done = subprocess.run(
            f"apt-get update -qq && apt-get install -y -qq {' '.join(PACKAGES)}",
            shell=True, env=env, capture_output=True, text=True,
        )
        if done.returncode != 0 or not all(shutil.which(d) for d in DAEMONS):
            return f"apt-get install {' '.join(PACKAGES)} failed: {done.stderr.strip()[-300:]}"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "the munge package created no 'munge' user"
    return None


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class SlurmCluster:
    def __init__(self) -> None:
        # Under /tmp, not pytest's 0700 tmp_path: munged runs as user munge and must reach its folder.
        self.root = Path(tempfile.mkdtemp(prefix="llmstack-slurm-"))
        self.root.chmod(0o755)
        self.conf = self.root / "slurm.conf"
        self.procs: list[subprocess.Popen] = []
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # -- configuration ---------------------------------------------------------------------
    def _munge(self) -> Path:
        home = self.root / "munge"
        home.mkdir()
        home.chmod(0o755)  # munged: the socket folder must be reachable by all, writable by it alone
        key = home / "munge.key"
        subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True, capture_output=True)
        user = pwd.getpwnam("munge")
        for path in (home, key):
            os.chown(path, user.pw_uid, user.pw_gid)
        key.chmod(0o600)
        return home

    def _write_conf(self, munge_socket: Path) -> None:
        ctld_port, *node_ports = _free_ports(1 + len(NODES))
        host = socket.gethostname().split(".")[0]
        (self.root / "state").mkdir()
        nodes = "\n".join(
            f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} "
            f"CPUs={CPUS_PER_NODE} RealMemory=1000000 State=UNKNOWN"
            for name, port in zip(NODES, node_ports, strict=False)
        )
        r = self.root
        self.conf.write_text(
            f"""ClusterName=llmstacktest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool-%n
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd-%n.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
KillWait=5
{nodes}
PartitionName=debug Nodes={",".join(NODES)} Default=YES MaxTime=INFINITE State=UP
"""
        )

    # -- life cycle ------------------------------------------------------------------------
    def _start(self, argv: list[str], user: str | None = None, log: str = "") -> None:
        out = open(self.root / f"{log or Path(argv[0]).name}.out", "wb")
        self.procs.append(
            subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, user=user,
                             start_new_session=True)
        )

    def start(self, timeout: float = 60.0) -> SlurmCluster:
        munge = self._munge()
        sock = munge / "munge.socket"
        self._start(["munged", "--foreground", "--key-file", str(munge / "munge.key"), "--socket", str(sock),
                     "--pid-file", str(munge / "munged.pid"), "--log-file", str(munge / "munged.log"),
                     "--seed-file", str(munge / "munged.seed")], user="munge")
        self._wait(lambda: sock.exists(), timeout, "munged did not create its socket")
        self._write_conf(sock)
        self._start(["slurmctld", "-D", "-i", "-f", str(self.conf)])
        for name in NODES:
            self._start(["slurmd", "-D", "-N", name, "-f", str(self.conf)], log=f"slurmd-{name}")
        self._wait(self._nodes_idle, timeout, "the Slurm nodes did not become idle")
        return self

    def _nodes_idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=self.env, capture_output=True, text=True)
        states = dict(line.split() for line in out.stdout.splitlines() if line.strip())
        return all(states.get(n) == "idle" for n in NODES)

    def _wait(self, ready, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not ready():
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > end:
                raise RuntimeError(f"{what} ({', '.join(dead) + ' exited; ' if dead else ''}logs in {self.root})")
            time.sleep(0.2)

    def stop(self, keep: bool = False) -> None:
        """Cancel what is still queued, stop the daemons this object started (their sessions), then
        remove the cluster's folder unless `keep` (its logs: slurmctld.log, slurmd-n1.log...)."""
        if self.procs and self.procs[-1].poll() is None:
            subprocess.run(["scancel", "--full", "--user", "root"], env=self.env, capture_output=True)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self, name: str) -> str:
        path = self.root / name
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, kind, *exc) -> None:
        self.stop(keep=kind is not None)


if __name__ == "__main__":
    reason = unavailable()
    if reason:
        raise SystemExit(reason)
    cluster = SlurmCluster().start()
    print(f"export SLURM_CONF={cluster.conf}   # Ctrl-C (or SIGTERM) stops the cluster", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        signal.pause()
    finally:
        cluster.stop()
