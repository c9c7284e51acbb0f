"""Reports of trained runs and of studies: self-contained HTML pages rendered from Jinja2 templates.

>>> from untwine.report import write_run_report
>>> write_run_report("runs/beta_vae-procedural_dsprites-seed0")   # -> RUN_DIR/report.html
"""

from untwine.report.records import data_uri
from untwine.report.run_report import REPORT_NAME, render_run_report, write_run_report
from untwine.report.study_report import render_study_report, write_study_report
from untwine.visualisation.run_visuals import VisualisationSettings, visualise_run

__all__ = [
    "REPORT_NAME",
    "VisualisationSettings",
    "data_uri",
    "render_run_report",
    "visualise_run",
    "write_run_report",
    "render_study_report",
    "write_study_report",
]
