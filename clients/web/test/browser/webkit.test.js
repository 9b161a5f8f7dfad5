// The demo in WebKit (WebKitGTK's MiniBrowser, Debian's webkit2gtk-driver), driven over
// classic WebDriver (HTTP) by WebKitWebDriver, on an Xvfb display: WebKitGTK has no headless
// mode. Optional: it runs where WebKitWebDriver and Xvfb are installed
// (apt-get install webkit2gtk-driver xvfb) and skips otherwise, CI included; Chromium and
// Firefox (demo.test.js) are the browsers CI requires.
//
// WebKitGTK trusts certificates from the system's store only, so this test uses WebDriver's
// acceptInsecureCerts for its own session rather than adding the dev CA to the machine.
// Under Xvfb with software rendering it draws ~7 frames a second, so the checks ask for fewer
// frames here.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { ARTIFACTS, checkInterpolation, removeDir, skipReason, sleep, startBots, startServer, stop, summary, tempDir } from './harness.js';

/** @typedef {import('./harness.js').DemoStats} DemoStats */

const DRIVER = process.env.WEBKIT_DRIVER || '/usr/bin/WebKitWebDriver';
const XVFB = '/usr/bin/Xvfb';
const MINIBROWSER = ['/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser', '/usr/lib/aarch64-linux-gnu/webkit2gtk-4.1/MiniBrowser'].find((p) => existsSync(p));
const SKIP = !existsSync(DRIVER) || !existsSync(XVFB) || !MINIBROWSER ? 'WebKit is optional: apt-get install webkit2gtk-driver xvfb to run it' : skipReason(DRIVER);
const BOTS = 3;

/** A free TCP port on 127.0.0.1. @returns {Promise<number>} */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

/** @param {string} cmd @param {string[]} args @param {NodeJS.ProcessEnv} [env] */
function startProc(cmd, args, env) {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  let out = '';
  proc.stdout?.on('data', (d) => (out = (out + d).slice(-10_000)));
  proc.stderr?.on('data', (d) => (out = (out + d).slice(-10_000)));
  return { proc, output: () => out };
}

/** A minimal classic WebDriver client. @param {string} base e.g. http://127.0.0.1:4444 */
function webdriver(base) {
  let session = '';
  /** @param {string} method @param {string} path @param {unknown} [body] */
  async function call(method, path, body) {
    const res = await fetch(`${base}${session ? `/session/${session}` : ''}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = /** @type {{value: any}} */ (await res.json());
    if (!res.ok) throw new Error(`WebDriver ${method} ${path}: ${JSON.stringify(json.value).slice(0, 500)}`);
    return json.value;
  }
  return {
    /** @param {object} capabilities */
    async start(capabilities) {
      const v = await call('POST', '/session', { capabilities: { alwaysMatch: capabilities } });
      session = v.sessionId;
      return v.capabilities;
    },
    async end() {
      if (session) await call('DELETE', '').catch(() => {});
      session = '';
    },
    /** @param {string} url */
    go: (url) => call('POST', '/url', { url }),
    /** @param {string} script @param {unknown[]} [args] */
    run: (script, args = []) => call('POST', '/execute/sync', { script, args }),
    /** @param {object[]} actions */
    actions: (actions) => call('POST', '/actions', { actions }),
    screenshot: async () => Buffer.from(await call('GET', '/screenshot'), 'base64'),
  };
}

const KEYS = { ArrowLeft: '\uE012', ArrowUp: '\uE013', ArrowRight: '\uE014', ArrowDown: '\uE015', Enter: '\uE007' };

describe('the demo in WebKit (WebKitGTK MiniBrowser)', { skip: SKIP }, () => {
  const dir = tempDir('browser-webkit');
  const stateDir = join(dir, 'state');
  /** @type {Awaited<ReturnType<typeof startServer>> | undefined} */
  let server;
  /** @type {ReturnType<typeof startBots> | undefined} */
  let bots;
  /** @type {ReturnType<typeof startProc> | undefined} */
  let xvfb;
  /** @type {ReturnType<typeof startProc> | undefined} */
  let driver;
  const wd = { client: /** @type {ReturnType<typeof webdriver> | undefined} */ (undefined) };

  before(async () => {
    server = await startServer(stateDir);
    bots = startBots(server.url, stateDir, 'web-webkit', BOTS);
    const display = `:${90 + ((process.pid % 900) | 0)}`;
    xvfb = startProc(XVFB, [display, '-screen', '0', '1280x800x24', '-nolisten', 'tcp']);
    const port = await freePort();
    await sleep(500);
    driver = startProc(DRIVER, [`--port=${port}`], { ...process.env, DISPLAY: display, HOME: dir });
    const client = webdriver(`http://127.0.0.1:${port}`);
    const end = Date.now() + 10_000;
    for (;;) {
      try {
        await fetch(`http://127.0.0.1:${port}/status`);
        break;
      } catch (err) {
        if (Date.now() > end) throw new Error(`WebKitWebDriver did not start: ${driver.output()}`, { cause: err });
        await sleep(100);
      }
    }
    wd.client = client;
  });
  after(async () => {
    await wd.client?.end();
    await stop(/** @type {any} */ (driver));
    await stop(/** @type {any} */ (xvfb));
    await stop(bots);
    await stop(server);
    removeDir(dir);
  });

  test('plays beside bots: checksums, acks, prediction, interpolation, chat', { timeout: 60_000 }, async () => {
    const c = wd.client;
    assert.ok(c && server);
    await c.start({ acceptInsecureCerts: true, 'webkitgtk:browserOptions': { binary: MINIBROWSER, args: ['--automation'] } });
    const room = 'web-webkit-0';
    await c.go(`${server.origin}/?room=${room}&name=webkit-tester`);
    /** @returns {Promise<DemoStats | null>} */
    const stats = async () => JSON.parse(await c.run('return JSON.stringify(window.demo ? window.demo.stats() : null)'));
    /** @param {(st: DemoStats) => boolean} done @param {string} what @param {number} ms */
    const waitFor = async (done, what, ms) => {
      const end = Date.now() + ms;
      for (;;) {
        const st = await stats();
        if (st && done(st)) return st;
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(st && { ...st, frames: st.frames.length, history: 0 })}`);
        await sleep(150);
      }
    };
    let st = await waitFor((s) => s.state === 'playing' && (s.frames.at(-1)?.others.length ?? 0) >= BOTS, `playing beside ${BOTS} bots`, 25_000);
    assert.ok(st.ownServer);
    const start = st.ownServer;
    const right = start.x < 500;
    const key = right ? KEYS.ArrowRight : KEYS.ArrowLeft;
    await c.actions([{ type: 'key', id: 'kb', actions: [{ type: 'keyDown', value: key }, { type: 'pause', duration: 1500 }, { type: 'keyUp', value: key }] }]);
    await sleep(300);
    st = /** @type {DemoStats} */ (await stats());
    assert.ok(st.ownServer);
    const moved = (st.ownServer.x - start.x) * (right ? 1 : -1);
    assert.ok(moved >= 200, `the arrow key moved the avatar ${moved} units, not ~300`);

    const line = `hello from webkit ${Date.now() % 100000}`;
    await c.run('document.getElementById("chat-line").focus()');
    await c.actions([{ type: 'key', id: 'kb', actions: [...line].flatMap((ch) => [{ type: 'keyDown', value: ch }, { type: 'keyUp', value: ch }]).concat([{ type: 'keyDown', value: KEYS.Enter }, { type: 'keyUp', value: KEYS.Enter }]) }]);
    await waitFor((s) => s.chat.some((x) => x.mine && x.text === line), 'our chat line back', 5000);
    st = await waitFor((s) => s.chat.some((x) => !x.mine && x.text.startsWith('hello from')) && s.frames.length >= 40, 'a bot chat line and 40 frames', 10_000);

    mkdirSync(ARTIFACTS, { recursive: true });
    writeFileSync(join(ARTIFACTS, 'webkit.png'), await c.screenshot());

    assert.equal(st.checksumMismatches, 0);
    assert.equal(st.desyncs, 0);
    assert.ok(st.checksumsVerified >= 40, `only ${st.checksumsVerified} checksums verified`);
    assert.ok(st.inputsAcked >= st.inputsSent - 3 && st.inputsSent >= 30, `${st.inputsAcked} of ${st.inputsSent} inputs acked`);
    assert.ok(st.predictionError < 0.1, `prediction error ${st.predictionError}`);
    assert.ok(st.maxPredictionError <= 10.05, `max prediction error ${st.maxPredictionError}`);
    const interp = checkInterpolation(st, { minFrames: 35, minChecked: 60 });
    console.log(`webkit: ${JSON.stringify({ ...summary(st), ...interp })}`);
  });
});
