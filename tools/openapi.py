"""The daemon API's OpenAPI document, written to stdout.

    python3 tools/openapi.py > src/daemon/api/openapi.json

The JSON is what the daemon serves (embedded at build time); a test
checks that it is this script's output, and another that it names
exactly the routes the router serves (src/daemon/api/mod.rs, `routes!`).
"""
import json
def ref(n): return {"$ref": f"#/components/schemas/{n}"}
def nullable(s): return {"anyOf": [s, {"type": "null"}]}
def obj(props, required=None):
    return {"type": "object", "properties": props, "required": required if required is not None else list(props)}
S = lambda: {"type": "string"}
I = lambda: {"type": "integer"}
T = lambda: {"type": "string", "format": "date-time"}
NS = lambda: {"type": ["string", "null"]}
NI = lambda: {"type": ["integer", "null"]}
NT = lambda: {"type": ["string", "null"], "format": "date-time"}
run_status = {"type": "string", "enum": ["running","success","warning","failed","lost","missed","skipped","orphaned"]}
flow_status = {"type": "string", "enum": ["running","held","success","warning","failed","aborted","missed","skipped"]}
schemas = {
 "Error": {"type":"object","properties":{"error":S(),"run_id":I()},"required":["error"]},
 "RunRecord": obj({"id":I(),"job":S(),"trigger":S(),"attempt":I(),"scheduled_at":NS(),"started_at":S(),
   "finished_at":NS(),"status":run_status,"exit_code":NI(),"signal":NI(),"error_count":I(),"warning_count":I(),
   "summary":NS(),"capture_path":NS(),"host":S(),"pid":NI(),"job_pid":NI()}),
 "Progress": {"type":"object","properties":{"percent":{"type":"number"},"message":S(),"at":T()},"required":["message","at"]},
 "JobStatus": obj({"name":S(),"schedule":NS(),"next":NS(),"at_start":{"type":"boolean"}}),
 "RunningRun": {"allOf":[ref("RunRecord"), obj({"progress":nullable(ref("Progress")),"elsewhere":{"type":"string","description":"In a cluster, the host it runs on, when another than this one."}}, ["progress"])]},
 "Job": {"allOf":[ref("JobStatus"), obj({"timezone":S(),"kind":{"type":"string","enum":["command","http"]},
   "last":nullable(ref("RunRecord")),"running":{"type":"array","items":ref("RunningRun")}})]},
 "LockHolder": obj({"name":S(),"mode":{"type":"string","enum":["exclusive","shared"]},"run_id":I(),"job":S()}),
 "Status": obj({"pid":I(),"jobs":{"type":"array","items":ref("JobStatus")},"running":{"type":"array","items":ref("RunRecord")},
   "locks":{"type":"array","items":ref("LockHolder")}}),
 "Plan": {"type":"object","description":"A flow's steps: each with its name, its action (`{job: NAME}` or `{hold: MESSAGE}`), `after` (the condition it starts on, as written) and `hold_on`.",
   "properties":{"steps":{"type":"array","items":{"type":"object","properties":{"name":S(),"action":{"type":"object"},"after":NS(),"hold_on":{"type":"array","items":S()}},"required":["name","action","after","hold_on"]}}},"required":["steps"]},
 "FlowStep": obj({"step":S(),"status":S(),"why":NS(),"runs":{"type":"array","items":I()},"started_at":NT(),"ended_at":NT(),"duration_ms":NI()}),
 "FlowRun": obj({"flow":S(),"flow_run_id":I(),"status":flow_status,"trigger":S(),"started_at":T(),"finished_at":NT(),
   "steps":{"type":"array","items":ref("FlowStep")},"actions":{"type":"array","items":{"type":"object"}},"plan":ref("Plan"),
   "held_since":NT(),"held_at":nullable(obj({"step":NS(),"message":NS()}))}),
 "Flow": obj({"name":S(),"description":NS(),"schedule":NS(),"next":NS(),"timezone":S(),"plan":ref("Plan"),"last":nullable(ref("FlowRun"))}),
 "RunsPage": obj({"runs":{"type":"array","items":ref("RunRecord")},"next":NI()}),
 "FlowRunsPage": obj({"flow_runs":{"type":"array","items":ref("FlowRun")},"next":NI()}),
 "Report": {"type":"object","description":"A run's completion report (DESIGN §5): status, summary, errors, warnings, details, exit.","properties":{"run_id":I(),"job":S(),"status":run_status,"summary":S()},"required":["run_id","job","status","summary"]},
 "Attempt": obj({"attempt":I(),"status":S(),"summary":NS()}),
 "Notification": {"type":"object","properties":{"run_id":I(),"job":S(),"rule":S(),"action":S(),"condition":S(),"status":S(),"detail":NS(),"at":S()},"required":["run_id","rule","action","status","at"]},
 "Run": obj({"run":ref("RunRecord"),"report":nullable(ref("Report")),"attempts":{"type":"array","items":ref("Attempt")},
   "notifications":{"type":"array","items":ref("Notification")},"progress":nullable(ref("Progress"))}),
 "RunStarted": obj({"run_id":I()}),
 "Session": obj({"name":NS()}),
 "FlowStarted": obj({"flow_run_id":I()}),
 "FlowRecord": {"type":"object","description":"A flow run as stored: its plan and state.","properties":{"id":I(),"flow":S(),"status":flow_status},"required":["id","flow","status"]},
 "FlowCommand": {"type":"object","properties":{"step":{"type":"string","description":"The step, for `retry` and `skip`."},"who":{"type":"string","description":"Recorded as who acted, with the daemon card's token."}}},
}
def err(desc): return {"description": desc, "content": {"application/json": {"schema": ref("Error")}}}
common = {"400": err("Bad parameters."), "401": err("No token, or a wrong one."), "421": err("`Host` is not a name of this API.")}
writes = {**common, "403": err("`Origin` is not this API's page.")}
def ok(schema, code="200", desc="OK"):
    return {code: {"description": desc, "content": {"application/json": {"schema": schema}}}}
def op(summary, responses, params=None, body=None, tag="read"):
    o = {"summary": summary, "tags":[tag], "responses": responses}
    if params: o["parameters"] = params
    if body: o["requestBody"] = body
    return o
def path_param(name, schema, desc):
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": desc}
def q(name, schema, desc): return {"name": name, "in": "query", "required": False, "schema": schema, "description": desc}
idp = path_param("id", {"type":"integer","format":"int64"}, "A run's id.")
fidp = path_param("id", {"type":"integer","format":"int64"}, "A flow run's id.")
namep = path_param("name", {"type":"string"}, "A job's name.")
fnamep = path_param("name", {"type":"string"}, "A flow's name.")
page = [q("status", S(), "Only runs with this status."), q("since", {"type":"string","format":"date-time"}, "Only runs started at or after this time."),
  q("until", {"type":"string","format":"date-time"}, "Only runs started before this time."),
  q("before", {"type":"integer","format":"int64"}, "Only runs older than this id: the `next` of the page before."),
  q("limit", {"type":"integer","minimum":1,"maximum":500}, "At most this many (50 unless said).")]
sse = lambda desc: {"200": {"description": desc, "content": {"text/event-stream": {"schema": {"type":"string"}}}},
                    "503": err("As many live streams are open as the daemon serves; close some.")}
paths = {
 "/api/status": {"get": op("The daemon, its jobs, running runs and locks (`overnight status`).", {**ok(ref("Status")), **common})},
 "/api/jobs": {"get": op("Every job with its next fire, latest ended run and running runs with their progress.", {**ok({"type":"array","items":ref("Job")}), **common})},
 "/api/flows": {"get": op("Every flow with its next fire, steps and latest run.", {**ok({"type":"array","items":ref("Flow")}), **common})},
 "/api/runs": {"get": op("Runs, newest first, a page at a time.", {**ok(ref("RunsPage")), **common}, [q("job", S(), "Only this job's runs.")] + page)},
 "/api/runs/{id}": {"get": op("One run: its row, report, attempts, trigger deliveries and progress.", {**ok(ref("Run")), **common, "404": err("No such run.")}, [idp])},
 "/api/runs/{id}/output": {"get": op("A run's output from a byte offset: `lines` events (a JSON array of lines each), then, with `follow=1`, live until the run ends (`end`). Resumable with `Last-Event-ID`.",
   {**sse("Server-Sent Events."), **common, "404": err("No such run, or it has no output."), "502": err("In a cluster: the run ran on another host, whose API (its output is there) is not up or did not answer.")}, [idp, q("from", {"type":"integer","minimum":0}, "The byte offset to start at."), q("follow", {"type":"integer","enum":[0,1]}, "1: go on while the run runs."), q("tail", {"type":"integer","minimum":0}, "Start this many lines before the end (unless `from` or `Last-Event-ID` say where).")])},
 "/api/flow-runs": {"get": op("Flow runs, newest first, a page at a time.", {**ok(ref("FlowRunsPage")), **common}, [q("flow", S(), "Only this flow's runs.")] + page)},
 "/api/flow-runs/{id}": {"get": op("One flow run: each step's status, runs and times, the operators' actions, its plan, where it is held.", {**ok(ref("FlowRun")), **common, "404": err("No such flow run.")}, [fidp])},
 "/api/locks": {"get": op("Every lock held now, and by which run.", {**ok({"type":"array","items":ref("LockHolder")}), **common})},
 "/api/events": {"get": op("Live events: `run_started`, `progress`, `run_ended`, `flow`; `missed` when a slow client fell behind (`null`: events of other hosts went unheard). In a cluster every host's events, each with its `host`.", {**sse("Server-Sent Events."), **common})},
 "/metrics": {"get": op("Prometheus metrics: runs and flow runs by status with durations, fires not run, trigger deliveries, lines routed, running runs, held flow runs, each job's and flow's last success.", {"200": {"description": "Prometheus text format 0.0.4.", "content": {"text/plain": {"schema": {"type": "string"}}}}, **common})},
 "/api/openapi.json": {"get": op("This document.", {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type":"object"}}}}, **common})},
 "/api/jobs/{name}/run": {"post": op("Runs a job now and answers with its report when it ends.", {**ok(ref("Report")), **writes, "404": err("No such job."), "409": err("The run was skipped (its id is `run_id`)."), "502": err("In a cluster: the job may not run on this host, and the host it was handed on to did not answer.")}, [namep], tag="act")},
 "/api/jobs/{name}/start": {"post": op("Starts a run of a job now; answers with its id at once.", {**ok(ref("RunStarted"), "202", "Started."), **writes, "404": err("No such job."), "502": err("In a cluster: the job may not run on this host, and the host it was handed on to did not answer.")}, [namep], tag="act")},
 "/api/runs/{id}/stop": {"post": op("Stops a running run: TERM to its process group, KILL after the job's `kill_grace`.", {**ok(ref("RunStarted"), "202", "Stopping."), **writes, "404": err("No such run."), "409": err("It is not running in this daemon."), "502": err("In a cluster: it runs on another host, which is not up or did not answer.")}, [idp], tag="act")},
 "/api/flows/{name}/start": {"post": op("Starts a run of a flow; answers with its id at once.", {**ok(ref("FlowStarted")), **writes, "404": err("No such flow."), "409": err("A run of it goes on and its concurrency is `skip`."), "502": err("In a cluster: the flow may not run on this host, and the host it was handed on to did not answer.")}, [fnamep], tag="act")},
 "/api/flow-runs/{id}/{action}": {"post": op("Resume, retry or skip a step of, abort or hold a flow run; answers with the run as it stands after.",
   {**ok(ref("FlowRecord")), **writes, "404": err("No such flow run."), "409": err("The action makes no sense now."), "502": err("In a cluster: another host drives the run, and it is not up or did not answer.")},
   [fidp, path_param("action", {"type":"string","enum":["resume","retry","skip","abort","hold"]}, "What to do.")],
   {"required": False, "content": {"application/json": {"schema": ref("FlowCommand")}}}, tag="act")},
 "/api/reload": {"post": op("Rereads the jobs file, as SIGHUP does, once it is known to load.", {"202": {"description": "Asked."}, **writes, "409": err("The jobs file does not load (its problems said); nothing changed.")}, tag="act")},
 "/api/session": {"get": op("Who the caller is: the name of the token it showed or logged in with, if any.", {**ok(ref("Session")), **common})},
 "/api/login": {"post": op("Trades a token for a session cookie (HttpOnly, SameSite=Strict) and sends the browser back to the page.",
   {"303": {"description": "Logged in; the cookie is set."}, **writes, "413": err("The body is too large."), "415": err("Not a form."), "422": err("The form has no `token`.")}, body={"required": True, "content": {"application/x-www-form-urlencoded": {"schema": obj({"token": S()})}}}, tag="act")},
 "/api/logout": {"post": op("Ends the browser's session.", {"303": {"description": "Logged out."}, **writes}, tag="act")},
}
doc = {"openapi": "3.1.0",
 "info": {"title": "overnight", "version": "1", "description": "The overnight daemon's API (DESIGN §9). Reading needs no token on loopback; writes always need one, as `Authorization: Bearer TOKEN` (the daemon card's, in `daemon.json` in the state directory, or one of `api.tokens`), or the session cookie of `POST /api/login`."},
 "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type":"http","scheme":"bearer"}, "session": {"type":"apiKey","in":"cookie","name":"overnight_session"}}},
 "security": [{}, {"bearer": []}, {"session": []}],
 "paths": paths}
print(json.dumps(doc, indent=1))
