"""Load the graded cells of a notebook by their nbgrader grade_id, and run the checks of a part.

The reference notebook is the one source of the parts and their points:
* CELLS: the solution cells (grade_id), in the notebook's order. `load(notebook, part)` runs the reference
  notebook's setup cell, then every cell of CELLS in order: the notebook's own cell for `part`, the reference
  solution's cell for the others. A mistake in one part therefore costs the points of that part only.
  Nothing else in the notebook runs: no data loading, no training, no plots.
* PARTS: {part: points}, from the autograded test cells `test_<part>` (their nbgrader points). The checks of a
  part are the test_* functions of tests/test_<part>.py; the part's points are shared equally among them.
"""
import contextlib
import importlib
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "solution.ipynb"
SETUP = "setup"


class SubmissionError(Exception):
    """A problem with the submitted notebook itself, worded for the student."""


_untrusted = [False]  # True while submitted code may run


def _deny_grader_files(event, args):
    """An audit hook: submitted code may not open the reference solution or the grader's own files."""
    if _untrusted[0] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.realpath(os.fsdecode(args[0]))
        if path == str(REFERENCE.resolve()) or path.startswith(str(ROOT.resolve() / "tests") + os.sep):
            raise PermissionError("submitted code may not read the grader's or the solution's files")


sys.addaudithook(_deny_grader_files)


@contextlib.contextmanager
def untrusted():
    """Run submitted code (its cells, or checks that call into it) with the grader's files closed to it."""
    before, _untrusted[0] = _untrusted[0], True
    try:
        yield
    finally:
        _untrusted[0] = before


class Namespace(dict):
    """The names a notebook defines; a missing name fails the check with a message instead of a KeyError."""

    def __missing__(self, name):
        raise AssertionError(f"Your notebook does not define `{name}`: keep the names and arguments the assignment gives.")


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


_loaded = {}


def load(notebook=REFERENCE, part=None, extra=(), own_earlier=False):
    """A namespace (dict) with the setup and all parts defined: `part` from `notebook`, the rest from the reference.

    part=None takes every part from `notebook`. `extra` names further cells of `notebook` to run after the parts.
    own_earlier=True also takes the cells before `part` from `notebook` (its own helpers, see failed_checks).
    Raises SubmissionError with a student-safe message if a cell is missing, fails or hangs. Results and errors
    are cached, so a broken cell is run (and waited for) once, not once per check.
    """
    key = (str(notebook), part, tuple(extra), own_earlier)
    if key not in _loaded:
        try:
            _loaded[key] = _run_cells(notebook, part, tuple(extra), own_earlier)
        except SubmissionError as err:
            _loaded[key] = err
    if isinstance(_loaded[key], SubmissionError):
        raise _loaded[key]
    return _loaded[key]


def _run_cells(notebook, part, extra, own_earlier):
    own = cells_by_grade_id(notebook)
    namespace = {"__name__": "submission"}
    exec(_cell(REFERENCE_CELLS, SETUP, REFERENCE), namespace)
    earlier = CELLS[:CELLS.index(part)] if own_earlier and part in CELLS else ()
    for name in CELLS + extra:
        mine = part is None or name == part or name in extra or name in earlier
        try:
            code = _cell(own, name, notebook) if mine else _cell(REFERENCE_CELLS, name, REFERENCE)
        except SyntaxError as err:
            raise SubmissionError(f"Your cell '{name}' has a syntax error on line {err.lineno}: {err.msg}.") from None
        try:
            with untrusted():
                exec(code, namespace)
        except pytest.fail.Exception:  # a time limit interrupts a cell that runs too long
            raise SubmissionError(f"Your cell '{name}' did not finish in time: is there an endless loop?") from None
        except (SystemExit, KeyboardInterrupt) as err:
            raise SubmissionError(f"Running your cell '{name}' raised {type(err).__name__}: a graded cell should only "
                                  "define things, not stop the program.") from None
        except Exception as err:
            raise SubmissionError(f"Running your cell '{name}' raised {type(err).__name__}: {err}") from None
    return Namespace(namespace)


class Unloadable(dict):
    """Stands in for the namespace of a part that could not be loaded: every check of it fails with the reason."""

    def __init__(self, reason):
        super().__init__()
        self.reason = reason

    def __missing__(self, name):
        raise AssertionError(self.reason)


def namespace(notebook, part, own_earlier=False):
    """load(), or an Unloadable that fails each check with the student-safe reason."""
    try:
        return load(notebook, part, own_earlier=own_earlier)
    except SubmissionError as err:
        return Unloadable(str(err))


def run_check(check, notebook, part, **fixtures):
    """Run one check of `part` on the notebook's cell for it, with the reference's cells for the other parts.

    A student may define a helper in an earlier part and use it later (a schedule function, a method of their
    Diffusion class). If the check fails that way, it runs again with the notebook's own earlier cells, and
    passes if it passes there: a mistake in an earlier part then costs that part only, and a helper costs nothing.
    Only an ordinary exception is retried: a timeout or an exit ends the check."""
    isolated = fixtures.pop("ns", None)
    isolated = namespace(notebook, part) if isolated is None else isolated
    try:
        with untrusted():
            return _stopped_is_failed(check, isolated, fixtures)
    except Exception as first:
        if part not in CELLS or CELLS.index(part) == 0:
            raise
        chained = namespace(notebook, part, own_earlier=True)
        if isinstance(chained, Unloadable):
            raise
        try:
            with untrusted():
                return _stopped_is_failed(check, chained, fixtures)
        except Exception as second:
            missing = isinstance(first, (NameError, AttributeError)) or isinstance(isolated, Unloadable)
            raise (second if missing else first) from None


def _stopped_is_failed(check, ns, fixtures):
    try:
        return check(ns=ns, **fixtures)
    except (SystemExit, KeyboardInterrupt) as err:   # raised by the submitted code the check called
        raise AssertionError(f"your code raised {type(err).__name__} while it was checked.") from None


def failed_checks(part, notebook):
    """Run every check of `part` (the test_* functions of tests/test_<part>.py) on a notebook; return the failures."""
    module = importlib.import_module(f"test_{part}")
    failures = []
    for name in sorted(n for n in dir(module) if n.startswith("test_")):
        try:
            run_check(getattr(module, name), str(notebook), part)
        except pytest.skip.Exception:
            continue
        except Exception as err:
            failures.append(f"{name}: {type(err).__name__}: {err}")
    return failures


def _parts(notebook):
    """CELLS (solution cells in order) and PARTS ({part: points} of the test cells) of the reference notebook."""
    cells, parts = [], {}
    for cell in json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "code" and meta.get("solution") and meta.get("grade_id"):
            cells.append(meta["grade_id"])
        if meta.get("grade") and str(meta.get("grade_id", "")).startswith("test_"):
            parts[meta["grade_id"].removeprefix("test_")] = float(meta["points"])
    return tuple(cells), parts


REFERENCE_CELLS = cells_by_grade_id(REFERENCE)  # read once, before any submitted code runs
CELLS, PARTS = _parts(REFERENCE)
