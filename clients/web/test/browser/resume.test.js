// The browser SDK resumes after the connection is cut: headless Chromium and Firefox, the demo
// page loaded through the project's fault proxy (tools/faultproxy.py, ../faultproxy.js) in
// front of a real server, every connection cut with RST (no close frame, no TLS close) and new
// ones refused, the network back a second later. The page must be back
// in the same seat (same player number, same entity) with no desync, having said so on its
// status line, and without joining again. (The page, from the proxy's origin, gets a signed
// token in its URL fragment: the server's guest tokens are for its own pages only.)
//
// Screenshots: clients/web/test/artifacts/resume-<browser>.png. Run: make browsertest.

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { startFaultProxy } from '../faultproxy.js';
import { ARTIFACTS, BROWSERS, PYTHON, ROOT, launch, playerToken, removeDir, skipReason, sleep, startServer, stop, tempDir, waitFor } from './harness.js';

/** @typedef {import('./harness.js').DemoStats} DemoStats */
/** @typedef {import('puppeteer-core').Browser} Browser */

/** @param {import('puppeteer-core').Page} page @returns {Promise<DemoStats>} */
const stats = (page) => page.evaluate(() => /** @type {any} */ (window).demo.stats());

/** @param {'chromium' | 'firefox'} kind */
function resumeTest(kind) {
  describe(`resuming in ${kind}`, { skip: skipReason(BROWSERS[kind]) }, () => {
    const dir = tempDir(`resume-${kind}`);
    const stateDir = join(dir, 'state');
    /** @type {Awaited<ReturnType<typeof startServer>> | undefined} */
    let server;
    /** @type {import('../faultproxy.js').FaultProxy | undefined} */
    let proxy;
    /** @type {Browser | undefined} */
    let browser;

    before(async () => {
      // the page comes from the proxy's origin (a port the server does not know yet): allow any
      server = await startServer(stateDir, ['--allow-origin', '*', '--seat-hold', '20']);
      proxy = await startFaultProxy({ python: PYTHON, root: ROOT, targetPort: Number(new URL(server.url).port) });
    });
    after(async () => {
      await browser?.close().catch(() => {});
      await proxy?.close();
      await stop(server);
      removeDir(dir);
    });

    test('a cut connection: the page resumes the same seat and entity, 0 desyncs', { timeout: 60_000 }, async (t) => {
      assert.ok(server && proxy);
      browser = await launch(kind, join(dir, kind), join(stateDir, 'dev-ca.pem'));
      const page = await browser.newPage();
      /** @type {string[]} */
      const problems = [];
      // a browser reports each WebSocket that fails to connect while the network is down
      // (Chromium on the console, Firefox as a page error naming the wss:// URL): expected here
      const expected = (/** @type {string} */ text) => /WebSocket|wss:\/\/127\.0\.0\.1/.test(text);
      page.on('pageerror', (err) => {
        const text = err instanceof Error ? err.message : String(err);
        if (!expected(text)) problems.push(`page error: ${text}`);
      });
      page.on('console', (msg) => {
        if (msg.type() === 'error' && !expected(msg.text())) problems.push(`console error: ${msg.text()}`);
      });

      const room = `resume-${kind}`;
      const origin = `https://127.0.0.1:${proxy.port}`;
      // guest tokens are for the server's own pages: this one gets a signed token in its fragment
      const token = await playerToken(stateDir, `${kind}-resumer`);
      const response = await page.goto(`${origin}/?room=${room}#token=${token}`, { waitUntil: 'load' });
      assert.equal(response?.status(), 200);
      let st = await waitFor(page, (s) => (s.state === 'playing' && s.ownServer !== null) || s.state === 'closed' || s.error !== '', 'the demo to play', 15_000);
      assert.equal(st.state, 'playing', `the demo is not playing: ${st.error} ${JSON.stringify(st.closeInfo)}`);
      const player = st.player;
      const entity = st.ownServer?.id;
      await page.click('canvas');
      await page.keyboard.down('ArrowRight');
      await waitFor(page, (s) => s.checksumsVerified >= 20, 'some play', 10_000);

      await proxy.cut();
      const cutAt = Date.now();
      st = await waitFor(page, (s) => s.state === 'reconnecting', 'the page to notice the cut', 5000);
      const noticedMs = Date.now() - cutAt;
      assert.match(st.statusText, /reconnecting/);
      await sleep(1000);
      st = await stats(page);
      assert.equal(st.state, 'reconnecting', 'still down while the network is');
      await proxy.restore();
      const backAt = Date.now();
      st = await waitFor(page, (s) => s.resumes === 1 && s.state === 'playing', 'the resume', 10_000);
      const resumedMs = Date.now() - backAt;
      await page.keyboard.up('ArrowRight');
      await sleep(500);
      st = await stats(page);
      t.diagnostic(`${kind}: noticed the cut in ${noticedMs} ms, resumed within ${resumedMs} ms of the network returning (${st.lastDowntimeMs.toFixed(0)} ms down)`);

      assert.equal(st.player, player, 'the same player number');
      assert.equal(st.ownServer?.id, entity, 'the same entity');
      assert.equal(st.joins, 1, 'not joined again');
      assert.equal(st.seatsLost, 0);
      assert.equal(st.desyncs, 0, 'desyncs');
      assert.equal(st.checksumMismatches, 0, 'checksum mismatches');
      assert.equal(st.reconnects, 1);
      assert.match(st.statusText, /reconnected after \d+\.\d s/);
      const verified = st.checksumsVerified;
      await waitFor(page, (s) => s.checksumsVerified >= verified + 10, 'checksums verified after the resume', 5000);
      mkdirSync(ARTIFACTS, { recursive: true });
      writeFileSync(join(ARTIFACTS, `resume-${kind}.png`), await page.screenshot({ type: 'png' }));
      assert.deepEqual(problems, [], 'no page errors or console errors');
    });
  });
}

resumeTest('chromium');
resumeTest('firefox');
