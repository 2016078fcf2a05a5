"""Self-contained HTML pages for reports (parity matrix, run comparison): one file, inline CSS,
no scripts or network, so a report opens anywhere - a browser, a CI artifact viewer - as is."""

from __future__ import annotations

import html

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.pass { background: #e6f4ea; } td.fail { background: #fde8e8; }
td.none, td.missing { background: #f6f6f6; color: #777; }
pre { background: #f8f8f8; border: 1px solid #ddd; padding: 8px; overflow-x: auto;
      font-size: 12px; white-space: pre; }
dl.facts dt { font-weight: bold; float: left; clear: left; width: 9em; }
dl.facts dd { margin-left: 10em; }
summary { cursor: pointer; }
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def facts(items: dict[str, object]) -> str:
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items.items())
    return f'<dl class="facts">{rows}</dl>'


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{esc(title)}</h1>\n{body}\n</body></html>\n"
    )
