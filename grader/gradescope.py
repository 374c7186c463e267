"""Gradescope's side of the grader: grade a submission folder with grader/runner.py and write results.json in
Gradescope's schema (one test per check: name, score, max_score, output, visibility; the total and the grading
time, execution_time, which tools/report.py reads).

`python grader/gradescope.py SUBMISSION_FOLDER RESULTS_JSON`; tools/gradescope/run_autograder calls it. Students
upload their notebook and their trained model (data/ddpm_mnist.pt, or ddpm_mnist.pt at the top).
"""
import json
import sys
from pathlib import Path

from . import feedback, runner
from .cells import MODEL


def find(submission):
    notebooks = sorted(Path(submission).rglob("*.ipynb"), key=lambda p: (p.name != "assignment.ipynb", len(p.parts)))
    notebooks = [p for p in notebooks if ".ipynb_checkpoints" not in p.parts]
    models = [p for name in (MODEL, MODEL.name) for p in [Path(submission) / name] if p.exists()]
    models += sorted(Path(submission).rglob("*.pt"))
    return (notebooks or [None])[0], (models or [None])[0]


def results(submission):
    notebook, model = find(submission)
    if notebook is None:
        return {"score": 0, "visibility": "visible", "tests": [], "output":
                "No notebook (.ipynb) was found in your submission: upload your assignment.ipynb."}
    graded = runner.grade(notebook, model or Path(submission) / MODEL)
    tests = []
    for part, result in graded["parts"].items():
        for check in result["checks"]:   # one test each, so each failed one says its hint in full
            if check["outcome"] == "skipped":       # e.g. the GPU checks: Gradescope has no GPU
                continue
            tests.append({"name": f"{feedback.title(part)}: {check.get('checked') or check['test']}",
                          "score": check["points"], "max_score": check["max"], "visibility": "visible",
                          "output": "" if check["outcome"] == "passed" else f"Hint: {feedback.hint(check['message'])}"})
    summary = [f"{feedback.title(part)}: {r['points']:g} of {r['max']:g} points. {feedback.figures(r)}".strip()
               for part, r in graded["parts"].items()]
    summary.append(f"Graded by the course's grader {graded.get('grader', '(version unknown)')}.")
    if model is None:
        summary.insert(0, "No trained model (data/ddpm_mnist.pt) was found in your submission: the code parts are "
                          "graded, the sample quality is not. Upload data/ddpm_mnist.pt with your notebook.")
    return {"score": graded["points"], "execution_time": graded["seconds"], "visibility": "visible",
            "stdout_visibility": "hidden", "output": "\n".join(summary), "tests": tests}


def main():
    submission, out = Path(sys.argv[1]), Path(sys.argv[2])
    try:
        out.write_text(json.dumps(results(submission), indent=1))
    except runner.SetupError as err:   # no results.json: Gradescope shows the run as failed, not as a 0
        sys.exit(f"ERROR: the autograder cannot grade here: {err}")


if __name__ == "__main__":
    main()
