"""A command job that reports through overnight_report: run it as
`command: [python3, examples/handlers/python/nightly_import.py]`."""

from overnight_report import Report

report = Report()
report.progress(50, "loading orders")
report.warning("2 rows skipped", code="SKIP", table="orders")
report.error("warehouse refused the connection", code="E_CONN", host="wh1")
report.detail("rows", 1204)
report.detail("source", {"bucket": "exports", "file": "2026-11-28.csv"})
report.progress(100, "done")
report.finish(summary="imported 1204 rows")
