import { afterEach, describe, expect, it, vi } from 'vitest';
import { cleanup, render, renderHook, screen, waitFor } from '@testing-library/react';
import type { MembersResponse } from './api.ts';
import { useMembers } from './useMembers.ts';
import { App } from './App.tsx';

const body: MembersResponse = {
  node: 'n1',
  coordinator: null,
  members: [
    { id: 'n1', generation: 1, incarnation: 0, state: 'alive', host: 'h', http: null, last_heard_ms: null },
  ],
};

const ok = (): Response =>
  new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/json' } });

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe('useMembers', () => {
  it('reports a failed fetch and recovers on the next poll', async () => {
    let calls = 0;
    let nodeUp = true;
    const fetchMock = vi.fn<typeof fetch>().mockImplementation(() => {
      calls += 1;
      // First poll succeeds, then the node goes down until the test revives it.
      if (calls > 1 && !nodeUp) return Promise.reject(new TypeError('Failed to fetch'));
      if (calls === 1) nodeUp = false;
      return Promise.resolve(ok());
    });
    vi.stubGlobal('fetch', fetchMock);

    const { result } = renderHook(() => useMembers(10));

    await waitFor(() => expect(result.current.error).toBe('Failed to fetch'));
    // Last good data is kept while the node is unreachable, and polling goes on.
    expect(result.current.data?.node).toBe('n1');
    const failedSoFar = calls;
    await waitFor(() => expect(calls).toBeGreaterThan(failedSoFar + 1));
    expect(result.current.error).toBe('Failed to fetch');

    nodeUp = true;
    await waitFor(() => expect(result.current.error).toBeNull());
    expect(result.current.data?.members).toHaveLength(1);
    expect(fetchMock).toHaveBeenCalledWith('/api/members', expect.anything());
  });

  it('treats an HTTP error status as a failure', async () => {
    vi.stubGlobal('fetch', vi.fn<typeof fetch>().mockImplementation(() => Promise.resolve(new Response('boom', { status: 500 }))));
    const { result } = renderHook(() => useMembers(10));
    await waitFor(() => expect(result.current.error).toBe('GET /api/members: HTTP 500'));
    expect(result.current.data).toBeNull();
  });
});

describe('App', () => {
  it('shows the lost-connection banner when the node is unreachable', async () => {
    vi.stubGlobal('fetch', vi.fn<typeof fetch>().mockRejectedValue(new TypeError('Failed to fetch')));
    render(<App />);
    const banner = await screen.findByRole('alert');
    expect(banner.textContent).toContain('lost connection to the node, retrying…');
  });

  it('shows who served the page and the coordinator', async () => {
    vi.stubGlobal('fetch', vi.fn<typeof fetch>().mockImplementation(() => Promise.resolve(ok())));
    render(<App />);
    expect(await screen.findByText('IDunno')).toBeTruthy();
    await screen.findByRole('table');
    const meta = document.querySelector('.meta');
    expect(meta?.textContent).toBe('served by n1 · coordinator: —');
    expect(screen.queryByRole('alert')).toBeNull();
  });
});
