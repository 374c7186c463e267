"""Grade one notebook part by part, each part in a process of its own. Every grading path goes through here:
`make grade` (tools/grade.py), nbgrader autograde (autograde.py) and `python tests/runner.py NOTEBOOK`.

The parent imports torch and pytest once, then forks one child per part (PARTS, at most `jobs` at a time). A
child runs that part's checks (`pytest tests/test_<part>.py`) on the submitted cell, in a scratch folder, in a
process group of its own, with one torch thread and these limits:

* CPU seconds per check (conftest.py): only the time the check itself computes counts, so a busy machine
  never fails a check; an endless loop does. Wall-clock limits (per check and per part) are far larger
  backstops for code that sleeps.
* address space, file size and total CPU time of the process (resource limits).

Whatever a child does (exit, crash, hang, patch torch, leave processes behind) ends with it: it costs that
part's points only, with a message. The parent turns each part's results into points: the part's points
times the fraction of its checks passed (checks skipped here, such as GPU checks on a CPU, do not count).
"""
import argparse
import json
import os
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import grader  # noqa: E402
from grader import PARTS  # noqa: E402

LIMITS = {"cpu_per_check": 120, "wall_per_check": 1800, "wall_per_part": 3600, "memory_gb": 8.0, "file_mb": 200}


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


def _why_stopped(status, limits):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return f"the grader had to stop it (it ran past its time limit or was killed, {signal.Signals(sig).name})"
        return f"the process crashed ({signal.Signals(sig).name})"
    return f"the code ended the grader's process (exit code {os.WEXITSTATUS(status)}) before its checks were done"


def part_result(part, results_file, status, limits):
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
                     "message": f"Not finished: while grading this part, {_why_stopped(status, limits)}."}
        checks.append({**check, "part": part})
    if not collected:
        checks = [{"test": "grading", "part": part, "checked": "The checks of this part ran.", "outcome": "failed",
                   "message": f"This part could not be graded: {_why_stopped(status, limits)}."}]
    counted = [c for c in checks if c["outcome"] != "skipped"]
    total = PARTS[part]
    for c in checks:
        c["max"] = round(total / len(counted), 4) if c in counted else 0
        c["points"] = c["max"] if c["outcome"] == "passed" else 0
    passed = sum(c["outcome"] == "passed" for c in counted)
    return {"points": round(total * passed / len(counted), 2) if counted else 0.0, "max": total, "checks": checks}


def grade(notebook, checkpoint=None, jobs=None, parts=None, limits=None):
    """Grade `notebook` part by part. Returns {"points", "max", "seconds", "parts": {part: {...}}, "checks": [...]}."""
    import pytest  # noqa: F401  (imported before forking, so that every child starts with it)
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401

    limits = {**LIMITS, **(limits or {})}
    notebook = Path(notebook).resolve()
    parts = [p for p in PARTS if parts is None or p in parts]
    jobs = max(1, jobs or os.cpu_count() or 1)
    start, results = time.time(), {}
    with tempfile.TemporaryDirectory(prefix="grade-") as scratch:
        waiting, running = list(parts), {}
        while waiting or running:
            while waiting and len(running) < jobs:
                part = waiting.pop(0)
                files = (Path(scratch) / f"{part}.json", Path(scratch) / f"{part}.log")
                pid = os.fork()
                if pid == 0:
                    _child(notebook, part, checkpoint, *files, limits)
                running[pid] = (part, files, time.time())
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                for pid, (part, files, started) in list(running.items()):
                    if time.time() - started > limits["wall_per_part"]:
                        _kill_group(pid)
                time.sleep(0.05)
                continue
            if pid in running:
                part, files, _ = running.pop(pid)
                _kill_group(pid)                      # anything it left running in the background
                results[part] = part_result(part, files[0], status, limits)
    ordered = {p: results[p] for p in parts}
    return {"notebook": str(notebook), "points": round(sum(r["points"] for r in ordered.values()), 2),
            "max": sum(r["max"] for r in ordered.values()), "seconds": round(time.time() - start, 1),
            "parts": ordered, "checks": [c for r in ordered.values() for c in r["checks"]]}


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
    parser.add_argument("--cpu-per-check", type=float, default=LIMITS["cpu_per_check"])
    parser.add_argument("--wall-per-check", type=float, default=LIMITS["wall_per_check"])
    parser.add_argument("--wall-per-part", type=float, default=LIMITS["wall_per_part"])
    args = parser.parse_args()
    limits = {"cpu_per_check": args.cpu_per_check, "wall_per_check": args.wall_per_check,
              "wall_per_part": args.wall_per_part}
    result = grade(args.notebook, args.checkpoint and args.checkpoint.resolve(), args.jobs, args.parts, limits)
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
