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
