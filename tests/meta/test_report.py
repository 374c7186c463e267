"""`make report` (tools/report.py) on each grading path, from real results of the grader (tests/meta/fixtures/grades:
make grade's JSON for four notebooks, graded once; nothing is graded here): the same class seen through make grade's
folder, an nbgrader gradebook with its autograded notebooks, and Gradescope's results.json files. Bad files are
named and left out; the rest of the report is still written.

The fixtures, graded with `python -m tools.grade DIR --out DIR --cpu-per-check 10` without a trained model (so
the sample-quality checks fail): alice (tests/meta/corpus/beginner.ipynb), bob (the solution with alpha instead of
alpha-bar in the forward process), carol (its grading stopped from outside: the grader could not finish), dave
(a file that is not a notebook), erin (an endless loop in two_point_posterior_mean: the part's CPU limit). Their
"notebook" paths were shortened to the file name."""
import base64
import collections
import json
import re
import shutil
import sqlite3
from pathlib import Path

import nbformat
import pytest

from grader import feedback, gradescope, runner
from grader.remote import TIMED_OUT as remote_timed_out
from grader.cells import PARTS, ROOT
from tools import report

FIXTURES = Path(__file__).parent / "fixtures" / "grades"
GRADED = {path.stem: json.loads(path.read_text()) for path in sorted(FIXTURES.glob("*.json"))}


def failures(graded):
    """{(part, what): hint} of a make grade result's failed checks."""
    return {(c["part"], c.get("checked") or c["test"]): report.hint(c["message"])
            for c in graded["checks"] if c["outcome"] == "failed"}


def limited(student):
    """The parts of a fixture with a check that hit a limit or crashed."""
    return {c["part"] for c in GRADED[student]["checks"] if c["outcome"] == "failed" and report.hit_limit(c["message"])}


def test_limits_and_crashes_are_told_from_wrong_answers():
    assert set(GRADED) == {"alice", "bob", "carol", "dave", "erin"}
    assert limited("alice") == limited("bob") == set(), "wrong answers and a missing model are not limits"
    assert limited("carol") == {"all"} and limited("dave") == set(PARTS) and limited("erin") == {"two_point"}
    assert any(remote_timed_out in c["message"] for c in GRADED["erin"]["checks"])


def test_limit_markers_are_the_graders_own_words():
    """Each marker is worded somewhere in the grader: a rewording there must change it here too."""
    sources = " ".join(" ".join(p.read_text().lower().split()) for p in
                       [*(ROOT / "grader").glob("*.py"), ROOT / "tests" / "conftest.py", ROOT / "tools" / "grade.py"])
    sources = sources.replace('" "', "").replace("{timed_out}", remote_timed_out.lower())
    assert not [m for m in report.LIMIT_MARKERS if m not in sources]


def test_make_grade_folder(tmp_path):
    grades = tmp_path / "grades"
    shutil.copytree(FIXTURES, grades)
    (grades / "eve.json").write_text("{ not json")
    (grades / "finn.json").write_text(json.dumps({"points": 3}))
    (grades / "gus.json").write_text("[1, 2]")
    submissions, problems = report.from_grades(grades)
    assert sorted(s["student"] for s in submissions) == sorted(GRADED)
    for name in ("eve.json", "finn.json", "gus.json"):
        assert sum(name in p for p in problems) == 1, (name, problems)
    assert all("make grade" in p for p in problems), "each says what to do"
    md = report.write(submissions, problems, grades, tmp_path / "out")

    bob = next(s for s in submissions if s["student"] == "bob")
    assert bob["points"] == GRADED["bob"]["points"] and bob["max"] == GRADED["bob"]["max"]
    assert list(bob["parts"]) == [p for p in PARTS if p in GRADED["bob"]["parts"]]
    for (part, what), text in failures(GRADED["bob"]).items():   # every failed check of bob, with his hint
        assert what in md and text in md, (what, text)
    counts = collections.Counter(key for g in GRADED.values() for key, text in failures(g).items()
                                 if not report.hit_limit(text))
    for (part, what), n in counts.most_common(5):                 # counted over the class
        assert f"**{n} of 5** failed ({part.replace('_', ' ')}) {what}" in md, (n, what)

    limits = md.split("## Grading that hit a limit or crashed")[1].split("## ")[0]
    assert "alice" not in limits and "bob" not in limits
    assert "- carol (all; 1 check): The grader could not finish on this notebook" in limits
    n = sum(c["outcome"] == "failed" for c in GRADED["dave"]["checks"])
    assert f"- dave ({', '.join(p.replace('_', ' ') for p in PARTS)}; {n} checks): The notebook dave.ipynb" in limits
    assert "- erin (two point" in limits and remote_timed_out in limits
    seconds = sum(g["seconds"] for g in GRADED.values())
    assert f"{seconds / 60:.1f} minutes for 5 submissions" in md and "the longest: carol" in md
    assert "## Files that could not be read" in md and "erin.json" not in md.split("## Files")[1]

    page = (tmp_path / "out" / "class-report.html").read_text()
    png = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert png and base64.b64decode(png.group(1)).startswith(b"\x89PNG"), "the histograms are embedded"
    assert "<script" not in page and "src='http" not in page and "carol" in page and "eve.json" in page


def test_gradescope_results_give_the_same_class(tmp_path, monkeypatch):
    """results.json written by grader/gradescope.py itself, from the same grader results."""
    folder = tmp_path / "gradescope"
    graded_here = {s: g for s, g in GRADED.items() if s != "carol"}   # carol's crash is make grade's own summary
    for student, graded in graded_here.items():
        monkeypatch.setattr(runner, "grade", lambda *args, graded=graded: graded)
        (folder / student).mkdir(parents=True)
        (folder / student / "assignment.ipynb").write_text("{}")
        (folder / student / "results.json").write_text(json.dumps(gradescope.results(folder / student)))
    (folder / "hal").mkdir()    # a submission without a notebook: grader/gradescope.py says so
    (folder / "hal" / "results.json").write_text(json.dumps(gradescope.results(folder / "hal")))
    (folder / "ivy").mkdir()
    (folder / "ivy" / "results.json").write_text(json.dumps({"score": 3}))
    (folder / "jo").mkdir()
    (folder / "jo" / "results.json").write_text('{"score": 1, "tests": [')

    submissions, problems = report.from_gradescope(folder)
    assert len(problems) == 2 and "ivy" in problems[0] and "'tests'" in problems[0] and "jo" in problems[1]
    by_name = {s["student"]: s for s in submissions}
    assert set(by_name) == {*graded_here, "hal"}
    for student, graded in graded_here.items():
        got = by_name[student]
        assert got["seconds"] == graded["seconds"], "execution_time is the grading time"
        assert got["points"] == pytest.approx(graded["points"])
        assert {p: v[0] for p, v in got["parts"].items()} == pytest.approx(
            {p: r["points"] for p, r in graded["parts"].items()})
        assert {(c["part"], c["what"]): report.hint(c["message"]) for c in got["checks"] if c["outcome"] == "failed"} \
            == failures(graded)
    md = report.write(submissions, problems, folder, tmp_path / "out")
    limits = md.split("## Grading that hit a limit or crashed")[1].split("## ")[0]
    assert "- hal (all; 1 check): The submission could not be graded: No notebook" in limits and "erin" in limits


def gradebook(course, submissions):
    """A gradebook.db as nbgrader autograde leaves it, and autograded/<student>/ddpm/assignment.ipynb with the test
    cells that grader/autograde.py writes."""
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "ddpm") as gb:
        gb.add_assignment("ddpm")
        gb.add_notebook("assignment", "ddpm")
        for part, points in PARTS.items():
            gb.add_grade_cell(f"test_{part}", "assignment", "ddpm", max_score=points, cell_type="code")
        for student, graded in submissions.items():
            gb.add_student(student)
            gb.add_submission("ddpm", student)
            cells = []
            for part in PARTS:
                result = graded["parts"].get(part)
                grade = gb.find_grade(f"test_{part}", "assignment", "ddpm", student)
                grade.auto_score = result["points"] if result else 0
                cell = nbformat.v4.new_code_cell(metadata={"nbgrader": {"grade": True, "grade_id": f"test_{part}"}})
                if result:
                    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=feedback.text(part, result))]
                else:
                    cell.outputs = [nbformat.v4.new_output("error", ename="GradingError", traceback=[], evalue=(
                        f"The grader could not grade the part '{part}': ask your instructor."))]
                cells.append(cell)
            gb.db.commit()
            folder = course / "autograded" / student / "ddpm"
            folder.mkdir(parents=True)
            nbformat.write(nbformat.v4.new_notebook(cells=cells), folder / "assignment.ipynb")


@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")   # nbgrader's own add_submission
def test_nbgrader_gradebook(tmp_path, monkeypatch):
    import nbgrader.api   # a new gradebook records its schema's version from `alembic heads`: 2-10 s, not needed here
    monkeypatch.setattr(nbgrader.api, "get_alembic_version", lambda: "none")
    gradebook(tmp_path, GRADED)   # carol: an older autograde's GradingError in each part
    (tmp_path / "autograded" / "alice" / "ddpm" / "assignment.ipynb").write_text("not a notebook")
    before = (tmp_path / "gradebook.db").read_bytes()
    submissions, problems = report.from_gradebook(tmp_path / "gradebook.db")
    assert (tmp_path / "gradebook.db").read_bytes() == before, "reading the gradebook changes nothing in it"
    assert report.from_gradebook(tmp_path / "gradebook.db", "hw2")[1] == [
        f"{tmp_path / 'gradebook.db'}: no assignment 'hw2' (it has: ddpm): give --assignment"]
    assert len(problems) == 1 and "alice" in problems[0] and "assignment.ipynb" in problems[0], problems
    by_name = {s["student"]: s for s in submissions}
    assert set(by_name) == set(GRADED) and by_name["alice"]["checks"] == [], "alice's points, without her checks"
    assert by_name["alice"]["points"] == pytest.approx(GRADED["alice"]["points"])
    for student in ("bob", "dave", "erin"):
        got, graded = by_name[student], GRADED[student]
        assert got["seconds"] is None and got["points"] == pytest.approx(graded["points"])
        assert {(c["part"], c["what"]): report.hint(c["message"]) for c in got["checks"] if c["outcome"] == "failed"} \
            == failures(graded), "the checks and hints read back from what autograde wrote"
    md = report.write(submissions, problems, tmp_path / "gradebook.db", tmp_path / "out")
    assert "- carol (forward process; 1 check): The grader could not grade the part 'forward_process'" in md
    assert "- erin (two point" in md and remote_timed_out in md
    assert "Not recorded on this grading path" in md


def test_a_gradebook_that_is_not_one(tmp_path):
    text, other = tmp_path / "text.db", tmp_path / "other.db"
    text.write_text("hello")
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE notes (x)")
    before = other.read_bytes()
    for path, why in ((text, "not an nbgrader gradebook"), (other, "not an nbgrader gradebook (no grade tables)"),
                      (tmp_path / "missing.db", "no such file")):
        submissions, problems = report.from_gradebook(path)
        assert submissions == [] and len(problems) == 1, problems
        assert problems[0].startswith(f"{path}: {why}") and "gradebook.db of the course folder" in problems[0]
        md = report.write(submissions, problems, path, tmp_path / "out")
        assert str(path) in md and (tmp_path / "out" / "class-report.html").exists()
    assert other.read_bytes() == before, "the file given was not changed"
