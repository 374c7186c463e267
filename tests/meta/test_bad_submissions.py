"""Broken submissions cost the points of the broken part only, with a clear message, and never crash or hang
the grading of anything else."""
import json
import subprocess
import sys

import pytest

from grader import REFERENCE, ROOT, SubmissionError, failed_checks, load


def variant(tmp_path, name, part, edit):
    """solution.ipynb with `edit(cells, index of the part's cell)` applied; returns its path."""
    nb = json.loads(REFERENCE.read_text())
    cells = nb["cells"]
    [index] = [i for i, c in enumerate(cells) if c["metadata"].get("nbgrader", {}).get("grade_id") == part]
    cells[index]["source"] = "".join(cells[index]["source"])
    edit(cells, index)
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "submission.ipynb").write_text(json.dumps(nb))
    return folder / "submission.ipynb"


def append(code):
    def edit(cells, i):
        cells[i]["source"] += "\n" + code
    return edit


def replace(old, new):
    def edit(cells, i):
        assert old in cells[i]["source"]
        cells[i]["source"] = cells[i]["source"].replace(old, new)
    return edit


def drop_grade_id(cells, i):
    del cells[i]["metadata"]["nbgrader"]


def duplicate(cells, i):
    cells.insert(i + 1, json.loads(json.dumps(cells[i])))


IN_PROCESS = {
    "syntax error": ("unet", append("def broken(:\n    pass"), "syntax error"),
    "grade_id removed": ("forward_process", drop_grade_id, "no cell 'forward_process'"),
    "cell duplicated": ("reverse_process", duplicate, "more than once"),
    "function renamed": ("inpainting", replace("def inpaint(", "def in_paint("), "does not define `inpaint`"),
    "raises at import": ("training_loop", append("raise ValueError('oops')"), "raised ValueError"),
    "huge allocation": ("unet", append("_big = torch.empty(2**62)"), "raised RuntimeError"),
    "reads the solution": ("unet", append(f"_stolen = open({str(REFERENCE)!r}).read()"), "PermissionError"),
    "wrong device": ("unet", replace("return self.conv_out(F.silu(self.norm_out(h)))",
                                     "return self.conv_out(F.silu(self.norm_out(h))).to('meta')"), ""),
    "NaN output": ("unet", replace("return self.conv_out(F.silu(self.norm_out(h)))",
                                   "return self.conv_out(F.silu(self.norm_out(h))) * float('nan')"), "NaN"),
}


@pytest.mark.parametrize("name", IN_PROCESS)
def test_broken_part_fails_with_a_message_and_the_others_pass(name, tmp_path):
    part, edit, message = IN_PROCESS[name]
    notebook = str(variant(tmp_path, "s", part, edit))
    try:
        failures = failed_checks(part, notebook)
    except SubmissionError as err:
        failures = [str(err)]
    assert failures and any(message in f for f in failures), failures
    other = "inpainting" if part != "inpainting" else "forward_process"
    assert failed_checks(other, notebook) == [], f"{name} in {part} should not cost points in {other}"


def test_hangs_and_tampering_are_contained(tmp_path):
    """Graded through `make grade`'s runner: each submission in its own process with a time limit per check."""
    submissions = tmp_path / "submissions"
    variant(submissions, "endless_loop_at_import", "forward_process", append("while True:\n    pass"))
    variant(submissions, "endless_loop_in_a_function", "inpainting",
            replace("def inpaint_step(diffusion, model, x_t, t, x0, mask_known, noise=None, noise_known=None):\n",
                    "def inpaint_step(diffusion, model, x_t, t, x0, mask_known, noise=None, noise_known=None):\n"
                    "    while True:\n        pass\n"))
    variant(submissions, "patches_torch", "forward_process", append("torch.allclose = lambda *args, **kwargs: True"))
    variant(submissions, "patches_the_grader", "inpainting",
            append("import sys\nsys.modules['reference'].q_sample = lambda *args: 0"))
    out = tmp_path / "grades"
    subprocess.run([sys.executable, str(ROOT / "tools" / "grade.py"), str(submissions), "--out", str(out),
                    "--timeout", "10", "--select", "forward_process or inpainting", "--jobs", "2"],
                   check=True, timeout=900)
    broken = {"endless_loop_at_import": "forward_process", "endless_loop_in_a_function": "inpainting",
              "patches_torch": "forward_process", "patches_the_grader": "inpainting"}
    for student, part in broken.items():
        checks = json.loads((out / f"{student}.json").read_text())["checks"]
        lost = [c for c in checks if c["points"] < c["max"]]
        assert lost and all(c["part"] == part for c in lost), (student, lost)
        assert all(c["message"] for c in lost), (student, lost)
        assert any(c["part"] != part and c["points"] == c["max"] > 0 for c in checks), (student, checks)
        feedback = (out / f"{student}.md").read_text()   # the student's report names the lost check and its hint
        assert f"✗ {lost[0]['checked']}" in feedback and "**Hint:**" in feedback, feedback
        assert "Hint:" in (out / f"{student}.html").read_text()
    assert (out / "grades.csv").read_text().count("\n") == 1 + len(broken)


def test_edited_locked_cells_and_deleted_test_cells_change_nothing(tmp_path):
    def edit(cells, i):
        for cell in cells:
            meta = cell["metadata"].get("nbgrader", {})
            if meta.get("grade_id") == "setup":
                cell["source"] = "import torch\nT = 7\ndef randn(*args, **kwargs):\n    return 0\n"
        cells[:] = [c for c in cells if not c["metadata"].get("nbgrader", {}).get("grade")]
    notebook = str(variant(tmp_path, "s", "unet", edit))
    for part in ("forward_process", "unet", "inpainting"):
        assert failed_checks(part, notebook) == [], part
