// The arena demo: the page `gameserver serve` answers at `/`. It plays at once: a guest token
// (POST /guest, when the server runs with --guest-tokens), a WebSocket to the same host, the
// player's avatar predicted (games/arena.js), everyone else interpolated, chat, and a panel
// with the session's numbers.
//
// URL parameters: `?room=NAME` (default lobby), `?name=NAME` (default a random guest name),
// `?server=wss://host:port` (default this page's host) and `#token=...` (a token from
// `gameserver token`, instead of asking the server for a guest token).
//
// When the connection drops, the SDK comes back to the same seat by itself (gamesync.v2
// RESUME); the status line says so while it tries, and when it is back.
//
// `window.demo` is a hook for tests and for curious people at the console: the session and
// `stats()`, a plain-JSON summary (checksums, inputs, prediction error, what was drawn when).

import { connect } from '../src/index.js';
import { WORLD, arena, inputFromKeys } from '../games/arena.js';

/** @typedef {import('../games/arena.js').ArenaTypes} ArenaTypes */
/** @typedef {import('../src/index.js').Session<ArenaTypes>} ArenaSession */
/** @typedef {import('../src/index.js').DrawnEntity} DrawnEntity */
/** @typedef {{t: number, renderTick: number, others: Array<[number, number, number]>, own: [number, number] | null}} DrawnFrame */
/** @typedef {{sender: number, name: string, text: string, mine: boolean, at: number}} ChatLine */

/** Frames of drawn positions kept for stats() (about 30 s at 60 fps). */
const MAX_FRAMES = 2000;
/** Server positions kept per entity, in ticks. */
const MAX_HISTORY = 600;
const MAX_CHAT_LINES = 100;
const MOVE_KEYS = new Set(['ArrowUp', 'ArrowDown', 'ArrowLeft', 'ArrowRight', 'w', 'a', 's', 'd']);
const PLAYER_RADIUS = 14;
const GEM_RADIUS = 9;

const params = new URLSearchParams(location.search);
const room = params.get('room') || 'lobby';
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

/** @param {string} text @param {boolean | 'warn'} [level] true: an error */
function setStatus(text, level = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle('error', level === true);
  statusLine.classList.toggle('warn', level === 'warn');
}

/** A token for every join: the one in the URL's fragment, else a fresh guest token. */
async function fetchToken() {
  if (fixedToken) return fixedToken;
  const res = await fetch('/guest', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
    credentials: 'same-origin',
  });
  if (!res.ok) {
    const why = res.status === 404 ? 'this server gives no guest tokens (start it with --guest-tokens, as make run does)' : `${res.status} ${(await res.text()).trim()}`;
    throw new Error(`could not get a guest token: ${why}`);
  }
  const body = await res.json();
  if (typeof body?.token !== 'string') throw new Error('could not get a guest token: the answer has no token');
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

// ------------------------------------------------------------------ the session

/** @type {ArenaSession | null} */
let session = null;

/** The display name of a player number, from its avatar. @param {number | bigint} player */
function nameOf(player) {
  if (!session) return `player ${player}`;
  if (player == 0) return 'server';
  for (const e of session.entities('player')) {
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
  /** @type {ArenaSession} */
  const s = connect(serverUrl, {
    room,
    // the first join uses the token just fetched, a fresh join (a lost seat) a fresh one
    token: () => (first ? ((first = false), token) : fetchToken()),
    ...arena,
  });
  session = s;
  hook.session = s;

  s.on('joined', (j) => {
    joins++;
    $('m-room').textContent = j.room;
    $('m-player').textContent = `${name} (#${j.player})`;
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
  s.setInput(inputFromKeys(keys));
  requestAnimationFrame(frame);
}

/** Remember where the server had every player at this tick. @param {ArenaSession} s */
function recordServerState(s) {
  const tick = s.tick;
  for (const e of s.entities('player')) {
    const id = Number(e.id);
    let h = history.get(id);
    if (!h) history.set(id, (h = []));
    h.push([tick, /** @type {number} */ (e.get('x')), /** @type {number} */ (e.get('y'))]);
    if (h.length > MAX_HISTORY) h.shift();
  }
  if (history.size > 256) {
    const alive = new Set(s.entities('player').map((e) => Number(e.id)));
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
  session?.setInput(inputFromKeys(keys));
});
addEventListener('keyup', (e) => {
  const k = keyName(e);
  if (!keys.delete(k)) return;
  session?.setInput(inputFromKeys(keys));
});
addEventListener('blur', () => {
  keys.clear();
  session?.setInput(inputFromKeys(keys));
});
chatLine.addEventListener('focus', () => {
  keys.clear();
  session?.setInput(inputFromKeys(keys));
});
chatForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = chatLine.value.trim();
  if (!text || !session) return;
  if (session.sendEvent('chat', text)) chatLine.value = '';
  else addChatLine('', 'not sent: the connection is busy or closed', 'system');
});

// ------------------------------------------------------------------ drawing

/** A stable colour for a player number. @param {number} player */
function colourOf(player) {
  const hue = (player * 137.508) % 360;
  return `hsl(${hue.toFixed(0)} 70% 58%)`;
}

function fitCanvas() {
  const dpr = Math.min(window.devicePixelRatio || 1, 3);
  const size = Math.round(canvas.getBoundingClientRect().width * dpr) || 640;
  if (canvas.width !== size) {
    canvas.width = size;
    canvas.height = size;
  }
}

/** @param {DrawnEntity[]} entities */
function draw(entities) {
  fitCanvas();
  const k = canvas.width / WORLD;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = '#0f1420';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = 'rgba(255,255,255,0.06)';
  ctx.lineWidth = 1;
  for (let g = 100; g < WORLD; g += 100) {
    ctx.beginPath();
    ctx.moveTo(g * k, 0);
    ctx.lineTo(g * k, canvas.height);
    ctx.moveTo(0, g * k);
    ctx.lineTo(canvas.width, g * k);
    ctx.stroke();
  }
  for (const e of entities) {
    if (e.type !== 'gem') continue;
    const x = /** @type {number} */ (e.values.x) * k;
    const y = /** @type {number} */ (e.values.y) * k;
    const r = GEM_RADIUS * k;
    ctx.fillStyle = '#f5c542';
    ctx.beginPath();
    ctx.moveTo(x, y - r);
    ctx.lineTo(x + r, y);
    ctx.lineTo(x, y + r);
    ctx.lineTo(x - r, y);
    ctx.closePath();
    ctx.fill();
  }
  ctx.font = `${Math.max(11, Math.round(12 * k * 1.6))}px system-ui, sans-serif`;
  ctx.textAlign = 'center';
  // own avatar last, on top
  const players = entities.filter((e) => e.type === 'player').sort((a, b) => Number(a.predicted) - Number(b.predicted));
  for (const e of players) {
    const x = /** @type {number} */ (e.values.x) * k;
    const y = /** @type {number} */ (e.values.y) * k;
    const r = PLAYER_RADIUS * k;
    ctx.fillStyle = colourOf(Number(e.values.owner));
    ctx.beginPath();
    ctx.arc(x, y, r, 0, Math.PI * 2);
    ctx.fill();
    if (e.predicted) {
      ctx.strokeStyle = '#ffffff';
      ctx.lineWidth = Math.max(2, 3 * k);
      ctx.beginPath();
      ctx.arc(x, y, r + 4 * k, 0, Math.PI * 2);
      ctx.stroke();
    }
    // the name above the avatar (below it at the top edge), kept inside the canvas
    const label = `${e.values.name || 'player'}${e.predicted ? ' (you)' : ''}`;
    const half = ctx.measureText(label).width / 2 + 2;
    const lx = Math.min(Math.max(x, half), canvas.width - half);
    const above = y - r - 6 * k;
    ctx.fillStyle = e.predicted ? '#ffffff' : 'rgba(255,255,255,0.8)';
    ctx.fillText(label, lx, above > 14 * k * 1.6 ? above : y + r + 16 * k * 1.6);
  }
}

let lastPanel = 0;
/** @param {ArenaSession} s @param {number} now */
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
  const scores = $('scores');
  const players = s.entities('player').map((e) => e.values());
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
  draw(view.entities);
  /** @type {Array<[number, number, number]>} */
  const others = [];
  /** @type {[number, number] | null} */
  let own = null;
  for (const e of view.entities) {
    if (e.type !== 'player') continue;
    const xy = /** @type {[number, number]} */ ([e.values.x, e.values.y]);
    if (e.predicted) own = xy;
    else others.push([Number(e.id), xy[0], xy[1]]);
  }
  frames.push({ t: now, renderTick: view.renderTick, others, own });
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
  const own = s?.entities('player').find((e) => e.get('owner') == s.player);
  return {
    name,
    room,
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

/** @type {{session: ArenaSession | null, stats: typeof stats}} */
const hook = { session: null, stats };
/** @type {any} */ (window).demo = hook;

start();
