"""The nbgrader round trip, for real: generate, autograde (the solution gets full marks, the untouched
assignment zero, without crashing), feedback and export. The checks live outside the course folder and reach
the hidden test cells through DDPM_GRADER_DIR."""
import csv
import json
import os
import re
import shutil
import subprocess
import sys

from grader import REFERENCE, ROOT


def nbgrader(course, *args):
    env = {**os.environ, "DDPM_GRADER_DIR": str(ROOT / "tests"), "DDPM_OFFLINE": "1",
           "DDPM_DATA_ROOT": os.path.abspath(os.environ.get("DDPM_DATA_ROOT", ROOT / "data")),
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}  # nbgrader db runs alembic
    subprocess.run([sys.executable, "-m", "nbgrader", *args, "--log-level=ERROR"], cwd=course, env=env, check=True,
                   timeout=900)


def filled_in(release, solution):
    """The released notebook with every solution cell written as the solution does (markers removed)."""
    answers = {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) for c in solution["cells"]
               if c["metadata"].get("nbgrader", {}).get("solution")}
    for cell in release["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = re.sub(r"[ \t]*### (BEGIN|END) SOLUTION\n", "", answers[grade_id])
    return release


def test_autograde_feedback_export(tmp_path):
    course = tmp_path
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'ddpm'\nc.Execute.timeout = 600\n")
    (course / "source" / "ddpm").mkdir(parents=True)
    shutil.copy(REFERENCE, course / "source" / "ddpm" / "assignment.ipynb")
    nbgrader(course, "db", "assignment", "add", "ddpm")
    for student in ("alice", "bob"):
        nbgrader(course, "db", "student", "add", student)
    nbgrader(course, "generate_assignment", "ddpm")
    release = json.loads((course / "release" / "ddpm" / "assignment.ipynb").read_text())

    alice = course / "submitted" / "alice" / "ddpm"
    (alice / "data").mkdir(parents=True)
    solution = json.loads(REFERENCE.read_text())
    (alice / "assignment.ipynb").write_text(json.dumps(filled_in(json.loads(json.dumps(release)), solution)))
    shutil.copy(ROOT / "data" / "ddpm_mnist.pt", alice / "data" / "ddpm_mnist.pt")
    bob = course / "submitted" / "bob" / "ddpm"
    bob.mkdir(parents=True)
    (bob / "assignment.ipynb").write_text(json.dumps(release))

    nbgrader(course, "autograde", "ddpm")
    nbgrader(course, "generate_feedback", "ddpm")
    nbgrader(course, "export")
    grades = {row["student_id"]: row for row in csv.DictReader(open(course / "grades.csv"))}
    assert float(grades["alice"]["score"]) == float(grades["alice"]["max_score"]) > 0, grades["alice"]
    assert float(grades["bob"]["score"]) == 0, grades["bob"]
    for student in ("alice", "bob"):
        assert (course / "feedback" / student / "ddpm" / "assignment.html").exists()
