// The demo in real browsers: headless Chromium (CDP) and Firefox (WebDriver BiDi), both driven
// by puppeteer-core with the system's browsers (no downloads). Each test starts a real server
// (port 0, guest tokens) and three bundled bots in a room, loads the demo from the server,
// joins that room, plays with synthetic key presses and chats, then checks what the page saw:
// every checksum verified and none mismatched, its inputs acked, prediction error near zero,
// the bots drawn only forward in time and on the server's path, and chat both ways.
// The dev CA is trusted the way a person trusts it: imported into the browser's NSS
// certificate database (certutil), with no certificate errors ignored.
//
// Screenshots: clients/web/test/artifacts/<browser>.png. Run: make browsertest.

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  ARTIFACTS,
  BROWSERS,
  checkInterpolation,
  launch,
  removeDir,
  skipReason,
  sleep,
  startBots,
  startServer,
  stop,
  summary,
  tempDir,
  waitFor,
} from './harness.js';

/** @typedef {import('./harness.js').DemoStats} DemoStats */
/** @typedef {import('puppeteer-core').Page} Page */
/** @typedef {import('puppeteer-core').Browser} Browser */

const BOTS = 3;
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

/**
 * The whole scenario in one browser.
 * @param {'chromium' | 'firefox'} kind
 */
function browserTest(kind) {
  describe(`the demo in ${kind}`, { skip: skipReason(BROWSERS[kind]) }, () => {
    const dir = tempDir(`browser-${kind}`);
    const stateDir = join(dir, 'state');
    /** @type {Awaited<ReturnType<typeof startServer>> | undefined} */
    let server;
    /** @type {ReturnType<typeof startBots> | undefined} */
    let bots;
    /** @type {Browser | undefined} */
    let browser;

    before(async () => {
      server = await startServer(stateDir);
      bots = startBots(server.url, stateDir, `web-${kind}`, BOTS);
    });
    after(async () => {
      await browser?.close().catch(() => {});
      await stop(bots);
      await stop(server);
      removeDir(dir);
    });

    test('plays beside bots: checksums, acks, prediction, interpolation, chat', { timeout: 60_000 }, async () => {
      assert.ok(server);
      browser = await launch(kind, join(dir, kind), join(stateDir, 'dev-ca.pem'));
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

      const room = `web-${kind}-0`;
      const response = await page.goto(`${server.origin}/?room=${room}&name=${kind}-tester`, { waitUntil: 'load' });
      assert.equal(response?.status(), 200);
      const headers = response?.headers() ?? {};
      assert.match(headers['content-security-policy'] ?? '', /script-src 'self'/);

      await waitFor(page, (st) => st.state === 'playing' || st.state === 'closed' || st.error !== '', 'the demo to play', 15_000);
      // the bots are there (they may still be joining when the page arrives)
      await waitFor(page, (st) => (st.frames.at(-1)?.others.length ?? 0) >= BOTS, `${BOTS} bots drawn`, 20_000);
      let st = await stats(page);
      assert.equal(st.state, 'playing', `the demo is not playing: ${st.error} ${JSON.stringify(st.closeInfo)} ${problems.join('; ')}`);
      assert.equal(st.room, room);
      assert.ok(st.ownServer, 'the page has its own avatar');

      // play: move towards the middle horizontally, then vertically, then diagonally
      await page.click('canvas');
      const start = st.ownServer;
      const right = start.x < 500;
      const down = start.y < 500;
      await hold(page, [right ? 'ArrowRight' : 'ArrowLeft'], 1500);
      await sleep(250);
      st = await stats(page);
      assert.ok(st.ownServer);
      const movedX = (st.ownServer.x - start.x) * (right ? 1 : -1);
      assert.ok(movedX >= 200, `the arrow key moved the avatar ${movedX} units, not ~300`);
      const mid = st.ownServer;
      await hold(page, [down ? 's' : 'w'], 1000);
      await hold(page, [down ? 'ArrowDown' : 'ArrowUp', right ? 'd' : 'a'], 700);
      await sleep(250);
      st = await stats(page);
      assert.ok(st.ownServer);
      const movedY = (st.ownServer.y - mid.y) * (down ? 1 : -1);
      assert.ok(movedY >= 200, `WASD and arrows moved the avatar ${movedY} units down/up, not ~300`);

      // chat through the page's own form; the bots chat too
      const line = `hello from ${kind} ${Date.now() % 100000}`;
      await page.click('#chat-line');
      await page.keyboard.type(line);
      await page.keyboard.press('Enter');
      await waitFor(page, (st) => st.chat.some((c) => c.mine && c.text === line), 'our chat line back from the server', 5000);
      await waitFor(page, (st) => st.chat.some((c) => !c.mine && c.text.startsWith('hello from')), 'a bot chat line', 8000);
      const shown = await page.$eval('#chat-log', (el) => el.textContent ?? '');
      assert.ok(shown.includes(line), 'the chat box shows the line sent');

      await sleep(300);
      mkdirSync(ARTIFACTS, { recursive: true });
      writeFileSync(join(ARTIFACTS, `${kind}.png`), await page.screenshot({ type: 'png' }));
      st = await stats(page);
      const panel = await page.$eval('#m-checksums', (el) => el.textContent ?? '');

      // checksums: verified every tick, none mismatched, no desync, no rejoin
      assert.equal(st.checksumMismatches, 0, 'checksum mismatches');
      assert.equal(st.desyncs, 0, 'desyncs');
      assert.equal(st.joins, 1, 'joined once');
      assert.ok(st.checksumsVerified >= 60, `only ${st.checksumsVerified} checksums verified`);
      assert.match(panel, /^\d+ verified$/);
      // inputs: one a tick, acked up to the last few in flight
      assert.ok(st.inputsSent >= 60, `only ${st.inputsSent} inputs sent`);
      assert.ok(st.inputsAcked >= st.inputsSent - 3, `${st.inputsAcked} of ${st.inputsSent} inputs acked`);
      assert.ok(st.lastAcked >= st.lastSent - 3, `last acked ${st.lastAcked}, last sent ${st.lastSent}`);
      // prediction: the server's rule in JS, so the predicted position is the server's
      assert.ok(st.predictionError < 0.1, `prediction error ${st.predictionError}`);
      assert.ok(st.maxPredictionError <= 10.05, `max prediction error ${st.maxPredictionError} (more than one late input)`);
      // interpolation: the bots forward in time only, on the server's path, gliding
      const interp = checkInterpolation(st);
      assert.deepEqual(problems, [], 'no page errors, console errors or failed requests');
      console.log(`${kind}: ${JSON.stringify({ ...summary(st), ...interp })}`);
    });
  });
}

browserTest('chromium');
browserTest('firefox');
