"""A :class:`~graders.similarity.compare.Comparison` for people: a terminal table, a CSV of every
pair that shares anything, and one self-contained HTML page.

The page has no scripts, no external assets and a Content-Security-Policy that forbids both.
Every piece of student text, and every name, goes through :func:`html.escape` (quotes
included) exactly once, as it is written: a submission holding ``</pre><script>`` shows those
characters and nothing runs.
"""

from __future__ import annotations

import bisect
import csv
import html
from pathlib import Path

from graders.similarity.compare import Comparison, Pair

#: pairs shown side by side in the HTML page at most (the CSV has them all)
HTML_PAIRS = 50

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; } td, th { padding: 2px 8px; border-bottom: 1px solid #ddd; }
th { text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.side { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1em; }
pre { background: #fafafa; border: 1px solid #ddd; padding: 6px; overflow-x: auto;
      font-size: 12px; white-space: pre; }
.starter { color: #999; } .match { background: #ffd54f; } .who { font-weight: bold; }
.note { color: #555; } section { margin-top: 2em; border-top: 2px solid #444; }
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; form-action 'none'"


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _best_tasks(pair: Pair, n: int = 3) -> str:
    best = sorted(pair.scores.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return ", ".join(f"{task} {_pct(score)}" for task, score in best)


def table(cmp: Comparison, top: int = 15) -> str:
    """The top pairs (those at or above the threshold, at most ``top``; at least the best 5
    when none is), the clusters, and what was excluded, as text."""
    s = cmp.settings
    lines = [
        f"similarity of {cmp.assignment}: {len(cmp.students)} submissions compared"
        + (f", {len(cmp.skipped)} skipped" if cmp.skipped else "")
        + f"; threshold {_pct(s.threshold)}"
    ]
    flagged = cmp.flagged()
    shown = flagged[:top] if flagged else cmp.pairs[:5]
    if not flagged:
        lines.append(f"no pair at or above {_pct(s.threshold)}; the most similar:")
    if shown:
        wa = max(len("student"), *(len(p.a) for p in shown))
        wb = max(len("student"), *(len(p.b) for p in shown))
        lines.append(f"{'rank':>4}  {'student':<{wa}}  {'student':<{wb}}  overall  shared  "
                     "most similar tasks")
        for rank, p in enumerate(shown, 1):
            lines.append(f"{rank:>4}  {p.a:<{wa}}  {p.b:<{wb}}  {_pct(p.overall):>7}  "
                         f"{p.shared_total:>6}  {_best_tasks(p)}")
        if len(flagged) > len(shown):
            lines.append(f"  ... {len(flagged) - len(shown)} more at or above the threshold")
    else:
        lines.append("(no two submissions share any fingerprint)")
    for cluster in cmp.clusters:
        lines.append(f"cluster of {len(cluster.students)}: {', '.join(cluster.students)}"
                     + (f" (tasks: {', '.join(cluster.tasks)})" if cluster.tasks else ""))
    for student, why in sorted(cmp.skipped.items()):
        lines.append(f"skipped {student}: {why}")
    if cmp.excluded:
        parts = ", ".join(f"{n} {why}" for why, n in sorted(cmp.excluded.items()) if n)
        lines.append(f"fingerprints excluded: {parts}")
    return "\n".join(lines)


def spreadsheet_safe(text: str) -> str:
    """``text`` for a CSV cell a spreadsheet opens: a leading ``= + - @`` (a formula there) gets
    a ``'`` in front."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_csv(cmp: Comparison, path: Path) -> Path:
    """Every pair sharing at least one kept fingerprint, ranked: rank, student_a, student_b,
    overall, shared, fingerprints_a, fingerprints_b, then one score column per task (empty:
    nothing shared there). Pairs not listed share nothing (score 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["rank", "student_a", "student_b", "overall", "shared", "fingerprints_a",
                         "fingerprints_b", *cmp.tasks])
        for rank, p in enumerate(cmp.pairs, 1):
            writer.writerow([
                rank, spreadsheet_safe(p.a), spreadsheet_safe(p.b), f"{p.overall:.3f}",
                p.shared_total,
                cmp.students[p.a].kept_count(), cmp.students[p.b].kept_count(),
                *(f"{p.scores[t]:.3f}" if t in p.scores else "" for t in cmp.tasks),
            ])
    return path


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _inside(spans: list[tuple[int, int]], starts: list[int], a: int, b: int) -> bool:
    """Whether ``[a, b)`` lies inside one of the merged, sorted ``spans``."""
    i = bisect.bisect_right(starts, a) - 1
    return i >= 0 and spans[i][1] >= b


def render_code(text: str, runs: list[tuple[int, int]], matches: list[tuple[int, int]]) -> str:
    """``text`` as escaped HTML: lines outside ``runs`` (starter code) dimmed, ``matches``
    highlighted. Linear in the text and the spans (a bisection per piece)."""
    runs, matches = _merge(runs), _merge(matches)
    cuts = {0, len(text)}
    for a, b in runs + matches:
        cuts.update((a, b))
    points = sorted(c for c in cuts if 0 <= c <= len(text))
    run_starts, match_starts = [a for a, _ in runs], [a for a, _ in matches]
    out = []
    for a, b in zip(points, points[1:], strict=False):
        piece = html.escape(text[a:b], quote=True)
        if _inside(matches, match_starts, a, b):
            out.append(f'<span class="match">{piece}</span>')
        elif _inside(runs, run_starts, a, b):
            out.append(piece)
        else:
            out.append(f'<span class="starter">{piece}</span>')
    return "".join(out)


def _side(cmp: Comparison, pair: Pair, task: str) -> str:
    sa, sb = cmp.students[pair.a], cmp.students[pair.b]
    common = sa.kept.get(task, set()) & sb.kept.get(task, set())
    cols = []
    for student in (sa, sb):
        part = student.parts[task]
        spans = [(f.start, f.end) for f in student.prints.get(task, []) if f.hash in common]
        cols.append(f'<div><div class="who">{html.escape(student.name)}</div>'
                    f"<pre>{render_code(part.text, part.runs, spans)}</pre></div>")
    score = pair.scores.get(task, 0.0)
    return (f"<h4>{html.escape(task)}: {_pct(score)} ({pair.shared.get(task, 0)} shared)</h4>"
            f'<div class="side">{"".join(cols)}</div>')


def write_html(cmp: Comparison, path: Path, max_pairs: int = HTML_PAIRS) -> Path:
    """The report page: settings, clusters, the ranked pairs, and for each shown pair (those at
    or above the threshold, else the best 5; at most ``max_pairs``) every task they share,
    side by side, the matching code highlighted and the starter code dimmed."""
    e = html.escape
    s = cmp.settings
    flagged = cmp.flagged()
    shown = (flagged or cmp.pairs[:5])[:max_pairs]
    body = [
        f"<h1>Similarity of {e(cmp.assignment)}</h1>",
        f'<p class="note">{len(cmp.students)} submissions; threshold {_pct(s.threshold)}; '
        f"{s.k}-token fingerprints, winnowing window {s.window}; excluded: release code, "
        + ("the reference solution, " if s.reference else "")
        + f"fingerprints in more than {_pct(s.max_share)} of the class, solutions under "
        f"{s.min_tokens} tokens. Dimmed: starter code of the release. Highlighted: "
        "fingerprints both students share. A high score asks for a closer look; it is not "
        "proof of copying.</p>",
        "<h2>Clusters</h2>",
    ]
    if cmp.clusters:
        body.append("<ul>" + "".join(
            f"<li>{e(', '.join(c.students))}"
            + (f" (tasks: {e(', '.join(c.tasks))})" if c.tasks else "") + "</li>"
            for c in cmp.clusters) + "</ul>")
    else:
        body.append("<p>none (no three students connected at or above the threshold)</p>")
    body.append("<h2>Pairs</h2><table><tr><th>rank</th><th>student</th><th>student</th>"
                "<th>overall</th><th>shared</th><th>most similar tasks</th></tr>")
    for rank, p in enumerate(shown, 1):
        body.append(f'<tr><td class="num"><a href="#pair-{rank}">{rank}</a></td>'
                    f"<td>{e(p.a)}</td><td>{e(p.b)}</td><td class=\"num\">{_pct(p.overall)}</td>"
                    f'<td class="num">{p.shared_total}</td><td>{e(_best_tasks(p))}</td></tr>')
    body.append("</table>")
    if len(cmp.pairs) > len(shown):
        body.append(f'<p class="note">{len(cmp.pairs) - len(shown)} more pairs share some '
                    "fingerprints: see the CSV.</p>")
    for rank, p in enumerate(shown, 1):
        body.append(f'<section id="pair-{rank}"><h3>{rank}. {e(p.a)} and {e(p.b)}: '
                    f"{_pct(p.overall)} overall</h3>")
        body += [_side(cmp, p, t) for t in cmp.tasks if p.shared.get(t)]
        body.append("</section>")
    if cmp.skipped:
        body.append("<h2>Not compared</h2><ul>" + "".join(
            f"<li>{e(name)}: {e(why)}</li>" for name, why in sorted(cmp.skipped.items()))
            + "</ul>")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>Similarity of {e(cmp.assignment)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
