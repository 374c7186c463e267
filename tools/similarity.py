"""`make similarity SUBMISSIONS=dir/`: which submissions share their graded code, ranked, with the matching lines.

The graded cells of every notebook under dir/ (grader/cells.py: CELLS, by grade_id, in the notebook's order) are
written to OUT/code/<student>.py and compared pair by pair with copydetect (winnowed fingerprints of the code after
its names, strings and comments are filtered out), the given code of the released assignment.ipynb (its stubs,
signatures, docstrings and given lines) counting as boilerplate. Writes OUT/similarity.html (the pairs ranked, each
with the two students' code side by side and the matching parts highlighted) and OUT/pairs.csv (every pair).

A pair's similarity is the larger of its two shares: the share of one student's own (non-given) code found in the
other's. THRESHOLD comes from tests/meta/corpus (docs/class-report.md: the calibration, and what this misses).
"""
import argparse
import csv
import html
import itertools
import shutil
import sys
from pathlib import Path

from copydetect import CopyDetector

from grader.cells import CELLS, ROOT, SubmissionError, cells_by_grade_id
from tools.grade import student_id

# Calibrated on tests/meta/corpus (tests/meta/test_similarity.py keeps these in step): the most similar pair of its
# independent solutions, and the least similar of their copies with renamed variables and reordered functions.
CORPUS_MAX, COPIES_MIN = 0.72, 0.95
THRESHOLD = 0.8
SHOWN = 20         # pairs shown side by side: every pair above the threshold, and at least the SHOWN most similar


def graded_code(notebook):
    """The graded cells of a notebook as one Python file, each under a `# cell <grade_id>` line."""
    cells = cells_by_grade_id(notebook)
    return "\n\n".join(f"# cell {g}\n{cells[g]}" for g in CELLS if isinstance(cells.get(g), str)) + "\n"


def compare(codes, boilerplate, out, threshold=THRESHOLD, shown=SHOWN):
    """Compare every pair of {student: code}; the code files are written under out/code (kept for the report).

    Returns [(similarity, student_a, student_b, share_a, share_b)] most similar first, and the highlighted code of
    the pairs to show: {(a, b): (html_a, html_b)}."""
    code_dir, given_dir = out / "code", out / "given"
    for folder in (code_dir, given_dir):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    for student, code in codes.items():
        (code_dir / f"{student}.py").write_text(code)
    (given_dir / "assignment.py").write_text(boilerplate)
    detector = CopyDetector(test_dirs=[str(code_dir)], boilerplate_dirs=[str(given_dir)], extensions=["py"],
                            force_language="python", autoopen=False, silent=True)
    detector.run()
    names = [Path(f).stem for f in detector.test_files]
    sims = detector.similarity_matrix
    pairs = sorted(((max(sims[i, j]), *sorted([(names[i], sims[i, j, 0]), (names[j], sims[i, j, 1])]))
                    for i, j in itertools.combinations(range(len(names)), 2)), key=lambda p: -p[0])
    pairs = [(float(s), a, b, float(sa), float(sb)) for s, (a, sa), (b, sb) in pairs]
    if not pairs:
        return [], {}
    cutoff = min(threshold, pairs[min(shown, len(pairs)) - 1][0])
    detector.conf.display_t = max(cutoff - 1e-6, 0)   # above 0: copydetect has no matches to show for 0
    highlighted = {}
    for _, _, file_a, file_b, code_a, code_b, _ in detector.get_copied_code_list():
        (a, code_a), (b, code_b) = sorted([(Path(file_a).stem, code_a), (Path(file_b).stem, code_b)])
        highlighted[a, b] = code_a, code_b
    return pairs, highlighted


def write_report(pairs, highlighted, problems, out, threshold=THRESHOLD):
    flagged = [p for p in pairs if p[0] >= threshold]
    with open(out / "pairs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["similarity", "student_a", "student_b", "share_of_a_in_b", "share_of_b_in_a", "flagged"])
        writer.writerows([round(s, 3), a, b, round(sa, 3), round(sb, 3), s >= threshold] for s, a, b, sa, sb in pairs)
    rows = "".join(f"<tr{' class=flag' if s >= threshold else ''}><td><a href='#pair{n}'>{n}</a></td>"
                   f"<td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{s:.0%}</td><td>{sa:.0%}</td>"
                   f"<td>{sb:.0%}</td></tr>" for n, (s, a, b, sa, sb) in enumerate(pairs, 1) if (a, b) in highlighted)
    sections = "".join(
        f"<h3 id='pair{n}'>{n}. {html.escape(a)} and {html.escape(b)}: {s:.0%}</h3><div class=pair>"
        f"<div><b>{html.escape(a)}</b> ({sa:.0%} of this code is in the other)<pre>{highlighted[a, b][0]}</pre></div>"
        f"<div><b>{html.escape(b)}</b> ({sb:.0%} of this code is in the other)<pre>{highlighted[a, b][1]}</pre></div>"
        f"</div>" for n, (s, a, b, sa, sb) in enumerate(pairs, 1) if (a, b) in highlighted)
    unread = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
    page = f"""<!DOCTYPE html><html><head><meta charset='utf-8'><title>Code similarity</title><style>
body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.2em .6em}}
tr.flag{{background:#fdd}} .pair{{display:flex;gap:1em}} .pair>div{{flex:1;min-width:0}}
pre{{font-size:12px;background:#f6f6f6;padding:.5em;overflow-x:auto}}
.highlight-red,.highlight-green{{background:#fbb}}</style></head><body>
<h1>Code similarity of the graded cells</h1>
<p>{len(flagged)} of {len(pairs)} pairs are at or above the threshold of {threshold:.0%} (shaded). The similarity of
a pair is the larger of its two shares: how much of one student's own code (the code given in assignment.ipynb does
not count; names, strings and comments are ignored) is also in the other's.</p>
<p><b>What to do:</b> read each shaded pair below, where the matching code is highlighted side by side. A high score
is a lead, not proof: solutions of this assignment are alike by design (independent ones share up to {CORPUS_MAX:.0%}), so
look for shared mistakes, odd choices and identical structure before asking the students. Every pair is in
pairs.csv; each student's code is in code/&lt;student&gt;.py.</p>
{f"<p><b>Not compared</b> (fix or collect these notebooks again, then rerun):</p><ul>{unread}</ul>" if unread else ""}
<table><tr><th>#</th><th>student</th><th>student</th><th>similarity</th><th>share of the first</th>
<th>share of the second</th></tr>{rows}</table>{sections}</body></html>
"""
    (out / "similarity.html").write_text(page)
    return flagged


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "similarity")
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help="flag pairs at or above this similarity")
    parser.add_argument("--given", type=Path, default=ROOT / "assignment.ipynb", help="the released notebook")
    args = parser.parse_args()
    notebooks = sorted(p for p in args.submissions.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if len(notebooks) < 2:
        sys.exit(f"fewer than two notebooks under {args.submissions}: nothing to compare")
    codes, problems = {}, []
    for notebook in notebooks:
        try:
            codes[student_id(notebook, args.submissions)] = graded_code(notebook)
        except SubmissionError as err:
            problems.append(f"{notebook}: {err}")
    args.out.mkdir(parents=True, exist_ok=True)
    pairs, highlighted = compare(codes, graded_code(args.given), args.out, args.threshold)
    flagged = write_report(pairs, highlighted, problems, args.out, args.threshold)
    for problem in problems:
        print(f"not compared: {problem}", file=sys.stderr)
    print(f"{len(flagged)} of {len(pairs)} pairs at or above {args.threshold:.0%}; "
          f"open {args.out / 'similarity.html'} and read the shaded pairs (every pair: {args.out / 'pairs.csv'})")


if __name__ == "__main__":
    main()
