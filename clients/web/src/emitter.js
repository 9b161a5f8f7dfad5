// A small typed event emitter (runs the same in browsers and Node, unlike EventTarget payloads).

/**
 * @template {Record<string, unknown>} Events
 */
export class Emitter {
  constructor() {
    /** @type {Map<keyof Events, Set<(e: any) => void>>} */
    this._listeners = new Map();
  }

  /**
   * Call `fn` for every event of `type`; returns a function that removes it.
   * @template {keyof Events} K
   * @param {K} type
   * @param {(event: Events[K]) => void} fn
   * @returns {() => void}
   */
  on(type, fn) {
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }

  /**
   * Call `fn` for the next event of `type` only.
   * @template {keyof Events} K
   * @param {K} type
   * @param {(event: Events[K]) => void} fn
   * @returns {() => void}
   */
  once(type, fn) {
    const off = this.on(type, (e) => {
      off();
      fn(e);
    });
    return off;
  }

  /**
   * @template {keyof Events} K
   * @param {K} type
   * @param {(event: Events[K]) => void} fn
   */
  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
  }

  /**
   * Call the listeners of `type`. A listener that throws does not stop the others nor the
   * caller: its error is rethrown on its own, outside the emitter.
   * @template {keyof Events} K
   * @param {K} type
   * @param {Events[K]} event
   */
  emit(type, event) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(event);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
