// The dashboard in headless Chromium: a real server with --metrics-port 0 --metrics-tls (its
// dev certificate, trusted through Chromium's NSS database), 13 rooms x 8 bundled bots, an
// admin token from `gameserver token --admin`. The page signs in through its form, follows the
// live feed, and must show the same players and rooms as /admin/rooms; then a kick is made
// through the page's confirmation dialog, and the activity feed shows the 4010 it caused.
// The token appears in no URL the browser loaded.
//
// Screenshot: clients/web/test/artifacts/dashboard.png (docs/dashboard.png is one of these).

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';

import { ARTIFACTS, BROWSERS, PYTHON, ROOT, launch, removeDir, skipReason, sleep, startServer, stop, tempDir } from './harness.js';

const run = promisify(execFile);
const BIN = dirname(PYTHON);
const ROOMS = 13;
const PER_ROOM = 8;

/** GET a JSON document over HTTPS, trusting `ca`. @param {string} url @param {string} ca @param {string} token */
function getJson(url, ca, token) {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, headers: { Authorization: `Bearer ${token}` } }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`${res.statusCode} ${body}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

/** @param {import('puppeteer-core').Page} page */
const shown = (page) => page.evaluate(() => /** @type {any} */ (window).dashboard.shown());

describe('the dashboard in chromium', { skip: skipReason(BROWSERS.chromium) }, () => {
  const dir = tempDir('dashboard');
  const stateDir = join(dir, 'state');
  /** @type {Awaited<ReturnType<typeof startServer>> | undefined} */
  let server;
  /** @type {{proc: import('node:child_process').ChildProcess, output: () => string} | undefined} */
  let bots;
  /** @type {import('puppeteer-core').Browser | undefined} */
  let browser;

  before(async () => {
    server = await startServer(stateDir, ['--metrics-port', '0', '--metrics-tls']);
    const proc = spawn(join(BIN, 'gamebots'), ['--url', server.url, '--state-dir', stateDir, '--rooms', String(ROOMS), '--players', String(PER_ROOM), '--room-prefix', 'dash', '--behaviour', 'chatty', '--ramp', '50', '--settle', '0', '--duration', '180'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout?.on('data', (d) => (out = (out + d).slice(-20_000)));
    proc.stderr?.on('data', (d) => (out = (out + d).slice(-20_000)));
    bots = { proc, output: () => out };
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await stop(bots);
    await stop(server);
    removeDir(dir);
  });

  test('signs in, equals /admin/rooms with 100+ bots, kicks with a confirmation', { timeout: 120_000 }, async () => {
    assert.ok(server);
    const m = /dashboard on (https:\/\/\S+)/.exec(server.output());
    assert.ok(m, `no dashboard line in:\n${server.output()}`);
    const dashUrl = m[1].replace('127.0.0.1', 'localhost') === m[1] ? m[1] : m[1];
    const base = dashUrl.replace(/\/dashboard$/, '');
    const caFile = join(stateDir, 'dev-ca.pem');
    const ca = readFileSync(caFile, 'utf8');
    const { stdout } = await run(join(BIN, 'gameserver'), ['token', '--player', 'ops', '--admin', '--state-dir', stateDir, '--ttl', '600'], { cwd: ROOT });
    const token = stdout.trim();

    browser = await launch('chromium', join(dir, 'chromium'), caFile);
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 1000 });
    /** @type {string[]} */
    const problems = [];
    /** @type {string[]} */
    const urls = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err instanceof Error ? err.message : String(err)}`));
    page.on('request', (req) => urls.push(req.url()));
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !/401/.test(msg.text())) problems.push(`console error: ${msg.text()}`);
    });

    const response = await page.goto(dashUrl, { waitUntil: 'load' });
    assert.equal(response?.status(), 200);
    const headers = response?.headers() ?? {};
    assert.match(headers['content-security-policy'] ?? '', /script-src 'self'/);
    assert.equal(headers['referrer-policy'], 'no-referrer');
    await page.waitForSelector('#login:not([hidden])', { timeout: 10_000 });
    await page.type('#token', token);
    await page.click('#login button[type=submit]');
    await page.waitForSelector('#board:not([hidden])', { timeout: 10_000 });

    // the bots arrive; then what the page shows equals /admin/rooms (retried: both move)
    const end = Date.now() + 60_000;
    let last = '';
    for (;;) {
      const s = await shown(page);
      if (s.players >= ROOMS * PER_ROOM) {
        const admin = /** @type {any} */ (await getJson(`${base}/admin/rooms`, ca, token));
        /** @type {Record<string, number>} */
        const byRoom = {};
        for (const r of admin.rooms) byRoom[r.room] = r.players.length;
        const total = Object.values(byRoom).reduce((a, b) => a + b, 0);
        last = JSON.stringify({ shown: s, admin: { players: total, rooms: admin.rooms.length, byRoom } });
        // every room has been seen for a whole sample, so its measured tick rate is known
        const snap = await page.evaluate(() => /** @type {any} */ (window).dashboard.snapshot());
        const measured = snap.rooms.every((/** @type {any} */ r) => r.measured_hz !== null);
        if (measured && s.players === total && s.rooms === admin.rooms.length && JSON.stringify(Object.entries(s.byRoom).sort()) === JSON.stringify(Object.entries(byRoom).sort())) break;
      }
      assert.ok(Date.now() < end, `the page never matched /admin/rooms with ${ROOMS * PER_ROOM} bots: ${last || JSON.stringify(s)}\n${bots?.output() ?? ''}`);
      await sleep(500);
    }
    const snap = await page.evaluate(() => /** @type {any} */ (window).dashboard.snapshot());
    assert.ok(snap.totals.players >= 100 && snap.rooms.length === ROOMS, JSON.stringify(snap.totals));
    for (const r of snap.rooms) assert.ok(r.measured_hz > 15, `room ${r.room} ticks at ${r.measured_hz} Hz`);
    await sleep(3000); // the last joins settle: whole seconds of steady rates on screen
    // the bots send their inputs at 20 Hz: both directions are counted, and the rooms' bytes
    // are the seated players' share of the same total (one source: message bytes)
    const rates = await page.evaluate(() => /** @type {any} */ (window).dashboard.snapshot());
    const t = rates.totals;
    assert.ok(t.messages_in_per_s > 2 * ROOMS * PER_ROOM, `messages in ${t.messages_in_per_s}/s`);
    assert.ok(t.messages_out_per_s > 2 * ROOMS * PER_ROOM, `messages out ${t.messages_out_per_s}/s`);
    const roomsOut = rates.rooms.reduce((/** @type {number} */ a, /** @type {any} */ r) => a + r.bytes_out_per_s, 0);
    assert.ok(roomsOut <= t.bytes_out_per_s * 1.05 + ROOMS && roomsOut >= t.bytes_out_per_s * 0.7, `rooms ${roomsOut} B/s vs total ${t.bytes_out_per_s} B/s`);
    mkdirSync(ARTIFACTS, { recursive: true });
    writeFileSync(join(ARTIFACTS, 'dashboard.png'), await page.screenshot({ type: 'png', fullPage: true }));

    // kick: the players of dash-0, then kick the first, confirming in the page's dialog
    await page.click('tr[data-room="dash-0"] button[aria-label="players of dash-0"]');
    await page.waitForSelector('#players tbody tr', { timeout: 10_000 });
    const victim = await page.$eval('#players tbody tr td:nth-child(2)', (td) => td.textContent);
    await page.click('#players tbody tr button');
    await page.waitForSelector('dialog#confirm[open]', { timeout: 5_000 });
    const question = await page.$eval('#confirm-text', (p) => p.textContent);
    assert.match(question ?? '', /Kick player/);
    await page.click('#confirm-ok');
    await page.waitForFunction(() => /done: .*kicked/.test(document.getElementById('result')?.textContent ?? ''), { timeout: 10_000 });
    const kicked = Date.now() + 10_000;
    for (;;) {
      const acts = await page.evaluate(() => /** @type {any} */ (window).dashboard.snapshot().activity);
      if (acts.some((/** @type {any} */ a) => a.kind === 'disconnect' && a.code === 4010 && a.player === victim)) break;
      assert.ok(Date.now() < kicked, `no 4010 disconnect of ${victim} in the activity feed`);
      await sleep(200);
    }

    // the token went into no URL; the page holds no copy of it
    for (const u of urls) assert.ok(!u.includes(token) && !u.includes(encodeURIComponent(token)), u);
    const html = await page.content();
    assert.ok(!html.includes(token), 'the token is still in the page');
    assert.deepEqual(problems, []);
  });
});
