"""The grader's pytest set-up: `pytest tests --notebook PATH` grades PATH (default: solution.ipynb).

Each test module grades one part (its PART) and gets `ns`: the names that part's cell defines, run on top of the
reference solution's other parts. tests/meta checks the project itself and is skipped when grading a submission.
"""
from pathlib import Path

import pytest
import torch

from grader import REFERENCE, SubmissionError, load


def pytest_addoption(parser):
    parser.addoption("--notebook", default=None, help="the notebook to grade (default: solution.ipynb)")


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


@pytest.fixture
def ns(request):
    notebook = request.config.getoption("--notebook") or REFERENCE
    try:
        return load(str(Path(notebook).resolve()), request.module.PART)
    except SubmissionError as err:
        pytest.fail(str(err), pytrace=False)
