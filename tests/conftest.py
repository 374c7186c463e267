"""The grader's pytest set-up: `pytest tests --notebook PATH` grades PATH (default: solution.ipynb).

Each test module grades one part (its PART) and gets `ns`: the names that part's cell defines, run on top of the
reference solution's other parts. tests/meta checks the project itself and is skipped when grading a submission.

Two guards keep one bad part from costing more than its own points: a part whose check timed out, or whose code
changed torch, Python's builtins or the grader, fails its remaining checks at once instead of running them.
"""
import builtins
import json
from pathlib import Path

import pytest
import torch
import torch._dynamo  # noqa: F401  (imported lazily by optimizers, it rebinds torch.manual_seed: do it before any snapshot)
import torch.nn as nn
import torch.nn.functional as F

import grader
import reference
from grader import REFERENCE, SubmissionError, load

_spoiled = {}  # part -> why its remaining checks fail at once
_results = {}  # nodeid -> points, max, message (for --results)


def pytest_addoption(parser):
    parser.addoption("--notebook", default=None, help="the notebook to grade (default: solution.ipynb)")
    parser.addoption("--checkpoint", default=None, help="its trained model (default: data/ddpm_mnist.pt beside it)")
    parser.addoption("--results", default=None, help="write each test's points and message to this JSON file")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): how many points the test is worth (default 1)")
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped without one")
    torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_ignore_collect(collection_path, config):
    if config.getoption("--notebook") and "meta" in Path(collection_path).parts:
        return True


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="no CUDA GPU here"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    part = getattr(item.module, "PART", None)
    if part and report.failed and "Timeout" in str(report.longrepr):
        _spoiled.setdefault(part, "an earlier check of this part did not finish in time")
    marker = item.get_closest_marker("points")
    result = _results.setdefault(item.nodeid, {
        "test": item.nodeid.split("::", 1)[-1], "part": Path(str(item.fspath)).stem.removeprefix("test_"),
        "part_title": (item.module.__doc__ or "").strip().splitlines()[0] if item.module.__doc__ else "",
        "checked": checked(item), "points": 0, "max": marker.args[0] if marker else 1, "outcome": "passed",
        "message": ""})
    if result["outcome"] == "passed" and (report.failed or report.skipped):
        crash = getattr(report.longrepr, "reprcrash", None)
        result["outcome"] = "failed" if report.failed else "skipped"
        result["message"] = crash.message if crash else str(report.longrepr[-1] if report.skipped else report.longrepr)
    if call.when == "teardown":
        result["max"] = 0 if result["outcome"] == "skipped" else result["max"]   # e.g. GPU checks on a CPU
        result["points"] = result["max"] if result["outcome"] == "passed" else 0
    return report


def checked(item):
    "What a check checks, in plain words: its docstring's first line, or its name spelled out."
    doc = getattr(item, "function", None) and item.function.__doc__
    if doc:
        return doc.strip().splitlines()[0]
    words = item.name.split("[")[0].removeprefix("test_").replace("_", " ")
    return words[:1].upper() + words[1:] + "."


def pytest_sessionfinish(session):
    path = session.config.getoption("--results")
    if path:
        Path(path).write_text(json.dumps(list(_results.values()), indent=1))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    if not hasattr(item.module, "PART"):  # tests/meta: the project's own tests, no submitted code
        return (yield)
    with grader.untrusted():
        return (yield)


class Unloadable(dict):
    """Stands in for the namespace of a part that could not be loaded: every check of it fails with the reason."""

    def __init__(self, reason):
        super().__init__()
        self.reason = reason

    def __missing__(self, name):
        raise AssertionError(self.reason)


@pytest.fixture
def ns(request):
    part = request.module.PART
    if part in _spoiled:
        return Unloadable(f"Not run: {_spoiled[part]}.")
    notebook = request.config.getoption("--notebook") or REFERENCE
    try:
        return load(str(Path(notebook).resolve()), part)
    except SubmissionError as err:
        return Unloadable(str(err))


@pytest.fixture(autouse=True)
def untampered(request):
    """Fail (and undo) any change that submitted code makes to torch, builtins or the grader's own modules."""
    guarded = [torch, torch.Tensor, F, nn.Module, builtins, grader, reference, request.module]
    before = [dict(vars(obj)) for obj in guarded]
    yield
    changed = []
    for obj, snapshot in zip(guarded, before):
        current = vars(obj)
        for key, value in snapshot.items():
            if current.get(key, snapshot) is not value:
                changed.append(f"{getattr(obj, '__name__', obj)}.{key}")
                setattr(obj, key, value)
    if changed:
        part = getattr(request.module, "PART", None)
        if part:
            _spoiled[part] = "your code changes what the grader relies on"
        pytest.fail(f"Your code changes {', '.join(changed[:3])}, which the grader relies on: that is not allowed.",
                    pytrace=False)
