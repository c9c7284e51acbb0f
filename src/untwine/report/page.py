"""Renders the report templates (``untwine/report/templates``, shipped as package data).

Every template extends ``base.html``, the page shell both reports share: one style sheet, a strict
Content-Security-Policy (no scripts, no network: images are inlined as data URIs), a navigation bar
built from the sections the page declares.  Autoescaping is on for every template, so a run, metric or
dataset name is shown as text whatever characters it holds.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("untwine.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt field fails the render instead of vanishing
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, **context: Any) -> str:
    """The HTML text of ``templates/<template>`` with ``context``."""
    return environment().get_template(template).render(**context)
