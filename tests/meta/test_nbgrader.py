"""The nbgrader round trip, for real, with the course's nbgrader_config.py: generate, autograde, feedback and
export. The points come from the sandboxed grader (grader/autograde.py runs grader/runner.py), never from a kernel
running the submission, so they are the same as `make grade`'s, whatever the notebook prints, warns, fakes or
kills. The checks live outside the course folder and are found through DDPM_GRADER_DIR."""
import csv
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from grader.cells import CELLS, MODEL, PARTS, REFERENCE, ROOT
from mutants import MUTANTS
from nbgrader.api import Gradebook

CORPUS = ROOT / "tests" / "meta" / "corpus"
HIJACK = '''import sys, types
_fake = types.ModuleType("grader")
_fake.run_checks = lambda part, namespace: print(f"The hidden checks of {part} passed.")
sys.modules["grader"] = _fake
'''


def nbgrader(course, *args):
    env = {**os.environ, "DDPM_GRADER_DIR": str(ROOT), "DDPM_OFFLINE": "1",
           "DDPM_DATA_ROOT": os.path.abspath(os.environ.get("DDPM_DATA_ROOT", ROOT / "data")),
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}  # nbgrader db runs alembic
    subprocess.run([sys.executable, "-m", "nbgrader", *args, "--log-level=ERROR"], cwd=course, env=env, check=True,
                   timeout=1200)


def filled_in(release, answers_from, edit=None):
    """The released notebook with every solution cell taken from another notebook (markers removed)."""
    answers = {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"])
               for c in json.loads(answers_from.read_text())["cells"] if c["metadata"].get("nbgrader", {}).get("solution")}
    for cell in release["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = re.sub(r"[ \t]*### (BEGIN|END) SOLUTION\n", "", answers[grade_id])
            if edit:
                cell["source"] = edit(grade_id, cell["source"])
    return release


def hijack_break_ddim_and_exit(grade_id, source):
    if grade_id == "forward_process":
        return HIJACK + source
    if grade_id == "inpainting":
        return source + "\nimport os\nos._exit(0)   # would kill a kernel, and kills the process grading this part\n"
    return source.replace(").clamp(-1, 1)", ")") if grade_id == "ddim" else source


def one_mistake_per_part(grade_id, source):
    """A mistake from the mutation suite in every graded cell (submitted with the reference model)."""
    mistakes = dict(MUTANTS.values())   # the last mutant listed for each part
    for old, new in mistakes.get(grade_id, []):
        source = source.replace(old, new)
    return source


@pytest.mark.timeout(1800)
def test_autograde_feedback_export(tmp_path):
    course = tmp_path
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    (course / "source" / "ddpm").mkdir(parents=True)
    shutil.copy(REFERENCE, course / "source" / "ddpm" / "assignment.ipynb")
    nbgrader(course, "db", "assignment", "add", "ddpm")
    students = {"carol": (CORPUS / "noisy.ipynb", None, True),         # correct; prints, warns, stderr, tqdm bars
                "dave": (REFERENCE, hijack_break_ddim_and_exit, True),  # fakes the grader, DDIM without clipping,
                                                                        # os._exit in the in-painting cell
                "eve": (REFERENCE, one_mistake_per_part, True),        # a plausible mistake in every part
                "bob": (None, None, False)}                             # the untouched assignment, no model
    for student in students:
        nbgrader(course, "db", "student", "add", student)
    nbgrader(course, "generate_assignment", "ddpm")
    release = (course / "release" / "ddpm" / "assignment.ipynb").read_text()
    for student, (answers, edit, model) in students.items():
        folder = course / "submitted" / student / "ddpm"
        (folder / "data").mkdir(parents=True)
        nb = filled_in(json.loads(release), answers, edit) if answers else json.loads(release)
        (folder / "assignment.ipynb").write_text(json.dumps(nb))
        if model:
            shutil.copy(ROOT / MODEL, folder / "data" / "ddpm_mnist.pt")

    nbgrader(course, "autograde", "ddpm")
    nbgrader(course, "generate_feedback", "ddpm")
    nbgrader(course, "export")
    total = sum(PARTS.values())
    grades = {row["student_id"]: row for row in csv.DictReader(open(course / "grades.csv"))}
    assert float(grades["carol"]["max_score"]) == total, grades["carol"]
    assert float(grades["carol"]["score"]) == total, grades["carol"]     # stderr costs nothing
    assert float(grades["bob"]["score"]) == 0, grades["bob"]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "ddpm") as gb:
        dave = {part: gb.find_grade(f"test_{part}", "assignment", "ddpm", "dave").score for part in PARTS}
    assert 0 < dave["ddim"] < PARTS["ddim"], dave                          # the fake grader changed nothing
    assert dave["inpainting"] == 0, dave                                    # os._exit costs its own part only
    assert all(dave[part] == PARTS[part] for part in PARTS if part not in ("ddim", "inpainting")), dave

    # one score everywhere: make grade (and so Gradescope, which runs the same runner) gives every notebook the same
    # points per part as nbgrader, and its feedback report says so
    out = tmp_path / "grades"
    subprocess.run([sys.executable, "-m", "tools.grade", str(course / "submitted"), "--out", str(out)], cwd=ROOT,
                   check=True, timeout=1800)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "ddpm") as gb:
        for student in students:
            nbgrader_points = {part: gb.find_grade(f"test_{part}", "assignment", "ddpm", student).score for part in PARTS}
            result = json.loads((out / f"{student}_ddpm.json").read_text())
            assert {part: r["points"] for part, r in result["parts"].items()} == nbgrader_points, student
            assert abs(result["points"] - float(grades[student]["score"])) < 0.011, student
            if student == "eve":   # every part with a mistake loses points
                assert all(nbgrader_points[part] < PARTS[part] for part in CELLS), nbgrader_points
            report = (out / f"{student}_ddpm.md").read_text()
            assert f"**{result['points']:g} of {total:g} points.**" in report, student
    feedback = (course / "feedback" / "dave" / "ddpm" / "assignment.html").read_text()
    assert "Hint:" in feedback and "clipped" in feedback
    for student in students:
        assert (course / "feedback" / student / "ddpm" / "assignment.html").exists()
