// A TCP proxy on 127.0.0.1 the tests can break on purpose, between a client and the server:
// - cut(): every connection through it is destroyed at once (no WebSocket close frame, no
//   TLS close_notify), and while it is down a new connection is accepted and destroyed;
// - stall(): every byte is held back, both ways, on the connections open now and on new ones
//   (the network went silent: nothing closes, the client must notice by itself);
// - restore(): the network is back (held connections stay dead; new ones go through).
// It only ever connects to the one target port on 127.0.0.1.

import net from 'node:net';

/**
 * @typedef {object} CutProxy
 * @property {number} port where clients connect
 * @property {string} url `scheme://127.0.0.1:port` for a server URL's scheme
 * @property {() => void} cut
 * @property {() => void} stall
 * @property {() => void} restore
 * @property {() => number} connections connections accepted so far
 * @property {(port: number) => void} setTarget where new connections go (e.g. a server started after the proxy)
 * @property {() => Promise<void>} close
 */

/**
 * @param {number} targetPort the server's port on 127.0.0.1 (0: set it later with setTarget)
 * @param {string} [scheme] for `url` (ws or wss)
 * @returns {Promise<CutProxy>}
 */
export async function startCutProxy(targetPort, scheme = 'ws') {
  /** @type {'up' | 'cut' | 'stall'} */
  let mode = 'up';
  let accepted = 0;
  let target = targetPort;
  /** @type {Set<net.Socket>} */
  const sockets = new Set();
  /** @type {Set<net.Socket>} silenced by a stall: never forwarded again (destroyed at close) */
  const held = new Set();
  /** @param {net.Socket} s */
  const track = (s) => {
    sockets.add(s);
    s.on('close', () => {
      sockets.delete(s);
      held.delete(s);
    });
    s.on('error', () => {});
  };
  const server = net.createServer((client) => {
    accepted++;
    track(client);
    if (mode === 'cut' || !target) {
      client.destroy();
      return;
    }
    if (mode === 'stall') {
      held.add(client);
      client.pause();
      return;
    }
    const upstream = net.connect(target, '127.0.0.1');
    track(upstream);
    /** @param {net.Socket} from @param {net.Socket} to */
    const pipe = (from, to) => {
      from.on('data', (d) => {
        if (held.has(from)) return; // dropped on the floor: the network went silent for it
        to.write(d);
      });
      from.on('end', () => to.end());
      from.on('close', () => to.destroy());
    };
    pipe(client, upstream);
    pipe(upstream, client);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  const port = /** @type {net.AddressInfo} */ (server.address()).port;
  return {
    port,
    url: `${scheme}://127.0.0.1:${port}`,
    cut() {
      mode = 'cut';
      for (const s of sockets) s.destroy();
    },
    stall() {
      mode = 'stall';
      for (const s of sockets) held.add(s);
    },
    restore() {
      mode = 'up';
      // the connections a stall held stay silent (as a dead NAT mapping would); new ones work
    },
    connections: () => accepted,
    setTarget(port) {
      target = port;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(() => resolve(undefined)));
    },
  };
}
