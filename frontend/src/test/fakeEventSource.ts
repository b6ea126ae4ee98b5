// A stand-in for the browser's EventSource that a test drives by hand.
import type { EventSourceLike } from '../hooks/useLive.ts';

export class FakeEventSource implements EventSourceLike {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSED = 2;
  /** Every instance made since the last `reset`, oldest first. */
  static instances: FakeEventSource[] = [];

  static reset(): void {
    FakeEventSource.instances = [];
  }

  static latest(): FakeEventSource {
    const last = FakeEventSource.instances[FakeEventSource.instances.length - 1];
    if (!last) throw new Error('no EventSource was created');
    return last;
  }

  readyState = FakeEventSource.CONNECTING;
  closed = false;
  private listeners = new Map<string, ((ev: Event) => void)[]>();

  constructor(readonly url: string) {
    FakeEventSource.instances.push(this);
  }

  addEventListener(type: string, listener: (ev: Event) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }

  close(): void {
    this.closed = true;
    this.readyState = FakeEventSource.CLOSED;
  }

  private dispatch(ev: Event): void {
    for (const listener of this.listeners.get(ev.type) ?? []) listener(ev);
  }

  open(): void {
    this.readyState = FakeEventSource.OPEN;
    this.dispatch(new Event('open'));
  }

  /** A server-sent event of `type` whose data is `data` as JSON (or a raw string). */
  emit(type: string, data: unknown): void {
    const text = typeof data === 'string' ? data : JSON.stringify(data);
    this.dispatch(new MessageEvent(type, { data: text }));
  }

  /** A failure: the browser retries (`CONNECTING`) or, with `closed`, gives up (`CLOSED`). */
  fail(closed = false): void {
    this.readyState = closed ? FakeEventSource.CLOSED : FakeEventSource.CONNECTING;
    this.dispatch(new Event('error'));
  }
}

export const createFakeEventSource = (url: string): FakeEventSource => new FakeEventSource(url);
