// hive's pages (SPEC §10) in Debian's headless Chromium, driven by
// playwright-core: `node pages.mjs SCENARIO`. tests/e2e/test_pages.py starts
// the real `hive up` (or a standalone hive-worker) and runs one scenario per
// test; it passes the hive's URLs in HIVE_PAGES (JSON). Tasks are sent with
// curl, effects are checked through the API, and whatever the page did is
// recorded: every request URL, every console error. Measurements are printed
// as `MEASURE name value`, not asserted. A scenario that needs the test to act
// outside (restart the supervisor) prints `ASK what` and reads one line back.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(process.env.HIVE_PAGES || '{}');
const TIMEOUT = 20000;
const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function log(...a) { console.log(...a); }

// Ask the test driving us to do something; resolves with its one-line answer.
async function ask(what) {
  log('ASK ' + what);
  const r = await stdinLines.next();
  assert.equal(r.value, 'ok', 'the test could not ' + what);
}

// curl, as users do; returns {status, body}. The token goes in a header.
function curl(url, method = 'GET', body) {
  const args = ['-s', '-o', '-', '-w', '\n%{http_code}', '-X', method, url];
  if (cfg.token) args.push('-H', 'Authorization: Bearer ' + cfg.token);
  if (body !== undefined) args.push('-H', 'Content-Type: application/json', '--data-binary', JSON.stringify(body));
  const out = execFileSync('curl', args, { encoding: 'utf8' });
  const nl = out.lastIndexOf('\n');
  const text = out.slice(0, nl);
  let json = null;
  try { json = JSON.parse(text); } catch (e) { json = null; }
  return { status: Number(out.slice(nl + 1)), body: json, text };
}

async function waitFor(what, fn, timeout = TIMEOUT) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what + ' (last: ' + JSON.stringify(last) + ')');
    await new Promise((r) => setTimeout(r, 100));
  }
}

function hiveStatus() { return curl(cfg.url + '/status').body; }
function hiveBot(id) { return hiveStatus().bots.find((b) => b.id === id); }
function task(bot, id) { return curl(cfg.url + '/bots/' + bot + '/api/task/' + id).body; }

// One browser page that records every request URL and console error.
async function openBrowser() {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const rec = { urls: [], errors: [], navigations: 0 };
  context.on('request', (r) => rec.urls.push(r.url()));
  context.on('page', (p) => watch(p, rec));
  const page = await context.newPage();
  return { browser, context, page, rec };
}

function watch(page, rec) {
  page.on('console', (m) => { if (m.type() === 'error') rec.errors.push(m.text()); });
  page.on('pageerror', (e) => rec.errors.push('pageerror: ' + e.message));
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) rec.navigations++; });
}

function botState(page, id) {
  return page.locator(`#bot-rows tr[data-bot="${id}"] td.state`).textContent();
}

// Record every state a row shows (a state may last less than a poll).
async function recordStates(page) {
  await page.evaluate(() => {
    window.__states = {};
    const rows = document.getElementById('bot-rows');
    const note = () => {
      for (const tr of rows.children) {
        const s = tr.querySelector('td.state').textContent.split(' ')[0];
        const h = (window.__states[tr.dataset.bot] = window.__states[tr.dataset.bot] || []);
        if (h[h.length - 1] !== s) h.push(s);
      }
    };
    note();
    new MutationObserver(note).observe(rows, { childList: true, subtree: true, characterData: true });
  });
}

// The states row ID showed since the mark M (an index into its history).
async function statesSince(page, id, m) {
  return (await page.evaluate((b) => window.__states[b] || [], id)).slice(m);
}

async function waitRowState(page, id, states) {
  return waitFor(`${id} in ${states}`, async () => {
    const s = (await botState(page, id).catch(() => '')).split(' ')[0];
    return states.includes(s) ? s : null;
  });
}

// The feed shows TYPE of TASK; returns when it does.
async function waitFeed(page, type, taskId) {
  await page.locator(`#events li[data-type="${type}"][data-task="${taskId}"]`).first()
    .waitFor({ timeout: TIMEOUT });
}

function assertClean(rec, label) {
  // The events stream of a restarting server is refused while it is down:
  // Chromium reports that as a console error of the network, not of the page.
  const errors = rec.errors.filter((e) => !(rec.allowNetErrors && /ERR_CONNECTION_REFUSED|503|502/.test(e)));
  assert.deepEqual(errors, [], label + ': console errors');
}

// ---- scenarios --------------------------------------------------------------

const scenarios = {};

// The dashboard: bots, feed, streamed output, a worker's SIGKILL, every control.
scenarios.dashboard = async () => {
  const { browser, page, rec } = await openBrowser();
  const [A, CLI] = cfg.bots.map((b) => b.id);
  await page.goto(cfg.url + '/');
  for (const b of cfg.bots) await waitRowState(page, b.id, ['running']);
  await page.evaluate(() => { window.__sameDocument = true; });

  // A task sent with curl appears in the feed; the delay is measured in the page.
  await page.evaluate(() => {
    window.__seen = {};
    new MutationObserver((ms) => {
      for (const m of ms) for (const n of m.addedNodes) {
        if (n.dataset && n.dataset.task && !window.__seen[n.dataset.type + n.dataset.task]) window.__seen[n.dataset.type + n.dataset.task] = Date.now();
      }
    }).observe(document.getElementById('events'), { childList: true });
  });
  const sent = Date.now();
  const r = curl(cfg.url + '/bots/' + A + '/api/task', 'POST', { command: 'hello from curl', task_id: 'PAGE-FEED-1' });
  assert.equal(r.status, 202, r.text);
  await waitFeed(page, 'task_received', 'PAGE-FEED-1');
  await waitFeed(page, 'task_completed', 'PAGE-FEED-1');
  const seenAt = await page.evaluate(() => window.__seen['task_receivedPAGE-FEED-1']);
  log('MEASURE event_to_page_ms ' + (seenAt - sent) + ' (curl sent → task_received shown, includes the durable write)');

  // Its streamed output in the bot view, while it runs; the timeline after.
  await page.locator(`#bot-rows tr[data-bot="${CLI}"]`).click();
  assert.equal(await page.locator('#bot-title').textContent(), CLI);
  const r2 = curl(cfg.url + '/bots/' + CLI + '/api/task', 'POST', { command: 'stream please', task_id: 'PAGE-STREAM-1' });
  assert.equal(r2.status, 202, r2.text);
  await page.locator('#output', { hasText: 'first line of PAGE-STREAM-1' }).waitFor({ timeout: TIMEOUT });
  assert.equal((await task(CLI, 'PAGE-STREAM-1')).state, 'running', 'output shown while the task runs');
  await page.locator('#output', { hasText: 'last line' }).waitFor({ timeout: TIMEOUT });
  await page.locator('#timeline-rows tr[data-task="PAGE-STREAM-1"]').waitFor({ timeout: TIMEOUT });

  // SIGKILL of a worker: backoff or starting, then running, without a reload.
  await recordStates(page);
  const mark = (await statesSince(page, A, 0)).length;
  const pid = hiveBot(A).pid;
  process.kill(pid, 'SIGKILL');
  await waitFor('A restarted', () => { const b = hiveBot(A); return b.state === 'running' && b.pid !== pid; });
  await waitFor('the row went backoff/starting, then running', async () => {
    const h = await statesSince(page, A, mark);
    const i = h.findIndex((s) => s === 'backoff' || s === 'starting');
    return i >= 0 && h.slice(i + 1).includes('running') && h[h.length - 1] === 'running';
  });
  assert.ok(await page.evaluate(() => window.__sameDocument === true), 'no reload');
  log('SIGKILL: the row went ' + (await statesSince(page, A, mark)).join(' → '));
  await waitFor('A counted a restart', async () => Number(await page.locator(`#bot-rows tr[data-bot="${A}"] td.restarts`).textContent()) >= 1);

  // Controls, each checked through the API.
  await page.locator(`#bot-rows tr[data-bot="${CLI}"]`).click();
  await page.click('button[data-action="pause"]');
  await waitFor('paused', () => curl(cfg.url + '/bots/' + CLI + '/status').body.status === 'paused');
  // A task queued behind the pause shows up, and its Cancel button cancels it.
  assert.equal(curl(cfg.url + '/bots/' + CLI + '/api/task', 'POST', { command: 'cancel me', task_id: 'PAGE-CANCEL-1' }).status, 202);
  await page.locator('#queued li[data-task="PAGE-CANCEL-1"] button').click();
  await waitFor('cancelled', () => ['cancelled', 'failed'].includes(task(CLI, 'PAGE-CANCEL-1').state) && task(CLI, 'PAGE-CANCEL-1'));
  assert.equal(task(CLI, 'PAGE-CANCEL-1').state, 'cancelled');
  await waitFeed(page, 'task_cancelled', 'PAGE-CANCEL-1');
  await page.click('button[data-action="resume"]');
  await waitFor('resumed', () => curl(cfg.url + '/bots/' + CLI + '/status').body.status !== 'paused');
  // A running task: Interrupt.
  assert.equal(curl(cfg.url + '/bots/' + CLI + '/api/task', 'POST', { command: 'slow', task_id: 'PAGE-INT-1' }).status, 202);
  await page.locator('#current', { hasText: 'PAGE-INT-1' }).waitFor({ timeout: TIMEOUT });
  await page.click('button[data-action="interrupt"]');
  await waitFor('interrupted', () => task(CLI, 'PAGE-INT-1').state === 'failed');
  assert.match(task(CLI, 'PAGE-INT-1').result.error, /interrupted/);
  // A running task: its Cancel button.
  assert.equal(curl(cfg.url + '/bots/' + CLI + '/api/task', 'POST', { command: 'slow', task_id: 'PAGE-CANCEL-2' }).status, 202);
  await page.locator('#current', { hasText: 'PAGE-CANCEL-2' }).waitFor({ timeout: TIMEOUT });
  await page.click('#cancel-current');
  await waitFor('running task cancelled', () => task(CLI, 'PAGE-CANCEL-2').state === 'cancelled');
  // Sending a task from the page.
  await page.fill('#command', 'sent from the page');
  await page.click('#send button[type="submit"]');
  await page.locator('#message', { hasText: 'queued' }).waitFor({ timeout: TIMEOUT });
  const sentId = (await page.locator('#message').textContent()).match(/task: (\S+)/)[1];
  await waitFor('page task done', () => ['done', 'failed'].includes(task(CLI, sentId).state));
  // Restart, stop, start.
  await page.locator(`#bot-rows tr[data-bot="${A}"]`).click();
  const before = hiveBot(A);
  await page.click('button[data-action="restart"]');
  await waitFor('restarted', () => { const b = hiveBot(A); return b.state === 'running' && b.pid !== before.pid; });
  await waitRowState(page, A, ['running']);
  await page.click('button[data-action="stop"]');
  await waitFor('stopped', () => hiveBot(A).state === 'stopped');
  await waitRowState(page, A, ['stopped']);
  await page.click('button[data-action="start"]');
  await waitFor('started', () => hiveBot(A).state === 'running');
  await waitRowState(page, A, ['running']);

  // The screenshot for CI's artefacts and the README.
  await page.locator(`#bot-rows tr[data-bot="${CLI}"]`).click();
  mkdirSync(dirname(cfg.screenshot), { recursive: true });
  await page.screenshot({ path: cfg.screenshot, fullPage: true });

  // A supervisor restart: the page resumes its cursor, no reload.
  rec.allowNetErrors = true;
  await ask('restart-supervisor');
  await page.locator('#conn.live').waitFor({ timeout: TIMEOUT });
  const r3 = curl(cfg.url + '/bots/' + A + '/api/task', 'POST', { command: 'after restart', task_id: 'PAGE-AFTER-1' });
  assert.equal(r3.status, 202, r3.text);
  await waitFeed(page, 'task_completed', 'PAGE-AFTER-1');
  assert.ok(await page.evaluate(() => window.__sameDocument === true), 'no reload across the restart');
  // A reload keeps the feed and the cursor. The feed is shown from
  // sessionStorage before the new page opens its stream: wait for the
  // stream's request (checked at once, it was sometimes not made yet).
  const streamsBefore = rec.urls.filter((u) => u.includes('/api/events')).length;
  await page.reload();
  await page.locator('#events li[data-task="PAGE-AFTER-1"]').first().waitFor({ timeout: TIMEOUT });
  await waitFor('the reloaded dashboard resuming its stream from the cursor (?since=)',
    () => rec.urls.filter((u) => u.includes('/api/events')).slice(streamsBefore)
      .some((u) => u.includes('since=')));

  assertClean(rec, 'dashboard');
  assert.ok(rec.urls.every((u) => u.startsWith(cfg.url + '/')), 'no request elsewhere: ' + rec.urls.filter((u) => !u.startsWith(cfg.url)));
  await browser.close();
};

// Every URL `hive up` printed opens something useful; the bot page works
// directly and under /bots/<id>/.
scenarios.urls = async () => {
  const { browser, page, rec } = await openBrowser();
  // hive up prints its own URL and two per bot; a standalone worker one.
  const standalone = cfg.bots.every((b) => !b.proxy_url);
  const want = standalone ? cfg.bots.length : 1 + 2 * cfg.bots.length;
  assert.ok(cfg.printed.length >= want, 'printed URLs: ' + cfg.printed);
  for (const url of cfg.printed) {
    await page.goto(url);
    const bot = cfg.bots.find((b) => url.includes(b.id) || url.replace(/\/$/, '') === b.url.replace(/\/$/, ''));
    if (!bot) {
      await page.locator('#bot-rows tr').first().waitFor({ timeout: TIMEOUT });
      assert.equal(await page.locator('#bot-rows tr').count(), cfg.bots.length, url);
      continue;
    }
    await page.locator('#bot-title', { hasText: bot.id }).waitFor({ timeout: TIMEOUT });
    await page.locator('#conn.live').waitFor({ timeout: TIMEOUT });
    assert.equal(await page.locator('#bots').isHidden(), true, url + ': no bot table on a bot page');
    // The page's own form sends a task; the feed and the output show it.
    await page.fill('#command', 'from ' + url);
    await page.click('#send button[type="submit"]');
    await page.locator('#message', { hasText: 'queued' }).waitFor({ timeout: TIMEOUT });
    const id = (await page.locator('#message').textContent()).match(/task: (\S+)/)[1];
    await waitFeed(page, 'task_completed', id);
    await page.locator('#timeline-rows tr[data-task="' + id + '"]').waitFor({ timeout: TIMEOUT });
    await page.click('button[data-action="pause"]');
    await waitFor('paused', () => curl(bot.url + '/status').body.status === 'paused');
    await page.locator('#bot-state', { hasText: 'paused' }).waitFor({ timeout: TIMEOUT });
    await page.click('button[data-action="resume"]');
    await waitFor('resumed', () => curl(bot.url + '/status').body.status !== 'paused');
    assert.equal(await page.locator('.hive-only').isHidden(), true, 'no restart/stop/start on a bot page');
  }
  assertClean(rec, 'urls');
  await browser.close();
};

// A hive with a token: asked once, never in a URL, the cookie is HttpOnly.
scenarios.token = async () => {
  const { browser, context, page, rec } = await openBrowser();
  await page.goto(cfg.url + '/');
  await page.locator('#login-form').waitFor({ timeout: TIMEOUT });
  await page.fill('#token', 'not-the-token');
  await page.click('#login-form button[type="submit"]');
  await page.locator('#login-error', { hasText: 'Wrong' }).waitFor({ timeout: TIMEOUT });
  await page.fill('#token', cfg.token);
  await page.click('#login-form button[type="submit"]');
  for (const b of cfg.bots) await waitRowState(page, b.id, ['running']);
  await page.locator('#conn.live').waitFor({ timeout: TIMEOUT });
  const cookies = await context.cookies();
  const c = cookies.find((x) => x.name === 'hive_token');
  assert.ok(c && c.httpOnly && c.sameSite === 'Strict' && c.path === '/', JSON.stringify(cookies));
  assert.equal(await page.evaluate(() => document.cookie), '', 'the token is not readable by script');
  const A = cfg.bots[0].id;
  assert.equal(curl(cfg.url + '/bots/' + A + '/api/task', 'POST', { command: 'x', task_id: 'PAGE-TOKEN-1' }).status, 202);
  await waitFeed(page, 'task_completed', 'PAGE-TOKEN-1');
  // The bot pages, through the proxy and directly: no second login.
  for (const url of [cfg.url + '/bots/' + A + '/', cfg.bots[0].url + '/']) {
    await page.goto(url);
    await page.locator('#bot-title', { hasText: A }).waitFor({ timeout: TIMEOUT });
    await page.locator('#conn.live').waitFor({ timeout: TIMEOUT });
    assert.equal(await page.locator('#login').isHidden(), true, url + ' asked again');
  }
  // Log out: the API refuses the browser again.
  await page.goto(cfg.url + '/');
  await page.locator('#conn.live').waitFor({ timeout: TIMEOUT });
  await page.click('#logout');
  await page.locator('#login-form').waitFor({ timeout: TIMEOUT });
  const after = await page.evaluate(async () => (await fetch('status')).status);
  assert.equal(after, 401);
  for (const u of rec.urls) assert.ok(!u.includes(cfg.token), 'token in a URL: ' + u);
  log('requests: ' + rec.urls.length + ', none with the token');
  // Before the login the API refused the page: those 401s are the only console errors.
  rec.errors = rec.errors.filter((e) => !/401/.test(e));
  assertClean(rec, 'token');
  await browser.close();
};

// Unit level, against tests/browser/fake_hive.py (an event stream as SPEC §8
// words it, made up from the controls): rows, feed, output as text, the
// controls' requests, a dropped stream resumed with Last-Event-ID, a resync.
scenarios.unit = async () => {
  const { browser, page, rec } = await openBrowser();
  const fake = (path, method = 'GET') => curl(cfg.url + path, method, method === 'POST' ? {} : undefined).body;
  await page.goto(cfg.url + '/#BOT-A');
  await waitRowState(page, 'BOT-A', ['running']);
  await waitRowState(page, 'BOT-B', ['running']);
  await page.locator('#conn.live').waitFor({ timeout: TIMEOUT });
  await page.locator('#bot-title', { hasText: 'BOT-A' }).waitFor({ timeout: TIMEOUT });
  await page.locator('#timeline-rows tr[data-task="OLD-1"]').waitFor({ timeout: TIMEOUT });
  assert.equal(await page.locator('#bot-rows tr[data-bot="BOT-A"] td.done').textContent(), '3');
  await page.fill('#command', 'hello');
  await page.click('#send button[type="submit"]');
  const id = (await page.locator('#message', { hasText: 'queued' }).textContent()).match(/task: (\S+)/)[1];
  await waitFeed(page, 'task_completed', id);
  assert.equal(await page.locator('#output').textContent(),
    'first <b>line</b>\n[1234 bytes of output not relayed live; the response has them]\nsecond line\n',
    'output is text, and a gap the hive could not relay is said where it was');
  assert.equal(await page.locator('#output b').count(), 0, 'never parsed as HTML');
  assert.equal(await page.locator('#bot-rows tr[data-bot="BOT-A"] td.done').textContent(), '4');
  await page.locator('#timeline-rows tr[data-task="' + id + '"]').waitFor({ timeout: TIMEOUT });
  if (cfg.screenshot) {
    mkdirSync(dirname(cfg.screenshot), { recursive: true });
    await page.screenshot({ path: cfg.screenshot, fullPage: true });
  }
  await page.click('button[data-action="pause"]');
  await page.locator('#bot-rows tr[data-bot="BOT-A"] td.state', { hasText: 'paused' }).waitFor({ timeout: TIMEOUT });
  // Why the bot paused itself (a budget, a usage limit) is shown, not only that it is paused.
  await page.locator('#bot-facts', { hasText: 'paused: budget: $1.00 of $1.00 used today' }).waitFor({ timeout: TIMEOUT });
  await page.click('button[data-action="restart"]');
  await waitRowState(page, 'BOT-A', ['backoff', 'starting']);
  await waitRowState(page, 'BOT-A', ['running']);
  assert.equal(await page.locator('#bot-rows tr[data-bot="BOT-A"] td.restarts').textContent(), '1');
  // A dropped stream: the browser comes back with the last cursor.
  const before = fake('/_fake/log').filter((r) => r.path.startsWith('/api/events')).length;
  fake('/_fake/drop', 'POST');
  await waitFor('the stream reopened', () => fake('/_fake/log').filter((r) => r.path.startsWith('/api/events')).length > before);
  const again = fake('/_fake/log').filter((r) => r.path.startsWith('/api/events')).pop();
  assert.ok(again.last_event_id || again.path.includes('since='), JSON.stringify(again));
  await page.locator('#conn.live').waitFor({ timeout: TIMEOUT });
  curl(cfg.url + '/bots/BOT-B/api/task', 'POST', { command: 'x', task_id: 'AFTER-DROP' });
  await waitFeed(page, 'task_completed', 'AFTER-DROP');
  // A resync: the status is read again.
  const statuses = fake('/_fake/log').filter((r) => r.path === '/status').length;
  fake('/_fake/resync', 'POST');
  await page.locator('#events li[data-type="resync"]').waitFor({ timeout: TIMEOUT });
  await waitFor('status read again', () => fake('/_fake/log').filter((r) => r.path === '/status').length > statuses);
  // Every POST of the page is JSON (no form-post CSRF, SPEC §7).
  for (const r of fake('/_fake/log')) if (r.method === 'POST' && !r.path.startsWith('/_fake')) assert.equal(r.type, 'application/json', r.path);
  // A reload keeps the feed and resumes from the cursor. The feed comes back
  // from sessionStorage before the new page has opened its stream, so the
  // stream's request is waited for (the requests made since the reload).
  const streams = () => fake('/_fake/log').filter((r) => r.path.startsWith('/api/events'));
  const streamsBefore = streams().length;
  await page.reload();
  await page.locator('#events li[data-task="AFTER-DROP"]').first().waitFor({ timeout: TIMEOUT });
  await waitFor('the reloaded page resuming its stream from the cursor (?since=)',
    () => streams().slice(streamsBefore).some((r) => /since=c\d+/.test(r.path)));
  // The bot page (as under /bots/<id>/): the bot alone, its own URLs.
  await page.goto(cfg.url + '/bots/BOT-B/');
  await page.locator('#bot-title', { hasText: 'BOT-B' }).waitFor({ timeout: TIMEOUT });
  await page.locator('#conn.live').waitFor({ timeout: TIMEOUT });
  assert.equal(await page.locator('#bots').isHidden(), true);
  assert.equal(await page.locator('.hive-only').isHidden(), true);
  assert.equal(await page.locator('#bot-state').textContent(), 'idle');
  await page.fill('#command', 'on the bot page');
  await page.click('#send button[type="submit"]');
  const bid = (await page.locator('#message', { hasText: 'queued' }).textContent()).match(/task: (\S+)/)[1];
  await waitFeed(page, 'task_completed', bid);
  await page.locator('#output', { hasText: 'second line' }).waitFor({ timeout: TIMEOUT });
  await page.click('button[data-action="pause"]');
  await page.locator('#bot-state', { hasText: 'paused' }).waitFor({ timeout: TIMEOUT });
  const mine = fake('/_fake/log').filter((r) => r.path.startsWith('/bots/BOT-B/'));
  for (const p of ['/bots/BOT-B/status', '/bots/BOT-B/api/events', '/bots/BOT-B/api/task', '/bots/BOT-B/api/pause', '/bots/BOT-B/api/timeline']) {
    assert.ok(mine.some((r) => r.path.startsWith(p)), 'the bot page asked for ' + p);
  }
  assertClean(rec, 'unit');
  await browser.close();
};

// Measure: first render of a hive's bots (report, not assert).
scenarios.render = async () => {
  const { browser, page, rec } = await openBrowser();
  await page.addInitScript((n) => {
    document.addEventListener('DOMContentLoaded', () => {
      const rows = document.getElementById('bot-rows');
      new MutationObserver(() => {
        if (!window.__rendered && rows.children.length >= n) window.__rendered = performance.now();
      }).observe(rows, { childList: true });
    });
  }, cfg.bots.length);
  await page.goto(cfg.url + '/');
  await page.waitForFunction(() => window.__rendered, null, { timeout: TIMEOUT });
  await page.waitForFunction(() => new Promise((r) => requestAnimationFrame(() => r(true))));
  const ms = await page.evaluate(() => window.__rendered);
  const nav = await page.evaluate(() => performance.getEntriesByType('navigation')[0].toJSON());
  log('MEASURE first_render_ms ' + ms.toFixed(1) + ' bots=' + cfg.bots.length + ' (navigation start → every row in the table)');
  log('MEASURE first_render_from_request_ms ' + (ms - nav.requestStart).toFixed(1) +
    ' (the page requested → every row; the browser\'s own start-up left out)');
  log('navigation timing: request ' + nav.requestStart.toFixed(1) + ', response end ' + nav.responseEnd.toFixed(1) +
    ', DOM interactive ' + nav.domInteractive.toFixed(1) + ' ms');
  assertClean(rec, 'render');
  await browser.close();
};

// The event stream read without EventSource: the page's own fetch() and a
// stream reader, parsing the SSE text by hand (as a client that needs
// headers or POST would); a task sent from outside shows up in order.
scenarios.fetchstream = async () => {
  const { browser, page, rec } = await openBrowser();
  await page.goto(cfg.url + '/');
  const head = await page.evaluate(async () => {
    const r = await fetch('api/events?since=0', { credentials: 'same-origin' });
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    window.__sse = [];
    (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        for (let k = buf.indexOf('\n\n'); k >= 0; k = buf.indexOf('\n\n')) {
          const block = buf.slice(0, k);
          buf = buf.slice(k + 2);
          let id = null, type = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const c = line.indexOf(':');
            const f = c < 0 ? line : line.slice(0, c);
            let v = c < 0 ? '' : line.slice(c + 1);
            if (v.startsWith(' ')) v = v.slice(1);
            if (f === 'id') id = v; else if (f === 'event') type = v; else if (f === 'data') data.push(v);
          }
          if (data.length) window.__sse.push({ id, type, data: JSON.parse(data.join('\n')) });
        }
      }
    })();
    return r.status + ' ' + r.headers.get('content-type');
  });
  assert.equal(head, '200 text/event-stream');
  const bot = cfg.bots[0].id;
  const r = curl(cfg.url + '/bots/' + bot + '/api/task', 'POST', { command: 'read me by fetch', task_id: 'FETCH-1' });
  assert.equal(r.status, 202, r.text);
  await page.waitForFunction(() => window.__sse.some((e) => e.type === 'task_completed' && e.data.task_id === 'FETCH-1'),
    null, { timeout: TIMEOUT });
  const events = await page.evaluate(() => window.__sse);
  const mine = events.filter((e) => e.data.task_id === 'FETCH-1');
  const stored = mine.filter((e) => e.type !== 'task_output'); /* output: live only, no id */
  assert.deepEqual(stored.map((e) => e.type), ['task_received', 'task_started', 'task_completed']);
  assert.ok(mine.findIndex((e) => e.type === 'task_output') > 1, 'output after started');
  for (const e of mine) {
    assert.equal(e.data.type, e.type);
    assert.equal(e.data.bot_id, bot);
    if (e.type !== 'task_output') assert.equal(String(e.data.hive_seq), e.id, 'the id is the hive cursor');
    else assert.equal(e.id, null);
  }
  const ids = events.filter((e) => e.id !== null).map((e) => Number(e.id));
  assert.deepEqual(ids, ids.map((_, i) => ids[0] + i), 'no gap, no repeat');
  log('fetch+stream: ' + events.length + ' events, ids ' + ids[0] + '..' + ids[ids.length - 1]);
  assertClean(rec, 'fetchstream');
  await browser.close();
};

// Measure for scripts/bench (bench/events.py, row E5): the first render of
// every bot, then cfg.events tasks one at a time: the task_received event's own
// timestamp → its feed line inserted (in the frame then painted), and the POST
// sent → the same. Reports, never asserts a speed; the page must stay clean.
scenarios.bench = async () => {
  const { browser, page, rec } = await openBrowser();
  await page.addInitScript((n) => {
    window.__seen = {};
    document.addEventListener('DOMContentLoaded', () => {
      const rows = document.getElementById('bot-rows');
      new MutationObserver(() => {
        if (!window.__rendered && rows.children.length >= n) window.__rendered = performance.now();
      }).observe(rows, { childList: true });
      new MutationObserver((ms) => {
        const now = Date.now();
        for (const m of ms) for (const li of m.addedNodes) {
          if (li.dataset && li.dataset.type === 'task_received' && !window.__seen[li.dataset.task]) {
            window.__seen[li.dataset.task] = { shown: now, at: Date.parse(li.feed.time) };
          }
        }
      }).observe(document.getElementById('events'), { childList: true });
    });
  }, cfg.bots.length);
  await page.goto(cfg.url + '/');
  await page.waitForFunction(() => window.__rendered, null, { timeout: TIMEOUT });
  const first = await page.evaluate(() => window.__rendered);
  log('MEASURE first_render_ms ' + first.toFixed(1) + ' bots=' + cfg.bots.length);
  /* Where the time went: the document, its parse, the first GET status. */
  const parts = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const st = performance.getEntriesByType('resource').find((r) => /\/status$/.test(r.name));
    return { response_end: nav.responseEnd, dom_interactive: nav.domInteractive,
      status_start: st ? st.startTime : -1, status_end: st ? st.responseEnd : -1,
      marks: performance.getEntriesByType('mark').map((m) => m.name + '@' + m.startTime.toFixed(0)) };
  });
  log('first render parts (ms from navigation start): ' + JSON.stringify(parts));
  /* The same page loaded again in the same browser: Chromium's own start
   * (a fresh renderer, V8) is then out of the figure. */
  const again = [];
  for (let i = 0; i < 3; i++) {
    await page.reload();
    await page.waitForFunction(() => window.__rendered, null, { timeout: TIMEOUT });
    again.push(await page.evaluate(() => window.__rendered));
  }
  again.sort((x, y) => x - y);
  log('MEASURE reload_render_ms ' + again[1].toFixed(1) + ' (median of 3 reloads)');
  await page.locator('#conn.live').waitFor({ timeout: TIMEOUT });
  const fromEvent = [], fromPost = [];
  for (let i = 0; i < (cfg.events || 5); i++) {
    const bot = cfg.bots[i % cfg.bots.length].id, id = 'BENCH-PAGE-' + Date.now() + '-' + i;
    const sent = Date.now();
    const r = await fetch(cfg.url + '/bots/' + bot + '/api/task', { method: 'POST',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ command: 'x', task_id: id }) });
    assert.equal(r.status, 202);
    const seen = await page.waitForFunction((t) => window.__seen[t], id, { timeout: TIMEOUT });
    const s = await seen.jsonValue();
    fromEvent.push(s.shown - s.at);
    fromPost.push(s.shown - sent);
    await new Promise((res) => setTimeout(res, 100));
  }
  const pct = (v, p) => { const a = [...v].sort((x, y) => x - y); return a[Math.min(a.length - 1, Math.round(p / 100 * (a.length - 1)))]; };
  log('MEASURE event_to_page_p50_ms ' + pct(fromEvent, 50) + ' (event timestamp, ms resolution → feed line in)');
  log('MEASURE event_to_page_p99_ms ' + pct(fromEvent, 99));
  log('MEASURE post_to_page_p50_ms ' + pct(fromPost, 50) + ' (POST sent → feed line in, the durable write included)');
  assertClean(rec, 'bench');
  await browser.close();
};

const name = process.argv[2];
if (!scenarios[name]) {
  console.error('usage: node pages.mjs ' + Object.keys(scenarios).join('|'));
  process.exit(2);
}
try {
  await scenarios[name]();
  log('SCENARIO ' + name + ' ok');
  process.exit(0);
} catch (e) {
  console.error('SCENARIO ' + name + ' FAILED: ' + (e.stack || e));
  process.exit(1);
}
