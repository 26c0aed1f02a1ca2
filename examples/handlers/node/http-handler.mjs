// An HTTP job's handler that reports through overnight-report.mjs, with no
// dependencies: `node http-handler.mjs PORT` (0: any free port; it prints
// `listening on PORT`). Two routes:
//
//   http: {url: "http://127.0.0.1:PORT/batch/import"}    # answers at the end
//   http: {url: "http://127.0.0.1:PORT/batch/rebuild"}   # streams as it works

import http from "node:http";

import { Report } from "./overnight-report.mjs";

const pause = (ms) => new Promise((done) => setTimeout(done, ms));

async function work(report) {
  report.progress(50, "loading orders");
  await pause(50);
  report.warning("2 rows skipped", { code: "SKIP", table: "orders" });
  report.error("warehouse refused the connection", { code: "E_CONN", host: "wh1" });
  report.detail("rows", 1204);
  report.progress(100, "done");
}

const server = http.createServer(async (req, res) => {
  for await (const _ of req); // the request's body, read and let go
  if (req.url === "/batch/rebuild") {
    const report = Report.stream(res);
    await work(report);
    report.finish({ summary: "imported 1204 rows" });
    return;
  }
  const report = new Report({ live: false });
  await work(report);
  const { code, headers, body } = report.httpResponse({ summary: "imported 1204 rows" });
  res.writeHead(code, headers).end(body);
});

server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  console.log(`listening on ${server.address().port}`);
});
