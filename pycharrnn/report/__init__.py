"""The HTML report on one or more runs (``pycharrnn report``):
:mod:`pycharrnn.report.report` assembles the data; the page (``page.html``)
and its script (``report.js``) are files of this package."""

from .report import TEMPERATURES, report_html, run_data, write_report

__all__ = ["write_report", "report_html", "run_data", "TEMPERATURES"]
