"""`make report`: the class at a glance, from any grading path. Writes OUT/class-report.html (self-contained, the
plots embedded) and OUT/class-report.md:

* the distribution of the total points and of each part's points (the parts and their maxima as graded);
* the checks most students fail, with how many failed and the hints they read (identical hints grouped);
* the submissions whose grading hit a limit or crashed, with the grader's message: look at these by hand;
* the grading time, in all and per submission (make grade and Gradescope record it; nbgrader does not);
* the files that could not be read, each named, with the reason: the rest of the report is still written.

Reads one of: a folder of `make grade` results (default build/grades: <student>.json), an nbgrader gradebook
(--gradebook course/gradebook.db; the checks and hints come from course/autograded/, where nbgrader autograde put
them), or a folder of Gradescope results.json files (--gradescope dir/: <student folder>/results.json).
"""
import argparse
import base64
import collections
import io
import json
import re
import sqlite3
import statistics
import sys
from pathlib import Path

import mistune

from grader import feedback
from grader.cells import PARTS, ROOT

# How the grader words a check that did not run to its end (grader/runner.py, grader/remote.py, tests/conftest.py,
# tools/grade.py, grader/autograde.py; tests/meta/test_report.py checks that each is still there). Lower case.
LIMIT_MARKERS = (
    "not finished:",                          # the process that ran the code died or was stopped mid-check
    "not run:",                               # an earlier check of the part was stopped: the rest did not run
    "could not be graded",                    # a part's checks did not run at all
    "the grader could not",                   # could not finish the notebook (make grade), a part (nbgrader)
    "did not finish within its cpu time",     # the CPU time limit of a check (remote.TIMED_OUT)
    "ran past its",                           # a time limit of a part, or the grader's limits
    "crashed the process",
    "ended the process",
    "lost contact",
    "could not start a process",
    "ran out of",
    "could not be read as a jupyter notebook",   # not a notebook at all (grader/cells.py)
)
TOP = 15   # failing checks listed


class BadInput(Exception):
    """A file that cannot be read as what it should be; the message names it and says what to do."""


def hit_limit(message):
    text = " ".join(str(message).lower().split())
    return any(marker in text for marker in LIMIT_MARKERS)


def hint(message):
    """A check's message as the student read it: one line, without "Hint: " or an exception's name before it."""
    text = " ".join(str(message).split()).removeprefix("Hint: ")
    return re.sub(r"^[\w.]*(Error|Died): ", "", text)


def record(student, source, parts, checks, seconds=None):
    """One submission: {student, source, points, max, parts: {part: (points, max)}, checks: [...], seconds}."""
    return {"student": student, "source": str(source), "parts": parts, "checks": checks, "seconds": seconds,
            "points": sum(p for p, _ in parts.values()), "max": sum(m for _, m in parts.values())}


# ---------------------------------------------------------------------------------------------------- the readers


def read_json(path, keys):
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise BadInput(f"{path}: not readable as JSON ({err})") from None
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise BadInput(f"{path}: no {', '.join(repr(k) for k in missing)}")
    return data


def from_grades(folder):
    """make grade's <student>.json files: (submissions, problems)."""
    submissions, problems = [], []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            data = read_json(path, ("points", "max", "checks"))
            checks = [{"part": c["part"], "what": c.get("checked") or c["test"], "outcome": c["outcome"],
                       "message": c.get("message", "")} for c in data["checks"]]
            parts = {part: (float(r["points"]), float(r["max"])) for part, r in (data.get("parts") or {}).items()}
        except BadInput as err:
            problems.append(f"{err}: grade this notebook again with make grade")
            continue
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            problems.append(f"{path}: not a result of make grade ({type(err).__name__}: {err}): grade this notebook "
                            "again with make grade")
            continue
        submissions.append(record(data.get("student", path.stem), path, parts, checks, data.get("seconds")))
    if not submissions and not problems:
        problems.append(f"{folder}: no <student>.json files: run make grade SUBMISSIONS=dir/ first")
    return submissions, problems


def from_gradescope(folder):
    """Gradescope's results.json (grader/gradescope.py), one per submission folder: (submissions, problems)."""
    submissions, problems = [], []
    folder = Path(folder)
    for path in sorted(folder.rglob("results.json")):
        student = "_".join(path.parent.relative_to(folder).parts) or path.parent.name
        try:
            data = read_json(path, ("score", "tests"))
            parts, checks = {}, []
            for test in data["tests"]:
                part = next((p for p in PARTS if test["name"].startswith(f"{feedback.title(p)}: ")), None)
                if part is None:
                    raise ValueError(f"the test {test['name']!r} is not of a graded part")
                got, most = parts.get(part, (0.0, 0.0))
                parts[part] = (got + float(test["score"]), most + float(test["max_score"]))
                failed = float(test["score"]) < float(test["max_score"])
                checks.append({"part": part, "what": test["name"].removeprefix(f"{feedback.title(part)}: "),
                               "outcome": "failed" if failed else "passed", "message": test.get("output", "")})
            if not data["tests"]:    # nothing graded (no notebook in the submission): the output says why
                checks.append({"part": "all", "what": "The submission could be graded.", "outcome": "failed",
                               "message": f"The submission could not be graded: {data.get('output', '')}"})
        except BadInput as err:
            problems.append(f"{err}: download this submission's results from Gradescope again, or rerun its autograder")
            continue
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            problems.append(f"{path}: not a results.json of this autograder ({type(err).__name__}: {err}): rerun "
                            "this submission's autograder on Gradescope")
            continue
        parts = {p: (round(got, 2), round(most, 2)) for p, (got, most) in parts.items()}   # checks: 4 digits each
        submissions.append(record(student, path, parts, checks, data.get("execution_time")))
    if not submissions and not problems:
        problems.append(f"{folder}: no results.json files under it: give the folder of the downloaded submissions")
    return submissions, problems


def autograded_checks(part, cell):
    """The checks of a part from the outputs that grader/autograde.py wrote into its test cell (feedback.text()).
    Skipped checks are not written there."""
    checks = []
    for output in cell.get("outputs", []):
        if output.get("ename") == "GradingError":   # written by autograde before 2026-12 (it now records no grade)
            return [{"part": part, "what": "The part could be graded.", "outcome": "failed",
                     "message": output.get("evalue", "")}]
        text = output.get("text", "")
        for line in ("".join(text) if isinstance(text, list) else text).splitlines():
            if line.startswith(("  ✓ ", "  ✗ ")):
                checks.append({"part": part, "what": line[4:], "outcome": "passed" if "✓" in line[:3] else "failed",
                               "message": ""})
            elif checks and checks[-1]["outcome"] == "failed" and line.strip():
                checks[-1]["message"] = (checks[-1]["message"] + " " + line.strip().removeprefix("Hint: ")).strip()
    said = ""   # feedback.lines() says a hint once per part: "the same as above" stands for the one before
    for check in checks:
        if check["message"] == feedback.SAME:
            check["message"] = said
        said = check["message"] or said
    return checks


def from_gradebook(db, assignment="ddpm"):
    """nbgrader's gradebook.db (the points, with any manual grades) and autograded/ beside it (the checks)."""
    db = Path(db)
    if not db.is_file():
        return [], [f"{db}: no such file: give the gradebook.db of the course folder"]
    # read-only first: nbgrader's Gradebook adds its tables to any SQLite file, and a course row for a course_id
    # it does not find
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not {"assignment", "grade", "grade_cells", "submitted_assignment", "student"} <= tables:
                return [], [f"{db}: not an nbgrader gradebook (no grade tables): give the gradebook.db of the "
                            "course folder"]
            courses = dict(con.execute("SELECT name, course_id FROM assignment"))
    except sqlite3.Error as err:
        return [], [f"{db}: not an nbgrader gradebook ({err}): give the gradebook.db of the course folder"]
    if assignment not in courses:
        return [], [f"{db}: no assignment {assignment!r} (it has: {', '.join(courses) or 'none'}): give --assignment"]
    from nbgrader.api import Gradebook
    submissions, problems = [], []
    with Gradebook(f"sqlite:///{db}", courses[assignment]) as gb:
        for submission in sorted(gb.assignment_submissions(assignment), key=lambda s: s.student.id):
            student, parts, checks = submission.student.id, {}, []
            for notebook in submission.notebooks:
                graded = db.parent / "autograded" / student / assignment / f"{notebook.name}.ipynb"
                try:
                    cells = json.loads(graded.read_text(encoding="utf-8"))["cells"]
                except (OSError, ValueError, KeyError, TypeError) as err:
                    problems.append(f"{graded}: not readable ({type(err).__name__}), so {student}'s checks are "
                                    "missing here: run nbgrader autograde for this student again")
                    cells = []
                test_cells = {c.get("metadata", {}).get("nbgrader", {}).get("grade_id"): c for c in cells}
                for grade in notebook.grades:
                    part = grade.name.removeprefix("test_")
                    if part in PARTS and grade.name.startswith("test_"):
                        parts[part] = (float(grade.score or 0), float(grade.max_score))
                        checks += autograded_checks(part, test_cells.get(grade.name, {}))
            submissions.append(record(student, db, parts, checks))
    return submissions, problems


# ---------------------------------------------------------------------------------------------------- the summary


def summarize(submissions):
    parts = [p for p in PARTS if any(p in s["parts"] for s in submissions)]
    parts += sorted({p for s in submissions for p in s["parts"]} - set(parts))
    failing = collections.defaultdict(lambda: collections.Counter())
    for s in submissions:
        for c in s["checks"]:
            if c["outcome"] == "failed" and not hit_limit(c["message"]):
                failing[c["part"], c["what"]][hint(c["message"])] += 1
    failing = sorted(failing.items(), key=lambda item: -sum(item[1].values()))
    limits = collections.defaultdict(list)   # (student, message): the part of each check it ended
    for s in submissions:
        for c in s["checks"]:
            if c["outcome"] == "failed" and hit_limit(c["message"]):
                limits[s["student"], hint(c["message"])].append(c["part"])
    timed = [s for s in submissions if isinstance(s["seconds"], (int, float))]
    return parts, failing, limits, timed


def histograms(submissions, parts):
    """A PNG (base64) of the totals' histogram and one per part."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    panels = [("total", [s["points"] for s in submissions], max((s["max"] for s in submissions), default=0))]
    panels += [(p.replace("_", " "), [s["parts"][p][0] for s in submissions if p in s["parts"]],
                max(s["parts"][p][1] for s in submissions if p in s["parts"])) for p in parts]
    cols = 3
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, (title, values, most) in zip(axes.flat, panels):
        ax.hist(values, bins=min(20, max(1, int(most * 2) or 1)), range=(0, most or 1), color="#4477aa",
                edgecolor="white")
        ax.set_title(f"{title} (of {most:g}; {len(values)} graded)", fontsize=10)
        ax.set_xlabel("points")
        ax.set_ylabel("submissions")
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def markdown(submissions, problems, source):
    parts, failing, limits, timed = summarize(submissions)
    totals = [s["points"] for s in submissions]
    md = [f"# Class report: {len(submissions)} submissions", "", f"From {source}.", ""]
    if totals:
        md += [f"Total points: mean {statistics.mean(totals):.1f}, median {statistics.median(totals):g}, "
               f"of {max(s['max'] for s in submissions):g}.", "", "| part | graded | mean | of | full marks |",
               "|---|---|---|---|---|"]
        for p in parts:
            got = [s["parts"][p] for s in submissions if p in s["parts"]]
            md.append(f"| {p.replace('_', ' ')} | {len(got)} | {statistics.mean(g for g, _ in got):.2f} | "
                      f"{max(m for _, m in got):g} | {sum(g >= m for g, m in got)} |")
        md += ["", "A part with few full marks is one to explain again: its failing checks are below."]
    md += ["", "## The checks most students fail", "",
           "What to teach again: the checks at the top, and the hints the students read (identical hints grouped). "
           "Failures from a limit or a crash are not counted here; they are listed in the next section.", ""]
    for (part, what), hints in failing[:TOP]:
        md.append(f"- **{sum(hints.values())} of {len(submissions)}** failed ({part.replace('_', ' ')}) {what}")
        md += [f"  - {n} ×: {h or '(no message)'}" for h, n in hints.most_common()]
    if not failing:
        md.append("No check failed.")
    md += ["", "## Grading that hit a limit or crashed", "",
           "Look at each of these notebooks by hand: the student's code may loop or crash, the file may not be a "
           "notebook, or the grader may be at fault (then fix it and grade the notebook again).", ""]
    md += [f"- {student} ({', '.join(dict.fromkeys(p.replace('_', ' ') for p in parts))}; {len(parts)} "
           f"{'check' if len(parts) == 1 else 'checks'}): {message}" for (student, message), parts in limits.items()]
    if not limits:
        md.append("None.")
    md += ["", "## Grading time", ""]
    if timed:
        seconds = [s["seconds"] for s in timed]
        slowest = ", ".join(f"{s['student']} {s['seconds']:g} s" for s in sorted(timed, key=lambda s: -s["seconds"])[:5])
        md.append(f"{sum(seconds) / 60:.1f} minutes for {len(timed)} submissions: median {statistics.median(seconds):g} s, "
                  f"the longest: {slowest}.")
    else:
        md.append("Not recorded on this grading path (nbgrader keeps no grading times).")
    if problems:
        md += ["", "## Files that could not be read", "", "Each is left out of everything above. What to do is "
               "after each file's reason.", ""] + [f"- {p}" for p in problems]
    return "\n".join(md) + "\n"


def write(submissions, problems, source, out):
    """OUT/class-report.md and OUT/class-report.html (the Markdown's content, with the histograms)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(submissions, problems, source)
    (out / "class-report.md").write_text(md)
    page = mistune.create_markdown(escape=True, plugins=["table"])(md)
    if submissions:   # the histograms, before the first section
        png = histograms(submissions, summarize(submissions)[0])
        plot = f"<img alt='histograms of the total points and of each part' src='data:image/png;base64,{png}'>"
        page = page.replace("<h2>", plot + "\n<h2>", 1)
    (out / "class-report.html").write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Class report</title><style>"
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}td{border:1px solid #ccc;padding:.2em .6em}"
        "table{border-collapse:collapse}li{margin:.2em 0}img{max-width:100%}</style></head><body>" + page +
        "</body></html>\n")
    return md


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("grades", type=Path, nargs="?", default=ROOT / "build" / "grades",
                        help="make grade's output folder (default build/grades)")
    source.add_argument("--gradebook", type=Path, help="an nbgrader gradebook.db (autograded/ beside it)")
    source.add_argument("--gradescope", type=Path, help="a folder of Gradescope results.json, one per submission")
    parser.add_argument("--assignment", default="ddpm", help="the nbgrader assignment (default ddpm)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "report")
    args = parser.parse_args()
    if args.gradebook:
        submissions, problems = from_gradebook(args.gradebook, args.assignment)
        where = args.gradebook
    elif args.gradescope:
        submissions, problems = from_gradescope(args.gradescope)
        where = args.gradescope
    else:
        submissions, problems = from_grades(args.grades)
        where = args.grades
    write(submissions, problems, where, args.out)
    for problem in problems:
        print(f"could not read {problem}", file=sys.stderr)
    print(f"{len(submissions)} submissions: open {args.out / 'class-report.html'} (or class-report.md)")
    if not submissions:
        sys.exit(1)


if __name__ == "__main__":
    main()
