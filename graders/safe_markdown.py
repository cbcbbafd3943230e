"""The exporter preprocessor that keeps a student's markup from running: :class:`SafeMarkdown`.

nbgrader's feedback and formgrade templates render each markdown cell (and each cell's grading
comment) with ``markdown2html`` and no sanitizer, whatever ``HTMLExporter.sanitize_html`` says:
a student's ``<script>``, ``<img onerror=...>``, ``javascript:`` link or ``<form>`` in a markdown
cell ran in the student's feedback page and in the formgrader, which the instructor's Jupyter
server serves (so the script could use that server's API). The course's ``nbgrader_config.py``
adds :class:`SafeMarkdown` to ``HTMLExporter.preprocessors``: every HTML page nbgrader renders
(``generate_feedback``, the formgrader's views) gets each markdown cell as HTML already
rendered and cleaned with ``bleach`` against an allow-list (headings, paragraphs, lists,
emphasis, code, tables, links and images over http(s), mailto or data), which the template's
own ``markdown2html`` passes through unchanged. Anything else is shown as text.
"""

from __future__ import annotations

from html import escape

import bleach
from nbconvert.filters import markdown2html_mistune
from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode

TAGS = frozenset({
    *bleach.ALLOWED_TAGS, "h1", "h2", "h3", "h4", "h5", "h6", "p", "br", "hr", "pre", "code",
    "span", "div", "table", "thead", "tbody", "tr", "th", "td", "img", "sub", "sup", "del", "s",
    "dl", "dt", "dd", "kbd", "u",
})
ATTRIBUTES = {
    "*": ["class", "id", "title"],
    "a": ["href", "title"],
    "img": ["src", "alt", "title", "width", "height"],
    "th": ["align"], "td": ["align"],
}
PROTOCOLS = frozenset({"http", "https", "mailto", "data"})


#: Beyond these a cell is shown as plain text: cleaning takes time quadratic in the elements
#: nested (a red team's 98 KiB of ``<div>`` held ``generate_feedback`` for 50 s, 156 KiB for
#: 113 s); honest markdown has far fewer tags.
MAX_TAGS = 500
MAX_CHARS = 200_000


def safe_html(markdown: str) -> str:
    """``markdown`` rendered to HTML with only allow-listed tags, attributes and link schemes
    (the rest escaped, so an instructor sees what was tried); a cell with more than
    :data:`MAX_TAGS` tags or :data:`MAX_CHARS` characters as escaped text (the first
    :data:`MAX_CHARS`)."""
    if markdown.count("<") > MAX_TAGS or len(markdown) > MAX_CHARS:
        cut = " (cut)" if len(markdown) > MAX_CHARS else ""
        html = (f"<p>This cell has too much markup to show rendered{cut}:</p>"
                f"<pre>{escape(markdown[:MAX_CHARS])}</pre>")
    else:
        html = bleach.clean(markdown2html_mistune(markdown), tags=TAGS, attributes=ATTRIBUTES,
                            protocols=PROTOCOLS)
    # one line in one <div>: the template's markdown2html takes it as one raw HTML block and
    # changes nothing (a blank line would end the block; &#10; is the same newline, in <pre> too)
    return '<div class="safe-markdown">' + html.replace("\n", "&#10;") + "</div>"


class SafeMarkdown(Preprocessor):
    """Markdown cells and grading comments as cleaned HTML (see the module docstring)."""

    def preprocess_cell(
        self, cell: NotebookNode, resources: dict, index: int
    ) -> tuple[NotebookNode, dict]:
        if cell.cell_type == "markdown":
            cell.source = safe_html(cell.source)
            cell.attachments = {}
        nbgrader = cell.get("metadata", {}).get("nbgrader")
        if isinstance(nbgrader, dict) and isinstance(nbgrader.get("comment"), str):
            nbgrader["comment"] = safe_html(nbgrader["comment"])
        return cell, resources
