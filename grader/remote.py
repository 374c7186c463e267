"""The checks' side of the grader: submitted code runs in worker processes (grader/worker.py), never here.

`spawn(cells)` starts a worker, runs the cells in it and returns a `Namespace`: a stand-in for the names the cells
define. Using it reads like using the objects themselves (`ns["UNet"](base_channels=8)(x, t)`), but every step is
a request to the worker: tensors and other data come back by value, anything else stays there and comes back as a
reference. What the checks lend the worker (a stand-in model, a recording callback) stays here, and the worker may
only call it and read its public attributes. The global random state and the grad and autocast modes travel with
each request, so seeding here seeds the submitted code too.

All workers of a process are forked by one zygote, which imports torch once. Where bubblewrap (`bwrap`) is
installed the zygote and its workers run in a sandbox: the whole file system read-only, the project, the data set
and the folders in DDPM_HIDE out of sight, a private /tmp (a tmpfs of at most LIMITS["tmp_mb"], emptied when no
worker is left), no network, their own process namespace, no capabilities and no new user namespaces. Without it (conftest.py refuses that unless DDPM_SANDBOX=none) they run with process isolation only, as
`nobody` where the grader runs as root, an audit hook keeps them away from the grader's files, and what they write in
their own folder is bounded by Zygote.check_scratch. Each worker has resource limits (LIMITS) and a CPU budget per check.
"""
import atexit
import functools
import glob
import inspect
import io
import json
import marshal
import os
import resource
import select
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

from .worker import Broken, Peer, Proxy, _DataOnly, no_dump, recv, send  # noqa: F401  (no_dump: conftest's too)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# A worker's limits. cpu_per_check is the default CPU budget of one check (conftest's --cpu-timeout overrides it);
# tmp_mb: what the sandbox's /tmp (a tmpfs, so memory) may hold, all files together.
LIMITS = {"cpu_per_check": 120, "memory_gb": 8.0, "file_mb": 200, "tmp_mb": 512, "processes": 128,
          "cpu_per_worker": 3600}
LIMITS.update(json.loads(os.environ.get("DDPM_LIMITS", "{}")))   # how runner.py passes an instructor's limits down
TIMED_OUT = "did not finish within its CPU time"
STANDINS = (HERE / "standins.py").read_text()


class Died(AssertionError):
    """The worker is gone (it exited, crashed or ran out of time): every later request fails with this reason."""


class _Budget:
    seconds = None
    check = 0


def check_started(seconds):
    """A new check begins: each worker may compute for `seconds` of CPU time from its first request in it."""
    _Budget.seconds = seconds
    _Budget.check += 1


def _autocast_state():
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [(d, torch.is_autocast_enabled(d), str(torch.get_autocast_dtype(d)).removeprefix("torch.")) for d in devices]


class Connection(Peer):
    """The checks' end of one worker."""

    def __init__(self, sock, zygote, pid, host_pid):
        super().__init__(sock)
        self.zygote, self.pid, self.host_pid = zygote, pid, host_pid
        self.dead = None
        self._check, self._cpu0 = None, 0.0
        self._status = "running"

    def context(self):
        return (torch.is_grad_enabled(), _autocast_state())

    def encode(self, v):
        wire = super().encode(v)
        if isinstance(wire, tuple) and wire and wire[0] == "R":   # what is lent goes without its class's name
            return ("R", wire[1], "object")
        return wire

    def allowed(self, op, target, args):
        """The worker may call what it was lent and read its public attributes; nothing more."""
        if op in ("setattr", "setitem"):
            return False
        return op != "getattr" or (isinstance(args[0], str) and not args[0].startswith("_"))

    def error(self, name, message):
        err = super().error(name, message)
        err._from_worker = True
        return err

    def request(self, op, target, *args):
        if self.dead:
            raise Died(self.dead)
        self.zygote.check_scratch(self)
        self.request_started()
        try:
            return super().request(op, target, *args)
        except Broken:
            self.end(f"Not finished: {self._why()}.")
            raise Died(self.dead) from None
        except Died:
            raise
        except BaseException as err:
            if not getattr(err, "_from_worker", False):   # interrupted here (a time limit): the worker can't go on
                self.end("Not run: an earlier check of this part was stopped while your code ran.")
            raise

    def receive(self):
        while True:
            ready, _, _ = select.select([self.sock], [], [], 0.2)
            if ready:
                self.sock.settimeout(60)
                try:
                    return recv(self.sock)
                finally:
                    if self.sock.fileno() >= 0:
                        self.sock.settimeout(None)
            self._watch()

    def cpu_seconds(self):
        try:
            fields = Path(f"/proc/{self.host_pid}/stat").read_text().rsplit(")", 1)[1].split()
            return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def _watch(self):
        self.zygote.check_scratch(self)
        if _Budget.seconds is None:
            return
        used = self.cpu_seconds()
        if used is None:
            return
        self.request_started()
        if used - self._cpu0 > _Budget.seconds:
            self.end(f"Not run: an earlier check of this part {TIMED_OUT}.")
            raise Died(f"Your code {TIMED_OUT} ({_Budget.seconds:.0f} s of computing): is there an endless loop?")

    def request_started(self):
        """The first request of a check: the worker's CPU time from here on counts against the check's budget."""
        if self._check != _Budget.check:
            used = self.cpu_seconds()
            if used is not None:
                self._check, self._cpu0 = _Budget.check, used

    def _why(self):
        status = self._end_process()
        if status is None:
            return "the grader lost contact with the process that ran your code"
        if os.WIFSIGNALED(status):
            sig = signal.Signals(os.WTERMSIG(status)).name
            if os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL):
                return f"the grader had to stop your code (it ran past its limits, {sig})"
            return f"your code crashed the process that ran it ({sig})"
        return f"your code ended the process that ran it (exit code {os.WEXITSTATUS(status)})"

    def _end_process(self):
        if self._status == "running":
            self._status = self.zygote.end(self.pid)
        return self._status

    def end(self, reason="Closed."):
        if not self.dead:
            self.dead = reason
            try:
                self.sock.close()
            except OSError:
                pass
            self._end_process()


class Namespace:
    """The names the cells defined, in their worker. A missing name fails the check with a message."""

    def __init__(self, connection):
        self._connection = connection
        self._names = Proxy(connection, 0, "namespace")

    def __getitem__(self, name):
        try:
            return self._names[name]
        except KeyError:
            raise AssertionError(f"Your notebook does not define `{name}`: keep the names and arguments the "
                                 "assignment gives.") from None

    def run(self, probe, *args, **kwargs):
        """Run `probe`, a self-contained function (it imports what it needs), in the worker on `args`."""
        return Proxy(self._connection, 2, "probe")(_compiled(textwrap.dedent(inspect.getsource(probe))),
                                                   probe.__name__, args, kwargs)

    def standin(self, name, *args):
        """A stand-in model of standins.py, made in the worker (where the code that calls it runs)."""
        return Proxy(self._connection, 2, "probe")(_compiled(STANDINS), name, args, {})

    def close(self):
        self._connection.end()


@functools.lru_cache(maxsize=None)
def _compiled(source):
    """Code for the worker, compiled here without docstrings: the worker never sees the checks' source."""
    return marshal.dumps(compile(source, "<probe>", "exec", optimize=2))


def spawn(cells):
    """A worker that ran `cells` ((name, marshalled code) in order). Returns (Namespace, None) or (None, failure):
    failure is (cell name, "stop" or "error", message) for a cell that raised, or (the cell that was running,
    "died", reason)."""
    connection = _zygote().fork()
    loader = Proxy(connection, 1, "loader")
    for name, code in cells:   # one by one: a cell that ran out of time is known by name
        try:
            failed = loader([(name, code)])
            connection.zygote.check_scratch(connection, now=True)
        except Died as err:
            return None, (name, "died", str(err))
        if failed:
            connection.end()
            return None, tuple(failed)
    return Namespace(connection), None


# ------------------------------------------------------------------------------------------------------------------
# The zygote and its sandbox

def sandbox():
    """The bwrap command, or None where there is none (or DDPM_SANDBOX=none)."""
    if os.environ.get("DDPM_SANDBOX") == "none":
        return None
    return shutil.which("bwrap")


def hidden():
    """What the submitted code must not see: the project, the data set, and DDPM_HIDE's folders (other submissions)."""
    folders = [ROOT, Path(os.environ.get("DDPM_DATA_ROOT", ROOT / "data"))]
    folders += [Path(p) for p in os.environ.get("DDPM_HIDE", "").split(os.pathsep) if p]
    system = Path(sys.base_prefix).resolve()
    return [p for p in dict.fromkeys(Path(os.path.realpath(f)) for f in folders)
            if p.is_dir() and p != Path("/") and p not in system.parents]


def _bwrap(bwrap):
    args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--size", str(int(LIMITS["tmp_mb"] * 2**20)), "--tmpfs", "/tmp"]
    for device in glob.glob("/dev/nvidia*"):
        args += ["--dev-bind", device, device]
    for folder in hidden():
        args += ["--tmpfs", str(folder)]
    # what the worker needs, shown again where a hidden folder or /tmp covers it (a virtual environment in the project),
    # never a folder that holds a hidden one
    covers = [ROOT.resolve(), *hidden()]
    needed = (sys.prefix, sys.base_prefix, Path(sys.executable).parent, *site.getsitepackages())
    for path in dict.fromkeys(Path(os.path.abspath(p)) for p in needed):
        real = Path(os.path.realpath(path))   # a virtual environment reached through a symlink: both places
        for place in dict.fromkeys((real, path)):
            if real.is_dir() and not any(place == c or place in c.parents for c in covers):
                args += ["--ro-bind", str(real), str(place)]
    args += ["--ro-bind", str(HERE / "worker.py"), str(HERE / "worker.py")]
    for folder in hidden():   # read-only too: a tmpfs with no size given, like /tmp's before its cap
        args += ["--remount-ro", str(folder)]
    return args + ["--unshare-all", *_no_userns(bwrap), "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                   "--chdir", "/tmp", "--"]


@functools.lru_cache(maxsize=None)
def _no_userns(bwrap):
    """No user namespaces inside the sandbox, where bwrap can make one: in one of its own, a worker could mount a
    tmpfs of any size and get round /tmp's cap."""
    flags = ["--unshare-user", "--disable-userns"]
    probe = subprocess.run([bwrap, "--ro-bind", "/", "/", *flags, "--", "true"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
    return flags if probe.returncode == 0 else []


PIDS = [Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")]   # cgroup v1's pids controller, or cgroup v2


def _pids_cgroup(limit):
    """A cgroup that allows at most `limit` processes (a fork bomb stops there), or None where none can be made."""
    for root in PIDS:
        group = root / f"ddpm-grader-{os.getpid()}-{time.monotonic_ns()}"
        try:
            if not (root / "pids.max").exists() and not (root / "cgroup.procs").exists():
                continue
            group.mkdir()
        except OSError:
            continue
        try:
            (group / "pids.max").write_text(str(limit))
            return group
        except OSError:       # cgroup v2 without the pids controller delegated here
            _remove(group)
    return None


def _remove(group):
    if group:
        for _ in range(50):
            try:
                group.rmdir()
                return
            except OSError:   # processes still leaving
                time.sleep(0.1)


NOBODY = 65534


def _open_to_all(*paths):
    """Can a user with no rights of its own run Python from these paths (every folder above them searchable)?"""
    for path in paths:
        path = Path(os.path.realpath(path))
        for step in [path, *path.parents]:
            if not step.stat().st_mode & (0o001 if step.is_dir() else 0o004):
                return False
    return True


def _limits(group, as_nobody=False):
    memory = int(LIMITS["memory_gb"] * 2**30)
    size = int(LIMITS["file_mb"] * 2**20)
    cpu = int(LIMITS["cpu_per_worker"])

    def apply():
        os.setsid()
        # the data a process holds, not its address space: CUDA reserves a vast address range and cannot start under
        # an address-space limit
        resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 10))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if group:
            try:
                (group / "cgroup.procs").write_text(str(os.getpid()))
            except OSError:
                pass
        if as_nobody:   # root without a sandbox (a container that refuses bubblewrap): the workers run as nobody
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
    return apply


_warned = []


class Zygote:
    def __init__(self):
        ours, theirs = socket.socketpair()
        bwrap = sandbox()
        if not bwrap and not _warned:
            _warned.append(True)
            print("WARNING: grading without a sandbox, with process isolation only (bubblewrap is not installed, or "
                  "DDPM_SANDBOX=none). Install it (Debian: apt-get install bubblewrap) to keep submitted code off the "
                  "file system and the network.", file=sys.stderr)
        self.group = _pids_cgroup(LIMITS["processes"])
        as_nobody = not bwrap and os.geteuid() == 0 and _open_to_all(sys.executable, HERE / "worker.py", sys.prefix)
        # the workers' temporary files: the sandbox's /tmp, or else a folder of their own, removed with the zygote
        # (without a sandbox, check_scratch bounds what they hold together; files elsewhere only by LIMITS["file_mb"])
        self.scratch = "/tmp" if bwrap else tempfile.mkdtemp(prefix="ddpm-workers-")
        if as_nobody:
            os.chown(self.scratch, NOBODY, NOBODY)
        command = [sys.executable, "-I", str(HERE / "worker.py"), "--zygote", str(theirs.fileno()), str(ROOT),
                   "1" if bwrap else "0", self.scratch]
        if bwrap:
            command = _bwrap(bwrap) + command
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.scratch, "TMPDIR": self.scratch,
               "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
               "DDPM_OFFLINE": "1", "NBGRADER_EXECUTION": "autograde", "PYTHONHASHSEED": "0"}
        self.proc = subprocess.Popen(command, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=self.scratch,
                                     preexec_fn=_limits(self.group, as_nobody))
        theirs.close()
        self.sock = ours
        self.sandboxed = bool(bwrap)
        self._next_scratch_check = 0.0

    def alive(self):
        return self.proc.poll() is None

    def check_scratch(self, connection, now=False):
        """Without a sandbox, what bounds the workers' temporary files together (in the sandbox /tmp's size does):
        after each cell and every quarter of a second of requests, a worker is ended when their folder holds more
        than LIMITS["tmp_mb"]."""
        if self.sandboxed or (time.monotonic() < self._next_scratch_check and not now):
            return
        self._next_scratch_check = time.monotonic() + 0.25
        if _size_over(self.scratch, LIMITS["tmp_mb"] * 2**20):
            connection.end(f"Not run: an earlier check of this part wrote more than {LIMITS['tmp_mb']} MB of files.")
            raise Died(f"Your code wrote more than {LIMITS['tmp_mb']} MB of temporary files, the most a submission may.")

    def fork(self):
        try:
            send(self.sock, ("fork",))
            ready, _, _ = select.select([self.sock], [], [], 120)
            if not ready:
                raise Broken("the zygote does not answer")
            data, fds, _, _ = socket.recv_fds(self.sock, 4096, 1)
            message = _DataOnly(io.BytesIO(data)).load() if data else None
            if not (isinstance(message, tuple) and message[0] == "forked" and len(fds) == 1):
                raise Broken("the zygote sent no worker")
        except (Broken, OSError, ValueError, EOFError, TypeError) as err:
            self.close()
            raise Died(f"the grader could not start a process for your code ({err})") from None
        return Connection(socket.socket(fileno=fds[0]), self, message[1], self._host_pid(message[1]))

    def _host_pid(self, pid):
        """The worker's pid as this process sees it (in a sandbox it has another one in its own namespace)."""
        if not self.sandboxed:
            return pid
        for status in glob.glob("/proc/[0-9]*/status"):
            try:
                text = Path(status).read_text()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("NSpid:"):
                    ids = line.split()[1:]
                    if len(ids) > 1 and ids[-1] == str(pid) and self._descends(int(ids[0])):
                        return int(ids[0])
                    break
        return None

    def _descends(self, pid):
        for _ in range(8):
            try:
                pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                return False
            if pid == self.proc.pid:
                return True
        return False

    def end(self, pid):
        """End a worker and whatever it started; its wait status, or None if the zygote is gone."""
        try:
            send(self.sock, ("end", pid))
            ready, _, _ = select.select([self.sock], [], [], 30)
            message = recv(self.sock) if ready else None
        except (Broken, OSError):
            message = None
        if not (isinstance(message, tuple) and len(message) == 2 and message[0] == "ended"):
            self.close()
            return None
        return message[1] if isinstance(message[1], int) else None

    def close(self):
        global _current
        if _current is self:
            _current = None
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait()
        _remove(self.group)
        if not self.sandboxed:
            shutil.rmtree(self.scratch, ignore_errors=True)


def _size_over(folder, limit):
    "Whether the files under `folder` (the space they take) add up to more than `limit` bytes."
    total = 0
    for path, folders, files in os.walk(folder):
        for name in files + folders:
            try:
                total += os.lstat(os.path.join(path, name)).st_blocks * 512
            except OSError:
                continue
            if total > limit:
                return True
    return False


_current = None


def _zygote():
    global _current
    if _current is None or not _current.alive():
        if _current is not None:
            _current.close()
        _current = Zygote()
    return _current


@atexit.register
def close():
    if _current is not None:
        _current.close()
