/*
 * hive's page: the hive dashboard (served by the supervisor) and the bot's
 * own page (served by a worker, directly or under the supervisor's
 * /bots/<id>/). It tells which from the /status it is given: the
 * supervisor's has "hive", a worker's has "bot_id".
 *
 * Data flow: one GET status at load (and after a resync), then the event
 * stream (GET api/events, SPEC §8) keeps everything current; no polling.
 * The stream's cursor is kept in sessionStorage, so a reload, and a restart
 * of the server, resume where the page was. Every URL is relative to the
 * page, except the login's, which is always the server's own /api/login
 * (under /bots/<id>/ that is the supervisor, which holds the same token).
 * Text from the hive is only ever set as text, never parsed as HTML.
 */
'use strict';
(function () {
  const EVENT_TYPES = ['task_received', 'task_started', 'task_output', 'task_output_dropped',
    'task_completed',
    'task_failed', 'task_cancelled', 'task_stalled', 'bot_paused', 'bot_resumed', 'bot_state',
    'warning', 'resync', 'message'];
  const FEED_MAX = 300;        /* events kept in the feed */
  const OUTPUT_MAX = 64 * 1024; /* characters of a bot's running output kept (the tail) */
  const TIMELINE_LIMIT = 50;
  const STORE = 'hive:' + location.pathname; /* sessionStorage key prefix of this page */

  const page = {
    mode: null,           /* 'hive' or 'bot' */
    bots: new Map(),      /* id -> bot record (see botRecord) */
    selected: null,       /* the bot shown in the bot view */
    cursor: sessionStorage.getItem(STORE + ':cursor'),
    lastSeq: new Map(),   /* stream ("hive" or a bot id) -> last seq applied */
    es: null,
    snapshot: false,      /* counters wait for a fresh status (see openStream) */
    needSnapshot: false,  /* read the status when the stream (re)opens */
    retryMs: 500,
    retryTimer: null,
    /* The first GET status, asked before anything else is set up: the page
     * shows nothing useful until it answers (see loadStatus). */
    firstStatus: fetch('status', { credentials: 'same-origin' }),
  };

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };

  /* ---- requests ---------------------------------------------------------- */

  /* The URL prefix of a bot's own API: the proxy on the dashboard, "" on the bot page. */
  function botBase(id) {
    return page.mode === 'hive' ? 'bots/' + encodeURIComponent(id) + '/' : '';
  }

  /* fetch() that gives {status, body} (body: parsed JSON or null) and shows the login on 401. */
  async function call(url, method, body) {
    const opts = { method: method || 'GET', credentials: 'same-origin', headers: {} };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    return answer(await fetch(url, opts));
  }

  /* A fetch() response as {status, body}; the login on 401. */
  async function answer(r) {
    let json = null;
    try { json = await r.json(); } catch (e) { json = null; }
    if (r.status === 401) showLogin();
    return { status: r.status, body: json };
  }

  /* ---- login --------------------------------------------------------------- */

  function showLogin(why) {
    closeStream();
    $('main').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = why || '';
    setConn('offline', 'log in to see the hive');
    $('token').focus();
  }

  async function login(ev) {
    ev.preventDefault();
    const r = await fetch('/api/login', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ token: $('token').value }),
    });
    $('token').value = '';
    if (r.status !== 200) {
      $('login-error').textContent = r.status === 401 ? 'Wrong token.' : 'Login failed (' + r.status + ').';
      return;
    }
    sessionStorage.setItem('hive:login', '1');
    $('login').hidden = true;
    start();
  }

  async function logout() {
    await fetch('/api/logout', { method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' }, body: '{}' });
    sessionStorage.removeItem('hive:login');
    $('logout').hidden = true;
    showLogin();
  }

  /* ---- the model ------------------------------------------------------------ */

  function botRecord(id) {
    let b = page.bots.get(id);
    if (!b) {
      b = { id, state: 'unknown', pid: null, restarts: 0, uptime: 0, uptimeAt: 0, reason: null,
        queue: 0, current: null, done: 0, failed: 0, paused: false, output: '', outputTask: null,
        queued: new Map(), url: null, proxyUrl: null, row: null };
      page.bots.set(id, b);
    }
    return b;
  }

  /* Uptime in seconds now, from the last value the hive told us. */
  function uptimeNow(b) {
    if (!b.uptimeAt) return null;
    return b.uptime + (performance.now() - b.uptimeAt) / 1000;
  }

  /* The fields of a worker's /status (SPEC §4) into B. */
  function applyWorkerStatus(b, s) {
    b.done = s.tasks_processed || 0;
    b.failed = s.tasks_failed || 0;
    b.queue = s.queue ? (s.queue.realtime || 0) + (s.queue.file || 0) : 0;
    b.current = s.current_task || null;
    b.paused = s.status === 'paused' || s.paused === true || !!s.paused_reason;
    b.pausedWhy = b.paused ? pausedWhy(s.paused_reason, s.paused_until) : null;
    if (page.mode === 'bot') {
      b.state = s.status;
      b.pid = s.pid;
      b.uptime = s.uptime_seconds || 0;
      b.uptimeAt = performance.now();
    }
  }

  /* Why a bot paused itself (a usage limit, a budget; SPEC §12), or null. */
  function pausedWhy(reason, until) {
    if (!reason) return null;
    return until ? reason + ' until ' + new Date(until).toLocaleString() : reason;
  }

  /* A bot's state as the bot page shows it (a worker has no lifecycle state). */
  function workerState(b) {
    if (b.state === 'stopping') return 'stopping';
    return b.paused ? 'paused' : b.current ? 'busy' : 'idle';
  }

  /* The supervisor's /status (SPEC §6.3) into the model; drops bots no longer listed. */
  function applyHiveStatus(s) {
    $('title').textContent = 'hive ' + (s.hive.name || '');
    $('subtitle').textContent = 'pid ' + s.hive.pid + ' · ' + s.hive.listen + ' · v' + s.hive.version;
    const seen = new Set();
    for (const sb of s.bots) {
      const b = botRecord(sb.id);
      seen.add(sb.id);
      b.state = sb.state;
      b.pid = sb.pid;
      b.restarts = sb.restarts;
      b.uptime = sb.uptime_seconds || 0;
      b.uptimeAt = performance.now();
      b.reason = sb.reason;
      b.url = sb.url;
      b.proxyUrl = sb.proxy_url;
      if ('tasks_processed' in sb) applyWorkerStatus(b, sb);
    }
    for (const id of [...page.bots.keys()]) {
      if (!seen.has(id)) {
        const b = page.bots.get(id);
        if (b.row) b.row.remove();
        page.bots.delete(id);
      }
    }
    return s.bots.length > 0 && !('tasks_processed' in s.bots[0]);
  }

  /* The counters of each running bot from its own /status, when the
   * supervisor's /status does not carry them (a few at a time). */
  async function fetchBotDetails() {
    const ids = [...page.bots.values()].filter((b) => b.state === 'running').map((b) => b.id);
    const worker = async () => {
      for (let id = ids.shift(); id !== undefined; id = ids.shift()) {
        const r = await call(botBase(id) + 'status').catch(() => null);
        const b = page.bots.get(id);
        if (r && r.status === 200 && b) {
          applyWorkerStatus(b, r.body);
          renderBot(b);
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
  }

  /* GET status: the snapshot the events then keep current. False on failure. */
  async function loadStatus() {
    page.snapshot = true;
    const first = page.firstStatus;
    page.firstStatus = null;
    let r;
    try {
      r = first ? await answer(await first) : await call('status');
      performance.mark('hive:status-read'); /* for the bench's breakdown (E5) */
    } catch (e) {
      page.snapshot = false;
      return false;
    }
    page.snapshot = false;
    if (r.status !== 200 || !r.body) return false;
    if (r.body.hive) {
      page.mode = 'hive';
      const needDetails = applyHiveStatus(r.body);
      renderAll();
      performance.mark('hive:rows-in');
      if (needDetails) fetchBotDetails();
    } else {
      page.mode = 'bot';
      const b = botRecord(r.body.bot_id);
      $('title').textContent = r.body.bot_id;
      $('subtitle').textContent = 'pid ' + r.body.pid + ' · ' + r.body.mode + ' · v' + r.body.version;
      applyWorkerStatus(b, r.body);
      renderAll();
    }
    return true;
  }

  /* ---- events ---------------------------------------------------------------- */

  /* One event of the stream (SPEC §8). */
  function onEvent(e) {
    if (e.lastEventId) {
      page.cursor = e.lastEventId;
      sessionStorage.setItem(STORE + ':cursor', page.cursor);
    }
    let d;
    try { d = JSON.parse(e.data); } catch (err) { return; }
    const type = e.type === 'message' ? d.type : e.type;
    if (type === 'resync') return resync();
    if (!d || !d.bot_id) return;
    /* A replay that overlaps what was applied (a reconnect) is dropped by seq. */
    const stream = type === 'bot_state' ? 'hive' : d.bot_id;
    const seq = type === 'bot_state' ? (d.hive_seq !== undefined ? d.hive_seq : d.seq) : d.seq;
    if (typeof seq === 'number') {
      const last = page.lastSeq.get(stream);
      if (last !== undefined && seq <= last) return;
      page.lastSeq.set(stream, seq);
    }
    applyEvent(type, d);
    if (type !== 'task_output' && type !== 'task_output_dropped') addFeed(type, d);
  }

  /* What an event changes in its bot. */
  function applyEvent(type, d) {
    if (page.mode === 'bot' && !page.bots.has(d.bot_id)) return;
    const b = botRecord(d.bot_id);
    const counters = !page.snapshot;
    switch (type) {
      case 'bot_state':
        if (d.state === 'running' && b.state !== 'running') { b.uptime = 0; b.uptimeAt = performance.now(); }
        if (d.state !== 'running') b.uptimeAt = 0;
        b.state = d.state;
        b.pid = d.pid !== undefined ? d.pid : b.pid;
        b.reason = d.reason !== undefined ? d.reason : b.reason;
        if (d.restarts !== undefined) b.restarts = d.restarts;
        if (d.state !== 'running') b.current = null;
        break;
      case 'task_received':
        b.queued.set(d.task_id, d);
        if (counters) b.queue++;
        break;
      case 'task_started':
        if (b.queued.delete(d.task_id) || counters) b.queue = Math.max(0, b.queue - 1);
        b.current = { task_id: d.task_id, source: d.source, started_at: d.started_at };
        b.output = '';
        b.outputTask = d.task_id;
        break;
      case 'task_output':
        if (b.outputTask !== d.task_id) { b.output = ''; b.outputTask = d.task_id; }
        b.output = (b.output + (d.content || '')).slice(-OUTPUT_MAX);
        if (page.selected === b.id) scheduleOutput();
        return;
      case 'task_output_dropped': /* a gap the hive could not relay live: said where it was */
        if (!d.task_id) return;
        if (b.outputTask !== d.task_id) { b.output = ''; b.outputTask = d.task_id; }
        b.output = (b.output + (b.output && !b.output.endsWith('\n') ? '\n' : '') + '[' +
          d.dropped_bytes + ' bytes of output not relayed live; the response has them]\n').slice(-OUTPUT_MAX);
        if (page.selected === b.id) scheduleOutput();
        return;
      case 'task_completed': case 'task_failed': case 'task_cancelled':
        if (b.queued.delete(d.task_id)) b.queue = Math.max(0, b.queue - 1);
        if (b.current && b.current.task_id === d.task_id) b.current = null;
        if (counters) { b.done++; if (type !== 'task_completed') b.failed++; }
        if (page.selected === b.id) addTimelineRow(timelineFromEvent(d), true);
        break;
      case 'bot_paused': b.paused = true; b.pausedWhy = pausedWhy(d.reason, d.until); break;
      case 'bot_resumed': b.paused = false; b.pausedWhy = null; break;
      default: return;
    }
    renderBot(b);
  }

  /* A timeline entry (SPEC §8) made from a task's final event. */
  function timelineFromEvent(d) {
    return { task_id: d.task_id, source: d.source, timestamp: d.timestamp, success: d.success,
      duration_seconds: d.duration_seconds, error: d.error, response: d.output_excerpt };
  }

  async function resync() {
    addFeed('resync', { bot_id: '', timestamp: new Date().toISOString() });
    page.lastSeq.clear();
    for (const b of page.bots.values()) b.queued.clear();
    await loadStatus();
  }

  function closeStream() {
    if (page.es) page.es.close();
    page.es = null;
    clearTimeout(page.retryTimer);
  }

  /* Open the stream from the cursor. The browser reconnects by itself after
   * a dropped connection (with Last-Event-ID); an answer that is not a
   * stream (503 while the bot restarts, 401, the server gone) closes it, and
   * it is opened again here, after a growing pause. A stream resumed from a
   * cursor first replays what the page may have counted already: counters
   * then wait for the status read once the stream is open again, so a task
   * is never counted twice (only one that ends in the instant between the
   * stream opening and the status being read could be missed). */
  function openStream() {
    closeStream();
    const url = 'api/events' + (page.cursor ? '?since=' + encodeURIComponent(page.cursor) : '');
    const es = new EventSource(url);
    page.es = es;
    page.snapshot = page.needSnapshot = !!page.cursor;
    es.onopen = () => {
      page.retryMs = 500;
      setConn('live', 'events are live');
      if (page.needSnapshot) { page.needSnapshot = false; loadStatus(); }
    };
    es.onerror = () => {
      if (es.readyState === EventSource.CONNECTING) {
        page.snapshot = page.needSnapshot = true;
        return setConn('reconnecting', 'the stream dropped; resuming');
      }
      setConn('offline', 'no stream; retrying');
      es.close();
      page.retryTimer = setTimeout(reopen, page.retryMs);
      page.retryMs = Math.min(page.retryMs * 2, 10000);
    };
    for (const t of EVENT_TYPES) es.addEventListener(t, onEvent);
  }

  /* After a failed stream: a login, or the stream again. */
  async function reopen() {
    let r = null;
    try { r = await call('status'); } catch (e) { r = null; }
    if (r && r.status === 401) return;
    openStream();
  }

  function setConn(cls, title) {
    const c = $('conn');
    c.className = 'conn ' + cls;
    c.textContent = cls;
    c.title = title || '';
  }

  /* ---- the feed ---------------------------------------------------------------- */

  function feedText(type, d) {
    switch (type) {
      case 'bot_state': return d.state + (d.pid ? ' pid ' + d.pid : '') + (d.reason ? ' (' + d.reason + ')' : '');
      case 'task_received': return d.task_id + ' from ' + d.source;
      case 'task_started': return d.task_id;
      case 'task_completed': return d.task_id + ' in ' + Number(d.duration_seconds || 0).toFixed(2) + ' s';
      case 'task_failed': case 'task_cancelled': return d.task_id + (d.error ? ': ' + d.error : '');
      case 'resync': return 'missed events were dropped; reloaded the status';
      default: return d.task_id || '';
    }
  }

  function addFeed(type, d, restoring) {
    const item = { type, bot: d.bot_id, task: d.task_id || '', time: d.timestamp || '', text: feedText(type, d) };
    const li = el('li', type);
    li.dataset.type = type;
    li.dataset.bot = item.bot;
    li.dataset.task = item.task;
    li.append(el('span', 't', (item.time.match(/T(\d\d:\d\d:\d\d)/) || ['', ''])[1]),
      el('b', 'b', item.bot), ' ', el('span', 'k', type), ' ', el('span', '', item.text));
    li.feed = item;
    if (restoring) {
      $('events').append(li);
    } else {
      /* Many events a second become one change of the page per frame. */
      /* (A hidden tab runs no frames: only the newest FEED_MAX wait.) */
      feedPending.push(li);
      if (feedPending.length > FEED_MAX) feedPending.shift();
      if (!feedScheduled) feedScheduled = requestAnimationFrame(flushFeed);
    }
  }

  const feedPending = [];
  let feedScheduled = 0;

  function flushFeed() {
    feedScheduled = 0;
    const list = $('events');
    const frag = document.createDocumentFragment();
    for (const li of feedPending.splice(0).slice(-FEED_MAX).reverse()) frag.append(li);
    list.prepend(frag);
    while (list.childElementCount > FEED_MAX) list.lastElementChild.remove();
  }

  /* The feed outlives a reload (with the cursor, it resumes where it was). */
  function saveFeed() {
    flushFeed();
    const items = [...$('events').children].slice(0, 100).map((li) => li.feed).filter(Boolean);
    sessionStorage.setItem(STORE + ':feed', JSON.stringify(items));
  }

  function restoreFeed() {
    let items = [];
    try { items = JSON.parse(sessionStorage.getItem(STORE + ':feed') || '[]'); } catch (e) { items = []; }
    for (const it of items) {
      addFeed(it.type, { bot_id: it.bot, task_id: it.task, timestamp: it.time }, true);
      $('events').lastElementChild.lastElementChild.textContent = it.text;
      $('events').lastElementChild.feed = it;
    }
  }

  /* ---- rendering ------------------------------------------------------------------ */

  function fmtUptime(s) {
    if (s === null || s === undefined) return '–';
    s = Math.floor(s);
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' m ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' m';
  }

  const ROW_CELLS = ['id', 'state', 'pid', 'uptime', 'restarts', 'queue', 'current', 'done', 'failed', 'open'];

  /* One empty row, cloned for each bot (cheaper than building each). */
  let rowTemplate = null;
  function templateRow() {
    if (!rowTemplate) {
      rowTemplate = el('tr');
      for (const c of ROW_CELLS) rowTemplate.append(el('td', c));
      const a = el('a', '', 'open');
      a.title = 'the bot\'s own page, through the supervisor';
      rowTemplate.lastChild.append(a);
    }
    return rowTemplate.cloneNode(true);
  }

  function makeRow(b) {
    const tr = templateRow();
    tr.dataset.bot = b.id;
    tr.cells_ = {};
    for (let i = 0; i < ROW_CELLS.length; i++) tr.cells_[ROW_CELLS[i]] = tr.children[i];
    tr.cells_.id.textContent = b.id;
    tr.cells_.open.firstChild.href = botBase(b.id);
    b.row = tr;
    return tr;
  }

  /* A bot's row and, when it is the one shown, the bot view. */
  function renderBot(b) {
    if (page.mode === 'hive') {
      const tr = b.row || $('bot-rows').appendChild(makeRow(b));
      const c = tr.cells_;
      c.state.textContent = b.state + (b.paused ? ' (paused)' : '');
      c.state.className = 'state ' + b.state;
      c.state.title = b.pausedWhy || b.reason || '';
      c.pid.textContent = b.pid || '–';
      c.uptime.textContent = fmtUptime(uptimeNow(b));
      c.restarts.textContent = b.restarts;
      c.queue.textContent = b.queue;
      c.current.textContent = b.current ? b.current.task_id : '–';
      c.done.textContent = b.done;
      c.failed.textContent = b.failed;
    }
    if (page.selected === b.id) renderBotView(b);
  }

  function renderAll() {
    $('main').hidden = false;
    $('login').hidden = true;
    $('logout').hidden = !sessionStorage.getItem('hive:login');
    $('bots').hidden = page.mode !== 'hive';
    for (const e of document.querySelectorAll('.hive-only')) e.hidden = page.mode !== 'hive';
    const wanted = decodeURIComponent(location.hash.slice(1));
    /* New rows are filled off the document, then go in at once: one
     * insertion (and one layout) for a hive of hundreds of bots. */
    const fresh = document.createDocumentFragment();
    if (page.mode === 'hive') for (const b of page.bots.values()) if (!b.row) fresh.append(makeRow(b));
    for (const b of page.bots.values()) renderBot(b);
    $('bot-rows').append(fresh);
    if (page.mode === 'hive') {
      let running = 0;
      for (const b of page.bots.values()) running += b.state === 'running';
      $('bots-summary').textContent = running + ' of ' + page.bots.size + ' running';
      if (!page.selected && page.bots.has(wanted)) select(wanted);
    } else if (!page.selected) {
      select(page.bots.keys().next().value); /* the bot page: its one bot */
    }
    if (page.selected && page.bots.has(page.selected)) select(page.selected, true);
    else $('bot').hidden = true;
  }

  function renderBotView(b) {
    const state = page.mode === 'bot' ? workerState(b) : b.state + (b.paused ? ', paused' : '');
    $('bot-state').textContent = state;
    $('bot-state').className = 'state ' + (page.mode === 'bot' ? workerState(b) : b.state);
    const facts = ['pid ' + (b.pid || '–'), 'up ' + fmtUptime(uptimeNow(b)), 'queue ' + b.queue,
      'done ' + b.done, 'failed ' + b.failed];
    if (page.mode === 'hive') facts.splice(2, 0, 'restarts ' + b.restarts);
    if (b.reason) facts.push(b.reason);
    if (b.paused && b.pausedWhy) facts.push('paused: ' + b.pausedWhy);
    $('bot-facts').textContent = facts.join(' · ');
    $('current').textContent = b.current ? b.current.task_id + ' (' + b.current.source + ')' : 'none';
    $('cancel-current').hidden = !b.current;
    renderOutput(b);
    const ul = $('queued');
    ul.replaceChildren();
    for (const t of b.queued.values()) {
      const li = el('li', '', t.task_id + ' (' + t.source + ') ');
      li.dataset.task = t.task_id;
      const btn = el('button', '', 'Cancel');
      btn.type = 'button';
      btn.addEventListener('click', () => cancel(b.id, t.task_id));
      li.append(btn);
      ul.append(li);
    }
  }

  /* The selected bot's output, redrawn at most once a frame: a fast stream
   * would otherwise force a layout (the scroll position) per chunk. */
  let outputScheduled = 0;
  function scheduleOutput() {
    if (!outputScheduled) {
      outputScheduled = requestAnimationFrame(() => {
        outputScheduled = 0;
        const b = page.bots.get(page.selected);
        if (b) renderOutput(b);
      });
    }
  }

  function renderOutput(b) {
    const pre = $('output');
    const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = b.output;
    pre.dataset.task = b.outputTask || '';
    if (stick) pre.scrollTop = pre.scrollHeight;
  }

  /* Show bot ID in the bot view (KEEP: a re-render, not a new choice). */
  function select(id, keep) {
    const b = page.bots.get(id);
    if (!b) return;
    const changed = page.selected !== id;
    page.selected = id;
    $('bot').hidden = false;
    $('bot-title').textContent = id;
    const link = $('bot-link');
    link.hidden = page.mode !== 'hive';
    link.href = botBase(id);
    if (page.mode === 'hive') {
      if (location.hash.slice(1) !== encodeURIComponent(id)) history.replaceState(null, '', '#' + encodeURIComponent(id));
      for (const tr of $('bot-rows').children) tr.classList.toggle('selected', tr.dataset.bot === id);
    }
    renderBotView(b);
    if (changed || !keep) loadTimeline(b);
  }

  /* ---- the timeline ------------------------------------------------------------------ */

  async function loadTimeline(b) {
    const url = page.mode === 'hive'
      ? 'api/timeline?bot=' + encodeURIComponent(b.id) + '&limit=' + TIMELINE_LIMIT
      : 'api/timeline?limit=' + TIMELINE_LIMIT;
    let r;
    try { r = await call(url); } catch (e) { return; }
    if (page.selected !== b.id) return;
    $('timeline-rows').replaceChildren();
    if (r.status !== 200 || !r.body || !Array.isArray(r.body.entries)) return;
    for (const entry of r.body.entries) addTimelineRow(entry, false);
  }

  function addTimelineRow(t, atTop) {
    const body = $('timeline-rows');
    if ([...body.children].some((tr) => tr.dataset.task === t.task_id)) return;
    const tr = el('tr');
    tr.dataset.task = t.task_id;
    const text = t.success ? (t.response || '') : (t.error || '');
    tr.append(el('td', '', (t.timestamp || '').replace('T', ' ').replace(/\.\d+/, '')),
      el('td', '', t.task_id), el('td', '', t.source),
      el('td', t.success ? 'state idle' : 'state fatal', t.success ? 'ok' : 'failed'),
      el('td', '', t.duration_seconds !== undefined && t.duration_seconds !== null ? Number(t.duration_seconds).toFixed(2) : ''),
      el('td', 'wrap', text.length > 300 ? text.slice(0, 300) + '…' : text));
    if (atTop) body.prepend(tr); else body.append(tr);
    while (body.childElementCount > TIMELINE_LIMIT) body.lastElementChild.remove();
  }

  /* ---- controls ------------------------------------------------------------------------ */

  function say(text, bad) {
    const m = $('message');
    m.textContent = text;
    m.className = bad ? 'error' : '';
  }

  /* Say how a control request went: its detail when it failed. */
  function report(what, r) {
    if (r.status >= 200 && r.status < 300) say(what + ': ' + (r.body && r.body.task_id ? r.body.task_id + ' ' : '') + (r.body && r.body.status ? r.body.status : 'ok'));
    else say(what + ' failed (' + r.status + '): ' + (r.body && r.body.detail ? r.body.detail : ''), true);
  }

  async function control(action) {
    const id = page.selected;
    if (!id) return;
    const url = ['restart', 'stop', 'start'].includes(action)
      ? 'api/bots/' + encodeURIComponent(id) + '/' + action
      : botBase(id) + 'api/' + action;
    try { report(action, await call(url, 'POST', {})); } catch (e) { say(action + ' failed: ' + e.message, true); }
  }

  async function cancel(id, taskId) {
    const url = botBase(id) + 'api/task/' + encodeURIComponent(taskId) + '/cancel';
    try { report('cancel ' + taskId, await call(url, 'POST', {})); } catch (e) { say('cancel failed: ' + e.message, true); }
  }

  async function send(ev) {
    ev.preventDefault();
    const id = page.selected;
    const text = $('command').value;
    if (!id || !text.trim()) return;
    try {
      const r = await call(botBase(id) + 'api/task', 'POST', { command: text, from: 'dashboard' });
      report('task', r);
      if (r.status === 202) $('command').value = '';
    } catch (e) { say('sending failed: ' + e.message, true); }
  }

  /* ---- start ----------------------------------------------------------------------------- */

  async function start() {
    if (!(await loadStatus())) {
      if ($('login').hidden) {
        setConn('offline', 'the server did not answer; retrying');
        page.retryTimer = setTimeout(start, page.retryMs);
        page.retryMs = Math.min(page.retryMs * 2, 10000);
      }
      return;
    }
    openStream();
  }

  /* One listener for every row: a click selects the bot (the "open" link
   * keeps its own job). */
  $('bot-rows').addEventListener('click', (ev) => {
    const tr = ev.target.closest('tr');
    if (tr && !ev.target.closest('a')) select(tr.dataset.bot);
  });
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  $('send').addEventListener('submit', send);
  $('cancel-current').addEventListener('click', () => {
    const b = page.bots.get(page.selected);
    if (b && b.current) cancel(b.id, b.current.task_id);
  });
  for (const btn of document.querySelectorAll('[data-action]')) {
    btn.addEventListener('click', () => control(btn.dataset.action));
  }
  window.addEventListener('pagehide', saveFeed);
  /* Uptimes advance on screen without asking the server. */
  setInterval(() => { for (const b of page.bots.values()) if (b.uptimeAt) renderBot(b); }, 1000);
  restoreFeed();
  start();
})();
