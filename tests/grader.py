"""Load the graded cells of a notebook by their nbgrader grade_id, and run the checks of a part.

A graded part is one solution cell (grade_id in PARTS). `load(notebook, part)` runs the reference
notebook's setup cell, then every part in order: the notebook's own cell for `part`, the reference
solution's cell for the others. A mistake in one part therefore costs the points of that part only.
Nothing else in the notebook runs: no data loading, no training, no plots.
"""
import functools
import importlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "solution.ipynb"
SETUP = "setup"
PARTS = ("forward_process", "reverse_process", "unet", "training_loop", "inpainting")


class SubmissionError(Exception):
    """A problem with the submitted notebook itself, worded for the student."""


def cells_by_grade_id(notebook):
    """{grade_id: source} of the code cells of a notebook. Raises SubmissionError if it can't be read."""
    try:
        nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
        cells = nb["cells"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SubmissionError(f"The notebook {Path(notebook).name} could not be read as a Jupyter notebook ({err}).")
    sources, duplicates = {}, set()
    for cell in cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.get("cell_type") != "code" or not grade_id:
            continue
        if grade_id in sources:
            duplicates.add(grade_id)
        source = cell.get("source", "")
        sources[grade_id] = "".join(source) if isinstance(source, list) else source
    for grade_id in duplicates:
        sources[grade_id] = SubmissionError(
            f"The cell '{grade_id}' appears more than once in your notebook: keep only one copy of each graded cell.")
    return sources


def _cell(sources, grade_id, notebook):
    source = sources.get(grade_id)
    if source is None:
        raise SubmissionError(f"Your notebook has no cell '{grade_id}'. Was it deleted, or its metadata changed? "
                              "Copy the cell back from a fresh copy of the assignment.")
    if isinstance(source, SubmissionError):
        raise source
    return compile(source, f"<cell {grade_id} of {Path(notebook).name}>", "exec")


@functools.lru_cache(maxsize=None)
def load(notebook=REFERENCE, part=None, extra=()):
    """A namespace (dict) with the setup and all parts defined: `part` from `notebook`, the rest from the reference.

    part=None takes every part from `notebook`. `extra` names further cells of `notebook` to run after the parts.
    Raises SubmissionError with a student-safe message if the cell is missing or fails to run.
    """
    reference = cells_by_grade_id(REFERENCE)
    own = cells_by_grade_id(notebook)
    namespace = {"__name__": "submission"}
    exec(_cell(reference, SETUP, REFERENCE), namespace)
    for name in PARTS + tuple(extra):
        mine = part is None or name == part or name in extra
        try:
            code = _cell(own, name, notebook) if mine else _cell(reference, name, REFERENCE)
        except SyntaxError as err:
            raise SubmissionError(f"Your cell '{name}' has a syntax error on line {err.lineno}: {err.msg}.") from None
        try:
            exec(code, namespace)
        except Exception as err:
            raise SubmissionError(f"Running your cell '{name}' raised {type(err).__name__}: {err}") from None
    return namespace


def run_checks(part, namespace):
    """Run every check of `part` (the test_* functions of tests/test_<part>.py) on a namespace, e.g. globals().

    This is what the hidden test cells of the notebook call, so nbgrader and pytest grade with the same checks.
    """
    module = importlib.import_module(f"test_{part}")
    checks = [getattr(module, name) for name in dir(module) if name.startswith("test_")]
    failures = []
    for check in checks:
        try:
            check(namespace)
        except Exception as err:
            failures.append(f"{check.__name__}: {type(err).__name__}: {err}")
    if failures:
        raise AssertionError(f"{len(failures)} of {len(checks)} hidden checks failed:\n" + "\n".join(failures))
    print(f"All {len(checks)} hidden checks of {part} passed.")
