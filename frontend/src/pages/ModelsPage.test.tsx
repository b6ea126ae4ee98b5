import { screen, within } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { rawDatasets, rawModels } from '../test/fixtures.ts';
import { json, renderPage } from '../test/render.tsx';
import { ModelsPage } from './ModelsPage.tsx';

function stub(): void {
  vi.stubGlobal(
    'fetch',
    vi.fn<typeof fetch>((input) =>
      Promise.resolve(String(input) === '/api/models' ? json(rawModels) : json(rawDatasets)),
    ),
  );
}

describe('ModelsPage', () => {
  it('lists every model version, newest first', async () => {
    stub();
    renderPage(<ModelsPage />);
    const newest = await screen.findByTestId('model-row-cnn-v2');
    expect(Array.from(within(newest).getAllByRole('cell')).map((c) => c.textContent)).toEqual([
      'cnn', '2', 'cnn', 'fashion-mnist', '1×28×28', '421,642', '5', '91.20%', 'train-aaaa1111',
    ]);
    expect(within(newest).getByRole('link', { name: 'train-aaaa1111' }).getAttribute('href')).toBe('/jobs/train-aaaa1111');
    const rows = screen.getAllByTestId(/^model-row-/).map((r) => r.getAttribute('data-testid'));
    expect(rows).toEqual(['model-row-cnn-v2', 'model-row-cnn-v1']);
    expect(within(screen.getByTestId('model-row-cnn-v1')).getByText('85.12%')).toBeTruthy();
  });

  it('lists the datasets with splits, classes, shape and size', async () => {
    stub();
    renderPage(<ModelsPage />);
    const row = await screen.findByTestId('dataset-row-fashion-mnist');
    expect(Array.from(within(row).getAllByRole('cell')).map((c) => c.textContent)).toEqual([
      'fashion-mnist', 'fashion_mnist', 'test 10,000, train 60,000', '10', '1×28×28', '52.4 MiB',
    ]);
  });

  it('shows an error when models cannot be listed', async () => {
    vi.stubGlobal(
      'fetch',
      vi.fn<typeof fetch>((input) =>
        Promise.resolve(
          String(input) === '/api/models'
            ? json({ reply: 'error', kind: 'internal', message: 'SDFS is down' }, 500)
            : json({ datasets: [] }),
        ),
      ),
    );
    renderPage(<ModelsPage />);
    expect(await screen.findByText('Could not list the models: SDFS is down')).toBeTruthy();
    expect(await screen.findByText('no datasets')).toBeTruthy();
  });
});
