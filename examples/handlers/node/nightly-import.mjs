// A command job that reports through overnight-report.mjs: run it as
// `command: [node, examples/handlers/node/nightly-import.mjs]`.

import { Report } from "./overnight-report.mjs";

const report = new Report();
report.progress(50, "loading orders");
report.warning("2 rows skipped", { code: "SKIP", table: "orders" });
report.error("warehouse refused the connection", { code: "E_CONN", host: "wh1" });
report.notice("cache warmed");
report.detail("rows", 1204);
report.detail("source", { bucket: "exports", file: "2026-11-28.csv" });
report.progress(100, "done");
report.finish({ summary: "imported 1204 rows" });
