import { screen, within } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { rawModels } from '../test/fixtures.ts';
import { json, renderPage } from '../test/render.tsx';
import { ModelPage } from './ModelPage.tsx';

describe('ModelPage', () => {
  it('shows every kept version with its accuracy and the change from the one before', async () => {
    vi.stubGlobal('fetch', vi.fn<typeof fetch>(() => Promise.resolve(json(rawModels))));
    renderPage(<ModelPage />, { path: '/models/:name', route: '/models/cnn' });
    const newest = await screen.findByTestId('version-row-2');
    const cells = within(newest).getAllByRole('cell').map((c) => c.textContent);
    expect(cells[0]).toBe('v2');
    expect(cells.slice(2, 12)).toEqual([
      '1.1 MiB', 'cnn', 'fashion-mnist', '1×28×28', '5', '91.20%', '+6.08 pt', 'train-aaaa1111', 'n1', 'serve',
    ]);
    expect(within(screen.getByTestId('version-row-1')).getAllByRole('cell')[8]?.textContent).toBe('—');
    expect(screen.getByTestId('model-summary').textContent).toBe('2 versions kept; the best is v2 at 91.20%');
    expect(within(newest).getByRole('link', { name: 'serve' }).getAttribute('href')).toBe('/jobs/new?kind=serve&model=cnn&version=2');
    expect(screen.getByRole('link', { name: 'Serve the newest version' }).getAttribute('href')).toBe('/jobs/new?kind=serve&model=cnn');
  });

  it('says so when there is no such model', async () => {
    vi.stubGlobal('fetch', vi.fn<typeof fetch>(() => Promise.resolve(json(rawModels))));
    renderPage(<ModelPage />, { path: '/models/:name', route: '/models/nope' });
    expect(await screen.findByText('No model nope (see the Models page).')).toBeTruthy();
  });
});
