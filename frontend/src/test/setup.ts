// Test environment. jsdom has no layout and no ResizeObserver: the stub reports every observed
// element as 640×220 once, as a browser does after `observe`, so that recharts' ResponsiveContainer
// draws its chart.
import { cleanup } from '@testing-library/react';
import { afterEach, vi } from 'vitest';

interface ResizeEntryStub {
  target: Element;
  contentRect: { width: number; height: number };
}

class ResizeObserverStub {
  constructor(private readonly callback: (entries: ResizeEntryStub[]) => void) {}
  observe(target: Element): void {
    this.callback([{ target, contentRect: { width: 640, height: 220 } }]);
  }
  unobserve(): void {}
  disconnect(): void {}
}

Object.defineProperty(globalThis, 'ResizeObserver', {
  value: ResizeObserverStub,
  writable: true,
  configurable: true,
});

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
  vi.useRealTimers();
});
