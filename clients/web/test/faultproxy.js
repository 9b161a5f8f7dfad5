// The project's fault proxy (tools/faultproxy.py, docs/faults.md) driven from Node through its
// stdin console: started by the test on 127.0.0.1 port 0 in front of one server, stopped by its
// PID at the end. Each call waits for the proxy's answer line, so a fault is in place when the
// call resolves.
// - cut():     RST on every connection (no close frame, no TLS close), and new connections
//              refused until restore(): the network is gone;
// - stall():   nothing forwarded on the open connections, new ones held (blackholed): the
//              network went silent, nothing closes;
// - restore(): the network is back (`up`, `resume`).

import { spawn } from 'node:child_process';
import { join } from 'node:path';

/**
 * @typedef {object} FaultProxy
 * @property {number} port where clients connect
 * @property {string} url `scheme://127.0.0.1:port`
 * @property {() => Promise<void>} cut
 * @property {() => Promise<void>} stall
 * @property {() => Promise<void>} restore
 * @property {(command: string) => Promise<string>} command any console command; resolves with its answer
 * @property {() => Promise<void>} close
 */

/**
 * @param {{python: string, root: string, targetPort: number, scheme?: string}} opts
 * @returns {Promise<FaultProxy>}
 */
export async function startFaultProxy({ python, root, targetPort, scheme = 'wss' }) {
  const proc = spawn(python, [join(root, 'tools', 'faultproxy.py'), '--listen', '127.0.0.1:0', '--target', `127.0.0.1:${targetPort}`], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  /** @type {Array<(line: string) => void>} who waits for the next answer line, oldest first */
  const waiting = [];
  let partial = '';
  proc.stderr?.on('data', (d) => (err = (err + d).slice(-10_000)));
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the fault proxy did not start in 20 s: ${err}`)), 20_000);
    proc.once('exit', (code) => reject(new Error(`the fault proxy exited (${code}): ${err}`)));
    proc.stdout?.on('data', (d) => {
      out = (out + d).slice(-10_000);
      partial += d;
      const lines = partial.split('\n');
      partial = /** @type {string} */ (lines.pop());
      for (const line of lines) {
        const m = /listening on 127\.0\.0\.1:(\d+)/.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        } else if (/^\[\s*[\d.]+s\]/.test(line)) {
          waiting.shift()?.(line);
        }
      }
    });
  });
  /** @param {string} text */
  const command = (text) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the fault proxy did not answer ${JSON.stringify(text)}: ${out.slice(-500)} ${err}`)), 5000);
      waiting.push((line) => {
        clearTimeout(timer);
        if (/\berror\b/.test(line)) reject(new Error(`fault proxy: ${line}`));
        else resolve(line);
      });
      proc.stdin?.write(`${text}\n`);
    });
  return {
    port,
    url: `${scheme}://127.0.0.1:${port}`,
    command,
    async cut() {
      await command('down');
      await command('cut');
    },
    async stall() {
      await command('down blackhole');
      await command('stall');
    },
    async restore() {
      await command('resume');
      await command('up');
    },
    async close() {
      if (proc.exitCode !== null || proc.signalCode !== null || !proc.pid) return;
      const exited = new Promise((resolve) => proc.once('exit', resolve));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
