// overnight's page: the dashboard, a run's live output, history, flow
// runs as graphs, and the operator's buttons. Plain JavaScript over the
// daemon's API (/api/openapi.json); live through Server-Sent Events.
'use strict';

// ---- Small helpers -------------------------------------------------------

/** An element: h('a', {href: '#/'}, 'text', child…). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === 'text') el.textContent = value; else el.setAttribute(key, value);
  }
  children.flat(Infinity).forEach((c) => c && el.append(c));
  return el;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/** A request to the API; its JSON answer, or an ApiError saying why not. */
async function call(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, answer.error || response.statusText);
  return answer;
}
const get = (path) => call('GET', path);
const post = (path, body) => call('POST', path, body);

/** Puts `children` in `el` in place of what it held (absent ones skipped). */
function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

let noticeTimer;
function notice(text, bad) {
  const el = document.getElementById('notice');
  el.replaceChildren(...(Array.isArray(text) ? text : [text]));
  el.className = bad ? 'notice bad' : 'notice';
  el.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { el.hidden = true; }, bad ? 9000 : 4000);
}

/** Runs an operator's action; a refusal is said, a 401 offers the login. */
async function act(what, path, body) {
  try {
    const answer = await post(path, body);
    notice(what);
    return answer;
  } catch (e) {
    if (e.status === 401) notice([h('span', { text: 'Log in to do this. ' }), h('a', { href: '#/login', text: 'Log in' })], true);
    else notice(`${what} refused: ${e.message}`, true);
    return null;
  }
}

// Times in the reader's zone; the job's zone on hover.
const clockTime = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });
const dayAndTime = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
const longTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'long' });
/** Today's times as the clock says them; other days' with the day. */
function shortTime(d) {
  const today = new Date();
  return d.toDateString() === today.toDateString() ? clockTime.format(d) : dayAndTime.format(d);
}
function time(iso, zone) {
  if (!iso) return h('span', { class: 'muted', text: '—' });
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h('span', { text: iso });
  let title = longTime.format(d);
  if (zone) {
    try {
      title = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'long', timeZone: zone }).format(d) + ` (${zone})`;
    } catch (_) { /* a zone the browser does not know */ }
  }
  return h('time', { datetime: iso, title, text: shortTime(d) });
}

function duration(from, to) {
  if (!from) return '';
  const ms = (to ? new Date(to) : new Date()) - new Date(from);
  if (!(ms >= 0)) return '';
  const sec = Math.round(ms / 1000);
  if (sec < 60) return `${sec}s`;
  if (sec < 3600) return `${Math.floor(sec / 60)}m ${sec % 60}s`;
  return `${Math.floor(sec / 3600)}h ${Math.floor((sec % 3600) / 60)}m`;
}

function badge(status) {
  return h('span', { class: `badge s-${status}`, text: status });
}

function progressOf(runId, progress) {
  const pct = progress && progress.percent != null ? progress.percent : null;
  return h('span', { class: 'progress', dataset: { run: runId } },
    h('progress', { max: 100, value: pct ?? undefined, 'aria-label': `progress of run ${runId}` }),
    h('span', { class: 'pct', text: pct != null ? `${Math.round(pct)}%` : '' }),
    h('span', { class: 'msg', text: (progress && progress.message) || '' }));
}

/** Moves the progress bars of run `runId` on the page. */
function showProgress(event) {
  let found = false;
  document.querySelectorAll(`.progress[data-run="${event.run_id}"]`).forEach((el) => {
    found = true;
    if (event.percent != null) {
      el.querySelector('progress').value = event.percent;
      el.querySelector('.pct').textContent = `${Math.round(event.percent)}%`;
    }
    el.querySelector('.msg').textContent = event.message;
  });
  return found;
}

// ---- Who is here ---------------------------------------------------------

let session = { name: null };

async function loadSession() {
  try { session = await get('/api/session'); } catch (_) { session = { name: null }; }
  const who = document.getElementById('who');
  if (session.name) {
    fill(who, h('span', { class: 'muted', text: session.name }),
      h('button', { type: 'button', onclick: logout, text: 'Log out' }));
  } else {
    fill(who, h('a', { href: '#/login', text: 'Log in' }));
  }
}

async function logout() {
  await fetch('/api/logout', { method: 'POST', credentials: 'same-origin', redirect: 'manual' });
  await loadSession();
  notice('Logged out');
}

// ---- Live events ---------------------------------------------------------

// One stream for the whole page; the view shown gets each event.
let onEvent = () => {};
let events = null;
/** (Re)opens the page's live stream: at the start, and after a login
 * (beyond loopback, the stream needs one, and a refused EventSource does
 * not try again). */
function connectEvents() {
  const live = document.getElementById('live');
  if (events) events.close();
  events = new EventSource('/api/events');
  events.onopen = () => { live.classList.add('on'); live.title = 'Live updates: connected'; };
  events.onerror = () => { live.classList.remove('on'); live.title = 'Live updates: reconnecting'; };
  for (const kind of ['run_started', 'progress', 'run_ended', 'flow', 'missed']) {
    events.addEventListener(kind, (e) => {
      let data = {};
      try { data = JSON.parse(e.data); } catch (_) { /* not JSON */ }
      onEvent(kind, data);
    });
  }
}

/** `fn`, `ms` after the first of a burst of calls: once for the burst,
 * and never starved by a steady stream of them. */
function coalesce(fn, ms) {
  let timer = null;
  return () => {
    if (timer === null) timer = setTimeout(() => { timer = null; fn(); }, ms);
  };
}

// ---- Views ---------------------------------------------------------------

const main = () => document.getElementById('main');
let cleanup = () => {};
// Each view is one generation: a view whose fetch returns after the
// reader has moved on stops there.
let generation = 0;
const current = (mine) => mine === generation;

function route() {
  cleanup();
  cleanup = () => {};
  onEvent = () => {};
  generation += 1;
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean);
  document.querySelectorAll('[data-nav]').forEach((a) => a.removeAttribute('aria-current'));
  const nav = (name) => document.querySelector(`[data-nav="${name}"]`)?.setAttribute('aria-current', 'page');
  let view;
  if (parts[0] === 'run' && parts[1]) view = runPage(Number(parts[1]));
  else if (parts[0] === 'flow-run' && parts[1]) view = flowRunPage(Number(parts[1]));
  else if (parts[0] === 'history') { nav('history'); view = historyPage(params); }
  else if (parts[0] === 'login') view = loginPage();
  else { nav('dashboard'); view = dashboard(); }
  view.catch((e) => {
    fill(main(), h('p', { class: 'panel', text: `Could not load this page: ${e.message}` }),
      e.status === 401 ? h('a', { href: '#/login', text: 'Log in' }) : null);
  });
}

async function dashboard() {
  document.title = 'overnight';
  const filter = h('input', { type: 'search', class: 'filter', placeholder: 'Filter jobs and flows', 'aria-label': 'Filter jobs and flows', id: 'filter' });
  const jobsBody = h('tbody');
  const flowsBody = h('tbody');
  fill(main(), 
    h('h1', {}, 'Jobs'),
    filter,
    h('div', { class: 'panel scroll' }, h('table', { id: 'jobs', class: 'cards' },
      h('thead', {}, h('tr', {}, h('th', { text: 'Job' }), h('th', { text: 'Status' }), h('th', { text: 'Progress' }),
        h('th', { text: 'Last run', class: 'wide' }), h('th', { text: 'Next' }), h('th', { text: 'Actions' }))),
      jobsBody)),
    h('h2', {}, 'Flows'),
    h('div', { class: 'panel scroll' }, h('table', { id: 'flows', class: 'cards' },
      h('thead', {}, h('tr', {}, h('th', { text: 'Flow' }), h('th', { text: 'Status' }), h('th', { text: 'Steps', class: 'wide' }),
        h('th', { text: 'Last run' }), h('th', { text: 'Next' }), h('th', { text: 'Actions' }))),
      flowsBody)));

  const applyFilter = () => {
    const word = filter.value.trim().toLowerCase();
    document.querySelectorAll('#jobs tbody tr, #flows tbody tr').forEach((tr) => {
      const name = (tr.dataset.name || '').toLowerCase();
      tr.classList.toggle('hidden', word !== '' && !name.includes(word));
    });
  };
  filter.addEventListener('input', applyFilter);

  const load = async () => {
    const [jobs, flows] = await Promise.all([get('/api/jobs'), get('/api/flows')]);
    fill(jobsBody, ...jobs.map(jobRow));
    if (jobs.length === 0) jobsBody.append(h('tr', {}, h('td', { colspan: 6, class: 'muted', text: 'No jobs in the jobs file.' })));
    fill(flowsBody, ...flows.map(flowRow));
    if (flows.length === 0) flowsBody.append(h('tr', {}, h('td', { colspan: 6, class: 'muted', text: 'No flows.' })));
    applyFilter();
  };
  const reload = coalesce(() => load().catch(() => {}), 250);
  onEvent = (kind, data) => {
    if (kind === 'progress') { if (!showProgress(data)) reload(); } else reload();
  };
  // Next fires move on with the clock.
  const tick = setInterval(reload, 60000);
  cleanup = () => clearInterval(tick);
  await load();
}

function jobRow(job) {
  const running = job.running || [];
  const status = running.length ? 'running' : job.last ? job.last.status : 'never';
  const last = job.last;
  return h('tr', { dataset: { name: job.name }, id: `job-${job.name}` },
    h('td', {}, h('strong', { text: job.name }), h('div', { class: 'muted wide', text: job.schedule || (job.at_start ? '@reboot' : 'by hand') })),
    h('td', {}, badge(status)),
    h('td', {}, running.map((run) => h('div', {}, h('a', { href: `#/run/${run.id}`, text: `#${run.id}` }), ' ',
      run.elsewhere ? h('span', { class: 'muted', text: `on ${run.elsewhere} ` }) : null, progressOf(run.id, run.progress)))),
    h('td', { class: 'wide' }, last ? [h('a', { href: `#/run/${last.id}`, text: `#${last.id}` }), ' ', time(last.started_at, job.timezone), h('div', { class: 'muted', text: last.summary || '' })] : h('span', { class: 'muted', text: 'never ran' })),
    h('td', {}, job.next ? h('span', { class: 'phone muted', text: 'next ' }) : null, time(job.next, job.timezone)),
    h('td', {}, h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'primary', text: 'Run now', 'aria-label': `Run ${job.name} now`, onclick: () => runNow(job.name) }),
      running.map((run) => h('button', { type: 'button', class: 'danger', text: `Stop #${run.id}`, onclick: () => stopRun(run.id) })))));
}

function flowRow(flow) {
  const last = flow.last;
  const status = last ? last.status : 'never';
  return h('tr', { dataset: { name: flow.name }, id: `flow-${flow.name}` },
    h('td', {}, h('strong', { text: flow.name }), h('div', { class: 'muted', text: flow.description || flow.schedule || 'by hand' })),
    h('td', {}, badge(status)),
    h('td', { class: 'wide', text: (flow.plan.steps || []).map((step) => step.name).join(' → ') }),
    h('td', {}, last ? [h('a', { href: `#/flow-run/${last.flow_run_id}`, text: `#${last.flow_run_id}` }), ' ', time(last.started_at, flow.timezone)] : h('span', { class: 'muted', text: 'never ran' })),
    h('td', {}, flow.next ? h('span', { class: 'phone muted', text: 'next ' }) : null, time(flow.next, flow.timezone)),
    h('td', {}, h('button', { type: 'button', class: 'primary', text: 'Start', 'aria-label': `Start flow ${flow.name}`, onclick: () => startFlow(flow.name) })));
}

async function runNow(name) {
  const started = await act(`Run of ${name} started`, `/api/jobs/${encodeURIComponent(name)}/start`);
  if (started) location.hash = `#/run/${started.run_id}`;
}

async function stopRun(id) {
  if (!confirm(`Stop run #${id}? Its processes get TERM, then KILL.`)) return;
  await act(`Run #${id} is being stopped`, `/api/runs/${id}/stop`);
}

async function startFlow(name) {
  const started = await act(`Flow ${name} started`, `/api/flows/${encodeURIComponent(name)}/start`);
  if (started) location.hash = `#/flow-run/${started.flow_run_id}`;
}

// A run: its facts, its output live, its report.
const KEEP_LINES = 20000;

async function runPage(id) {
  document.title = `run #${id} · overnight`;
  const head = h('div');
  const report = h('div');
  const output = h('div', { class: 'output', id: 'output', tabindex: 0, role: 'log', 'aria-label': 'Output' });
  const follow = h('input', { type: 'checkbox', id: 'follow', checked: true });
  const counts = h('span', { class: 'muted', id: 'counts' });
  const firstError = h('button', { type: 'button', id: 'first-error', text: 'Jump to first error', disabled: true });
  fill(main(), head,
    h('h2', {}, 'Output'),
    h('div', { class: 'toolbar' }, h('label', {}, follow, ' Follow'), firstError, counts),
    output, report);

  let lines = 0; let errors = 0; let warnings = 0;
  const sayCounts = () => { counts.textContent = `${lines} lines · ${errors} errors · ${warnings} warnings`; };
  sayCounts();
  firstError.addEventListener('click', () => {
    const el = output.querySelector('.line.error');
    if (!el) return;
    follow.checked = false;
    el.scrollIntoView({ block: 'center' });
    el.focus();
  });
  // Scrolling up pauses; back at the bottom follows again.
  output.addEventListener('scroll', () => {
    const atBottom = output.scrollHeight - output.scrollTop - output.clientHeight < 8;
    follow.checked = atBottom;
  });
  follow.addEventListener('change', () => { if (follow.checked) output.scrollTop = output.scrollHeight; });

  const addLines = (batch) => {
    const frag = document.createDocumentFragment();
    for (const line of batch) {
      const kind = lineKind(line.text);
      const el = h('div', { class: `line ${line.stream === 'err' ? 'err' : 'out'}${kind ? ' ' + kind : ''}`, tabindex: kind === 'error' ? -1 : undefined },
        h('span', { class: 't', text: line.at ? line.at.slice(11, 23) : '' }),
        h('span', { class: 'x', text: line.text }));
      frag.append(el);
      lines += 1;
      if (kind === 'error') errors += 1;
      if (kind === 'warning') warnings += 1;
    }
    output.append(frag);
    while (output.childElementCount > KEEP_LINES) output.firstElementChild.remove();
    firstError.disabled = !output.querySelector('.line.error');
    sayCounts();
    if (follow.checked) output.scrollTop = output.scrollHeight;
  };

  const mine = generation;
  let stream = null;
  cleanup = () => { if (stream) stream.close(); };
  const openOutput = () => {
    stream = new EventSource(`/api/runs/${id}/output?follow=1&tail=${KEEP_LINES}`);
    stream.addEventListener('lines', (e) => addLines(JSON.parse(e.data)));
    stream.addEventListener('end', () => { stream.close(); show().catch(() => {}); });
  };
  const show = async () => {
    const view = await get(`/api/runs/${id}`);
    if (!current(mine)) return null;
    fill(head, runHead(view));
    fill(report, reportOf(view));
    document.title = `${view.run.job} #${id} · overnight`;
    if (!stream) openOutput();
    return view;
  };
  const refresh = coalesce(() => show().catch(() => {}), 200);
  onEvent = (kind, data) => {
    if (data.run_id !== id) return;
    if (kind === 'progress') { if (!showProgress(data)) refresh(); } else refresh();
  };
  // A run just started may wait for its locks or a free place before it
  // is recorded: wait for it.
  for (let tries = 0; ; tries += 1) {
    try {
      await show();
      return;
    } catch (e) {
      if (e.status !== 404 || tries >= 600 || !current(mine)) throw e;
      fill(head, h('h1', {}, `run #${id}`, badge('waiting')),
        h('p', { class: 'muted', text: 'Not started yet: it waits for its locks or a free place.' }));
      await new Promise((resolve) => setTimeout(resolve, 1000));
      if (!current(mine)) return;
    }
  }
}

/** `error` or `warning` for a line that says one (the line protocol). */
function lineKind(text) {
  if (/^::error(\s[^:]*)?::|^\s*\{.*"level"\s*:\s*"(error|fatal)"/i.test(text)) return 'error';
  if (/^::warning(\s[^:]*)?::|^\s*\{.*"level"\s*:\s*"warn/i.test(text)) return 'warning';
  return '';
}

function runHead(view) {
  const run = view.run;
  const running = run.status === 'running';
  return h('div', {},
    h('h1', {}, `${run.job} #${run.id}`, badge(run.status),
      running ? h('button', { type: 'button', class: 'danger', text: 'Stop', onclick: () => stopRun(run.id) }) : null,
      h('button', { type: 'button', text: 'Run again', onclick: () => runNow(run.job) })),
    running ? h('p', {}, progressOf(run.id, view.progress)) : null,
    h('dl', { class: 'facts panel' },
      h('dt', { text: 'Summary' }), h('dd', { text: run.summary || (running ? 'running…' : '') }),
      h('dt', { text: 'Started' }), h('dd', {}, time(run.started_at), ` by ${run.trigger}`),
      h('dt', { text: 'Took' }), h('dd', { text: duration(run.started_at, run.finished_at) + (running ? ' so far' : '') }),
      run.scheduled_at ? [h('dt', { text: 'Due' }), h('dd', {}, time(run.scheduled_at))] : null,
      h('dt', { text: 'Attempt' }), h('dd', { text: String(run.attempt) }),
      run.exit_code != null ? [h('dt', { text: 'Exit code' }), h('dd', { text: String(run.exit_code) })] : null,
      run.signal != null ? [h('dt', { text: 'Signal' }), h('dd', { text: String(run.signal) })] : null,
      h('dt', { text: 'Host' }), h('dd', { text: run.host })));
}

function reportOf(view) {
  const report = view.report;
  const parts = [];
  if (report) {
    const list = (title, items, cls) => items && items.length
      ? [h('h2', { class: cls }, `${title} (${items.length})`), h('ul', { class: `items panel ${cls}` }, items.map((item) => h('li', { text: typeof item === 'string' ? item : item.message || JSON.stringify(item) })))]
      : null;
    parts.push(list('Errors', report.errors, 's-failed'), list('Warnings', report.warnings, 's-warning'));
    const details = report.details && Object.entries(report.details);
    if (details && details.length) {
      parts.push(h('h2', {}, 'Details'), h('dl', { class: 'facts panel' },
        details.map(([key, value]) => [h('dt', { text: key }), h('dd', { text: typeof value === 'string' ? value : JSON.stringify(value) })])));
    }
  }
  if (view.attempts && view.attempts.length) {
    parts.push(h('h2', {}, 'Earlier attempts'), h('ul', { class: 'items panel' },
      view.attempts.map((a) => h('li', {}, `#${a.attempt} `, badge(a.status), ` ${a.summary || ''}`))));
  }
  if (view.notifications && view.notifications.length) {
    parts.push(h('h2', {}, 'Trigger deliveries'), h('div', { class: 'panel scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Rule', 'Action', 'On', 'Outcome', 'Detail', 'When'].map((t) => h('th', { text: t })))),
      h('tbody', {}, view.notifications.map((n) => h('tr', {},
        h('td', { text: n.rule }), h('td', { text: n.action }), h('td', { text: n.condition }),
        h('td', {}, badge(n.status)), h('td', { text: n.detail || '' }), h('td', {}, time(n.at))))))));
  }
  return h('div', {}, parts);
}

// History: runs or flow runs, filtered, a page at a time.
/** The statuses the API knows, from its own document. */
async function statuses(schema) {
  const doc = await get('/api/openapi.json');
  return doc.components.schemas[schema].properties.status.enum;
}

async function historyPage(params) {
  document.title = 'history · overnight';
  const flows = params.get('what') === 'flows';
  const what = h('select', { name: 'what', 'aria-label': 'Runs or flow runs' },
    h('option', { value: 'runs', text: 'Runs', selected: !flows }), h('option', { value: 'flows', text: 'Flow runs', selected: flows }));
  const name = h('input', { name: 'name', placeholder: flows ? 'Flow' : 'Job', value: params.get('name') || '', 'aria-label': 'Name' });
  const status = h('select', { name: 'status', 'aria-label': 'Status' }, h('option', { value: '', text: 'Any status' }),
    (await statuses(flows ? 'FlowRun' : 'RunRecord')).map((st) => h('option', { value: st, text: st, selected: params.get('status') === st })));
  const since = h('input', { type: 'date', name: 'since', value: params.get('since') || '', 'aria-label': 'Since' });
  const until = h('input', { type: 'date', name: 'until', value: params.get('until') || '', 'aria-label': 'Until' });
  const form = h('form', { class: 'toolbar', onsubmit: (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    for (const el of [what, name, status, since, until]) if (el.value) next.set(el.name, el.value);
    location.hash = `#/history?${next}`;
  } }, what, name, status, h('label', {}, 'from ', since), h('label', {}, 'to ', until), h('button', { type: 'submit', text: 'Show' }));
  const body = h('tbody');
  const more = h('button', { type: 'button', text: 'Older', hidden: true });
  const head = flows ? ['Flow run', 'Flow', 'Status', 'Trigger', 'Started', 'Took']
    : ['Run', 'Job', 'Status', 'Trigger', 'Started', 'Took', 'Summary'];
  fill(main(), h('h1', {}, 'History'), form,
    h('div', { class: 'panel scroll' }, h('table', { id: 'history' }, h('thead', {}, h('tr', {}, head.map((t) => h('th', { text: t })))), body)), more);

  const query = new URLSearchParams({ limit: '50' });
  if (params.get('name')) query.set(flows ? 'flow' : 'job', params.get('name'));
  if (params.get('status')) query.set('status', params.get('status'));
  const day = (d, end) => { const t = new Date(`${d}T00:00:00`); if (end) t.setDate(t.getDate() + 1); return t.toISOString(); };
  if (params.get('since')) query.set('since', day(params.get('since')));
  if (params.get('until')) query.set('until', day(params.get('until'), true));
  const load = async (before) => {
    if (before) query.set('before', before);
    const page = await get(`${flows ? '/api/flow-runs' : '/api/runs'}?${query}`);
    const rows = flows
      ? page.flow_runs.map((r) => h('tr', {}, h('td', {}, h('a', { href: `#/flow-run/${r.flow_run_id}`, text: `#${r.flow_run_id}` })),
        h('td', { text: r.flow }), h('td', {}, badge(r.status)), h('td', { text: r.trigger }), h('td', {}, time(r.started_at)),
        h('td', { text: duration(r.started_at, r.finished_at) })))
      : page.runs.map((r) => h('tr', {}, h('td', {}, h('a', { href: `#/run/${r.id}`, text: `#${r.id}` })),
        h('td', { text: r.job }), h('td', {}, badge(r.status)), h('td', { text: r.trigger }),
        h('td', {}, time(r.status === 'missed' || r.status === 'skipped' ? r.scheduled_at || r.started_at : r.started_at)),
        h('td', { text: r.status === 'missed' || r.status === 'skipped' ? '' : duration(r.started_at, r.finished_at) }),
        h('td', { text: r.summary || '' })));
    body.append(...rows);
    if (!body.childElementCount) body.append(h('tr', {}, h('td', { colspan: head.length, class: 'muted', text: 'Nothing recorded matches.' })));
    more.hidden = page.next == null;
    more.onclick = () => load(page.next).catch((e) => notice(e.message, true));
  };
  await load();
}

// A flow run: its graph, where it is held, its steps.
async function flowRunPage(id) {
  document.title = `flow run #${id} · overnight`;
  const box = h('div');
  fill(main(), box);
  const mine = generation;
  const show = async () => {
    const run = await get(`/api/flow-runs/${id}`);
    if (!current(mine)) return;
    document.title = `${run.flow} #${id} · overnight`;
    fill(box, 
      h('h1', {}, `flow ${run.flow} #${id}`, badge(run.status)),
      run.held_at ? heldCallout(run) : null,
      h('div', { class: 'panel' }, graph(run)),
      h('h2', {}, 'Steps'),
      h('div', { class: 'panel scroll' }, h('table', { id: 'steps' },
        h('thead', {}, h('tr', {}, ['Step', 'Status', 'Runs', 'Started', 'Took', 'Why'].map((t) => h('th', { text: t })))),
        h('tbody', {}, run.steps.map((step) => h('tr', { dataset: { step: step.step } },
          h('td', { text: step.step }), h('td', {}, badge(step.status)),
          h('td', {}, step.runs.map((r) => [h('a', { href: `#/run/${r}`, text: `#${r}` }), ' '])),
          h('td', {}, time(step.started_at)), h('td', { text: duration(step.started_at, step.ended_at) }),
          h('td', { text: step.why || '' })))))),
      run.actions.length ? [h('h2', {}, 'Operators'), h('ul', { class: 'items panel' },
        run.actions.map((a) => h('li', {}, time(a.at), ` ${a.who}: ${a.action}${a.step ? ' ' + a.step : ''}`)))] : null);
  };
  const refresh = coalesce(() => show().catch(() => {}), 150);
  onEvent = (kind, data) => {
    if (kind === 'flow' && data.flow_run_id === id) refresh();
    if (kind === 'missed') refresh();
  };
  await show();
}

function heldCallout(run) {
  const step = run.held_at.step;
  const said = run.held_at.message || `Step ${step} holds the flow.`;
  const command = (action, label, cls) => h('button', { type: 'button', class: cls, text: label,
    onclick: () => act(`${label}: done`, `/api/flow-runs/${run.flow_run_id}/${action}`, step ? { step } : {}) });
  return h('div', { class: 'callout', role: 'alert', id: 'held' },
    h('strong', {}, step ? `Held at ${step}` : 'Held', run.held_since ? [' since ', time(run.held_since)] : null),
    h('p', { class: 'held-message', text: said }),
    h('div', { class: 'actions' },
      command('resume', 'Resume', 'primary'),
      step ? [command('retry', 'Retry', ''), command('skip', 'Skip', '')] : null,
      command('abort', 'Abort', 'danger')));
}

/** The steps a condition names, each with the test it is named in. */
function dependsOn(after, names) {
  const found = new Map();
  if (!after) return found;
  const re = /([A-Za-z_]+)\(\s*([^()\s]+)\s*\)|([A-Za-z0-9._-]+)/g;
  let m;
  while ((m = re.exec(after)) !== null) {
    if (m[1] && names.has(m[2])) found.set(m[2], m[1]);
    else if (m[3] && names.has(m[3]) && !found.has(m[3])) found.set(m[3], 'ok');
  }
  return found;
}

/** The flow run drawn as an SVG graph: steps by depth, the route taken bold. */
function graph(run) {
  const steps = run.plan.steps;
  const names = new Set(steps.map((st) => st.name));
  const state = new Map(run.steps.map((st) => [st.step, st]));
  const deps = new Map(steps.map((st) => [st.name, dependsOn(st.after, names)]));
  const depth = new Map();
  const depthOf = (name, seen = new Set()) => {
    if (depth.has(name)) return depth.get(name);
    if (seen.has(name)) return 0;
    seen.add(name);
    let d = 0;
    for (const dep of deps.get(name).keys()) d = Math.max(d, depthOf(dep, seen) + 1);
    depth.set(name, d);
    return d;
  };
  steps.forEach((st) => depthOf(st.name));
  const columns = [];
  for (const st of steps) {
    const d = depth.get(st.name);
    (columns[d] = columns[d] || []).push(st.name);
  }
  const W = 150; const H = 54; const GX = 70; const GY = 26;
  const pos = new Map();
  columns.forEach((col, x) => col.forEach((name, y) => pos.set(name, { x: 20 + x * (W + GX), y: 20 + y * (H + GY) })));
  const width = 40 + columns.length * (W + GX) - GX;
  const height = 40 + Math.max(...columns.map((c) => c.length)) * (H + GY) - GY;
  const svg = s('svg', { class: 'graph', id: 'graph', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `Flow ${run.flow}: steps and the route taken` });
  const started = (st) => st && !['waiting', 'skipped'].includes(st.status);
  // Whether a step's state passes the test an edge is labelled with.
  const passes = (st, test) => {
    const status = st && st.status;
    switch (test) {
      case 'ok': return status === 'success' || status === 'warning';
      case 'done': return ['success', 'warning', 'failed', 'skipped'].includes(status);
      default: return status === test;
    }
  };
  for (const step of steps) {
    for (const [dep, test] of deps.get(step.name)) {
      const a = pos.get(dep); const b = pos.get(step.name);
      const taken = passes(state.get(dep), test) && started(state.get(step.name));
      const x1 = a.x + W; const y1 = a.y + H / 2; const x2 = b.x; const y2 = b.y + H / 2;
      const mx = (x1 + x2) / 2;
      svg.append(s('path', { class: `edge${taken ? ' taken' : ''}`, d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, 'data-from': dep, 'data-to': step.name }));
      if (test !== 'ok') svg.append(s('text', { class: 'label', x: mx, y: (y1 + y2) / 2 - 4, 'text-anchor': 'middle', text: test }));
    }
  }
  for (const step of steps) {
    const p = pos.get(step.name);
    const st = state.get(step.name);
    const status = st ? st.status : 'waiting';
    const what = step.action.job ? `job ${step.action.job}` : 'hold';
    svg.append(s('g', { class: `node n-${status}`, 'data-step': step.name, 'data-status': status, transform: `translate(${p.x},${p.y})` },
      s('title', { text: `${step.name}: ${status}${step.after ? ` (after ${step.after})` : ''}` }),
      s('rect', { width: W, height: H, rx: 8 }),
      s('text', { x: 10, y: 22, text: step.name }),
      s('text', { class: 'sub', x: 10, y: 40, text: `${status} · ${what}` })));
  }
  return svg;
}

function loginPage() {
  document.title = 'log in · overnight';
  const token = h('input', { type: 'password', name: 'token', id: 'token', autocomplete: 'current-password', required: true });
  const said = h('p', { class: 's-failed', role: 'alert' });
  const form = h('form', { class: 'login panel', method: 'post', action: '/api/login', onsubmit: async (e) => {
    e.preventDefault();
    let response;
    try {
      response = await fetch('/api/login', { method: 'POST', credentials: 'same-origin', redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token: token.value }) });
    } catch (err) {
      said.textContent = `The daemon did not answer: ${err.message}`;
      return;
    }
    if (response.type === 'opaqueredirect' || response.ok) {
      await loadSession();
      connectEvents();
      notice(`Logged in as ${session.name}`);
      location.hash = '#/';
    } else if (response.status === 401) {
      said.textContent = 'That token is not one of this daemon\'s.';
      token.select();
    } else {
      const answer = await response.json().catch(() => ({}));
      said.textContent = `Refused (${response.status}): ${answer.error || response.statusText}`;
    }
  } },
  h('label', { for: 'token', text: 'Token' }), token,
  h('p', { class: 'muted', text: 'The daemon\'s own (daemon.json in its state directory) or one of api.tokens. The browser keeps a session cookie, not the token.' }),
  said, h('button', { type: 'submit', class: 'primary', text: 'Log in' }));
  fill(main(), h('h1', {}, 'Log in'), form);
  token.focus();
  return Promise.resolve();
}

// ---- Start ---------------------------------------------------------------

window.addEventListener('hashchange', route);
window.addEventListener('DOMContentLoaded', () => {
  loadSession();
  connectEvents();
  route();
});
