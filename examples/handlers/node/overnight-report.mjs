// Speak overnight's job protocol from Node, with no dependencies.
//
// A command job reports as it goes and at its end:
//
//   import { Report } from "./overnight-report.mjs";
//
//   const report = new Report();
//   report.progress(25, "loading orders");
//   report.warning("2 rows skipped", { code: "SKIP", table: "orders" });
//   report.error("warehouse refused the connection", { code: "E_CONN", host: "wh1" });
//   report.detail("rows", 1204);
//   report.finish({ summary: "imported 1204 rows" }); // status from what was said
//
// Progress, errors, warnings and notices go out at once as protocol lines
// on stdout (`::error code=E_CONN,host=wh1::...`), so `overnight logs -f`
// and the log files show them while the job runs; finish() writes the
// status, the summary and the details (any JSON) to the file named by
// $OVERNIGHT_REPORT.
//
// An HTTP handler either collects the same and answers at the end,
//
//   const report = new Report({ live: false });
//   ...
//   const { code, headers, body } = report.httpResponse({ summary });
//   res.writeHead(code, headers).end(body);
//
// or, for long work, streams: Report.stream(res) answers at once with
// `application/x-ndjson` and writes each call as a protocol line, so the
// run's progress shows while the handler works; finish() then says the
// details, the summary and the status, and ends the answer.

import { writeFileSync } from "node:fs";

// The protocol is a line per message: line breaks become spaces.
const oneLine = (text) => String(text ?? "").split(/\r?\n|\r/).join(" ");

// A field's value, kept clear of the characters that end it (a last `:`
// gets a space after it, which the runner trims, so that it cannot join the
// `::` that ends the fields).
const field = (value) => {
  const text = oneLine(value).replaceAll(",", ";").replaceAll("=", ":").replaceAll("::", ": ");
  return text.endsWith(":") ? text + " " : text;
};

export class Report {
  // live: write protocol lines as things happen (a command job, or a
  // streamed answer); an HTTP handler that answers at the end passes
  // { live: false }. out: where the lines go, anything with write().
  constructor({ live = true, out = process.stdout } = {}) {
    this.live = live;
    this.out = out;
    this.streaming = false;
    this.errors = [];
    this.warnings = [];
    this.notices = [];
    this.details = {};
    this.lastProgress = null;
  }

  // A report whose lines are the answer to an HTTP job: 200 with
  // `application/x-ndjson`, sent at once. `res` is Node's
  // http.ServerResponse (Express's and Fastify's raw reply are one too).
  static stream(res) {
    res.writeHead(200, { "Content-Type": "application/x-ndjson", "Cache-Control": "no-store" });
    const report = new Report({ live: true, out: res });
    report.streaming = true;
    return report;
  }

  #line(text) {
    if (this.live) this.out.write(text + "\n");
  }

  #say(kind, message, { code, ...fields } = {}) {
    const entry = { message: oneLine(message) };
    const params = [];
    if (code !== undefined && code !== null) {
      entry.code = String(code);
      params.push(`code=${field(code)}`);
    }
    const names = Object.keys(fields);
    if (names.length) {
      entry.fields = Object.fromEntries(names.map((k) => [k, String(fields[k])]));
      params.push(...names.map((k) => `${field(k)}=${field(fields[k])}`));
    }
    this.#line(params.length ? `::${kind} ${params.join(",")}::${entry.message}` : `::${kind}::${entry.message}`);
    return entry;
  }

  // How far the work is, 0 to 100, and what it is doing.
  progress(percent, message = "") {
    this.lastProgress = { percent: Number(percent), message: oneLine(message) };
    this.#line(`::progress::${percent}% ${oneLine(message)}`);
  }

  // Something failed: the run fails unless a status says otherwise.
  error(message, fields) {
    this.errors.push(this.#say("error", message, fields));
  }

  // Something to look at: the run ends `warning` at best.
  warning(message, fields) {
    this.warnings.push(this.#say("warning", message, fields));
  }

  // Something worth a line in the log.
  notice(message, fields) {
    this.notices.push(this.#say("notice", message, fields));
  }

  // A figure or a structure for the report's details (any JSON; a
  // streamed answer says it as text).
  detail(name, value) {
    this.details[String(name)] = value;
  }

  // The status the run declares: from its errors and warnings.
  status() {
    if (this.errors.length) return "failed";
    return this.warnings.length ? "warning" : "success";
  }

  // The report as JSON text; `everything` adds what was said live.
  report({ summary, status, everything = true } = {}) {
    const body = { status: status ?? this.status() };
    if (summary) body.summary = oneLine(summary);
    if (Object.keys(this.details).length) body.details = this.details;
    if (everything) {
      for (const name of ["errors", "warnings", "notices"]) {
        if (this[name].length) body[name] = this[name];
      }
      if (this.lastProgress) body.progress = this.lastProgress;
    }
    return JSON.stringify(body);
  }

  // A command job: writes the report to $OVERNIGHT_REPORT, without what
  // went out live (run by hand, to stderr). A streamed answer: says the
  // details, the summary and the status, and ends the answer.
  finish({ summary, status } = {}) {
    if (this.streaming) {
      for (const [name, value] of Object.entries(this.details)) {
        this.#line(`::detail::${field(name)}=${oneLine(typeof value === "string" ? value : JSON.stringify(value))}`);
      }
      if (summary) this.#line(`::summary::${oneLine(summary)}`);
      this.#line(`::status::${status ?? this.status()}`);
      this.out.end();
      return;
    }
    const text = this.report({ summary, status, everything: !this.live });
    const path = process.env.OVERNIGHT_REPORT;
    if (path) writeFileSync(path, text);
    else process.stderr.write(text + "\n");
  }

  // { code, headers, body } for an HTTP job's answer at the end: 200 with
  // the declared status, or 500 when the run failed.
  httpResponse({ summary, status } = {}) {
    const declared = status ?? this.status();
    const body = this.report({ summary, status: declared, everything: true });
    return {
      code: declared === "failed" ? 500 : 200,
      headers: {
        "Content-Type": "application/json",
        "X-Batch-Complete-Status": declared,
        "Content-Length": String(Buffer.byteLength(body)),
      },
      body,
    };
  }
}
