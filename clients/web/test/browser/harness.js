// What the browser tests share: a real server and bundled bots started by the test (stopped by
// PID at the end), browsers started with puppeteer-core from the system's packages (no browser
// downloads), the dev CA trusted through each browser's own certificate store (an NSS database
// made with certutil), and the checks on what the demo page reports.
//
// Needs: the project's .venv (GAMESERVER_PYTHON's folder, or <repo>/.venv/bin), /usr/bin/chromium
// and /usr/bin/firefox-esr (or CHROMIUM / FIREFOX), and certutil (libnss3-tools);
// tools/ensure_browsers.sh installs them. Without them a test skips, except on CI (CI=true),
// where it fails.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import puppeteer from 'puppeteer-core';

/** @typedef {import('puppeteer-core').Browser} Browser */

const run = promisify(execFile);
export const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
export const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url));
const BIN = process.env.GAMESERVER_PYTHON ? dirname(process.env.GAMESERVER_PYTHON) : join(ROOT, '.venv', 'bin');
export const ON_CI = process.env.CI === 'true';
/** The project's Python (its .venv), for tools/ scripts. */
export const PYTHON = join(BIN, 'python');

export const BROWSERS = {
  chromium: process.env.CHROMIUM || '/usr/bin/chromium',
  firefox: process.env.FIREFOX || '/usr/bin/firefox-esr',
};

/**
 * Why a browser test cannot run here (false if it can). On CI nothing is skipped: the test
 * runs and fails on what is missing.
 * @param {string} executable
 * @returns {string | false}
 */
export function skipReason(executable) {
  if (ON_CI) return false;
  const missing = [join(BIN, 'gameserver'), join(BIN, 'gamebots'), executable].filter((p) => !existsSync(p));
  if (missing.length) return `missing ${missing.join(', ')} (run make test, or bash tools/ensure_browsers.sh)`;
  if (!which('certutil')) return 'missing certutil (apt-get install libnss3-tools, or bash tools/ensure_browsers.sh)';
  return false;
}

/** @param {string} name */
function which(name) {
  return (process.env.PATH ?? '').split(':').some((d) => d && existsSync(join(d, name)));
}

/** @param {number} ms */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * @typedef {object} Proc
 * @property {import('node:child_process').ChildProcess} proc
 * @property {() => string} output what it wrote (stdout and stderr), for failure messages
 */

/**
 * Start a process of our own; `stop(p)` ends it by PID.
 * @param {string} cmd @param {string[]} args
 * @returns {Proc}
 */
function startProc(cmd, args) {
  const proc = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout?.on('data', (d) => (out = (out + d).slice(-20_000)));
  proc.stderr?.on('data', (d) => (out = (out + d).slice(-20_000)));
  return { proc, output: () => out };
}

/** End a process we started, by its PID, and wait for it (SIGKILL after 5 s). @param {Proc | undefined} p */
export async function stop(p) {
  if (!p || p.proc.exitCode !== null || p.proc.signalCode !== null || !p.proc.pid) return;
  const exited = new Promise((resolve) => p.proc.once('exit', resolve));
  p.proc.kill('SIGTERM');
  const timer = setTimeout(() => p.proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

// ------------------------------------------------------------------ browsers

/** Chromium's flags: headless, no sandbox (root), nothing phoning home, a fresh profile. */
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--window-size=1040,760'];

/**
 * Start one browser trusting the dev CA through its own certificate store.
 * @param {'chromium' | 'firefox'} kind @param {string} dir a fresh folder for its profile
 * @param {string} caPem
 * @returns {Promise<Browser>}
 */
export async function launch(kind, dir, caPem) {
  const home = join(dir, 'home');
  const profile = join(dir, 'profile');
  mkdirSync(home, { recursive: true });
  const env = { ...process.env, HOME: home, XDG_CONFIG_HOME: join(home, '.config'), XDG_CACHE_HOME: join(home, '.cache') };
  if (kind === 'chromium') {
    // Chromium on Linux reads the user's NSS database, $HOME/.pki/nssdb
    await trustCa(join(home, '.pki', 'nssdb'), caPem);
    mkdirSync(profile, { recursive: true });
    return puppeteer.launch({
      browser: 'chrome',
      executablePath: BROWSERS.chromium,
      headless: true, // --headless=new
      userDataDir: profile,
      args: CHROMIUM_ARGS,
      env,
      defaultViewport: { width: 1040, height: 760 },
      protocolTimeout: 30_000,
    });
  }
  // Firefox keeps its certificates in the profile's own NSS database (cert9.db)
  await trustCa(profile, caPem);
  return puppeteer.launch({
    browser: 'firefox',
    executablePath: BROWSERS.firefox,
    headless: true,
    userDataDir: profile,
    env,
    defaultViewport: { width: 1040, height: 760 },
    protocolTimeout: 30_000,
    extraPrefsFirefox: { 'browser.shell.checkDefaultBrowser': false },
  });
}

/** @typedef {import('puppeteer-core').Page} Page */

/**
 * Poll the page's stats until `done(stats)`. (Not page.waitForFunction: in Firefox it evaluates
 * a string, which the demo's CSP rightly refuses.)
 * @param {import('puppeteer-core').Page} page @param {(st: DemoStats) => boolean} done @param {string} what @param {number} ms
 */
export async function waitFor(page, done, what, ms) {
  const end = Date.now() + ms;
  /** @type {DemoStats | null} */
  let st = null;
  for (;;) {
    st = await page.evaluate(() => /** @type {any} */ (window).demo?.stats() ?? null);
    if (st && done(st)) return st;
    if (Date.now() > end) {
      const brief = st ? JSON.stringify({ ...st, frames: st.frames.length, history: Object.keys(st.history).length }) : 'no window.demo';
      throw new Error(`timed out after ${ms} ms waiting for ${what}: ${brief}`);
    }
    await sleep(100);
  }
}

// ------------------------------------------------------------------ the server

/**
 * A real server on 127.0.0.1, port 0, serving the demo and guest tokens.
 * @param {string} stateDir
 * @param {string[]} [extra] more `serve` arguments
 * @returns {Promise<Proc & {url: string, origin: string}>}
 */
export async function startServer(stateDir, extra = []) {
  const p = startProc(join(BIN, 'gameserver'), [
    'serve',
    '--port', '0',
    '--state-dir', stateDir,
    '--guest-tokens',
    '--max-connections-per-ip', '0',
    '--checksum-interval', '1',
    '--cpu-budget', '0',
    '--log-level', 'WARNING',
    ...extra,
  ]);
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start in 30 s:\n${p.output()}`)), 30_000);
    const look = () => {
      const m = /listening on (\S+)/.exec(p.output());
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    p.proc.stdout?.on('data', look);
    p.proc.stderr?.on('data', look);
    p.proc.once('exit', (code) => reject(new Error(`the server exited (${code}):\n${p.output()}`)));
  });
  const origin = String(url).replace(/^wss:/, 'https:').replace(/\/$/, '');
  return { ...p, url: String(url), origin };
}

/**
 * A signed token for `player` from `gameserver token` (for a page the server's guest tokens
 * do not serve: one loaded through a proxy).
 * @param {string} stateDir @param {string} player
 */
export async function playerToken(stateDir, player) {
  const { stdout } = await run(join(BIN, 'gameserver'), ['token', '--player', player, '--state-dir', stateDir, '--ttl', '600'], { cwd: ROOT });
  return stdout.trim();
}

/**
 * `players` bundled bots (chatty: they wander and chat) in the room `<prefix>-0`; another
 * game (`--game`) and behaviour on request.
 * @param {string} url @param {string} stateDir @param {string} prefix @param {number} players
 * @param {{game?: string, behaviour?: string}} [opts]
 */
export function startBots(url, stateDir, prefix, players, opts = {}) {
  return startProc(join(BIN, 'gamebots'), [
    '--url', url,
    '--state-dir', stateDir,
    '--rooms', '1',
    '--players', String(players),
    '--room-prefix', prefix,
    ...(opts.game ? ['--game', opts.game] : []),
    '--behaviour', opts.behaviour ?? 'chatty',
    '--ramp', '0',
    '--settle', '0',
    '--duration', '120',
  ]);
}

/**
 * A new NSS certificate database in `dir` trusting `caPem` as a CA for TLS servers: what a
 * person does in the browser's certificate settings, or with certutil (README).
 * @param {string} dir @param {string} caPem
 */
export async function trustCa(dir, caPem) {
  mkdirSync(dir, { recursive: true });
  await run('certutil', ['-N', '-d', `sql:${dir}`, '--empty-password']);
  await run('certutil', ['-A', '-d', `sql:${dir}`, '-n', 'gameserver dev CA', '-t', 'C,,', '-i', caPem]);
}

/** The base64 SHA-256 of a certificate's SubjectPublicKeyInfo (Chromium's SPKI pin). @param {string} pemFile */
export function spkiHash(pemFile) {
  const cert = new X509Certificate(readFileSync(pemFile));
  const der = cert.publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('base64');
}

/** A fresh temporary folder. @param {string} name */
export function tempDir(name) {
  return mkdtempSync(join(tmpdir(), `gs-${name}-`));
}

/** @param {string} dir */
export function removeDir(dir) {
  rmSync(dir, { recursive: true, force: true });
}

// ------------------------------------------------------------------ checks on the demo's stats

/**
 * @typedef {{t: number, renderTick: number, others: Array<[number, number, number]>, own: [number, number] | null, held: number}} Frame
 * @typedef {{sender: number, name: string, text: string, mine: boolean}} ChatLine
 * @typedef {object} DemoStats
 * @property {string} name @property {string} room @property {string} state @property {string} error @property {number} player @property {number} joins
 * @property {number} tick @property {any} closeInfo
 * @property {number} checksumsVerified @property {number} checksumMismatches @property {number} desyncs @property {number} rejoins
 * @property {number} resyncs @property {number} reconnects @property {number} resumes @property {number} seatsLost
 * @property {number} lastDowntimeMs @property {string} statusText what the status line says
 * @property {number} inputsSent @property {number} inputsAcked @property {number} inputsDropped
 * @property {number} lastSent @property {number} lastAcked
 * @property {number} predictionError @property {number} maxPredictionError @property {number} inputLatencyMs
 * @property {number} bytesInPerSecond
 * @property {{id: number, x: number, y: number} | null} ownServer
 * @property {Frame[]} frames @property {Record<string, Array<[number, number, number]>>} history
 * @property {ChatLine[]} chat
 * @property {string} game the game played
 * @property {boolean} viewRoom the room sends a view (JOINED flag VIEW)
 * @property {number} held entities the replica holds (the view, in a view room)
 * @property {Record<string, number>} heldByType the same, by type name
 * @property {number} entered entities that came into the replica over the session (the first snapshot's too)
 * @property {number} left entities that left it
 * @property {{player: number, pickup: number, creature: number, other: number} | null} drawn what the last frame drew, by kind (the camera renderer only)
 * @property {[number, number] | null} camera the camera's centre, in world units (the camera renderer only)
 */

/** World units a player moves per tick at full speed (arena: 200 u/s at 20 Hz). */
const STEP = 10;

/**
 * Other entities' drawn positions never go backwards in time: the render tick never
 * decreases, and every drawn position lies on the server's own path around that tick (within
 * the bounding box of the server's positions one tick either side, plus one tick of movement
 * for the bounded extrapolation). Returns how many positions were checked.
 * @param {DemoStats} st
 * @param {{minFrames?: number, minChecked?: number}} [least] how much must have been drawn
 */
export function checkInterpolation(st, least = {}) {
  const { minFrames = 60, minChecked = 100 } = least;
  const frames = st.frames.filter((f) => Number.isFinite(f.renderTick));
  assert.ok(frames.length >= minFrames, `only ${frames.length} frames drawn`);
  let checked = 0;
  let between = 0;
  for (let i = 1; i < frames.length; i++) {
    assert.ok(frames[i].renderTick >= frames[i - 1].renderTick, `render time went backwards: tick ${frames[i - 1].renderTick} then ${frames[i].renderTick} (frame ${i})`);
  }
  /** @type {Map<string, Map<number, [number, number]>>} */
  const byTick = new Map();
  for (const [id, h] of Object.entries(st.history)) byTick.set(id, new Map(h.map(([t, x, y]) => [t, [x, y]])));
  for (const f of frames) {
    const lo = Math.floor(f.renderTick);
    const hi = Math.ceil(f.renderTick);
    for (const [id, x, y] of f.others) {
      const h = byTick.get(String(id));
      if (!h) continue;
      const around = [lo - 1, lo, hi, hi + 1].map((t) => h.get(t)).filter((p) => p !== undefined);
      if (around.length < 2) continue; // an entity that just appeared or left the history window
      const xs = around.map((p) => p[0]);
      const ys = around.map((p) => p[1]);
      const m = STEP + 0.06;
      assert.ok(
        x >= Math.min(...xs) - m && x <= Math.max(...xs) + m && y >= Math.min(...ys) - m && y <= Math.max(...ys) + m,
        `entity ${id} drawn at (${x}, ${y}) at render tick ${f.renderTick}, off the server's path there: ${JSON.stringify(around)}`,
      );
      checked++;
      const a = h.get(lo);
      const b = h.get(hi);
      if (a && b && lo !== hi && (a[0] !== b[0] || a[1] !== b[1]) && (x !== a[0] || y !== a[1]) && (x !== b[0] || y !== b[1])) between++;
    }
  }
  assert.ok(checked >= minChecked, `only ${checked} drawn positions of other players to check`);
  // gliding: moving players are drawn between the server's ticks, not only at them
  assert.ok(between >= checked / 10, `other players drawn between ticks in only ${between} of ${checked} positions`);
  return { frames: frames.length, checked, between };
}

/** @param {DemoStats} st */
export function summary(st) {
  return {
    state: st.state,
    tick: st.tick,
    checksumsVerified: st.checksumsVerified,
    checksumMismatches: st.checksumMismatches,
    inputsSent: st.inputsSent,
    inputsAcked: st.inputsAcked,
    lastSent: st.lastSent,
    lastAcked: st.lastAcked,
    predictionError: st.predictionError,
    maxPredictionError: st.maxPredictionError,
    inputLatencyMs: Math.round(st.inputLatencyMs),
    bytesInPerSecond: st.bytesInPerSecond,
    frames: st.frames.length,
    chat: st.chat.length,
  };
}
