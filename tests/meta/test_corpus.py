"""Independent solutions get full marks. Each notebook in corpus/ was written from assignment.ipynb alone, by
someone who never saw solution.ipynb, tests/ or the mutants (see corpus/README.md for who, how, and which checks
each one first failed). A failure here is a defect of the grader or of the notebook's text, never of the solution. Two of them also go
through every grading path as the README types it (test_instructor_paths.py)."""
from pathlib import Path

import pytest

from grader.cells import CELLS, failed_checks

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.ipynb"))


def test_the_corpus_is_there():
    assert len(CORPUS) >= 6, "the corpus should hold at least six independent solutions"


@pytest.mark.parametrize("notebook", CORPUS, ids=lambda p: p.stem)
@pytest.mark.parametrize("part", CELLS)
def test_independent_solution_gets_full_marks(notebook, part):
    failures = failed_checks(part, notebook)
    assert not failures, f"{notebook.stem} loses points in {part}: {failures}"
