"""What a student reads about a graded notebook, the same words on every path (nbgrader's test cells, `make grade`'s
reports, Gradescope's tests): per part, each check in plain words, passed or not, and for a failed one the hint
behind the common mistake, said once when several checks of a part fail for the same reason."""
from .cells import TITLES

SAME = "the same as above."
NOT_DONE = ("This part is not done yet: a function it needs still raises NotImplementedError. Replace the "
            "`raise NotImplementedError()` in its cell with your code.")


def hint(message):
    """A failed check's message as a hint for the student (without the grader's own exception names)."""
    text = message.strip().removeprefix("AssertionError: ").removeprefix("grader.remote.Died: ").replace("\n", " ")
    return NOT_DONE if text.startswith("NotImplementedError") else text


def title(part):
    return TITLES.get(part, part.replace("_", " ").capitalize())


def lines(checks):
    """[(mark, what, hint or None)] of one part's checks: mark is "passed", "failed" or "skipped" (not run here, as
    the GPU checks on a CPU; they count for nothing). A hint already given for this part is not repeated."""
    said, out = set(), []
    for c in checks:
        why = hint(c["message"]) if c["outcome"] == "failed" else None
        out.append((c["outcome"], c.get("checked") or c["test"], SAME if why in said else why))
        if why:
            said.add(why)
    return out


def figures(result):
    """The figures a part's checks ruled on (the sample statistics), in words, or "": kept with the grade."""
    measured = next((c["measured"] for c in result["checks"] if c.get("measured")), None)
    return ("Measured: " + ", ".join(f"{k.replace('_', ' ')} {v:.4g}" for k, v in measured.items())) if measured else ""


def text(part, result, skipped=False):
    """One part's feedback as plain text (nbgrader writes it into the part's test cell)."""
    out = [f"{title(part)}: {result['points']:g} of {result['max']:g} points."]
    out += [f"  {figures(result)}"] if figures(result) else []
    for mark, what, why in lines(result["checks"]):
        if mark == "skipped" and not skipped:
            continue
        out.append({"passed": "  ✓ ", "failed": "  ✗ ", "skipped": "  – (not run here) "}[mark] + what)
        if why:
            out.append(f"      Hint: {why}")
    return "\n".join(out) + "\n"
