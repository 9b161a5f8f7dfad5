// The dashboard page. Signs in by POSTing the admin token once (the server answers with an
// HttpOnly session cookie and a CSRF token kept in memory here), then follows the live feed
// (server-sent events, one snapshot a second). Every text from the server goes in with
// textContent, never as HTML. Actions ask for a confirmation, then POST with X-CSRF-Token.

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** @type {string | null} */
let csrf = null;
/** @type {EventSource | null} */
let feed = null;
/** @type {any} */
let latest = null;
let snapshots = 0;
/** @type {string | null} */
let selectedRoom = null;

const fmt = {
  int: (/** @type {number} */ n) => Math.round(n).toLocaleString('en-US'),
  rate: (/** @type {number} */ n) => (n >= 100 ? fmt.int(n) : n.toFixed(1)),
  bytes(/** @type {number} */ n) {
    if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
    if (n >= 1e6) return `${(n / 1e6).toFixed(2)} MB`;
    if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
    return `${Math.round(n)} B`;
  },
  age(/** @type {number} */ s) {
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  },
};

function status(/** @type {string} */ text, error = false, id = 'status') {
  const el = $(id);
  el.textContent = text;
  el.className = error ? 'error' : '';
}

/** @param {string} tag @param {string} text @param {string} [cls] */
function cell(tag, text, cls) {
  const el = document.createElement(tag);
  el.textContent = text;
  if (cls) el.className = cls;
  return el;
}

/** @param {string} text @param {() => void} onClick @param {string} label */
function button(text, onClick, label) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  b.setAttribute('aria-label', label);
  b.addEventListener('click', onClick);
  return b;
}

// ------------------------------------------------------------------ signing in

async function resume() {
  const r = await fetch('/dashboard/session', { credentials: 'same-origin' });
  if (r.ok) {
    csrf = (await r.json()).csrf;
    start();
  } else {
    showLogin();
  }
}

function showLogin(message = '') {
  if (feed) feed.close();
  feed = null;
  csrf = null;
  $('board').hidden = true;
  $('logout').hidden = true;
  $('drain').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  status('signed out');
  /** @type {HTMLInputElement} */ ($('token')).focus();
}

$('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($('token'));
  const token = input.value.trim();
  input.value = ''; // the token is not kept in the page
  const r = await fetch('/dashboard/session', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ token }),
  });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    $('login-error').textContent = body.error || `sign-in failed (${r.status})`;
    return;
  }
  csrf = body.csrf;
  start();
});

$('logout').addEventListener('click', async () => {
  await post('/dashboard/logout', {});
  showLogin();
});

function start() {
  $('login').hidden = true;
  $('board').hidden = false;
  $('logout').hidden = false;
  $('drain').hidden = false;
  status('connecting to the live feed…');
  feed = new EventSource('/dashboard/events');
  feed.addEventListener('snapshot', (ev) => {
    latest = JSON.parse(/** @type {MessageEvent} */ (ev).data);
    snapshots++;
    render(latest);
  });
  feed.addEventListener('error', async () => {
    // closed: signed out, too many watchers, or the server went away (EventSource retries)
    const r = await fetch('/dashboard/session', { credentials: 'same-origin' }).catch(() => null);
    if (r && r.status === 401) showLogin('your session ended; sign in again');
    else status('live feed interrupted; retrying…', true);
  });
}

// ------------------------------------------------------------------ actions

/** @param {string} path @param {Record<string, string | number>} params */
async function post(path, params) {
  const r = await fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf ?? '' },
    body: JSON.stringify(params),
  });
  const body = await r.json().catch(() => ({}));
  if (r.status === 403) showLogin(body.error || 'sign in again');
  return { ok: r.ok, status: r.status, body };
}

/** Ask in the page's own dialog; resolves true on Confirm. @param {string} text */
function confirmAction(text) {
  const dialog = /** @type {HTMLDialogElement} */ ($('confirm'));
  $('confirm-text').textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

/** @param {string} text @param {string} path @param {Record<string, string | number>} params */
async function act(text, path, params) {
  if (!(await confirmAction(text))) return;
  const { ok, body } = await post(path, params);
  // its own line: the live feed rewrites #status every second
  status(ok ? `done: ${JSON.stringify(body)}` : body.error || 'failed', !ok, 'result');
  if (ok && selectedRoom) showPlayers(selectedRoom);
}

$('drain').addEventListener('click', () => act('Drain the server? It admits no new players, gives the ones playing the drain timeout to leave, then exits.', '/dashboard/drain', {}));

/** @param {string} room */
async function showPlayers(room) {
  selectedRoom = room;
  const r = await fetch('/dashboard/rooms', { credentials: 'same-origin' });
  if (!r.ok) return;
  const rooms = (await r.json()).rooms;
  const info = rooms.find((/** @type {any} */ x) => x.room === room);
  $('players-panel').hidden = false;
  $('players-room').textContent = room;
  const body = /** @type {HTMLTableSectionElement} */ ($('players').querySelector('tbody'));
  body.replaceChildren();
  for (const p of info ? info.players : []) {
    const tr = document.createElement('tr');
    tr.dataset.player = String(p.number);
    tr.append(cell('td', String(p.number), 'num'), cell('td', p.id), cell('td', p.name), cell('td', p.connected ? 'yes' : 'held'));
    const td = document.createElement('td');
    td.append(button('kick', () => act(`Kick player ${p.id} (#${p.number}) from room ${room}? The player is closed with 4010.`, '/dashboard/kick', { room, player: p.number }), `kick ${p.id}`));
    tr.append(td);
    body.append(tr);
  }
  if (latest) render(latest);
}

// ------------------------------------------------------------------ rendering

/** @param {any} s */
function render(s) {
  const t = s.totals;
  $('t-connections').textContent = fmt.int(t.connections);
  $('t-players').textContent = fmt.int(t.players);
  $('t-rooms').textContent = fmt.int(t.rooms);
  $('t-messages').textContent = `${fmt.rate(t.messages_in_per_s)} · ${fmt.rate(t.messages_out_per_s)}`;
  $('t-bytes').textContent = `${fmt.bytes(t.bytes_in_per_s)} · ${fmt.bytes(t.bytes_out_per_s)}`;
  $('t-cpu').textContent = `${(t.cpu_ratio * 100).toFixed(1)} %`;
  $('t-rss').textContent = fmt.bytes(t.rss_bytes);
  status(`${s.draining ? 'DRAINING · ' : ''}live · updated ${new Date(s.now * 1000).toLocaleTimeString()} · ${t.watchers} watching`, s.draining);
  $('rooms-note').textContent = s.rooms_shown < t.rooms ? `(the ${s.rooms_shown} busiest of ${t.rooms})` : '';

  const rows = /** @type {HTMLTableSectionElement} */ ($('rooms').querySelector('tbody'));
  rows.replaceChildren();
  for (const r of s.rooms) {
    const tr = document.createElement('tr');
    tr.dataset.room = r.room;
    if (r.room === selectedRoom) tr.className = 'selected';
    const slow = r.measured_hz !== null && r.measured_hz < r.tick_rate * 0.9;
    tr.append(
      cell('td', r.room + (r.private ? ' (private)' : '') + (r.closing ? ' (closing)' : '')),
      cell('td', r.game),
      cell('td', `${r.players}/${r.max_players}`, 'num players'),
      cell('td', r.measured_hz === null ? '–' : `${r.measured_hz.toFixed(1)} Hz`, slow ? 'num warn' : 'num'),
      cell('td', r.tick_p99_ms === null ? '–' : `${r.tick_p99_ms.toFixed(2)} ms`, 'num'),
      cell('td', r.bytes_out_per_s === null ? '–' : fmt.bytes(r.bytes_out_per_s), 'num'),
      cell('td', fmt.age(r.age_s), 'num'),
    );
    const td = document.createElement('td');
    td.append(
      button('players', () => showPlayers(r.room), `players of ${r.room}`),
      button('close', () => act(`Close room ${r.room}? Its ${r.players} players are closed with 4011.`, '/dashboard/close', { room: r.room }), `close ${r.room}`),
    );
    tr.append(td);
    rows.append(tr);
  }

  $('window-note').textContent = `(last ${fmt.age(s.window_s)})`;
  counts('refusals', s.refusals);
  counts('errors', s.protocol_errors);

  const list = $('activity');
  list.replaceChildren();
  for (const a of s.activity) {
    const li = document.createElement('li');
    li.className = a.kind;
    li.append(cell('time', new Date(a.at * 1000).toLocaleTimeString()), cell('span', a.kind.replace('_', ' '), 'kind'));
    const parts = [];
    if (a.player) parts.push(a.player);
    if (a.room) parts.push(`in ${a.room}`);
    if (a.code !== null) parts.push(`code ${a.code}`);
    if (a.reason) parts.push(`(${a.reason})`);
    if (a.count > 1) parts.push(`×${a.count}`);
    li.append(document.createTextNode(parts.join(' ')));
    list.append(li);
  }
}

/** @param {string} id @param {Record<string, number>} byReason */
function counts(id, byReason) {
  const body = /** @type {HTMLTableSectionElement} */ ($(id).querySelector('tbody'));
  body.replaceChildren();
  const entries = Object.entries(byReason).sort((a, b) => b[1] - a[1]);
  if (!entries.length) body.append(Object.assign(document.createElement('tr'), { className: 'none' }));
  for (const [reason, n] of entries) {
    const tr = document.createElement('tr');
    tr.append(cell('td', reason), cell('td', fmt.int(n), 'num'));
    body.append(tr);
  }
  if (!entries.length) /** @type {HTMLElement} */ (body.lastChild).append(cell('td', 'none', 'muted'));
}

/** What the tests read: the latest snapshot and what the page shows. */
/** @type {any} */ (window).dashboard = {
  snapshots: () => snapshots,
  snapshot: () => latest,
  signedIn: () => csrf !== null,
  shown() {
    /** @type {Record<string, number>} */
    const rooms = {};
    for (const tr of $('rooms').querySelectorAll('tbody tr')) {
      const players = /** @type {HTMLElement} */ (tr.querySelector('td.players')).textContent ?? '';
      rooms[/** @type {HTMLElement} */ (tr).dataset.room ?? ''] = Number(players.split('/')[0]);
    }
    return {
      players: Number(($('t-players').textContent ?? '').replace(/,/g, '')),
      rooms: Number(($('t-rooms').textContent ?? '').replace(/,/g, '')),
      byRoom: rooms,
    };
  },
};

resume();
