/* Node's `events` for the browser bundle: xmlbuilder2 (pulled in by dcmjs, which Cornerstone's
 * tools import) subclasses EventEmitter at load time; the viewer never builds XML. */
export class EventEmitter {
  constructor() {
    this._listeners = new Map();
  }

  on(name, listener) {
    if (!this._listeners.has(name)) this._listeners.set(name, []);
    this._listeners.get(name).push(listener);
    return this;
  }

  off(name, listener) {
    const list = this._listeners.get(name) || [];
    this._listeners.set(
      name,
      list.filter((l) => l !== listener),
    );
    return this;
  }

  emit(name, ...args) {
    const list = this._listeners.get(name) || [];
    for (const listener of list) listener.apply(this, args);
    return list.length > 0;
  }
}

EventEmitter.prototype.addListener = EventEmitter.prototype.on;
EventEmitter.prototype.removeListener = EventEmitter.prototype.off;

export default { EventEmitter };
