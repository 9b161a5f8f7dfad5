// Clusters against real sockets: a fake node (a `ws` WebSocketServer on 127.0.0.1 port 0 that
// hosts nothing) answers every JOIN or RESUME with REDIRECT to a real server and closes with
// 4015, as a real node does for a room that lives elsewhere. The real server runs with
// --insecure (ws://), once directly and once behind the project's fault proxy (the owner's
// address, which is cut, then taken away).

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import WebSocket, { WebSocketServer } from 'ws';

import { CloseCode, connect, decodeClientMessage, encodeServerMessage } from '../src/index.js';
import { startFaultProxy } from './faultproxy.js';
import { PYTHON, ROOT, SKIP, startServer, stopServer, token, until } from './realserver.js';

/** @typedef {import('./faultproxy.js').FaultProxy} FaultProxy */

/**
 * A node that redirects every join to `target.url` (changeable), recording what it got.
 * @param {{url: string}} target
 * @returns {Promise<{url: string, received: string[], target: {url: string}, close: () => Promise<void>}>}
 */
async function startRedirector(target) {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    handleProtocols: (protocols) => (protocols.has('gamesync.v2') ? 'gamesync.v2' : false),
  });
  await new Promise((resolve) => wss.once('listening', resolve));
  /** @type {string[]} */
  const received = [];
  wss.on('connection', (ws) => {
    ws.once('message', (data) => {
      const msg = decodeClientMessage(new Uint8Array(/** @type {Buffer} */ (data)));
      received.push(msg.kind);
      const room = msg.kind === 'JOIN' || msg.kind === 'RESUME' ? msg.room : '';
      ws.send(encodeServerMessage({ kind: 'REDIRECT', url: target.url, room }));
      ws.close(CloseCode.REDIRECT, 'redirect');
    });
  });
  const address = /** @type {import('node:net').AddressInfo} */ (wss.address());
  return {
    url: `ws://127.0.0.1:${address.port}/`,
    received,
    target,
    close: () =>
      new Promise((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close(() => resolve(undefined));
      }),
  };
}

const WS = /** @type {import('../src/index.js').WebSocketConstructor} */ (/** @type {unknown} */ (WebSocket));

describe('redirects against real sockets (a fake node in front of a real server)', { skip: SKIP }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'gs-web-redirect-'));
  /** @type {import('node:child_process').ChildProcess | undefined} */
  let proc;
  let url = '';
  let port = 0;
  /** @type {FaultProxy | undefined} */
  let proxy;
  before(async () => {
    ({ url, port, proc } = await startServer(stateDir, ['--insecure', '--seat-hold', '20']));
    proxy = await startFaultProxy({ python: PYTHON, root: ROOT, targetPort: port, scheme: 'ws' });
  });
  after(async () => {
    await proxy?.close();
    await stopServer(proc);
    rmSync(stateDir, { recursive: true, force: true });
  });

  test('a join is redirected to the real server, where the others see the player', async () => {
    const node = await startRedirector({ url });
    try {
      const base = { room: 'js-redir', game: 'arena', WebSocket: WS };
      const alice = connect(node.url, { ...base, token: await token(stateDir, 'alice-redir') });
      /** @type {any[]} */
      const redirects = [];
      alice.on('redirect', (r) => redirects.push(r));
      await alice.ready;
      const bob = connect(url, { ...base, token: await token(stateDir, 'bob-redir') });
      await bob.ready;
      await until(() => bob.entities('player').length === 2, 'bob seeing alice');
      assert.equal(alice.url, url);
      assert.equal(alice.entryUrl, node.url);
      assert.equal(alice.redirects, 1);
      assert.deepEqual(redirects, [{ url, room: 'js-redir', hop: 1 }]);
      assert.deepEqual(node.received, ['JOIN']);
      await alice.leave();
      await bob.leave();
    } finally {
      await node.close();
    }
  });

  test('a node that keeps redirecting: 3 hops, then the session closes with 4015', async () => {
    const target = { url: '' };
    const node = await startRedirector(target);
    target.url = node.url;
    try {
      const s = connect(node.url, { room: 'loop', WebSocket: WS, token: await token(stateDir, 'carol') });
      await assert.rejects(s.ready, /another server of this cluster/);
      assert.equal(s.closeInfo?.code, CloseCode.REDIRECT);
      assert.match(s.closeInfo?.detail ?? '', /after 3 redirects/);
      assert.deepEqual(node.received, ['JOIN', 'JOIN', 'JOIN', 'JOIN']);
    } finally {
      await node.close();
    }
  });

  test('a resume goes to the owner; the owner gone, back to the entry, which names the room’s node', async () => {
    const p = /** @type {FaultProxy} */ (proxy);
    const owner = `ws://127.0.0.1:${p.port}/`;
    const node = await startRedirector({ url: owner });
    try {
      const alice = connect(node.url, { room: 'js-moved', game: 'arena', WebSocket: WS, token: await token(stateDir, 'alice-moved') });
      /** @type {string[]} */
      const log = [];
      for (const name of /** @type {const} */ (['redirect', 'resumed', 'lost', 'joined'])) alice.on(name, () => log.push(name));
      await alice.ready;
      const player = alice.player;
      assert.equal(alice.ownerUrl, owner);
      log.length = 0;

      await p.command('cut'); // RST, new connections still accepted
      await until(() => log.includes('resumed'), 'the resume at the owner');
      assert.equal(alice.url, owner);
      assert.deepEqual(node.received, ['JOIN'], 'the resume went straight to the owner');

      node.target.url = url; // the room's node by another address
      log.length = 0;
      await p.command('down'); // the owner's address is gone: connections refused
      await p.command('cut');
      await until(() => log.includes('resumed'), 'the resume after going back to the entry');
      assert.deepEqual(log, ['redirect', 'resumed'], 'no lost seat');
      assert.equal(alice.player, player, 'the same seat');
      assert.equal(alice.url, url);
      assert.equal(alice.ownerUrl, url);
      assert.deepEqual(node.received, ['JOIN', 'RESUME']);
      assert.equal(alice.stats.resumes, 2);
      await alice.leave();
    } finally {
      await p.restore();
      await node.close();
    }
  });
});
