"""Grade one notebook part by part. Every grading path goes through here: `make grade` (tools/grade.py), nbgrader
autograde (autograde.py), Gradescope (gradescope.py) and `python grader/runner.py NOTEBOOK`.

The checks run in a pytest process of their own (`pytest tests/test_<part>.py --notebook NOTEBOOK`), which never
runs submitted code: each part's cells run in worker processes (grader/remote.py), sandboxed with bubblewrap where
it is installed, with limits on memory, file size, processes and CPU time per check. Whatever a part's code does
(exit, crash, hang, patch torch or the grader, leave processes behind, lie about its results) happens in its own
worker: it costs that part's points only, with a message, and cannot reach the checks, the scores or the files.

Points: each part's points (PARTS, from solution.ipynb) times the fraction of its checks passed (checks skipped
here, such as GPU checks on a CPU, do not count).
"""
import argparse
import concurrent.futures
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import __version__
from .cells import MODEL, PARTS

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
NEEDED = ("MNIST/raw/t10k-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte")   # in the data root, or their .gz
WALL = {"wall_per_check": 1800, "wall_per_part": 3600}   # wall-clock backstops for code that sleeps (CPU is limited)
# The workers' limits (CPU per check, memory, ...) are remote.LIMITS; `limits` here passes an instructor's changes on.


def command(*args):
    """How another process runs this grader: (argv, env), with the repository root on the import path."""
    return [sys.executable, "-m", "grader.runner", *map(str, args)], {**os.environ, "PYTHONPATH": str(ROOT)}


class SetupError(Exception):
    """The grader cannot grade here (no data set, no sandbox, its own files missing): the instructor's to fix. It
    stops grading instead of charging a student for it. The command line exits with SETUP_EXIT."""


SETUP_EXIT = 3


def data_root():
    """Where MNIST is: DDPM_DATA_ROOT, or this repository's data/ (never the current folder)."""
    return Path(os.environ.get("DDPM_DATA_ROOT") or ROOT / "data").resolve()


def check_setup():
    """Raise SetupError if this machine cannot grade: the reference notebook, the classifier, MNIST's test set."""
    root = data_root()
    missing = [name for name in NEEDED if not (root / name).exists() and not (root / f"{name}.gz").exists()]
    if missing:
        raise SetupError(f"MNIST's test set is not in {root} (missing {', '.join(missing)}). Put MNIST there "
                         "(`make data`), or point DDPM_DATA_ROOT at the folder that has MNIST/raw/.")
    for path in (ROOT / "solution.ipynb", ROOT / "data" / "mnist_classifier.pt", ROOT / "data" / "mnist_test_gaussian.pt"):
        if not path.exists():
            raise SetupError(f"The grader's file {path} is missing: grade from a complete copy of the repository.")


def version():
    """The grader's version and a digest of every file that decides a grade (the checks, the library, the reference
    notebook): recorded with each grade, so that a disputed one can be reproduced with the same grader."""
    digest = hashlib.sha256()
    for path in sorted([*(ROOT / "grader").glob("*.py"), *TESTS.glob("*.py"), ROOT / "solution.ipynb"]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def part_result(part, data, why):
    """{"points", "max", "checks": [...]} of one part from the checks' results (conftest.py's --results)."""
    collected = [n for n in data.get("collected", []) if Path(n.split("::")[0]).stem == f"test_{part}"]
    done = data.get("results", {})
    checks = []
    for nodeid in collected:
        check = done.get(nodeid)
        if not check or check["outcome"] not in ("passed", "failed", "skipped"):
            check = {**(check or {"test": nodeid.split("::", 1)[-1], "checked": ""}), "outcome": "failed",
                     "message": f"Not finished: {why}."}
        checks.append({**check, "part": part})
    if not collected:
        checks = [{"test": "grading", "part": part, "checked": "The checks of this part ran.", "outcome": "failed",
                   "message": f"This part could not be graded: {why}."}]
    counted = [c for c in checks if c["outcome"] != "skipped"]
    total = PARTS[part]
    shares = [round(total / len(counted), 4)] * len(counted)
    if shares:
        shares[-1] = round(total - sum(shares[:-1]), 4)   # the shares add up to the part's points exactly
    for c in checks:
        c["max"] = shares.pop(0) if c in counted else 0
        c["points"] = c["max"] if c["outcome"] == "passed" else 0
    passed = sum(c["outcome"] == "passed" for c in counted)
    return {"points": round(total * passed / len(counted), 2) if counted else 0.0, "max": total, "checks": checks}


def _checks(notebook, checkpoint, parts, limits, hide):
    """Run the checks of `parts` in a pytest process; ({part: part_result}, graded in a sandbox?)."""
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="grade-"))
        results = Path(scratch) / "results.json"
        command = [sys.executable, "-m", "pytest", *[str(TESTS / f"test_{p}.py") for p in parts],
                   "--notebook", str(notebook), f"--results={results}", "-q", "-c", str(ROOT / "pytest.ini"),
                   "--rootdir", str(ROOT), "-p", "no:cacheprovider", "-p", "no:nbval", "-p", "no:anyio",
                   f"--timeout={limits['wall_per_check']}", f"--part-timeout={limits['wall_per_part']}"
                   ] + (["--checkpoint", str(checkpoint)] if checkpoint else [])
        if "cpu_per_check" in limits:
            command.append(f"--cpu-timeout={limits['cpu_per_check']}")
        env = {**os.environ, "DDPM_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "DDPM_DATA_ROOT": str(data_root()),
               "DDPM_HIDE": os.pathsep.join(map(str, [*(hide or ()), notebook.parent])),
               "DDPM_LIMITS": json.dumps({k: v for k, v in limits.items() if k not in WALL})}
        why = "the grader stopped before this check was done"
        # each part stops starting checks after wall_per_part; the check then running may take wall_per_check more
        log = stack.enter_context(open(Path(scratch) / "log.txt", "w+", errors="replace"))
        proc = subprocess.Popen(command, cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=(limits["wall_per_part"] + limits["wall_per_check"]) * len(parts) + 60)
        except subprocess.TimeoutExpired:
            why = "grading ran past its time limit"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # the checks' process and anything it started
            except OSError:
                pass
            proc.wait()
        try:
            data = json.loads(results.read_text())
        except (OSError, ValueError):
            data = {}
        if "collected" not in data:   # the checks' process failed before it ran any submitted code: ours to fix
            log.seek(0)
            raise SetupError(f"The checks could not start (exit code {proc.returncode}): {log.read()[-1500:].strip()}")
    return {part: part_result(part, data, why) for part in parts}, data.get("sandbox", False)


def grade(notebook, checkpoint=None, jobs=None, parts=None, limits=None, hide=None):
    """Grade `notebook` part by part. Returns {"points", "max", "seconds", "sandbox", "parts": {...}, "checks": [...]}.

    jobs: pytest processes that share the parts (default 1: the least CPU; more finish one notebook sooner).
    limits: wall_per_check and wall_per_part (WALL), and changes to the workers' limits (remote.LIMITS).
    hide: folders the submitted code must not see (other submissions)."""
    check_setup()
    limits = {**WALL, **{k: v for k, v in (limits or {}).items() if v is not None}}
    notebook = Path(notebook).resolve()
    if checkpoint is None:
        checkpoint = notebook.parent / MODEL
    parts = [p for p in PARTS if parts is None or p in parts]
    groups = [g for g in (parts[i::max(1, jobs or 1)] for i in range(max(1, jobs or 1))) if g]
    start = time.time()
    with concurrent.futures.ThreadPoolExecutor(len(groups)) as pool:
        results, sandboxed = {}, True
        for found, in_sandbox in pool.map(lambda g: _checks(notebook, checkpoint, g, limits, hide), groups):
            results.update(found)
            sandboxed = sandboxed and in_sandbox
    ordered = {p: results[p] for p in parts}
    return {"notebook": str(notebook), "points": round(sum(r["points"] for r in ordered.values()), 2),
            "max": sum(r["max"] for r in ordered.values()), "seconds": round(time.time() - start, 1),
            "sandbox": sandboxed, "grader": version(), "parts": ordered,
            "checks": [c for r in ordered.values() for c in r["checks"]]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--checkpoint", type=Path, help="the trained model (default: data/ddpm_mnist.pt beside it)")
    parser.add_argument("--out", type=Path, help="write the result as JSON here (default: print it)")
    parser.add_argument("--jobs", type=int, help="pytest processes sharing the parts (default 1)")
    parser.add_argument("--parts", nargs="*", help="only these parts")
    parser.add_argument("--hide", nargs="*", type=Path, help="folders the submitted code must not see")
    parser.add_argument("--cpu-per-check", type=float, help="CPU seconds per check (default: remote.LIMITS, 120)")
    parser.add_argument("--wall-per-check", type=float, default=WALL["wall_per_check"])
    parser.add_argument("--wall-per-part", type=float, default=WALL["wall_per_part"])
    args = parser.parse_args()
    limits = {"cpu_per_check": args.cpu_per_check, "wall_per_check": args.wall_per_check,
              "wall_per_part": args.wall_per_part}
    try:
        result = grade(args.notebook, args.checkpoint and args.checkpoint.resolve(), args.jobs, args.parts, limits,
                       [h.resolve() for h in args.hide or ()])
    except SetupError as err:
        print(f"ERROR: nothing was graded: {err}", file=sys.stderr)
        sys.exit(SETUP_EXIT)
    if not result["sandbox"]:
        print("WARNING: graded without a sandbox (bubblewrap is not installed, or DDPM_SANDBOX=none): the submitted "
              "code could read and write this machine's files. Install it (Debian: apt-get install bubblewrap).",
              file=sys.stderr)
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
