"""The per-student feedback report of `make grade`: what was checked, in plain words, and a hint per failed check."""
from tools import grade


def test_feedback_lists_checks_and_hints(tmp_path):
    checks = [
        {"test": "test_schedule_values", "part": "forward_process", "part_title": "The noise schedule and q(x_t | x_0), eq. 4.",
         "checked": "The linear schedule.", "points": 1, "max": 1, "outcome": "passed", "message": ""},
        {"test": "test_loss_is_a_mean", "part": "training_loop", "part_title": "L_simple", "checked": "The loss is a mean.",
         "points": 0, "max": 1, "outcome": "failed", "message": "AssertionError: the loss should be the MEAN <of> the errors."},
        {"test": "test_runs_on_cuda", "part": "unet", "part_title": "The U-Net", "checked": "Runs on a GPU.",
         "points": 0, "max": 0, "outcome": "skipped", "message": "no CUDA GPU here"}]
    grade.write_feedback({"student": "ada", "points": 1, "max": 2, "checks": checks}, tmp_path / "ada")
    md, page = (tmp_path / "ada.md").read_text(), (tmp_path / "ada.html").read_text()
    assert "**1 of 2 points.**" in md
    assert "## Forward process: 1 / 1" in md and "- ✓ The linear schedule." in md
    assert "## Training loop: 0 / 1" in md
    assert "- ✗ The loss is a mean.  \n  **Hint:** the loss should be the MEAN <of> the errors." in md
    assert "(not run here) Runs on a GPU." in md
    assert "AssertionError" not in md + page
    assert "the MEAN &lt;of&gt; the errors" in page and "<of>" not in page   # escaped for the browser


def test_a_hint_shared_by_several_checks_is_said_once():
    from grader import feedback
    checks = [{"test": f"test_{i}", "checked": f"Check {i}.", "outcome": "failed", "message": "NotImplementedError"}
              for i in range(5)] + [{"test": "test_ok", "checked": "Fine.", "outcome": "passed", "message": ""}]
    text = feedback.text("forward_process", {"points": 0, "max": 3, "checks": checks})
    assert text.startswith("Forward process: 0 of 3 points.")
    assert text.count("not done yet") == 1 and text.count("the same as above") == 4 and "✓ Fine." in text


def test_every_part_has_a_title_and_its_shares_add_up():
    from grader import feedback, runner
    from grader.cells import PARTS, TITLES
    assert set(TITLES) == set(PARTS) and feedback.title("unet") == "U-Net" and feedback.title("ddim") == "DDIM"
    for part in PARTS:
        for n in range(1, 13):
            data = {"collected": [f"tests/test_{part}.py::test_{i}" for i in range(n)],
                    "results": {f"tests/test_{part}.py::test_{i}": {"test": f"test_{i}", "checked": "", "outcome":
                                "passed", "message": ""} for i in range(n)}}
            result = runner.part_result(part, data, "")
            assert round(sum(c["max"] for c in result["checks"]), 6) == PARTS[part] == result["points"]
