#!/usr/bin/env python3
"""A small batch application for overnight's HTTP jobs (standard library only).

    python3 examples/http-app/app.py [PORT]     # default 8087

Each route does pretend batch work and answers the way overnight reads:
a status header, a JSON or XML report, or a streamed NDJSON body.
"""
import json
import random
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Batch(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        route = {
            "/batch/import-orders": self.import_orders,
            "/batch/export-xml": self.export_xml,
            "/batch/rebuild-index": self.rebuild_index,
            "/batch/sync-crm": self.sync_crm,
        }.get(self.path)
        if route is None:
            self.answer(404, "text/plain", b"no such batch\n")
        else:
            route(request)

    def answer(self, code, content_type, body, status=None):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status:
            self.send_header("X-Batch-Complete-Status", status)
        self.end_headers()
        self.wfile.write(body)

    def import_orders(self, request):
        rows = random.randint(900, 1300)
        skipped = [f"A-{random.randint(1000, 9999)}" for _ in range(random.randint(0, 2))]
        report = {
            "summary": f"imported {rows} orders since {request.get('since', 'yesterday')}",
            "warnings": [{"message": f"skipped order {o}: no customer", "code": "SKIP"} for o in skipped],
            "details": {"rows": rows, "skipped": len(skipped)},
            "log": [f"read {rows + len(skipped)} lines", "committed"],
        }
        self.answer(200, "application/json", json.dumps(report).encode(), "warning" if skipped else "success")

    def export_xml(self, _request):
        body = (
            '<?xml version="1.0"?>\n'
            "<report>\n"
            "  <summary>exported 3 feeds</summary>\n"
            '  <detail name="feeds">3</detail>\n'
            '  <notice>feed "partners" was empty</notice>\n'
            "</report>\n"
        )
        self.answer(200, "application/xml", body.encode(), "success")

    def rebuild_index(self, _request):
        """Long work: progress is streamed, one NDJSON line at a time."""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for step in range(1, 6):
            time.sleep(0.5)
            self.chunk(f"::progress::{step * 20}% rebuilding shard {step} of 5\n")
        self.chunk('{"complete":1,"code":0,"description":"index rebuilt"}\n')
        self.wfile.write(b"0\r\n\r\n")

    def chunk(self, text):
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def sync_crm(self, _request):
        page = b"<html><body><h1>502 Bad Gateway</h1><p>the CRM did not answer</p></body></html>"
        self.answer(502, "text/html", page)

    def log_message(self, fmt, *args):
        sys.stderr.write("app: " + fmt % args + "\n")


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8087
    server = ThreadingHTTPServer(("127.0.0.1", port), Batch)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
