// The demo playing field (a big world sent as views: docs/protocol.md "Views (v2)") in headless
// Chromium, on a real server (port 0, guest tokens, a checksum every tick) with bundled field
// bots in the same room. The page joins with ?game=field, walks its avatar across the world
// with synthetic key presses, and the test checks what the page saw: a view room (JOINED flag
// VIEW), a view of a few dozen entities out of a world of about a thousand, every view checksum
// verified and none mismatched, entities entering and leaving the view as the avatar moves, the
// camera following the avatar, no page errors. Screenshot: clients/web/test/artifacts/field.png,
// copied to docs/field-demo.png. Run: make browsertest.

import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { WORLD } from '../../games/field.js';
import { ARTIFACTS, BROWSERS, ROOT, launch, removeDir, skipReason, sleep, startBots, startServer, stop, summary, tempDir, waitFor } from './harness.js';

/** @typedef {import('./harness.js').DemoStats} DemoStats */
/** @typedef {import('puppeteer-core').Page} Page */
/** @typedef {import('puppeteer-core').Browser} Browser */

const BOTS = 4;
/** @param {Page} page @returns {Promise<DemoStats>} */
const stats = (page) => page.evaluate(() => /** @type {any} */ (window).demo.stats());

/**
 * Hold keys for a while.
 * @param {Page} page @param {import('puppeteer-core').KeyInput[]} keys @param {number} ms
 */
async function hold(page, keys, ms) {
  for (const k of keys) await page.keyboard.down(k);
  await sleep(ms);
  for (const k of keys) await page.keyboard.up(k);
}

describe('the field demo in chromium', { skip: skipReason(BROWSERS.chromium) }, () => {
  const dir = tempDir('browser-field');
  const stateDir = join(dir, 'state');
  /** @type {Awaited<ReturnType<typeof startServer>> | undefined} */
  let server;
  /** @type {ReturnType<typeof startBots> | undefined} */
  let bots;
  /** @type {Browser | undefined} */
  let browser;

  before(async () => {
    // field is a bundled game but not the default: the page's guest token names it
    server = await startServer(stateDir);
    bots = startBots(server.url, stateDir, 'web-field', BOTS, { game: 'field', behaviour: 'wander' });
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await stop(bots);
    await stop(server);
    removeDir(dir);
  });

  test('walks across a big world: a view, checksums verified, entities entering and leaving', { timeout: 90_000 }, async () => {
    assert.ok(server);
    browser = await launch('chromium', join(dir, 'chromium'), join(stateDir, 'dev-ca.pem'));
    const page = await browser.newPage();
    /** @type {string[]} */
    const problems = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err instanceof Error ? err.message : String(err)}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
    });
    page.on('response', (res) => {
      if (res.status() >= 400) problems.push(`HTTP ${res.status()} for ${res.url()}`);
    });
    page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()} ${req.failure()?.errorText ?? ''}`));

    const room = 'web-field-0';
    const response = await page.goto(`${server.origin}/?game=field&room=${room}&name=field-tester`, { waitUntil: 'load' });
    assert.equal(response?.status(), 200);
    await waitFor(page, (st) => st.state === 'playing' || st.state === 'closed' || st.error !== '', 'the demo to play', 15_000);
    let st = await stats(page);
    assert.equal(st.state, 'playing', `the demo is not playing: ${st.error} ${JSON.stringify(st.closeInfo)} ${problems.join('; ')}`);
    assert.equal(st.game, 'field');
    assert.equal(st.room, room);
    assert.equal(st.viewRoom, true, 'field sends views (JOINED flag VIEW)');
    await waitFor(page, (st) => st.ownServer !== null && st.frames.length > 30, 'the own avatar drawn', 10_000);
    st = await stats(page);
    assert.ok(st.ownServer);
    assert.ok(st.held >= 3 && st.held <= 300, `the view holds ${st.held} entities, not a few dozen`);
    assert.ok(st.drawn && st.drawn.player >= 1, 'the own avatar is drawn');
    const firstEntered = st.entered;
    const firstLeft = st.left;

    // walk: towards the middle of the world on both axes, long enough to cross several cells
    await page.click('canvas');
    const start = st.ownServer;
    const right = start.x < 2000;
    const down = start.y < 2000;
    /** @type {Array<[number, number]>} */
    const path = [[start.x, start.y]];
    /** @type {number[]} */
    const sizes = [st.held];
    for (const keys of /** @type {import('puppeteer-core').KeyInput[][]} */ ([[right ? 'ArrowRight' : 'ArrowLeft'], [down ? 'ArrowDown' : 'ArrowUp'], [right ? 'd' : 'a', down ? 's' : 'w']])) {
      await hold(page, keys, 2500);
      await sleep(200);
      st = await stats(page);
      assert.ok(st.ownServer);
      path.push([st.ownServer.x, st.ownServer.y]);
      sizes.push(st.held);
      // the camera follows the avatar (within its clamp at the world's edges)
      assert.ok(st.camera, 'a camera');
      const own = st.frames.at(-1)?.own;
      assert.ok(own, 'the own avatar drawn');
      // (field's world wraps: the distance the short way round)
      const gap = (/** @type {number} */ a, /** @type {number} */ b) => Math.min(Math.abs(a - b), WORLD - Math.abs(a - b));
      assert.ok(gap(st.camera[0], own[0]) <= 1 && gap(st.camera[1], own[1]) <= 1, `camera at ${st.camera}, avatar drawn at ${own}`);
    }
    const end = /** @type {[number, number]} */ (path.at(-1));
    const moved = Math.hypot(end[0] - start.x, end[1] - start.y);
    assert.ok(moved >= 500, `the avatar moved ${moved.toFixed(0)} units (path ${JSON.stringify(path)}): too little to cross cells`);
    const entered = st.entered - firstEntered;
    const left = st.left - firstLeft;
    assert.ok(entered >= 5, `${entered} entities entered the view while walking`);
    assert.ok(left >= 5, `${left} entities left the view while walking`);
    assert.ok(Math.max(...sizes) <= 300, `view sizes ${sizes}`);

    await sleep(300);
    mkdirSync(ARTIFACTS, { recursive: true });
    const png = join(ARTIFACTS, 'field.png');
    writeFileSync(png, await page.screenshot({ type: 'png' }));
    copyFileSync(png, join(ROOT, 'docs', 'field-demo.png'));
    st = await stats(page);
    const panel = await page.$eval('#m-checksums', (el) => el.textContent ?? '');
    const heldPanel = await page.$eval('#m-entities', (el) => el.textContent ?? '');

    assert.equal(st.checksumMismatches, 0, 'checksum mismatches');
    assert.equal(st.desyncs, 0, 'desyncs');
    assert.equal(st.resyncs, 0, 'resyncs');
    assert.equal(st.joins, 1, 'joined once');
    assert.ok(st.checksumsVerified >= 100, `only ${st.checksumsVerified} checksums verified`);
    assert.match(panel, /^\d+ verified$/);
    assert.match(heldPanel, /^\d+ in view/);
    assert.ok(st.inputsAcked >= st.inputsSent - 3, `${st.inputsAcked} of ${st.inputsSent} inputs acked`);
    assert.deepEqual(problems, [], 'no page errors, console errors or failed requests');
    console.log(`field: ${JSON.stringify({ ...summary(st), held: st.held, heldByType: st.heldByType, entered, left, moved: Math.round(moved), sizes })}`);
  });
});
