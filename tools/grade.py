"""`make grade SUBMISSIONS=dir/`: grade every notebook under dir/ with the isolated grader (grader/runner.py).

Each notebook (with its trained model in data/ddpm_mnist.pt beside it) is graded by a process of its own, which
grades each part in a further process of its own, with limits (see grader/runner.py), so that no submission can
crash, hang or change the grading of another part or another submission. Submissions are graded in parallel, one
per core, each part with one thread. Writes OUT/<student>.json (per part and check: points, max, message),
OUT/<student>.md and OUT/<student>.html (feedback for the student: per part, what was checked and a hint for each
failed check) and OUT/grades.csv (a row per student, a column per part and one per check, named part::check).

Regrading updates the class's results in place: --students (or a SUBMISSIONS folder that is one student's) grades
only those students, --parts only those parts, keeping every other result; grades.csv is rebuilt from all the
results in OUT. A problem of the grader's own (no data set, no sandbox) stops grading with a message, charging no one.
"""
import argparse
import concurrent.futures
import csv
import hashlib
import html
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grader import feedback, runner

ROOT = runner.ROOT
RELEASED = "assignment.ipynb"   # the notebook's name as students receive it


def student_id(notebook, base):
    """submissions/alice/assignment.ipynb -> alice (so also when SUBMISSIONS is alice's own folder);
    submitted/alice/ddpm/assignment.ipynb -> alice_ddpm; submissions/alice.ipynb -> alice."""
    rel = notebook.relative_to(base)
    if not rel.parent.parts:
        return base.name if rel.name == RELEASED else rel.stem
    return "_".join(rel.parent.parts)


def grade(notebook, out, args):
    student = student_id(notebook, args.submissions)
    results = out / f"{student}.json"
    previous = load(results) if args.parts else None
    start = time.time()
    fresh = results.with_suffix(".new")
    fresh.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        command, env = runner.command(notebook, "--out", fresh, "--jobs", args.part_jobs, "--hide", args.submissions,
                                      "--cpu-per-check", args.cpu_per_check, *(["--parts", *args.parts] if args.parts else []))
        proc = subprocess.Popen(command, cwd=scratch, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**env, "DDPM_OFFLINE": "1"}, start_new_session=True, errors="replace")
        try:
            log = proc.communicate(timeout=args.total_timeout)[0][-3000:]
        except subprocess.TimeoutExpired:
            log = f"grading stopped after {args.total_timeout} s"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # the runner and everything it started
            except OSError:
                pass
            proc.wait()
    if proc.returncode == runner.SETUP_EXIT:
        raise runner.SetupError(log.strip().splitlines()[-1] if log.strip() else "the grader could not start")
    summary = load(fresh)
    fresh.unlink(missing_ok=True)
    if summary is None:  # the grader itself died: say so, never a silent 0 of 0
        summary = {"points": 0, "max": 0, "parts": {}, "checks": [
            {"test": "grading", "part": "all", "checked": "The notebook could be graded.", "points": 0, "max": 0,
             "outcome": "failed", "message": f"The grader could not finish on this notebook: {log.strip()[-300:]}"}]}
    elif previous and previous.get("parts"):   # one part regraded: the others keep their results
        parts = {**previous["parts"], **summary["parts"]}
        summary.update(parts=parts, points=round(sum(r["points"] for r in parts.values()), 2),
                       max=sum(r["max"] for r in parts.values()), checks=[c for r in parts.values() for c in r["checks"]])
    summary.update(student=student, notebook=str(notebook), seconds=round(time.time() - start, 1))
    results.write_text(json.dumps(summary, indent=1))
    write_feedback(summary, out / student)
    return summary


def load(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def by_part(checks):
    parts = {}
    for c in checks:
        parts.setdefault(c["part"], []).append(c)
    return parts


def write_feedback(summary, stem):
    """<stem>.md and <stem>.html: per part, each check in plain words, passed or not, and the hint of a failed one
    (grader/feedback.py: the same words as nbgrader's and Gradescope's). The hints are the checks' own messages,
    written for students: they name the mistake, never the expected values."""
    parts = summary.get("parts") or {}
    score = lambda part, cs: ((parts[part]["points"], parts[part]["max"]) if part in parts  # noqa: E731
                              else (sum(c["points"] for c in cs), sum(c["max"] for c in cs)))
    md = [f"# Feedback for {summary['student']}", "", f"**{summary['points']:g} of {summary['max']:g} points.**", "",
          "| part | points |", "|---|---|"]
    md += [f"| {feedback.title(part)} | {score(part, cs)[0]:g} / {score(part, cs)[1]:g} |"
           for part, cs in by_part(summary["checks"]).items()]
    body = [f"<h1>Feedback for {html.escape(summary['student'])}</h1>",
            f"<p><b>{summary['points']:g} of {summary['max']:g} points.</b></p>"]
    marks = {"passed": ("✓ ", "&#10003; "), "failed": ("✗ ", "&#10007; "),
             "skipped": ("(not run here) ", "&#8212; <i>(not run here)</i> ")}
    for part, cs in by_part(summary["checks"]).items():
        title, (got, most) = feedback.title(part), score(part, cs)
        figures = feedback.figures({"checks": cs})
        md += ["", f"## {title}: {got:g} / {most:g}", ""] + ([figures, ""] if figures else [])
        body += [f"<h2>{html.escape(title)}: {got:g} / {most:g}</h2>"] + \
                ([f"<p>{html.escape(figures)}</p>"] if figures else []) + ["<ul>"]
        for mark, what, why in feedback.lines(cs):
            md.append(f"- {marks[mark][0]}{what}" + (f"  \n  **Hint:** {why}" if why else ""))
            body.append(f"<li>{marks[mark][1]}{html.escape(what)}" + (f"<br><b>Hint:</b> {html.escape(why)}" if why
                                                                         else "") + "</li>")
        body.append("</ul>")
    grader = f"Graded by the course's grader {summary['grader']}." if summary.get("grader") else ""
    Path(f"{stem}.md").write_text("\n".join(md + ["", grader]) + "\n")
    Path(f"{stem}.html").write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Feedback</title>"
                                    "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto}"
                                    "li{margin:.3em 0}</style></head><body>" + "\n".join(body) +
                                    f"<p><small>{html.escape(grader)}</small></p></body></html>\n")


def fingerprints(*folders):
    """sha256 of every file under the folders (the grader's own files, every submission), to prove after grading
    that nothing a submission ran changed them."""
    out = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file() and not {".venv", "build", "__pycache__", ".git"} & set(path.parts):
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "grades")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="submissions graded at once (one per core)")
    parser.add_argument("--cpu-per-check", type=float, default=120, help="CPU seconds per check (not wall-clock time)")
    parser.add_argument("--total-timeout", type=int, default=7200, help="wall-clock seconds per submission, a backstop")
    parser.add_argument("--parts", nargs="*", help="regrade only these parts (the others keep their results)")
    parser.add_argument("--students", nargs="*", help="regrade only these students (the others keep their results)")
    args = parser.parse_args()
    args.submissions, args.out = args.submissions.resolve(), args.out.resolve()
    notebooks = sorted(p for p in args.submissions.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if args.students:
        unknown = set(args.students) - {student_id(nb, args.submissions) for nb in notebooks}
        if unknown:
            sys.exit(f"no notebook of {', '.join(sorted(unknown))} under {args.submissions}")
        notebooks = [nb for nb in notebooks if student_id(nb, args.submissions) in args.students]
    if not notebooks:
        sys.exit(f"no notebooks under {args.submissions}")
    unknown = set(args.parts or ()) - set(runner.PARTS)
    if unknown:
        sys.exit(f"no part {', '.join(sorted(unknown))}: the parts are {', '.join(runner.PARTS)}")
    try:
        runner.check_setup()
    except runner.SetupError as err:
        sys.exit(f"ERROR: nothing was graded: {err}")
    args.jobs = max(1, min(args.jobs, len(notebooks)))
    args.part_jobs = max(1, (os.cpu_count() or 1) // args.jobs)   # never more busy processes than cores
    args.out.mkdir(parents=True, exist_ok=True)
    guarded = (ROOT / "grader", ROOT / "tests", ROOT / "data", ROOT / "tools", args.submissions)
    before, start = fingerprints(*guarded), time.time()
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(grade, nb, args.out, args) for nb in notebooks]
        try:
            for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                s = future.result()
                print(f"[{done}/{len(notebooks)}] {s['student']}: {s['points']:g}/{s['max']:g} points in "
                      f"{s['seconds']} s", flush=True)
        except runner.SetupError as err:
            for f in futures:
                f.cancel()
            sys.exit(f"ERROR: grading stopped: {err}")
    elapsed = time.time() - start
    after = fingerprints(*guarded)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        sys.exit(f"ERROR: grading changed files it must not touch (a submission escaped): {changed[:5]}")
    write_csv(args.out)
    print(f"wrote {args.out / 'grades.csv'} (every student in {args.out}) and one JSON and feedback report per student")
    print(f"{len(notebooks)} submissions in {elapsed:.0f} s on {os.cpu_count()} cores: about "
          f"{elapsed / len(notebooks) * 1000 / 3600:.1f} hours for a class of 1,000 on this machine")


def write_csv(out):
    """grades.csv from every student's results in `out`: points per part and per check ("skipped" for a check not run
    here, such as the GPU checks on a CPU), the sample statistics measured, and the grader's version."""
    summaries = sorted((s for s in map(load, out.glob("*.json")) if s and "student" in s), key=lambda s: s["student"])
    columns = list(dict.fromkeys(c["part"] for s in summaries for c in s["checks"]))
    checks = list(dict.fromkeys(f"{c['part']}::{c['test']}" for s in summaries for c in s["checks"]))
    figures = list(dict.fromkeys(f"{c['part']}:{k}" for s in summaries for c in s["checks"] for k in c.get("measured", {})))
    with open(out / "grades.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "points", "max"] + columns + checks + figures + ["grader"])
        for s in summaries:
            parts = s.get("parts") or {}
            by_check = {f"{c['part']}::{c['test']}": "skipped" if c["outcome"] == "skipped" else c["points"]
                        for c in s["checks"]}
            measured = {f"{c['part']}:{k}": v for c in s["checks"] for k, v in c.get("measured", {}).items()}
            writer.writerow([s["student"], s["points"], s["max"]] + [parts.get(p, {}).get("points", "") for p in columns]
                            + [by_check.get(c, "") for c in checks] + [measured.get(k, "") for k in figures]
                            + [s.get("grader", "")])


if __name__ == "__main__":
    main()
