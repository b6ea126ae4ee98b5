import { fireEvent, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { rawFiles } from '../test/fixtures.ts';
import { json, renderPage } from '../test/render.tsx';
import { FilesPage } from './FilesPage.tsx';

describe('FilesPage', () => {
  it('shows versions, sizes and replicas, dimming the dead ones', async () => {
    vi.stubGlobal('fetch', vi.fn<typeof fetch>(() => Promise.resolve(json(rawFiles))));
    renderPage(<FilesPage />);
    const row = await screen.findByTestId('file-row-datasets/fashion-mnist/train-images.idx');
    expect(row.className).toBe('');
    const cells = within(row).getAllByRole('cell');
    expect(cells[0]?.textContent).toBe('datasets/fashion-mnist/train-images.idx');
    expect(cells[1]?.textContent).toBe('1 (newest v1)');
    expect(cells[2]?.textContent).toBe('44.9 MiB');
    expect(cells[3]?.textContent).toBe('n2, n3, n1');
    expect(within(cells[3]!).getByText('n3').classList.contains('dead')).toBe(true);
    expect(within(cells[3]!).getByText('n2').classList.contains('dead')).toBe(false);
    expect(cells[4]?.textContent).toBe('2 / 2');
    expect(screen.getByText(/replication 3 · 2 live nodes/)).toBeTruthy();
  });

  it('highlights under-replicated files', async () => {
    vi.stubGlobal('fetch', vi.fn<typeof fetch>(() => Promise.resolve(json(rawFiles))));
    renderPage(<FilesPage />);
    const row = await screen.findByTestId('file-row-notes.txt');
    expect(row.classList.contains('under-replicated')).toBe(true);
    expect(within(row).getByText('under-replicated').className).toContain('badge');
    const cells = within(row).getAllByRole('cell');
    expect(cells[1]?.textContent).toBe('2 (newest v5)');
    expect(cells[2]?.textContent).toBe('12 B');
    expect(cells[3]?.textContent).toBe('n3, n4');
    expect(cells[4]?.textContent).toBe('0 / 2');
    expect(screen.getByText(/2 files, 1 under-replicated/)).toBeTruthy();
  });

  it('filters by prefix at once and asks the server for it', async () => {
    const mock = vi.fn<typeof fetch>(() => Promise.resolve(json(rawFiles)));
    vi.stubGlobal('fetch', mock);
    renderPage(<FilesPage />);
    await screen.findByTestId('file-row-notes.txt');
    fireEvent.change(screen.getByLabelText('Prefix'), { target: { value: 'datasets/' } });
    expect(screen.queryByTestId('file-row-notes.txt')).toBeNull();
    expect(screen.getByTestId('file-row-datasets/fashion-mnist/train-images.idx')).toBeTruthy();
    await waitFor(() => expect(mock.mock.calls.some(([url]) => url === '/api/files?prefix=datasets%2F')).toBe(true));
    // The table stays while the new listing loads.
    expect(screen.queryByText('loading…')).toBeNull();
    expect(screen.getByTestId('file-row-datasets/fashion-mnist/train-images.idx')).toBeTruthy();
  });

  it('shows an error and keeps the table when a poll fails', async () => {
    let calls = 0;
    vi.stubGlobal(
      'fetch',
      vi.fn<typeof fetch>(() => {
        calls += 1;
        return calls === 1 ? Promise.resolve(json(rawFiles)) : Promise.resolve(json({ reply: 'error', kind: 'unavailable', message: 'the cluster did not answer in time' }, 503));
      }),
    );
    vi.useFakeTimers({ shouldAdvanceTime: true });
    renderPage(<FilesPage />);
    await screen.findByTestId('file-row-notes.txt');
    await vi.advanceTimersByTimeAsync(5000);
    expect(await screen.findByText('Could not list the files: the cluster did not answer in time')).toBeTruthy();
    expect(screen.getByTestId('file-row-notes.txt')).toBeTruthy();
  });
});
