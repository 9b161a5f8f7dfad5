// The demo: the page `gameserver serve` answers at `/`. It plays at once: a guest token
// (POST /guest, when the server runs with --guest-tokens), a WebSocket to the same host, the
// player's avatar predicted (games/arena.js), everyone else interpolated, chat, and a panel
// with the session's numbers.
//
// Two games: arena (the default: the whole 1000 x 1000 world on the canvas) and field (a
// 4000 x 4000 world that the server sends as a *view*, the entities near the player: a camera
// follows the player's avatar, the world's bounds and the view's cells are drawn, and a HUD
// says how many entities the view holds and that their checksums verify). Another game name
// is drawn as field is, from its schema, if its types have `x` and `y`.
//
// URL parameters: `?game=arena|field` (default arena; the links in the header switch),
// `?room=NAME` (default lobby for arena, field for field), `?name=NAME` (default a random
// guest name), `?server=wss://host:port` (default this page's host) and `#token=...` (a token
// from `gameserver token`, instead of asking the server for a guest token).
//
// When the connection drops, the SDK comes back to the same seat by itself (gamesync.v2
// RESUME); the status line says so while it tries, and when it is back.
//
// `window.demo` is a hook for tests and for curious people at the console: the session and
// `stats()`, a plain-JSON summary (checksums, inputs, prediction error, what was drawn when).

import { connect } from '../src/index.js';
import { arena, inputFromKeys as arenaKeys } from '../games/arena.js';
import { CELL_SIZE, VIEW_CELLS, WORLD as FIELD_WORLD, fieldClient, inputFromKeys as fieldKeys } from '../games/field.js';
import { drawArena, fitCanvas } from './draw_arena.js';
import { FieldRenderer, roleOf, worldOf } from './draw_field.js';

/** @typedef {import('../src/index.js').Session} DemoSession */
/** @typedef {import('../src/index.js').DrawnEntity} DrawnEntity */
/** @typedef {{t: number, renderTick: number, others: Array<[number, number, number]>, own: [number, number] | null, held: number}} DrawnFrame */
/**
 * What the page knows of a game.
 * @typedef {object} GameClient
 * @property {Record<string, unknown>} options spread into connect(): the game's name, prediction
 * @property {string} room the default room
 * @property {string} hint the line under the canvas
 * @property {string} avatar the type of the players' avatars ('' = the first type named like one)
 * @property {(keys: Set<string>) => Record<string, number>} input the input the keys held give
 * @property {{cellSize?: number, viewCells?: number, span?: number, side?: number, wrap?: boolean} | null} world null: the whole world on the canvas (arena); else a camera (field)
 * @property {{side: number}} [size] the world's side the game's prediction uses (field)
 */

const fieldGame = fieldClient({ side: FIELD_WORLD });

/** @type {Record<string, GameClient>} */
const GAMES = {
  arena: { options: arena, room: 'lobby', hint: 'Move with the arrow keys or WASD. Collect the gems.', avatar: 'player', input: arenaKeys, world: null },
  field: {
    options: fieldGame.options,
    room: 'field',
    hint: 'Move with the arrow keys or WASD. The world is 4000 × 4000 and wraps around at its edges (the dashed line); the server sends you only what is near you (the shaded cells).',
    avatar: 'player',
    input: fieldKeys,
    world: { cellSize: CELL_SIZE, viewCells: VIEW_CELLS, span: 1000, side: FIELD_WORLD, wrap: true },
    size: fieldGame.world,
  },
};
/** @typedef {{sender: number, name: string, text: string, mine: boolean, at: number}} ChatLine */

/** Frames of drawn positions kept for stats() (about 30 s at 60 fps). */
const MAX_FRAMES = 2000;
/** Server positions kept per entity, in ticks. */
const MAX_HISTORY = 600;
const MAX_CHAT_LINES = 100;
const MOVE_KEYS = new Set(['ArrowUp', 'ArrowDown', 'ArrowLeft', 'ArrowRight', 'w', 'a', 's', 'd']);

const params = new URLSearchParams(location.search);
const gameName = (params.get('game') || 'arena').slice(0, 64);
/** @type {GameClient} */
const game = GAMES[gameName] ?? { options: { game: gameName }, room: gameName, hint: 'Move with the arrow keys or WASD.', avatar: '', input: fieldKeys, world: { span: 1000 } };
const room = params.get('room') || game.room;
const serverUrl = params.get('server') || `wss://${location.host}`;
const fixedToken = new URLSearchParams(location.hash.slice(1)).get('token');
const name = (params.get('name') || `guest-${Math.floor(Math.random() * 9000 + 1000)}`).slice(0, 32);

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const statusLine = $('status');
const canvas = /** @type {HTMLCanvasElement} */ ($('world'));
const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
const chatLog = $('chat-log');
const chatForm = /** @type {HTMLFormElement} */ ($('chat-form'));
const chatLine = /** @type {HTMLInputElement} */ ($('chat-line'));

document.title = `gameserver · ${gameName}`;
$('game-title').textContent = gameName;
$('hint').textContent = game.hint;
document.querySelectorAll('#games a').forEach((a) => {
  const link = /** @type {HTMLAnchorElement} */ (a);
  const target = link.dataset.game ?? '';
  const q = new URLSearchParams(location.search);
  q.set('game', target);
  q.delete('room'); // rooms run one game: another game, its own default room
  link.href = `?${q}${location.hash}`;
  if (target === gameName) link.setAttribute('aria-current', 'page');
});

/** @param {string} text @param {boolean | 'warn'} [level] true: an error */
function setStatus(text, level = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle('error', level === true);
  statusLine.classList.toggle('warn', level === 'warn');
}

/** A token for every join: the one in the URL's fragment, else a fresh guest token. */
async function fetchToken() {
  if (fixedToken) return fixedToken;
  const wanted = String(game.options.game ?? '');
  const res = await fetch('/guest', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(wanted ? { name, game: wanted } : { name }),
    credentials: 'same-origin',
  });
  if (!res.ok) {
    const text = (await res.text()).trim();
    /** @type {string} */
    let why;
    try {
      // 404 with a JSON error: the server runs no such game; 404 without: no guest tokens
      why = String(JSON.parse(text).error ?? text);
    } catch {
      why = res.status === 404 ? 'this server gives no guest tokens (start it with --guest-tokens, as make run does)' : `${res.status} ${text}`;
    }
    throw new Error(`could not get a guest token: ${why}`);
  }
  const body = await res.json();
  if (typeof body?.token !== 'string') throw new Error('could not get a guest token: the answer has no token');
  if (typeof body.game === 'string' && wanted && body.game !== wanted) {
    // a server from before guest tokens could name their game mints for its default game
    throw new Error(
      `this server's guest tokens are for ${body.game}, not ${wanted}: start it with ${wanted} as its default game ` +
        `(gameserver serve --guest-tokens --game gameserver.games.${wanted}:${wanted[0].toUpperCase()}${wanted.slice(1)}), or give a token: #token=…`,
    );
  }
  return body.token;
}

// ------------------------------------------------------------------ what the tests can read

/** @type {DrawnFrame[]} */
const frames = [];
/** @type {Map<number, Array<[number, number, number]>>} entity id -> [tick, x, y] as the server had it */
const history = new Map();
/** @type {ChatLine[]} */
const chat = [];
let joins = 0;
let firstError = '';
/** the avatar type of this game (known once JOINED has the schema) */
let avatarType = game.avatar;
/** @type {FieldRenderer | null} the camera renderer (field), made from the JOINED schema */
let renderer = null;
/** entities seen coming into the replica (view) and leaving it, over the session */
let entered = 0;
let left = 0;
/** @type {Set<number>} the ids the replica held at the last state */
let heldIds = new Set();
/** @type {Record<string, number>} held entities by type, at the last state */
let heldByType = {};

// ------------------------------------------------------------------ the session

/** @type {DemoSession | null} */
let session = null;

/** The display name of a player number, from its avatar. @param {number | bigint} player */
function nameOf(player) {
  if (!session) return `player ${player}`;
  if (player == 0) return 'server';
  for (const e of session.entities(avatarType)) {
    if (e.get('owner') == player) return String(e.get('name')) || `player ${player}`;
  }
  return `player ${player}`;
}

/** @param {string} who @param {string} text @param {string} [cls] */
function addChatLine(who, text, cls = '') {
  const li = document.createElement('li');
  if (cls) li.className = cls;
  if (who) {
    const b = document.createElement('span');
    b.className = 'who';
    b.textContent = `${who}: `;
    li.append(b);
  }
  li.append(document.createTextNode(text));
  chatLog.append(li);
  while (chatLog.childElementCount > MAX_CHAT_LINES) chatLog.firstElementChild?.remove();
  chatLog.scrollTop = chatLog.scrollHeight;
}

async function start() {
  setStatus(`getting a token for ${name}…`);
  let token;
  try {
    token = await fetchToken();
  } catch (err) {
    firstError = String(/** @type {Error} */ (err).message ?? err);
    setStatus(firstError, true);
    return;
  }
  let first = true;
  setStatus(`joining room ${room}…`);
  /** @type {DemoSession} */
  const s = connect(serverUrl, {
    room,
    // the first join uses the token just fetched, a fresh join (a lost seat) a fresh one
    token: () => (first ? ((first = false), token) : fetchToken()),
    ...game.options,
  });
  session = s;
  hook.session = s;

  s.on('joined', (j) => {
    joins++;
    $('m-room').textContent = j.room;
    $('m-player').textContent = `${name} (#${j.player})`;
    $('m-game').textContent = `${j.game}${j.view ? ' (view)' : ''}`;
    if (!game.avatar) avatarType = j.schema.types.find((t) => roleOf(t.name) === 'player')?.name ?? '';
    if (game.world) renderer = new FieldRenderer(worldOf(j.schema, game.world));
    setStatus(`playing in room ${j.room} as ${name}${j.rejoin ? ' (joined again)' : ''}`);
  });
  s.on('reconnecting', (r) => {
    const why = { stall: 'the server went silent', restart: 'the server is restarting', 'seat-lost': 'joining again' }[/** @type {string} */ (r.reason)] ?? 'connection lost';
    setStatus(`${why}; reconnecting (attempt ${r.attempt})…`, 'warn');
  });
  s.on('resumed', (r) => setStatus(`back in room ${s.room} as ${name} (reconnected after ${(r.downtimeMs / 1000).toFixed(1)} s)`));
  s.on('lost', (l) => {
    if (!l.final) addChatLine('', `your seat was lost (${l.reason}); joining the room again`, 'system');
  });
  s.on('state', () => recordServerState(s));
  s.on('desync', (d) => addChatLine('', `desync at tick ${d.tick}: ${d.reason}${d.rejoining ? '; rejoining' : d.resyncing ? '; asking for a fresh snapshot' : ''}`, 'system'));
  s.on('event', (e) => {
    if (e.name === 'chat') {
      const mine = e.sender == s.player;
      chat.push({ sender: Number(e.sender), name: nameOf(e.sender), text: e.text, mine, at: performance.now() });
      if (chat.length > MAX_CHAT_LINES) chat.shift();
      addChatLine(nameOf(e.sender), e.text, mine ? 'mine' : '');
    } else if (e.name === 'joined' && e.sender == 0) {
      addChatLine('', `${e.text} joined`, 'system');
    }
  });
  s.on('close', (info) => {
    const advice = info.advice === 'retry' || info.advice === 'new-token' ? ' Reload the page to try again.' : '';
    setStatus(`${info.text}${info.detail ? ` (${info.detail})` : ''}${advice}`, true);
  });

  try {
    await s.ready;
  } catch {
    return; // the close handler has said why
  }
  s.setInput(game.input(keys));
  requestAnimationFrame(frame);
}

/** Remember where the server had every player at this tick, and what came and went. @param {DemoSession} s */
function recordServerState(s) {
  const tick = s.tick;
  const replica = s.replica;
  if (replica) {
    /** @type {Set<number>} */
    const now = new Set();
    /** @type {Record<string, number>} */
    const byType = {};
    for (const e of replica.entities.values()) {
      const id = Number(e.id);
      now.add(id);
      if (!heldIds.has(id)) entered++;
      byType[e.type.name] = (byType[e.type.name] ?? 0) + 1;
    }
    for (const id of heldIds) if (!now.has(id)) left++;
    heldIds = now;
    heldByType = byType;
    // a scoreboard that says how big the world is (a room smaller than the default is smaller)
    const board = replica.ofType('board')[0];
    if (board && board.type.index.has('side') && game.size) {
      const side = Number(board.get('side'));
      if (side > 0 && side !== game.size.side) {
        game.size.side = side;
        renderer?.resize(side);
      }
    }
  }
  for (const e of s.entities(avatarType)) {
    const id = Number(e.id);
    let h = history.get(id);
    if (!h) history.set(id, (h = []));
    h.push([tick, /** @type {number} */ (e.get('x')), /** @type {number} */ (e.get('y'))]);
    if (h.length > MAX_HISTORY) h.shift();
  }
  if (history.size > 256) {
    const alive = new Set(s.entities(avatarType).map((e) => Number(e.id)));
    for (const id of history.keys()) if (!alive.has(id)) history.delete(id);
  }
}

// ------------------------------------------------------------------ keys and chat

/** @type {Set<string>} */
const keys = new Set();
/** @param {KeyboardEvent} e */
const keyName = (e) => (e.key.length === 1 ? e.key.toLowerCase() : e.key);

addEventListener('keydown', (e) => {
  if (e.target === chatLine) {
    if (e.key === 'Escape') chatLine.blur();
    return;
  }
  if (e.key === 'Enter') {
    e.preventDefault();
    chatLine.focus();
    return;
  }
  const k = keyName(e);
  if (!MOVE_KEYS.has(k)) return;
  e.preventDefault();
  if (keys.has(k)) return;
  keys.add(k);
  session?.setInput(game.input(keys));
});
addEventListener('keyup', (e) => {
  const k = keyName(e);
  if (!keys.delete(k)) return;
  session?.setInput(game.input(keys));
});
addEventListener('blur', () => {
  keys.clear();
  session?.setInput(game.input(keys));
});
chatLine.addEventListener('focus', () => {
  keys.clear();
  session?.setInput(game.input(keys));
});
chatForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = chatLine.value.trim();
  if (!text || !session) return;
  if (session.sendEvent('chat', text)) chatLine.value = '';
  else addChatLine('', 'not sent: the connection is busy or closed', 'system');
});

// ------------------------------------------------------------------ drawing

let lastPanel = 0;
/** @param {DemoSession} s @param {number} now */
function updatePanel(s, now) {
  const m = s.metrics(now);
  $('m-ping').textContent = Number.isFinite(m.inputLatencyMs) && m.inputLatencyMs > 0 ? `${m.inputLatencyMs.toFixed(0)} ms` : '–';
  $('m-tick').textContent = `${m.tick} (${s.tickRate} Hz)`;
  $('m-bytes').textContent = `${(m.bytesInPerSecond / 1024).toFixed(1)} KiB/s`;
  const cs = $('m-checksums');
  cs.textContent = m.checksumMismatches ? `${m.checksumMismatches} mismatched, ${m.checksumsVerified} verified` : `${m.checksumsVerified} verified`;
  cs.className = m.checksumMismatches ? 'bad' : 'ok';
  $('m-prediction').textContent = `${m.predictionError.toFixed(2)} (max ${m.maxPredictionError.toFixed(2)})`;
  $('m-delay').textContent = Number.isFinite(m.interpolationDelayMs) ? `${m.interpolationDelayMs.toFixed(0)} ms (jitter ${m.jitterMs.toFixed(1)} ms)` : '–';
  const kinds = Object.entries(heldByType)
    .map(([t, n]) => `${n} ${t}`)
    .join(', ');
  $('m-entities').textContent = `${m.entities}${s.viewRoom ? ' in view' : ''}${kinds ? ` (${kinds})` : ''}`;
  const scores = $('scores');
  const players = s.entities(avatarType).map((e) => e.values());
  players.sort((a, b) => Number(b.score) - Number(a.score));
  scores.replaceChildren(
    ...players.slice(0, 10).map((p) => {
      const li = document.createElement('li');
      li.textContent = `${p.name || 'player'}: ${p.score}`;
      if (p.owner == s.player) li.className = 'me';
      return li;
    }),
  );
}

/** @param {number} now */
function frame(now) {
  const s = session;
  if (!s) return;
  const view = s.view(now);
  // the own avatar: predicted, or (a game without prediction) the avatar the player owns
  const ownId = s.entities(avatarType).find((e) => e.get('owner') == s.player)?.id;
  /** @type {DrawnEntity | null} */
  let ownEntity = null;
  /** @type {Array<[number, number, number]>} */
  const others = [];
  for (const e of view.entities) {
    if (e.type !== avatarType) continue;
    if (e.predicted || (ownEntity === null && e.id === ownId)) ownEntity = e;
    else others.push([Number(e.id), Number(e.values.x), Number(e.values.y)]);
  }
  if (renderer) {
    fitCanvas(canvas);
    const m = s.stats;
    const board = s.replica?.ofType('board')[0]?.values() ?? null;
    renderer.draw(ctx, canvas, view.entities, ownEntity, { held: s.replica?.entities.size ?? 0, viewRoom: s.viewRoom, verified: m.checksumsVerified, mismatches: m.checksumMismatches, entered, left, board });
  } else {
    drawArena(ctx, canvas, view.entities);
  }
  /** @type {[number, number] | null} */
  const own = ownEntity ? [Number(ownEntity.values.x), Number(ownEntity.values.y)] : null;
  frames.push({ t: now, renderTick: view.renderTick, others, own, held: s.replica?.entities.size ?? 0 });
  if (frames.length > MAX_FRAMES) frames.shift();
  if (now - lastPanel > 250) {
    lastPanel = now;
    updatePanel(s, now);
  }
  if (s.state !== 'closed') requestAnimationFrame(frame);
}

// ------------------------------------------------------------------ the hook

/** A plain-JSON summary of the session, for tests. */
function stats() {
  const s = session;
  const m = s?.metrics();
  const own = s?.entities(avatarType).find((e) => e.get('owner') == s.player);
  return {
    name,
    room,
    game: s?.game || gameName,
    viewRoom: s?.viewRoom ?? false,
    held: s?.replica?.entities.size ?? 0,
    heldByType: { ...heldByType },
    entered,
    left,
    drawn: renderer ? { ...renderer.drawn } : null,
    camera: renderer?.camera ? [renderer.camera[0], renderer.camera[1]] : null,
    error: firstError,
    state: s?.state ?? 'none',
    player: s ? Number(s.player) : 0,
    joins,
    tick: s?.tick ?? 0,
    closeInfo: s?.closeInfo ? { code: s.closeInfo.code, name: s.closeInfo.name, text: s.closeInfo.text, detail: s.closeInfo.detail } : null,
    checksumsVerified: s?.stats.checksumsVerified ?? 0,
    checksumMismatches: s?.stats.checksumMismatches ?? 0,
    desyncs: s?.stats.desyncs ?? 0,
    rejoins: s?.stats.rejoins ?? 0,
    resyncs: s?.stats.resyncs ?? 0,
    reconnects: s?.stats.reconnects ?? 0,
    resumes: s?.stats.resumes ?? 0,
    seatsLost: s?.stats.seatsLost ?? 0,
    lastDowntimeMs: s?.lastDowntimeMs ?? NaN,
    statusText: statusLine.textContent ?? '',
    inputsSent: s?.stats.inputsSent ?? 0,
    inputsAcked: s?.stats.inputsAcked ?? 0,
    inputsDropped: s?.stats.inputsDropped ?? 0,
    lastSent: s ? Number(s.lastSent) : 0,
    lastAcked: s ? Number(s.lastAcked) : 0,
    predictionError: m?.predictionError ?? NaN,
    maxPredictionError: m?.maxPredictionError ?? NaN,
    inputLatencyMs: m?.inputLatencyMs ?? NaN,
    bytesInPerSecond: m?.bytesInPerSecond ?? 0,
    ownServer: own ? { id: Number(own.id), x: Number(own.get('x')), y: Number(own.get('y')) } : null,
    frames: frames.slice(),
    history: Object.fromEntries([...history].map(([id, h]) => [String(id), h.slice()])),
    chat: chat.slice(),
  };
}

/** @type {{session: DemoSession | null, stats: typeof stats}} */
const hook = { session: null, stats };
/** @type {any} */ (window).demo = hook;

start();
