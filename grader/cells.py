"""Load the graded cells of a notebook by their nbgrader grade_id, and run the checks of a part.

The reference notebook is the one source of the parts and their points:
* CELLS: the solution cells (grade_id), in the notebook's order. `namespace(notebook, part)` runs the reference
  notebook's setup cell, then every cell of CELLS in order: the notebook's own cell for `part`, the reference
  solution's cell for the others, in a worker process (grader/remote.py) that the checks reach only through data.
  A mistake in one part therefore costs the points of that part only. Nothing else in the notebook runs: no data
  loading, no training, no plots. `load()` does the same here, in this process, for the notebooks the project
  trusts (the reference, for the tools).
* PARTS: {part: points}, from the autograded test cells `test_<part>` (their nbgrader points). The checks of a
  part are the test_* functions of tests/test_<part>.py; the part's points are shared equally among them.
"""
import functools
import importlib
import json
import marshal
import os
from pathlib import Path

# `remote` (the workers, and torch) and pytest are imported where checks run: reading PARTS (runner.py) stays light.
ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "solution.ipynb"
MODEL = Path("data", "ddpm_mnist.pt")   # a trained model, relative to its notebook's folder (the notebook's CHECKPOINT)
SETUP = "setup"


class SubmissionError(Exception):
    """A problem with the submitted notebook itself, worded for the student."""


class Namespace(dict):
    """The names a notebook defines; a missing name fails the check with a message instead of a KeyError."""

    def __missing__(self, name):
        raise AssertionError(f"Your notebook does not define `{name}`: keep the names and arguments the assignment gives.")

    def run(self, probe, *args, **kwargs):
        """As remote.Namespace.run: here, a probe is just called."""
        return probe(*args, **kwargs)

    def standin(self, name, *args):
        """As remote.Namespace.standin: here, a stand-in model of standins.py."""
        from . import standins
        return getattr(standins, name)(*args)


def cells_by_grade_id(notebook):
    """{grade_id: source} of the code cells of a notebook. Raises SubmissionError if it can't be read."""
    try:
        stat = os.stat(notebook)
    except OSError as err:
        raise SubmissionError(f"The notebook {Path(notebook).name} could not be read as a Jupyter notebook ({err}).")
    return _cells(str(notebook), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _cells(notebook, mtime, size):   # read once per version of the file, not once per worker
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


def _cell(sources, grade_id, notebook, optimize=-1):
    source = sources.get(grade_id)
    if source is None:
        raise SubmissionError(f"Your notebook has no cell '{grade_id}'. Was it deleted, or its metadata changed? "
                              "Copy the cell back from a fresh copy of the assignment.")
    if isinstance(source, SubmissionError):
        raise source
    return compile(source, f"<cell {grade_id} of {Path(notebook).name}>", "exec", optimize=optimize)


_loaded = {}


def load(notebook=REFERENCE, part=None, extra=(), own_earlier=False):
    """A namespace (dict) with the setup and all parts defined: `part` from `notebook`, the rest from the reference.

    Runs the cells here, in this process: for notebooks the project trusts (the reference, the tools). Checks of a
    submission use namespace(), which runs them in a worker. part=None takes every part from `notebook`; `extra`
    names further cells of `notebook` to run after the parts; own_earlier=True also takes the cells before `part`
    from `notebook`. Raises SubmissionError if a cell is missing or fails. Cached.
    """
    key = (str(notebook), part, tuple(extra), own_earlier)
    if key not in _loaded:
        namespace = {"__name__": "submission"}
        try:
            for name, code in _compiled(notebook, part, tuple(extra), own_earlier):
                try:
                    exec(marshal.loads(code), namespace)
                except Exception as err:
                    raise SubmissionError(f"Running your cell '{name}' raised {type(err).__name__}: {err}") from None
            _loaded[key] = Namespace(namespace)
        except SubmissionError as err:
            _loaded[key] = err
    if isinstance(_loaded[key], SubmissionError):
        raise _loaded[key]
    return _loaded[key]


_loaded = {}


def _compiled(notebook, part, extra=(), own_earlier=False):
    """[(grade_id, marshalled code)]: the reference's setup cell, then each cell of CELLS (and `extra`), from
    `notebook` for `part` (all of them if part is None) and from the reference for the others. The reference's
    cells are compiled without docstrings. Raises SubmissionError for a missing cell or a syntax error."""
    own = cells_by_grade_id(notebook)
    earlier = CELLS[:CELLS.index(part)] if own_earlier and part in CELLS else ()
    cells = [(SETUP, marshal.dumps(_cell(REFERENCE_CELLS, SETUP, REFERENCE, optimize=2)))]
    for name in CELLS + tuple(extra):
        mine = part is None or name == part or name in extra or name in earlier
        try:
            code = _cell(own, name, notebook) if mine else _cell(REFERENCE_CELLS, name, REFERENCE, optimize=2)
        except SyntaxError as err:
            raise SubmissionError(f"Your cell '{name}' has a syntax error on line {err.lineno}: {err.msg}.") from None
        cells.append((name, marshal.dumps(code)))
    return cells


class Unloadable(dict):
    """Stands in for the namespace of a part that could not be loaded: every check of it fails with the reason."""

    def __init__(self, reason):
        super().__init__()
        self.reason = reason

    def __missing__(self, name):
        raise AssertionError(self.reason)

    def run(self, *args, **kwargs):
        raise AssertionError(self.reason)

    standin = run


_workers = {}
_spent = set()   # (notebook, grade_id): the notebook's own cells that ran out of CPU time, never run again


def namespace(notebook, part, own_earlier=False):
    """The names that load() would define, run in a worker process (grader/remote.py) instead of here; or an
    Unloadable that fails each check with the student-safe reason. One worker per (notebook, part, own_earlier)."""
    from . import remote
    key = (str(notebook), part, own_earlier)
    if key not in _workers:
        own = [part, *(CELLS[:CELLS.index(part)] if own_earlier and part in CELLS else ())]
        spent = [name for name in own if (str(notebook), name) in _spent]
        try:
            if spent:
                raise SubmissionError(f"Not run: your cell '{spent[0]}' ran out of computing time earlier in the "
                                      "grading: is there an endless loop?")
            ns, failed = remote.spawn(_compiled(notebook, part, own_earlier=own_earlier))
            _workers[key] = ns if ns else Unloadable(_load_failure(*failed))
            if failed and failed[1] == "died" and remote.TIMED_OUT in failed[2] and failed[0] in own:
                _spent.add((str(notebook), failed[0]))
        except SubmissionError as err:
            _workers[key] = Unloadable(str(err))
    return _workers[key]


def _load_failure(name, kind, message):
    if kind == "died":
        return f"Your cells could not be run: {message}"
    if kind == "stop":
        return (f"Running your cell '{name}' raised {message}: a graded cell should only define things, not stop "
                "the program.")
    return f"Running your cell '{name}' raised {message}"


def close_workers():
    """End every worker (the checks of a part are done)."""
    from . import remote
    for ns in _workers.values():
        if isinstance(ns, remote.Namespace):
            ns.close()
    _workers.clear()


def run_check(check, notebook, part, **fixtures):
    """Run one check of `part` on the notebook's cell for it, with the reference's cells for the other parts.

    A student may define a helper in an earlier part and use it later (a schedule function, a method of their
    Diffusion class). If the check fails that way, it runs again with the notebook's own earlier cells, and
    passes if it passes there: a mistake in an earlier part then costs that part only, and a helper costs nothing.
    Only an ordinary failure is retried: a timeout, an exit or a crash of the submitted code ends the check."""
    from . import remote
    isolated = fixtures.pop("ns", None)
    isolated = namespace(notebook, part) if isolated is None else isolated
    try:
        return check(ns=isolated, **fixtures)
    except remote.Died:
        raise
    except Exception as first:
        if part not in CELLS or CELLS.index(part) == 0:
            raise
        chained = namespace(notebook, part, own_earlier=True)
        if isinstance(chained, Unloadable):
            raise
        try:
            return check(ns=chained, **fixtures)
        except remote.Died:
            raise first from None
        except Exception as second:
            missing = isinstance(first, (NameError, AttributeError)) or isinstance(isolated, Unloadable)
            raise (second if missing else first) from None


def failed_checks(part, notebook):
    """Run every check of `part` (the test_* functions of tests/test_<part>.py) on a notebook; return the failures."""
    import pytest
    from . import remote
    module = importlib.import_module(f"test_{part}")
    failures = []
    try:
        for name in sorted(n for n in dir(module) if n.startswith("test_")):
            remote.check_started(getattr(module, "CPU_SECONDS", None) or remote.LIMITS["cpu_per_check"])
            try:
                run_check(getattr(module, name), str(notebook), part)
            except pytest.skip.Exception:
                continue
            except Exception as err:
                failures.append(f"{name}: {type(err).__name__}: {err}")
    finally:
        close_workers()
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
# What the feedback calls each part (tests/meta checks that every part has a title)
TITLES = {"forward_process": "Forward process", "reverse_process": "Reverse process", "two_point": "Two-point denoiser",
          "unet": "U-Net", "training_loop": "Training loop", "sample_quality": "Sample quality", "ddim": "DDIM",
          "inpainting": "In-painting"}
