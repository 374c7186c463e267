"""`make grade SUBMISSIONS=dir/`: grade every notebook under dir/ with the isolated grader (grader/runner.py).

Each notebook (with its trained model in data/ddpm_mnist.pt beside it) is graded by a process of its own, which
grades each part in a further process of its own, with limits (see grader/runner.py), so that no submission can
crash, hang or change the grading of another part or another submission. Submissions are graded in parallel, one
per core, each part with one thread. Writes OUT/<student>.json (per part and check: points, max, message),
OUT/<student>.md and OUT/<student>.html (feedback for the student: per part, what was checked and a hint for each
failed check) and OUT/grades.csv (a row per student, a column per part and one per check, named part::check).
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

from grader import runner

ROOT = runner.ROOT


def student_id(notebook, base):
    rel = notebook.relative_to(base)
    return "_".join(rel.parent.parts) if rel.parent.parts else rel.stem


def grade(notebook, out, args):
    student = student_id(notebook, args.submissions)
    results = out / f"{student}.json"
    results.unlink(missing_ok=True)
    start = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        command, env = runner.command(notebook, "--out", results, "--jobs", args.part_jobs, "--hide", args.submissions,
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
    try:
        summary = json.loads(results.read_text())
    except (OSError, ValueError):  # the grader itself died: say so, never a silent 0 of 0
        summary = {"points": 0, "max": 0, "parts": {}, "checks": [
            {"test": "grading", "part": "all", "checked": "The notebook could be graded.", "points": 0, "max": 0,
             "outcome": "failed", "message": f"The grader could not finish on this notebook: {log.strip()[-300:]}"}]}
    summary.update(student=student, notebook=str(notebook), seconds=round(time.time() - start, 1))
    results.write_text(json.dumps(summary, indent=1))
    write_feedback(summary, out / student)
    return summary


def by_part(checks):
    parts = {}
    for c in checks:
        parts.setdefault(c["part"], []).append(c)
    return parts


def write_feedback(summary, stem):
    """<stem>.md and <stem>.html: per part, each check in plain words, passed or not, and the hint of a failed one.

    The hints are the checks' own messages, written for students: they name the mistake, never the expected values."""
    parts = summary.get("parts") or {}
    score = lambda part, cs: ((parts[part]["points"], parts[part]["max"]) if part in parts  # noqa: E731
                              else (sum(c["points"] for c in cs), sum(c["max"] for c in cs)))
    md = [f"# Feedback for {summary['student']}", "", f"**{summary['points']:g} of {summary['max']:g} points.**", "",
          "| part | points |", "|---|---|"]
    md += [f"| {part.replace('_', ' ')} | {score(part, cs)[0]:g} / {score(part, cs)[1]:g} |"
           for part, cs in by_part(summary["checks"]).items()]
    body = [f"<h1>Feedback for {html.escape(summary['student'])}</h1>",
            f"<p><b>{summary['points']:g} of {summary['max']:g} points.</b></p>"]
    for part, cs in by_part(summary["checks"]).items():
        title = part.replace("_", " ").capitalize()
        got, most = score(part, cs)
        about = cs[0].get("part_title", "")
        md += ["", f"## {title}: {got:g} / {most:g}", "", about, ""] if about else ["", f"## {title}: {got:g} / {most:g}", ""]
        body += [f"<h2>{html.escape(title)}: {got:g} / {most:g}</h2>", f"<p>{html.escape(about)}</p>", "<ul>"]
        for c in cs:
            what = c.get("checked") or c["test"]
            if c["outcome"] == "skipped":
                md.append(f"- (not run here) {what}")
                body.append(f"<li>&#8212; {html.escape(what)} <i>(not run here)</i></li>")
            elif c["outcome"] == "passed":
                md.append(f"- ✓ {what}")
                body.append(f"<li>&#10003; {html.escape(what)}</li>")
            else:
                hint = c["message"].strip().removeprefix("AssertionError: ").replace("\n", " ")
                md.append(f"- ✗ {what}  \n  **Hint:** {hint}")
                body.append(f"<li>&#10007; {html.escape(what)}<br><b>Hint:</b> {html.escape(hint)}</li>")
        body.append("</ul>")
    Path(f"{stem}.md").write_text("\n".join(md) + "\n")
    Path(f"{stem}.html").write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Feedback</title>"
                                    "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto}"
                                    "li{margin:.3em 0}</style></head><body>" + "\n".join(body) + "</body></html>\n")


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
    parser.add_argument("--parts", nargs="*", help="only these parts")
    args = parser.parse_args()
    args.submissions, args.out = args.submissions.resolve(), args.out.resolve()
    notebooks = sorted(p for p in args.submissions.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not notebooks:
        sys.exit(f"no notebooks under {args.submissions}")
    args.jobs = max(1, min(args.jobs, len(notebooks)))
    args.part_jobs = max(1, (os.cpu_count() or 1) // args.jobs)   # never more busy processes than cores
    args.out.mkdir(parents=True, exist_ok=True)
    guarded = (ROOT / "grader", ROOT / "tests", ROOT / "data", ROOT / "tools", args.submissions)
    before, summaries, start = fingerprints(*guarded), [], time.time()
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(grade, nb, args.out, args) for nb in notebooks]
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            s = future.result()
            summaries.append(s)
            print(f"[{done}/{len(notebooks)}] {s['student']}: {s['points']:g}/{s['max']:g} points in {s['seconds']} s",
                  flush=True)
    elapsed = time.time() - start
    after = fingerprints(*guarded)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        sys.exit(f"ERROR: grading changed files it must not touch (a submission escaped): {changed[:5]}")
    columns = list(dict.fromkeys(c["part"] for s in summaries for c in s["checks"]))
    checks = list(dict.fromkeys(f"{c['part']}::{c['test']}" for s in summaries for c in s["checks"]))
    with open(args.out / "grades.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "points", "max"] + columns + checks)
        for s in sorted(summaries, key=lambda s: s["student"]):
            parts = s.get("parts") or {}
            by_check = {f"{c['part']}::{c['test']}": c["points"] for c in s["checks"]}
            writer.writerow([s["student"], s["points"], s["max"]] + [parts.get(p, {}).get("points", "") for p in columns]
                            + [by_check.get(c, "") for c in checks])
    print(f"wrote {args.out / 'grades.csv'} and one JSON and feedback report per student")
    print(f"{len(notebooks)} submissions in {elapsed:.0f} s on {os.cpu_count()} cores: about "
          f"{elapsed / len(notebooks) * 1000 / 3600:.1f} hours for a class of 1,000 on this machine")


if __name__ == "__main__":
    main()
