"""`make grade SUBMISSIONS=dir/`: grade every notebook under dir/ with the pytest grader, in parallel.

Each notebook (with its trained model in data/ddpm_mnist.pt beside it) is graded in its own process, in a scratch
folder, under a memory limit, a time limit per check and one for the whole submission, so that no submission can
crash, hang or change the grading of another. Writes OUT/<student>.json (per check: points, max, message),
OUT/<student>.md and OUT/<student>.html (feedback for the student: per part, what was checked and a hint for each
failed check) and OUT/grades.csv (a row per student, a column per check).
"""
import argparse
import concurrent.futures
import csv
import html
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def student_id(notebook, base):
    rel = notebook.relative_to(base)
    return "_".join(rel.parent.parts) if rel.parent.parts else rel.stem


def limit_memory(gigabytes):
    def apply():
        limit = int(gigabytes * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def grade(notebook, out, args):
    results = out / f"{student_id(notebook, args.submissions)}.json"
    results.unlink(missing_ok=True)
    start = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, "-m", "pytest", str(ROOT / "tests"), "--notebook", str(notebook), "-q",
                   "-c", str(ROOT / "pytest.ini"), "--rootdir", str(ROOT), f"--timeout={args.timeout}",
                   f"--results={results}", "-p", "no:cacheprovider"] + (["-k", args.select] if args.select else [])
        try:
            proc = subprocess.run(command, cwd=scratch, capture_output=True, text=True, timeout=args.total_timeout,
                                  preexec_fn=limit_memory(args.memory_gb), env={**os.environ, "DDPM_OFFLINE": "1"})
            log = proc.stdout[-5000:] + proc.stderr[-2000:]
        except subprocess.TimeoutExpired:
            log = f"grading stopped after {args.total_timeout} s"
    if results.exists():
        checks = json.loads(results.read_text())
    else:  # the grader itself died (killed for memory, or the whole submission timed out)
        checks = [{"test": "grading", "part": "all", "points": 0, "max": 0, "outcome": "error",
                   "message": f"The grader could not finish on this notebook: {log.strip().splitlines()[-1:]}"}]
    summary = {"student": student_id(notebook, args.submissions), "notebook": str(notebook),
               "points": sum(c["points"] for c in checks), "max": sum(c["max"] for c in checks),
               "seconds": round(time.time() - start, 1), "checks": checks}
    results.write_text(json.dumps(summary, indent=1))
    write_feedback(summary, out / student_id(notebook, args.submissions))
    return summary


def by_part(checks):
    parts = {}
    for c in checks:
        parts.setdefault(c["part"], []).append(c)
    return parts


def write_feedback(summary, stem):
    """<stem>.md and <stem>.html: per part, each check in plain words, passed or not, and the hint of a failed one.

    The hints are the checks' own messages, written for students: they name the mistake, never the expected values."""
    md = [f"# Feedback for {summary['student']}", "", f"**{summary['points']} of {summary['max']} checks passed.**", "",
          "| part | checks passed |", "|---|---|"]
    md += [f"| {part.replace('_', ' ')} | {sum(c['points'] for c in cs)} / {sum(c['max'] for c in cs)} |"
           for part, cs in by_part(summary["checks"]).items()]
    body = [f"<h1>Feedback for {html.escape(summary['student'])}</h1>",
            f"<p><b>{summary['points']} of {summary['max']} checks passed.</b></p>"]
    for part, cs in by_part(summary["checks"]).items():
        title = part.replace("_", " ").capitalize()
        got, most = sum(c["points"] for c in cs), sum(c["max"] for c in cs)
        about = cs[0].get("part_title", "")
        md += ["", f"## {title}: {got} / {most}", "", about, ""] if about else ["", f"## {title}: {got} / {most}", ""]
        body += [f"<h2>{html.escape(title)}: {got} / {most}</h2>", f"<p>{html.escape(about)}</p>", "<ul>"]
        for c in cs:
            what = c.get("checked") or c["test"]
            if c["outcome"] == "skipped":
                md.append(f"- (not run here) {what}")
                body.append(f"<li>&#8212; {html.escape(what)} <i>(not run here)</i></li>")
            elif c["points"] == c["max"]:
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "grades")
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--timeout", type=int, default=120, help="seconds per check")
    parser.add_argument("--total-timeout", type=int, default=900, help="seconds per submission")
    parser.add_argument("--select", help="only the checks matching this pytest -k expression")
    parser.add_argument("--memory-gb", type=float, default=8.0, help="address-space limit per submission")
    args = parser.parse_args()
    args.submissions = args.submissions.resolve()
    notebooks = sorted(p for p in args.submissions.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not notebooks:
        sys.exit(f"no notebooks under {args.submissions}")
    args.out.mkdir(parents=True, exist_ok=True)
    summaries = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(grade, nb, args.out, args) for nb in notebooks]
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            s = future.result()
            summaries.append(s)
            print(f"[{done}/{len(notebooks)}] {s['student']}: {s['points']}/{s['max']} in {s['seconds']} s", flush=True)
    tests = sorted({c["test"] for s in summaries for c in s["checks"]})
    with open(args.out / "grades.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "points", "max"] + tests)
        for s in sorted(summaries, key=lambda s: s["student"]):
            by_test = {c["test"]: c["points"] for c in s["checks"]}
            writer.writerow([s["student"], s["points"], s["max"]] + [by_test.get(t, "") for t in tests])
    print(f"wrote {args.out / 'grades.csv'} and one JSON per student")


if __name__ == "__main__":
    main()
