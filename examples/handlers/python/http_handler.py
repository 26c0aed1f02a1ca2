"""An HTTP job's handler that reports through overnight_report, with the
standard library only: `python3 http_handler.py PORT` (0: any free port;
it prints `listening on PORT`). The job:

    http: {url: "http://127.0.0.1:PORT/batch/import"}
"""

import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from overnight_report import Report


class Batch(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        report = Report(live=False)
        report.progress(50, "loading orders")
        report.warning("2 rows skipped", code="SKIP", table="orders")
        report.error("warehouse refused the connection", code="E_CONN", host="wh1")
        report.detail("rows", 1204)
        report.progress(100, "done")
        code, headers, body = report.http_response(summary="imported 1204 rows")
        self.send_response(code)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = HTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Batch)
    print("listening on %d" % server.server_address[1], flush=True)
    server.serve_forever()
