// Renders a page inside a memory router with a given live state.
import { render, type RenderResult } from '@testing-library/react';
import type { ReactElement } from 'react';
import { MemoryRouter, Route, Routes } from 'react-router';
import { INITIAL_LIVE_STATE, type LiveState } from '../hooks/useLive.ts';
import { LiveContext } from '../live.tsx';
import { snapshot } from './fixtures.ts';

export function renderPage(
  page: ReactElement,
  { live = {}, path = '/', route = '/' }: { live?: Partial<LiveState>; path?: string; route?: string } = {},
): RenderResult {
  const value: LiveState = { ...INITIAL_LIVE_STATE, snapshot, connected: true, status: 'open', ...live };
  return render(
    <LiveContext.Provider value={value}>
      <MemoryRouter initialEntries={[route]}>
        <Routes>
          <Route path={path} element={page} />
        </Routes>
      </MemoryRouter>
    </LiveContext.Provider>,
  );
}

/** A JSON `Response`. */
export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

/** The URL and method of a `fetch` call. */
export function describeCall(input: RequestInfo | URL, init?: RequestInit): string {
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  return `${init?.method ?? 'GET'} ${url}`;
}
