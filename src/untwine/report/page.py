"""The HTML page shell shared by the run report and the study report: one style sheet, a strict
Content-Security-Policy (no scripts, no network: images are inlined as data URIs), and escaping."""

from __future__ import annotations

import html
from typing import Any

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 0; color: #1d1d1f;
       background: #fafafa; line-height: 1.45; }
header { background: #24292f; color: #fff; padding: 14px 28px; }
header h1 { margin: 0; font-size: 1.35em; }
header p { margin: 4px 0 0; color: #c9d1d9; font-size: 0.9em; }
nav { padding: 8px 28px; background: #eaeef2; font-size: 0.9em; position: sticky; top: 0; z-index: 1; }
nav a { margin-right: 14px; color: #0969da; text-decoration: none; }
main { padding: 6px 28px 40px; max-width: 1500px; }
section { margin-top: 26px; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 4px; font-size: 1.2em; }
h3 { font-size: 1.0em; margin: 16px 0 6px; }
table { border-collapse: collapse; font-size: 0.86em; margin: 6px 0; background: #fff; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 6px 14px 10px 0; vertical-align: top; }
figcaption { font-size: 0.8em; color: #57606a; max-width: 900px; }
img { max-width: 100%; height: auto; border: 1px solid #e1e4e8; background: #fff; }
img.pixels { image-rendering: pixelated; }
.note { color: #57606a; font-size: 0.88em; max-width: 1000px; }
.missing { color: #9a6700; font-size: 0.9em; }
pre { background: #fff; border: 1px solid #d0d7de; padding: 8px; font-size: 0.8em; overflow-x: auto; }
"""


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def page(
    title: str,
    heading: str,
    subtitle: str,
    sections: list[tuple[str, str, str]],
    nav_label=None,
    footer: str = "",
) -> str:
    """A whole document: ``sections`` are ``(anchor, name, html)``; ``heading``/``title`` are escaped,
    ``subtitle`` and ``footer`` are HTML.  ``nav_label(name)`` gives a section's navigation text."""
    nav_label = nav_label or (lambda name: name)
    nav = "".join(f'<a href="#{anchor}">{escape(nav_label(name))}</a>' for anchor, name, _ in sections)
    body = "".join(
        f'<section id="{anchor}"><h2>{escape(name)}</h2>{content}</section>'
        for anchor, name, content in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>"
        f"<header><h1>{escape(heading)}</h1><p>{subtitle}</p></header>"
        f"<nav>{nav}</nav><main>{body}{footer}</main></body></html>\n"
    )
