"""The grader is right: every mistake in mutants.MUTANTS loses points, every variant in mutants.CORRECT gets full marks."""
import json

import pytest

from grader.cells import REFERENCE, SubmissionError, failed_checks, load
from mutants import CORRECT, MUTANTS


def _variant(tmp_path, part, edits):
    nb = json.loads(REFERENCE.read_text())
    [cell] = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == part]
    source = "".join(cell["source"])
    for old, new in edits:
        assert source.count(old) == 1, f"stale edit, not found once in the solution's {part} cell: {old!r}"
        source = source.replace(old, new)
    cell["source"] = source
    path = tmp_path / "submission.ipynb"
    path.write_text(json.dumps(nb))
    return str(path)


def _grade(tmp_path, part, edits):
    try:
        return failed_checks(part, _variant(tmp_path, part, edits))
    except SubmissionError as err:
        return [str(err)]


@pytest.mark.parametrize("name", MUTANTS)
def test_mistake_loses_points(name, tmp_path):
    part, edits = MUTANTS[name]
    assert _grade(tmp_path, part, edits), f"the grader gives full marks to the mistake: {name}"


@pytest.mark.parametrize("name", CORRECT)
def test_correct_variant_gets_full_marks(name, tmp_path):
    part, edits = CORRECT[name]
    failures = _grade(tmp_path, part, edits)
    assert not failures, f"the correct variant '{name}' loses points: {failures}"
