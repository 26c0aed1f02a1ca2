"""Speak overnight's job protocol from Python, with the standard library only.

A command job reports as it goes and at its end::

    from overnight_report import Report

    report = Report()
    report.progress(25, "loading orders")
    report.warning("2 rows skipped", code="SKIP")
    report.error("warehouse refused the connection", code="E_CONN", host="wh1")
    report.detail("rows", 1204)
    report.finish(summary="imported 1204 rows")    # status from what was said

Progress, errors, warnings and notices go out at once as protocol lines on
stdout (``::error code=E1,host=wh1::...``), so ``overnight logs -f`` and the
log files show them while the job runs; ``finish()`` writes the status, the
summary and the details (any JSON) to the file named by ``$OVERNIGHT_REPORT``.

An HTTP handler collects the same and answers with ``http_response()``:
the code, the headers (``X-Batch-Complete-Status``) and a JSON report body
holding everything (docs/report-format.md).
"""

import json
import os
import sys

__all__ = ["Report"]


def _one_line(text):
    """The protocol is a line per message: line breaks become spaces."""
    return " ".join(str(text).splitlines())


def _field(value):
    """A field's value, kept clear of the characters that end it (a last
    `:` gets a space after it, which the runner trims, so that it cannot
    join the `::` that ends the fields)."""
    value = _one_line(value).replace(",", ";").replace("=", ":").replace("::", ": ")
    return value + " " if value.endswith(":") else value


class Report:
    """One run's report: said as it goes, written at the end."""

    def __init__(self, out=None, live=True):
        # live: write protocol lines as things happen (a command job); an
        # HTTP handler passes live=False and answers with http_response().
        self.out = out or sys.stdout
        self.live = live
        self.errors = []
        self.warnings = []
        self.notices = []
        self.details = {}
        self.last_progress = None

    def _say(self, kind, message, code=None, fields=None):
        entry = {"message": _one_line(message)}
        params = []
        if code:
            entry["code"] = str(code)
            params.append("code=" + _field(code))
        if fields:
            entry["fields"] = {k: str(v) for k, v in fields.items()}
            params.extend("%s=%s" % (_field(k), _field(v)) for k, v in fields.items())
        if self.live:
            head = "::%s %s::" % (kind, ",".join(params)) if params else "::%s::" % kind
            self.out.write(head + entry["message"] + "\n")
            self.out.flush()
        return entry

    def progress(self, percent, message=""):
        """How far the work is, 0 to 100, and what it is doing."""
        self.last_progress = {"percent": percent, "message": _one_line(message)}
        if self.live:
            self.out.write("::progress::%s%% %s\n" % (percent, _one_line(message)))
            self.out.flush()

    def error(self, message, code=None, **fields):
        """Something failed: the run fails unless a status says otherwise."""
        self.errors.append(self._say("error", message, code, fields))

    def warning(self, message, code=None, **fields):
        """Something to look at: the run ends `warning` at best."""
        self.warnings.append(self._say("warning", message, code, fields))

    def notice(self, message, code=None, **fields):
        """Something worth a line in the log."""
        self.notices.append(self._say("notice", message, code, fields))

    def detail(self, name, value):
        """A figure or a structure for the report's details (any JSON)."""
        self.details[str(name)] = value

    def status(self):
        """The status the run declares: from its errors and warnings."""
        if self.errors:
            return "failed"
        return "warning" if self.warnings else "success"

    def report(self, summary=None, status=None, everything=True):
        """The report as JSON text; `everything` adds what was said live."""
        body = {"status": status or self.status()}
        if summary:
            body["summary"] = _one_line(summary)
        if self.details:
            body["details"] = self.details
        if everything:
            for name in ("errors", "warnings", "notices"):
                if getattr(self, name):
                    body[name] = getattr(self, name)
            if self.last_progress:
                body["progress"] = self.last_progress
        return json.dumps(body)

    def finish(self, summary=None, status=None):
        """Writes the report to $OVERNIGHT_REPORT (a command job). What
        went out live is not repeated; without the variable (run by hand),
        the report goes to stderr."""
        text = self.report(summary, status, everything=not self.live)
        path = os.environ.get("OVERNIGHT_REPORT")
        if path:
            with open(path, "w") as report:
                report.write(text)
        else:
            sys.stderr.write(text + "\n")

    def http_response(self, summary=None, status=None):
        """(code, headers, body) for an HTTP job's answer: 200 with the
        declared status, or 500 when the run failed."""
        status = status or self.status()
        body = self.report(summary, status, everything=True).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Batch-Complete-Status": status,
            "Content-Length": str(len(body)),
        }
        return (500 if status == "failed" else 200), headers, body
