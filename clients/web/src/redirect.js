// The pure rules of following REDIRECT in a cluster (docs/protocol.md "Clusters: redirects"),
// as in clients/routing.py: at most MAX_REDIRECTS per join, only to a ws:// or wss:// URL with
// a host and the entry URL's scheme (a redirect never turns TLS off). connection.js applies
// them; it also remembers the owner's URL for resumes and goes back to the entry URL when the
// owner cannot be reached.

/** Redirects followed for one join; one more and the join fails. */
export const MAX_REDIRECTS = 3;

/** Why a REDIRECT was not followed. */
export const RedirectProblem = Object.freeze({
  /** more than MAX_REDIRECTS redirects for one join: the cluster is moving the room */
  TOO_MANY: 'too-many-redirects',
  /** not a ws:// or wss:// URL with a host */
  BAD_URL: 'bad-url',
  /** another scheme than the entry URL's (wss:// to ws://, or back) */
  SCHEME_CHANGED: 'scheme-changed',
});

/** @typedef {typeof RedirectProblem[keyof typeof RedirectProblem]} RedirectProblemName */

/**
 * Whether a client that entered at `entryUrl` may follow a REDIRECT to `url` after `hops`
 * redirects of this join: null if it may, else why not and a sentence saying so.
 * @param {string} url
 * @param {string} entryUrl
 * @param {number} hops
 * @param {string} [from] the URL that sent the REDIRECT (for the sentence)
 * @returns {{problem: RedirectProblemName, detail: string} | null}
 */
export function redirectProblem(url, entryUrl, hops, from = entryUrl) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    parsed = null;
  }
  if (!parsed || (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') || !parsed.hostname) {
    return { problem: RedirectProblem.BAD_URL, detail: `${from} redirected to ${JSON.stringify(url)}, not a ws:// or wss:// URL` };
  }
  const scheme = new URL(entryUrl).protocol;
  if (parsed.protocol !== scheme) {
    return { problem: RedirectProblem.SCHEME_CHANGED, detail: `${from} redirected to ${url}, not a ${scheme}// URL` };
  }
  if (hops >= MAX_REDIRECTS) {
    return {
      problem: RedirectProblem.TOO_MANY,
      detail: `${from} redirected to ${url} after ${hops} redirects for this join: the cluster is moving the room; try again in a moment`,
    };
  }
  return null;
}
