"""A test bed of several real hosts on this one machine (issue 13's fleet tests).

Each host is a network namespace with its own address on a bridge of ours
(``fsbed0``, 10.231.0.0/24; the machine itself is 10.231.0.1), its own Docker
engine (``dockerd`` started with ``nsenter --net``, its data under the host's
folder) and its own sshd, started in a mount namespace of its own where the
host's engine socket is bind-mounted on ``/var/run/docker.sock`` and the host's
folders on ``/opt``, root's crontab folder and the backup program's install
folder. Reached over real SSH at its address, it is a separate server: its
files, its containers, its crontab, its network. What the bed does not
separate (the rest of the filesystem, the processes, the users) the tool does
not write.

    python tests/integration/testbed.py up app1 app2 db    # prints the inventory lines
    python tests/integration/testbed.py down                # removes every host of the bed

Base images go into a host's engine with ``docker save | docker load``
(:meth:`Host.load_images`). Everything is named ``fsbed``/``fs-bed-*``; ``down``
(and ``up`` first) removes what an earlier run left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass

from harness import wait_for

BRIDGE = "fsbed0"
PREFIX = "10.231.0"
GATEWAY = f"{PREFIX}.1"
STATE = "/var/lib/fs-testbed"      # a folder per host: docker data, opt, crontab, ssh
RUN = "/run/fs-testbed"            # sockets and pid files
KEY = os.path.join(STATE, "id_ed25519")
# What each host has of its own: (folder in the host's state, where the sshd sees it).
OWN_FOLDERS = (
    ("opt", "/opt"),
    ("crontabs", "/var/spool/cron/crontabs"),
    ("backup-program", "/usr/local/lib/field-service-backup"),
)


def _run(argv, check=True, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and res.returncode:
        raise RuntimeError(f"{' '.join(argv)} -> {res.returncode}: {(res.stderr or res.stdout).strip()}")
    return res


def _pid(path: str) -> int | None:
    try:
        with open(path, encoding="utf-8") as fh:
            pid = int(fh.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """Running (a zombie is not: a daemon this process started is reaped here)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: its parent reaps it
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _stop(pidfile: str, timeout: float = 30) -> None:
    pid = _pid(pidfile)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    if not wait_for(lambda: not _alive(pid), timeout=timeout, interval=0.1):
        os.kill(pid, signal.SIGKILL)


@dataclass
class Host:
    name: str
    index: int

    @property
    def address(self) -> str:
        return f"{PREFIX}.{10 + self.index}"

    @property
    def netns(self) -> str:
        return f"fs-bed-{self.name}"

    @property
    def state(self) -> str:
        return os.path.join(STATE, self.name)

    @property
    def run(self) -> str:
        return os.path.join(RUN, self.name)

    @property
    def docker_host(self) -> str:
        return f"unix://{self.run}/docker.sock"

    def docker(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        """The docker client against this host's engine (from the machine, not over SSH)."""
        return _run(["docker", "-H", self.docker_host, *args], check=check, **kw)

    def ssh(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command on the host over real SSH."""
        return _run(["ssh", *ssh_options(), f"root@{self.address}", command], check=check)

    def inventory_vars(self) -> dict:
        return {"ansible_host": self.address, "ansible_user": "root",
                "ansible_ssh_private_key_file": KEY,
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                "ansible_python_interpreter": "/usr/bin/python3"}

    # -- life cycle -----------------------------------------------------------------------
    def up(self) -> None:
        self.down()
        for folder in (self.state, self.run, *(os.path.join(self.state, own) for own, _ in OWN_FOLDERS)):
            os.makedirs(folder, mode=0o700, exist_ok=True)
        os.chmod(os.path.join(self.state, "crontabs"), 0o1730)
        self._network()
        self._dockerd()
        self._sshd()

    def _network(self) -> None:
        veth, peer = f"fsbed-{self.name}"[:15], f"fsbp-{self.name}"[:15]
        _run(["ip", "netns", "add", self.netns])
        _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer])
        _run(["ip", "link", "set", peer, "netns", self.netns])
        _run(["ip", "link", "set", veth, "master", BRIDGE, "up"])
        inside = ["ip", "-n", self.netns]
        _run([*inside, "link", "set", "lo", "up"])
        _run([*inside, "link", "set", peer, "name", "eth0"])
        _run([*inside, "addr", "add", f"{self.address}/24", "dev", "eth0"])
        _run([*inside, "link", "set", "eth0", "up"])
        _run([*inside, "route", "add", "default", "via", GATEWAY])

    def _dockerd(self) -> None:
        log = open(os.path.join(self.state, "dockerd.log"), "ab")  # noqa: SIM115 - the daemon keeps it
        subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{self.netns}", "dockerd",
             "--data-root", os.path.join(self.state, "docker"), "--exec-root", os.path.join(self.run, "exec"),
             "-H", self.docker_host, "--pidfile", os.path.join(self.run, "dockerd.pid"),
             "--log-driver", "json-file"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        if not wait_for(lambda: self.docker("info", "--format", "{{.ID}}", check=False).returncode == 0,
                        timeout=60, interval=0.3):
            raise RuntimeError(f"dockerd of {self.name} did not start; see {self.state}/dockerd.log")

    def _sshd(self) -> None:
        ssh_dir = os.path.join(self.state, "ssh")
        os.makedirs(ssh_dir, mode=0o700, exist_ok=True)
        hostkey = os.path.join(ssh_dir, "host_ed25519")
        if not os.path.exists(hostkey):
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostkey])
        shutil.copy(KEY + ".pub", os.path.join(ssh_dir, "authorized_keys"))
        pidfile = os.path.join(self.run, "sshd.pid")
        config = os.path.join(ssh_dir, "sshd_config")
        with open(config, "w", encoding="utf-8") as fh:
            fh.write(f"ListenAddress {self.address}\nPort 22\nHostKey {hostkey}\nPidFile {pidfile}\n"
                     f"AuthorizedKeysFile {ssh_dir}/authorized_keys\nPermitRootLogin prohibit-password\n"
                     "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                     "Subsystem sftp internal-sftp\nAcceptEnv LANG LC_*\nMaxStartups 50\nMaxSessions 50\n")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        binds = [f"mount --bind {self.run}/docker.sock /var/run/docker.sock"]
        for own, where in OWN_FOLDERS:
            os.makedirs(where, exist_ok=True)
            binds.append(f"mount --bind {os.path.join(self.state, own)} {where}")
        sshd = f"exec nsenter --net=/var/run/netns/{self.netns} /usr/sbin/sshd -f {config}"
        script = " && ".join([*binds, sshd])
        _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
        if not wait_for(lambda: self.ssh("true", check=False).returncode == 0, timeout=20, interval=0.2):
            raise RuntimeError(f"sshd of {self.name} does not answer at {self.address}")

    def unplug(self) -> None:
        """Take the host off the bed's network (its link on the bridge down): to the others it is
        gone as a server that lost its power is, with no connection closed; its processes go on."""
        _run(["ip", "link", "set", f"fsbed-{self.name}"[:15], "down"])

    def plug(self) -> None:
        """Put the host back on the bed's network."""
        _run(["ip", "link", "set", f"fsbed-{self.name}"[:15], "up"])

    def load_images(self, *images: str) -> None:
        """Copy images from the machine's engine into this host's (docker save | docker load)."""
        save = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE)
        try:
            self.docker("load", "-q", stdin=save.stdout)
        finally:
            save.stdout.close()
            if save.wait():
                raise RuntimeError(f"docker save {' '.join(images)} failed")

    def down(self) -> None:
        _stop(os.path.join(self.run, "sshd.pid"), timeout=5)
        if _pid(os.path.join(self.run, "dockerd.pid")):
            self.docker("rm", "-f", "-v", *self._containers(), check=False)
        _stop(os.path.join(self.run, "dockerd.pid"), timeout=60)
        if os.path.exists(f"/var/run/netns/{self.netns}"):
            _run(["ip", "netns", "del", self.netns], check=False)
        _run(["ip", "link", "del", f"fsbed-{self.name}"[:15]], check=False)
        # a mount the daemon left (it unmounts its own on a clean stop)
        for line in reversed(open("/proc/mounts", encoding="utf-8").read().splitlines()):
            point = line.split()[1]
            if point.startswith(self.state + "/") or point.startswith(self.run + "/"):
                _run(["umount", "-l", point], check=False)
        shutil.rmtree(self.state, ignore_errors=True)
        shutil.rmtree(self.run, ignore_errors=True)

    def _containers(self) -> list[str]:
        res = self.docker("ps", "-aq", check=False)
        return res.stdout.split() if res.returncode == 0 else []


def ssh_options() -> list[str]:
    return ["-i", KEY, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]


def problem() -> str | None:
    """Why a bed cannot be made on this machine, or None."""
    if os.geteuid() != 0:
        return "the test bed needs root (network namespaces, dockerd, mounts)"
    for tool in ("ip", "nsenter", "unshare", "dockerd", "ssh", "ssh-keygen"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    if not os.path.exists("/usr/sbin/sshd"):
        return "/usr/sbin/sshd is not installed (openssh-server; scripts/setup installs it)"
    return None


# Host to host over the bridge: the machine's dockerd sets the FORWARD policy
# to DROP, which bridged traffic meets when br_netfilter is loaded.
FORWARD_RULE = ["FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"]


def _bridge() -> None:
    if _run(["ip", "link", "show", BRIDGE], check=False).returncode:
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        _run(["ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])
    if shutil.which("iptables") and _run(["iptables", "-C", *FORWARD_RULE], check=False).returncode:
        _run(["iptables", "-I", *FORWARD_RULE])


def up(names: list[str]) -> list[Host]:
    """Make the hosts (an earlier bed is removed first); returns them in order."""
    why = problem()
    if why:
        raise RuntimeError(why)
    down()
    os.makedirs(STATE, mode=0o700, exist_ok=True)
    if not os.path.exists(KEY):
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", KEY])
    _bridge()
    hosts = [Host(name, i) for i, name in enumerate(names)]
    try:
        for host in hosts:
            host.up()
    except BaseException:
        down()
        raise
    return hosts


def down() -> None:
    """Remove every host of the bed, its registry, and the bridge."""
    stop_registry()
    names = set(os.listdir(STATE)) - {"registry"} if os.path.isdir(STATE) else set()
    names |= set(os.listdir(RUN)) if os.path.isdir(RUN) else set()
    for netns in os.listdir("/var/run/netns") if os.path.isdir("/var/run/netns") else []:
        if netns.startswith("fs-bed-"):
            names.add(netns[len("fs-bed-"):])
    for i, name in enumerate(sorted(n for n in names if os.path.isdir(os.path.join(STATE, n))
                                    or os.path.exists(f"/var/run/netns/fs-bed-{n}")
                                    or os.path.isdir(os.path.join(RUN, n)))):
        Host(name, i).down()
    _run(["ip", "link", "del", BRIDGE], check=False)
    while shutil.which("iptables") and _run(["iptables", "-D", *FORWARD_RULE], check=False).returncode == 0:
        pass


REGISTRY = f"{GATEWAY}:5000"
CERTS_D = f"/etc/docker/certs.d/{REGISTRY}"


def start_registry() -> str:
    """Debian's docker-registry on the bed's bridge (the machine's address),
    with TLS: a certificate for that address, trusted by every engine through
    /etc/docker/certs.d (the machine's and the hosts' read the same folder).
    Returns its address; ``stop_registry`` (and ``down``) remove it."""
    stop_registry()
    folder = os.path.join(STATE, "registry")
    os.makedirs(os.path.join(folder, "data"), mode=0o700, exist_ok=True)
    key, cert = os.path.join(folder, "key.pem"), os.path.join(folder, "cert.pem")
    _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=fs test bed registry",
          "-addext", f"subjectAltName=IP:{GATEWAY}"])
    config = os.path.join(folder, "config.yml")
    with open(config, "w", encoding="utf-8") as fh:
        json.dump({"version": 0.1, "log": {"level": "warn"},
                   "storage": {"filesystem": {"rootdirectory": os.path.join(folder, "data")},
                               "delete": {"enabled": True}},
                   "http": {"addr": REGISTRY, "tls": {"certificate": cert, "key": key}}}, fh)
    os.makedirs(CERTS_D, exist_ok=True)
    shutil.copy(cert, os.path.join(CERTS_D, "ca.crt"))
    os.makedirs(RUN, exist_ok=True)
    log = open(os.path.join(folder, "registry.log"), "ab")  # noqa: SIM115 - the daemon keeps it
    proc = subprocess.Popen(["docker-registry", "serve", config], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    with open(os.path.join(RUN, "registry.pid"), "w", encoding="utf-8") as fh:
        fh.write(str(proc.pid))
    def answers() -> bool:
        return _run(["curl", "-sf", "--cacert", cert, f"https://{REGISTRY}/v2/"], check=False).returncode == 0

    if not wait_for(lambda: proc.poll() is not None or answers(), timeout=20, interval=0.2) or not answers():
        raise RuntimeError(f"the registry did not start; see {folder}/registry.log")
    return REGISTRY


def stop_registry() -> None:
    _stop(os.path.join(RUN, "registry.pid"), timeout=10)
    shutil.rmtree(os.path.join(STATE, "registry"), ignore_errors=True)
    shutil.rmtree(CERTS_D, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["up"] and len(argv) > 1:
        hosts = up(argv[1:])
        print(json.dumps({h.name: h.inventory_vars() for h in hosts}, indent=2))
        return 0
    if argv == ["down"]:
        down()
        return 0
    print(__doc__.split("\n\n")[2], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
