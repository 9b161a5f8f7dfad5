#!/usr/bin/env node
// Decode-and-apply cost of one arena DELTA (8 players moving) in the JavaScript SDK.
//
//   node tools/bench_web_decode.mjs [--batches N] [--per-batch N] [--json]
//   node tools/bench_web_decode.mjs --chromium [--browser PATH]   # the same in headless Chromium
//
// Both run clients/web/bench/decode_bench.js. With --chromium this script serves clients/web/
// on 127.0.0.1 (a port of its own, for the run only) and has headless Chromium load
// bench/decode.html, which prints the result as JSON (and sets window.benchResult, for any
// other driver). Without --browser it runs `chromium` from the PATH (Debian's package).

import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import os from 'node:os';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { runDecodeBench } from '../clients/web/bench/decode_bench.js';

const WEB = fileURLToPath(new URL('../clients/web/', import.meta.url));
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.json': 'application/json' };

/**
 * @param {string} message
 * @returns {never}
 */
function usage(message) {
  console.error(`bench_web_decode: ${message}`);
  process.exit(2);
}

function options() {
  try {
    return parseArgs({
      options: {
        batches: { type: 'string', default: '21' },
        'per-batch': { type: 'string', default: '1000' },
        json: { type: 'boolean', default: false },
        chromium: { type: 'boolean', default: false },
        browser: { type: 'string', default: 'chromium' },
      },
    }).values;
  } catch (err) {
    return usage(err instanceof Error ? err.message : String(err));
  }
}

const values = options();
const batches = Number(values.batches);
const perBatch = Number(values['per-batch']);
if (!(Number.isInteger(batches) && batches > 0 && Number.isInteger(perBatch) && perBatch >= 10)) {
  usage('--batches must be a positive integer and --per-batch at least 10');
}

/**
 * Serve clients/web/ (GET only, nothing outside it) and run the benchmark page in Chromium.
 * @returns {Promise<Record<string, any>>}
 */
async function inChromium() {
  const server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    const file = join(WEB, path);
    if (req.method !== 'GET' || !file.startsWith(WEB) || path.split(sep).includes('node_modules')) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES[/** @type {keyof TYPES} */ (extname(file))] ?? 'application/octet-stream' }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const url = `http://127.0.0.1:${port}/bench/decode.html?batches=${batches}&perBatch=${perBatch}`;
  try {
    const dom = await new Promise((resolve, reject) => {
      const args = ['--headless=new', '--disable-gpu', '--no-first-run', '--no-sandbox', `--user-data-dir=${join(os.tmpdir(), `bench-chromium-${process.pid}`)}`, '--dump-dom', url];
      const child = spawn(values.browser, args, { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      const timer = setTimeout(() => child.kill(), 180_000);
      child.stdout.on('data', (d) => (out += d));
      child.on('error', (err) => reject(new Error(`cannot run ${values.browser}: ${err.message} (apt-get install chromium, or --browser PATH)`)));
      child.on('exit', () => {
        clearTimeout(timer);
        resolve(out);
      });
    });
    const m = /<pre id="result">([\s\S]*?)<\/pre>/.exec(/** @type {string} */ (dom));
    if (!m || !m[1].trim().startsWith('{')) throw new Error(`the page gave no result: ${m ? m[1] : 'no output from the browser'}`);
    return JSON.parse(m[1].replaceAll('&quot;', '"').replaceAll('&amp;', '&'));
  } finally {
    server.close();
  }
}

let result;
let runtime;
try {
  if (values.chromium) {
    result = await inChromium();
    runtime = /** @type {string} */ (result.userAgent).match(/(HeadlessChrome|Chrome)\/[\d.]+/)?.[0] ?? result.userAgent;
  } else {
    result = runDecodeBench({ batches, perBatch });
    runtime = `Node ${process.version} (V8 ${process.versions.v8})`;
  }
} catch (err) {
  console.error(`bench_web_decode: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
const cpu = `${os.cpus()[0]?.model ?? '?'}, ${os.cpus().length} cores`;
if (values.json) {
  console.log(JSON.stringify({ ...result, runtime, cpu }));
} else {
  const f = (/** @type {number} */ x) => x.toFixed(2);
  console.log(`command: node tools/bench_web_decode.mjs${values.chromium ? ' --chromium' : ''} --batches ${batches} --per-batch ${perBatch}`);
  console.log(`runtime: ${runtime} on ${cpu}`);
  console.log(`arena DELTA, 8 players moving: ${result.deltaBytes} bytes (${result.deltaBytesWithChecksum} with checksum)`);
  console.log(`decode + apply, every 5th verified: median ${f(result.medianUs)} µs per DELTA (min ${f(result.minUs)}, max ${f(result.maxUs)}; ${batches} batches of ${perBatch})`);
  console.log(`decode + apply, no checksum:        median ${f(result.plainMedianUs)} µs`);
  console.log(`one checksum of the state:          median ${f(result.checksumMedianUs)} µs`);
}
