"""Grade one notebook part by part, each part in a process of its own. Every grading path goes through here:
`make grade` (tools/grade.py), nbgrader autograde (autograde.py) and `python tests/runner.py NOTEBOOK`.

Each part runs its checks (`pytest tests/test_<part>.py`) on the submitted cell in a process of its own, with one
torch thread, in its own process group, and with these limits:

* CPU seconds per check (conftest.py): only the time the check itself computes counts, so a busy machine
  never fails a check; an endless loop does. Wall-clock limits (per check and per part) are far larger
  backstops for code that sleeps.
* address space, file size and total CPU time of the process (resource limits), and at most 128 processes
  (a pids cgroup, where the machine lets the grader make one: a fork bomb stops there).

Where bubblewrap (`bwrap`) is installed, each part's process also runs in a sandbox of its own: the whole file
system read-only, a private empty /tmp as its only writable place, other submissions (`hide`) out of sight, no
network, its own process namespace (nothing it starts outlives it) and no capabilities. Without bwrap it says so
on stderr and falls back to the process isolation alone (DDPM_SANDBOX=none chooses that).

Whatever a part's code does (exit, crash, hang, patch torch, leave processes behind) ends with its process: it
costs that part's points only, with a message. The parent, which never runs submitted code, turns each part's
results into points: the part's points times the fraction of its checks passed (checks skipped here, such as GPU
checks on a CPU, do not count).
"""
import argparse
import concurrent.futures
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grader import PARTS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

LIMITS = {"cpu_per_check": 120, "wall_per_check": 1800, "wall_per_part": 3600, "memory_gb": 8.0, "file_mb": 200,
          "processes": 128}


def _child(notebook, part, checkpoint, results, log, limits):
    """In the forked child: limits, a scratch folder, one thread, then pytest on the part's checks. Never returns."""
    try:
        os.setsid()                                   # its own process group: the parent can end all it started
        memory = int(limits["memory_gb"] * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        size = int(limits["file_mb"] * 2**20)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        cpu = int(limits["wall_per_part"])
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 10))
        scratch = tempfile.mkdtemp(prefix=f"grade-{part}-")
        os.chdir(scratch)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.environ.update({"DDPM_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        import pytest
        import torch
        torch.set_num_threads(1)
        args = [str(HERE / f"test_{part}.py"), "--notebook", str(notebook), f"--results={results}", "-q",
                "-c", str(ROOT / "pytest.ini"), "--rootdir", str(ROOT), "-p", "no:cacheprovider",
                f"--timeout={limits['wall_per_check']}", f"--cpu-timeout={limits['cpu_per_check']}"]
        if checkpoint:
            args += ["--checkpoint", str(checkpoint)]
        code = pytest.main(args)
    except BaseException:  # noqa: B036  (whatever happens, the child must not return into the parent's code)
        code = 3
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code))


def _why_stopped(status):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return f"the grader had to stop it (it ran past its time limit or was killed, {signal.Signals(sig).name})"
        return f"the process crashed ({signal.Signals(sig).name})"
    return f"the code ended the grader's process (exit code {os.WEXITSTATUS(status)}) before its checks were done"


def part_result(part, results_file, status):
    """{"points", "max", "checks": [...]} of one part from the child's results file and exit status."""
    try:
        data = json.loads(Path(results_file).read_text())
        collected, done = data["collected"], data["results"]
    except (OSError, ValueError, KeyError, TypeError):
        collected, done = [], {}
    checks = []
    for nodeid in collected:
        check = done.get(nodeid)
        if not check or check["outcome"] not in ("passed", "failed", "skipped"):
            check = {**(check or {"test": nodeid.split("::", 1)[-1], "checked": ""}), "outcome": "failed",
                     "message": f"Not finished: while grading this part, {_why_stopped(status)}."}
        checks.append({**check, "part": part})
    if not collected:
        checks = [{"test": "grading", "part": part, "checked": "The checks of this part ran.", "outcome": "failed",
                   "message": f"This part could not be graded: {_why_stopped(status)}."}]
    counted = [c for c in checks if c["outcome"] != "skipped"]
    total = PARTS[part]
    for c in checks:
        c["max"] = round(total / len(counted), 4) if c in counted else 0
        c["points"] = c["max"] if c["outcome"] == "passed" else 0
    passed = sum(c["outcome"] == "passed" for c in counted)
    return {"points": round(total * passed / len(counted), 2) if counted else 0.0, "max": total, "checks": checks}


def sandbox():
    """The bwrap command, or None where there is none (or DDPM_SANDBOX=none)."""
    if os.environ.get("DDPM_SANDBOX") == "none":
        return None
    return shutil.which("bwrap")


def _bwrap(bwrap, notebook, checkpoint, hide):
    args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for folder in hide or ():
        args += ["--tmpfs", str(folder)]
    # what the grader reads, shown again where /tmp or a hidden folder covers it (a clone in /tmp, a symlinked data set)
    data = os.environ.get("DDPM_DATA_ROOT", ROOT / "data")
    needed = [ROOT, Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent, data, notebook.parent,
              *([checkpoint] if checkpoint and Path(checkpoint).exists() else [])]
    for path in dict.fromkeys(Path(os.path.abspath(p)) for p in needed):
        if path.exists():
            args += ["--ro-bind", str(path.resolve()), str(path)]
    return args + ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--chdir", "/tmp", "--"]


PIDS = [Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")]   # cgroup v1's pids controller, or cgroup v2


def _pids_cgroup(name, limit):
    """A cgroup that allows at most `limit` processes (a fork bomb stops there), or None where none can be made."""
    for root in PIDS:
        group = root / f"ddpm-grader-{name}-{os.getpid()}"
        try:
            if not (root / "pids.max").exists() and not (root / "cgroup.procs").exists():
                continue
            group.mkdir(exist_ok=True)
        except OSError:
            continue
        try:
            (group / "pids.max").write_text(str(limit))
            return group
        except OSError:       # cgroup v2 without the pids controller delegated here
            _remove(group)
    return None


def _enter(group):
    """Move the calling process into the cgroup (in a child, before it runs anything else)."""
    if group:
        try:
            (group / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            pass


def _remove(group):
    if group:
        for _ in range(50):
            try:
                group.rmdir()
                return
            except OSError:       # processes still leaving
                time.sleep(0.1)


def _run_forked(notebook, part, checkpoint, limits, scratch):
    """Fork a child for `part`, wait for it (killing its group after the wall limit), return its part_result."""
    files = (Path(scratch) / f"{part}.json", Path(scratch) / f"{part}.log")
    group = None if os.environ.get("DDPM_IN_SANDBOX") else _pids_cgroup(part, limits["processes"])
    pid = os.fork()
    if pid == 0:
        _enter(group)
        _child(notebook, part, checkpoint, *files, limits)
    started = time.time()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.time() - started > limits["wall_per_part"]:
            _kill_group(pid)
        time.sleep(0.05)
    _kill_group(pid)                                  # anything it left running in the background
    _remove(group)
    return part_result(part, files[0], status)


def _run_sandboxed(bwrap, notebook, part, checkpoint, limits, hide):
    """`runner.py --one-part` inside bwrap; its last line of output is the part's result."""
    command = _bwrap(bwrap, notebook, checkpoint, hide) + [
        sys.executable, str(Path(__file__).resolve()), str(notebook), "--one-part", part,
        "--limits", json.dumps(limits)] + (["--checkpoint", str(checkpoint)] if checkpoint else [])
    group = _pids_cgroup(part, limits["processes"])
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=limits["wall_per_part"] + 60,
                              preexec_fn=lambda: _enter(group), env={**os.environ, "DDPM_IN_SANDBOX": "1"})
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return part_result(part, "", 9)       # 9: as if killed (signal 9)
    finally:
        _remove(group)


def grade(notebook, checkpoint=None, jobs=None, parts=None, limits=None, hide=None):
    """Grade `notebook` part by part. Returns {"points", "max", "seconds", "sandbox", "parts": {...}, "checks": [...]}.

    hide: folders the submitted code must not see (other submissions)."""
    limits = {**LIMITS, **(limits or {})}
    notebook = Path(notebook).resolve()
    if checkpoint is None:
        checkpoint = notebook.parent / "data" / "ddpm_mnist.pt"
    parts = [p for p in PARTS if parts is None or p in parts]
    jobs = max(1, jobs or os.cpu_count() or 1)
    start, bwrap = time.time(), sandbox()
    if bwrap:
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            results = dict(zip(parts, pool.map(lambda p: _run_sandboxed(bwrap, notebook, p, checkpoint, limits, hide),
                                               parts)))
    else:
        print("WARNING: grading without a sandbox, with process isolation only (bubblewrap is not installed, or "
              "DDPM_SANDBOX=none). Install it (Debian: apt-get install bubblewrap) to keep submitted code off the file "
              "system and the network.", file=sys.stderr)
        import pytest  # noqa: F401  (imported before forking, so that every child starts with it)
        import torch  # noqa: F401
        with tempfile.TemporaryDirectory(prefix="grade-") as scratch:
            with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
                results = dict(zip(parts, pool.map(
                    lambda p: _run_forked(notebook, p, checkpoint, limits, scratch), parts)))
    ordered = {p: results[p] for p in parts}
    return {"notebook": str(notebook), "points": round(sum(r["points"] for r in ordered.values()), 2),
            "max": sum(r["max"] for r in ordered.values()), "seconds": round(time.time() - start, 1),
            "sandbox": bool(bwrap), "parts": ordered, "checks": [c for r in ordered.values() for c in r["checks"]]}


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--checkpoint", type=Path, help="the trained model (default: data/ddpm_mnist.pt beside it)")
    parser.add_argument("--out", type=Path, help="write the result as JSON here (default: print it)")
    parser.add_argument("--jobs", type=int, help="parts graded at once (default: the number of cores)")
    parser.add_argument("--parts", nargs="*", help="only these parts")
    parser.add_argument("--hide", nargs="*", type=Path, help="folders the submitted code must not see")
    parser.add_argument("--cpu-per-check", type=float, default=LIMITS["cpu_per_check"])
    parser.add_argument("--wall-per-check", type=float, default=LIMITS["wall_per_check"])
    parser.add_argument("--wall-per-part", type=float, default=LIMITS["wall_per_part"])
    parser.add_argument("--one-part", help=argparse.SUPPRESS)    # inside the sandbox: grade this part, print it
    parser.add_argument("--limits", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_part:
        limits = {**LIMITS, **json.loads(args.limits)}
        import ctypes
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)   # PR_SET_DUMPABLE 0: its child cannot reach its output through /proc
        import pytest  # noqa: F401
        import torch  # noqa: F401
        with tempfile.TemporaryDirectory(prefix="grade-") as scratch:
            result = _run_forked(args.notebook.resolve(), args.one_part, args.checkpoint, limits, scratch)
        print("\n" + json.dumps(result))
        return
    limits = {"cpu_per_check": args.cpu_per_check, "wall_per_check": args.wall_per_check,
              "wall_per_part": args.wall_per_part}
    result = grade(args.notebook, args.checkpoint and args.checkpoint.resolve(), args.jobs, args.parts, limits,
                   [h.resolve() for h in args.hide or ()])
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
