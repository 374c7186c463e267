"""The grader's pytest set-up: `pytest tests --notebook PATH` grades PATH (default: solution.ipynb).

Each test module grades one part (its PART) and gets `ns`: the names that part's cell defines, run on top of the
reference solution's other parts, in a worker process of its own (cells.namespace, grader/remote.py). No submitted
code runs in this process: the checks judge what comes back from the worker, so nothing in a notebook can change a
check, a score or the results file. tests/meta checks the project itself and is skipped when grading a submission.

Each check may make the worker compute for --cpu-timeout seconds of CPU time (a module's CPU_SECONDS overrides it):
CPU time, not wall-clock time, so that a busy machine never fails a check while an endless loop does. A part whose
check ran out of time fails its remaining checks at once instead of running them.
"""
import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from grader import cells
from grader import remote
from grader.cells import REFERENCE, Unloadable

_spoiled = {}  # part -> why its remaining checks fail at once
_results = {}  # nodeid -> points, max, message (for --results)


def pytest_addoption(parser):
    parser.addoption("--notebook", default=None, help="the notebook to grade (default: solution.ipynb)")
    parser.addoption("--checkpoint", default=None, help="its trained model (default: data/ddpm_mnist.pt beside it)")
    parser.addoption("--results", default=None, help="write each test's outcome and message to this JSON file")
    parser.addoption("--part-timeout", type=float, default=None,
                     help="wall-clock seconds per part: later checks of a part that ran longer fail at once")
    parser.addoption("--cpu-timeout", type=float, default=None,
                     help="CPU seconds per check (default: remote.LIMITS['cpu_per_check'])")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped without one")
    # pytest-xdist's processes share the cores: each (and what it starts: notebook kernels, make grade) gets its share
    # of threads, since two processes with a thread per core each slow each other several-fold (CI's 2 cores)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    threads = max(1, min(2, len(os.sched_getaffinity(0)) // workers))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    remote.no_dump()   # no other process of this user may read this one's memory or file descriptors
    if remote.sandbox() is None and os.environ.get("DDPM_SANDBOX") != "none" and os.geteuid() != 0:
        pytest.exit("No sandbox: bubblewrap (bwrap) is not installed, so submitted code would run as this user and "
                    "could change the grader's files and the grades. Install it (make sandbox, or apt-get install "
                    "bubblewrap), or set DDPM_SANDBOX=none to grade without one anyway.", returncode=4)


def pytest_ignore_collect(collection_path, config):
    if config.getoption("--notebook") and "meta" in Path(collection_path).parts:
        return True
    if Path(collection_path).suffix == ".ipynb":   # the corpus and fixtures are submissions to grade, not nbval's
        return True


_collected = []  # nodeids of the checks, written before any submitted code runs


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="no CUDA GPU here"))
    _collected[:] = [item.nodeid for item in items]
    _write_results(config)


TIMED_OUT = remote.TIMED_OUT


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    part = getattr(item.module, "PART", None)
    if part and report.failed and ("Timeout" in str(report.longrepr) or TIMED_OUT in str(report.longrepr)):
        _spoiled.setdefault(part, "an earlier check of this part did not finish in time")
    result = _results.setdefault(item.nodeid, {
        "test": item.nodeid.split("::", 1)[-1], "part": part,
        "part_title": first_paragraph(item.module.__doc__), "checked": checked(item), "outcome": "running",
        "message": ""})
    measured = dict(item.user_properties).get("measured")
    if measured:   # the figures a check ruled on (sample statistics): kept with the grade, to explain it
        result["measured"] = {k: round(v, 4) for k, v in measured.items() if isinstance(v, (int, float))}
    if result["outcome"] in ("running", "passed") and (report.failed or report.skipped):
        crash = getattr(report.longrepr, "reprcrash", None)
        message = crash.message if crash else str(report.longrepr[-1] if report.skipped else report.longrepr)
        result["outcome"] = "failed" if report.failed else "skipped"
        result["message"] = hint(message)
    if call.when == "teardown":
        result["outcome"] = "passed" if result["outcome"] == "running" else result["outcome"]
        _write_results(item.config)
    return report


def hint(message):
    """The student's hint: one line, printable, at most 600 characters (part of it may come from submitted code)."""
    text = message.strip().removeprefix("AssertionError: ").replace("\n", " ")
    text = text.encode("utf-8", "replace").decode("utf-8")
    return "".join(c if c.isprintable() else " " for c in text)[:600]


def first_paragraph(doc):
    """A docstring's first paragraph on one line (a sentence may wrap over several lines)."""
    return " ".join(line.strip() for line in (doc or "").strip().split("\n\n")[0].splitlines())


def checked(item):
    "What a check checks, in plain words: its docstring's first paragraph, or its name spelled out."
    doc = getattr(item, "function", None) and item.function.__doc__
    if doc:
        text = first_paragraph(doc)
    else:
        words = item.name.split("[")[0].removeprefix("test_").replace("_", " ")
        text = words[:1].upper() + words[1:] + "."
    if item.get_closest_marker("gpu") and "GPU" not in text:
        text = f"On a GPU: {text}"
    return text


def _write_results(config):
    """After collection and after each check, so that a part whose process dies keeps what it had finished."""
    path = config.getoption("--results")
    if path:
        Path(path).write_text(json.dumps({"collected": _collected, "results": _results,
                                          "sandbox": remote.sandbox() is not None}, indent=1))


@pytest.fixture(autouse=True, scope="module")
def _workers_of_the_part():
    """A part's workers end with its checks."""
    yield
    cells.close_workers()


@pytest.fixture(autouse=True)
def cpu_time_limit(request):
    """Stop a check after its CPU seconds (all threads of the process together). SIGPROF counts CPU time only."""
    seconds = (getattr(request.module, "CPU_SECONDS", None) or request.config.getoption("--cpu-timeout")
               or remote.LIMITS["cpu_per_check"])
    if not hasattr(request.module, "PART"):
        yield
        return
    remote.check_started(seconds)      # the worker's CPU time; SIGPROF below counts this process's own

    def stop(signum, frame):
        pytest.fail(f"Your code {TIMED_OUT} ({seconds:.0f} s of computing): is there an endless loop?", pytrace=False)

    previous = signal.signal(signal.SIGPROF, stop)
    signal.setitimer(signal.ITIMER_PROF, seconds, 1.0)   # and again each second, should the first stop be caught
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def _notebook(config):
    return str(Path(config.getoption("--notebook") or REFERENCE).resolve())


_started = {}  # part -> when its first check began


@pytest.fixture
def ns(request):
    part = request.module.PART
    limit = request.config.getoption("--part-timeout")
    if limit and time.monotonic() - _started.setdefault(part, time.monotonic()) > limit:
        _spoiled.setdefault(part, "this part ran past its time limit")
    if part in _spoiled:
        return Unloadable(f"Not run: {_spoiled[part]}.")
    return cells.namespace(_notebook(request.config), part)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """A check of a part runs through cells.run_check: with the reference's other parts, and if it fails there,
    with the notebook's own earlier cells (so that a student's helper from an earlier part costs nothing)."""
    part = getattr(pyfuncitem.module, "PART", None)
    if part is None or "ns" not in pyfuncitem.funcargs or part in _spoiled:   # tests/meta have fixtures of their own
        return None
    fixtures = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    cells.run_check(pyfuncitem.obj, _notebook(pyfuncitem.config), part, **fixtures)
    return True
