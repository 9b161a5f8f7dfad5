// The real server for the Node integration tests: `python -m gameserver.cli serve` on
// 127.0.0.1 port 0, started by the test and stopped by its PID; tokens from `gameserver token`.
//
// It needs the project's Python environment: GAMESERVER_PYTHON, or <repo>/.venv/bin/python
// (`make test` makes it). Without one the tests skip, except on CI (CI=true), where they fail.

import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const PYTHON = process.env.GAMESERVER_PYTHON || join(ROOT, '.venv', 'bin', 'python');
const HAVE_PYTHON = existsSync(PYTHON);
const ON_CI = process.env.CI === 'true';
/** Why the real-server tests cannot run here (false if they can; never skipped on CI). */
export const SKIP = !HAVE_PYTHON && !ON_CI ? `no Python environment at ${PYTHON} (run make test, or set GAMESERVER_PYTHON)` : false;

/**
 * A server process of our own; stop it with `process.kill(proc.pid)` (or `stopServer`).
 * @param {string} stateDir
 * @param {string[]} args
 * @returns {Promise<{url: string, port: number, proc: import('node:child_process').ChildProcess}>}
 */
export function startServer(stateDir, args) {
  if (!HAVE_PYTHON) throw new Error(`no Python environment at ${PYTHON}: run make test, or set GAMESERVER_PYTHON`);
  const proc = spawn(PYTHON, ['-m', 'gameserver.cli', 'serve', '--port', '0', '--state-dir', stateDir, '--cpu-budget', '0', '--log-level', 'WARNING', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`the server did not start in 30 s: ${err}`)), 30_000);
    proc.stderr?.on('data', (d) => (err += d));
    proc.stdout?.on('data', (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1], port: Number(new URL(m[1]).port), proc });
      }
    });
    proc.on('exit', (code) => reject(new Error(`the server exited (${code}): ${err}`)));
  });
}

/** Stop a server we started, by its PID, and wait for it to exit. @param {import('node:child_process').ChildProcess | undefined} proc */
export async function stopServer(proc) {
  if (!proc?.pid || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** A signed player token. @param {string} stateDir @param {string} player */
export async function token(stateDir, player) {
  const { stdout } = await run(PYTHON, ['-m', 'gameserver.cli', 'token', '--player', player, '--state-dir', stateDir, '--ttl', '600'], { cwd: ROOT });
  return stdout.trim();
}

/** @param {number} ms */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Wait until `done()` or fail after `ms`.
 * @param {() => boolean} done
 * @param {string} what
 * @param {number} [ms]
 */
export async function until(done, what, ms = 10_000) {
  const end = Date.now() + ms;
  while (!done()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
