/** A small typed event emitter (no DOM EventTarget, so it runs anywhere). */

export class Emitter<Events extends Record<string, unknown>> {
  #handlers = new Map<keyof Events, Set<(payload: never) => void>>();

  on<K extends keyof Events>(event: K, handler: (payload: Events[K]) => void): void {
    let set = this.#handlers.get(event);
    if (!set) {
      set = new Set();
      this.#handlers.set(event, set);
    }
    set.add(handler as (payload: never) => void);
  }

  off<K extends keyof Events>(event: K, handler: (payload: Events[K]) => void): void {
    this.#handlers.get(event)?.delete(handler as (payload: never) => void);
  }

  /** Calls every handler; a throwing handler is reported and does not stop the others. */
  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    for (const h of [...(this.#handlers.get(event) ?? [])]) {
      try {
        (h as (p: Events[K]) => void)(payload);
      } catch (e) {
        console.error(`cloudproxy: a "${String(event)}" handler threw`, e);
      }
    }
  }
}
