import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import { MemoryRouter, Route, Routes, useParams } from 'react-router';
import { describe, expect, it, vi } from 'vitest';
import { rawDatasets, rawModels } from '../test/fixtures.ts';
import { describeCall, json } from '../test/render.tsx';
import { NewJobPage } from './NewJobPage.tsx';

function JobStub() {
  const { id } = useParams();
  return <p>job page of {id}</p>;
}

/** The page at `route`, the API answering `submit` to `POST /api/jobs`; returns the bodies sent. */
function open(route: string, submit: () => Response): unknown[] {
  const sent: unknown[] = [];
  vi.stubGlobal(
    'fetch',
    vi.fn<typeof fetch>((input, init) => {
      const call = describeCall(input, init);
      if (call === 'POST /api/jobs') {
        sent.push(JSON.parse(String(init?.body)));
        return Promise.resolve(submit());
      }
      return Promise.resolve(call === 'GET /api/models' ? json(rawModels) : json(rawDatasets));
    }),
  );
  render(
    <MemoryRouter initialEntries={[route]}>
      <Routes>
        <Route path="/jobs/new" element={<NewJobPage />} />
        <Route path="/jobs/:id" element={<JobStub />} />
      </Routes>
    </MemoryRouter>,
  );
  return sent;
}

const field = (name: string): HTMLInputElement | HTMLSelectElement => {
  const el = document.querySelector(`[name="${name}"]`);
  if (!el) throw new Error(`no field ${name}`);
  return el as HTMLInputElement;
};
const type = (name: string, value: string): void => {
  fireEvent.change(field(name), { target: { value } });
};

describe('NewJobPage', () => {
  it('submits an inference job with the CLI defaults and opens its page', async () => {
    const sent = open('/jobs/new?kind=serve', () => json({ id: 'serve-12345678' }, 201));
    await screen.findByRole('form', { name: 'run inference' });
    fireEvent.click(screen.getByRole('button', { name: 'Serve' }));
    // Nothing is sent while a field is wrong; each says why beside it.
    expect(screen.getByTestId('error-model').textContent).toBe('give the model');
    expect(screen.getByTestId('error-batch').textContent).toBe('the batch size is required');
    type('model', 'cnn');
    type('batch', '16');
    expect(screen.queryByTestId('error-batch')).toBeNull();
    expect(screen.getByTestId('command').textContent).toBe('idunno serve cnn 16');
    // The model's versions, newest first, with their accuracy; its dataset's splits.
    const versions = Array.from((field('version') as HTMLSelectElement).options).map((o) => o.text);
    expect(versions).toEqual(['the newest (v2)', 'v2 — 91.20%', 'v1 — 85.12%']);
    const splits = Array.from((field('split') as HTMLSelectElement).options).map((o) => o.text);
    expect(splits).toEqual(['test', 'train']);
    fireEvent.click(screen.getByRole('button', { name: 'Serve' }));
    expect(await screen.findByText('job page of serve-12345678')).toBeTruthy();
    expect(sent).toEqual([
      { kind: 'serve', model: 'cnn', model_version: null, dataset: '', split: 'test', batch: 16, passes: 1, weight: 1 },
    ]);
  });

  it('puts the cluster\'s refusal beside the field it names', async () => {
    const refusal = {
      reply: 'error', kind: 'bad_input', reason: 'bad_argument',
      message: 'model cnn has 10 classes but dataset fashion-mnist has 12',
    };
    const sent = open('/jobs/new?kind=serve&model=cnn&version=1', () => json(refusal, 400));
    await screen.findByRole('form', { name: 'run inference' });
    expect(field('version').value).toBe('1');
    type('dataset', 'fashion-mnist');
    type('split', 'train');
    type('batch', '8');
    type('passes', '3');
    fireEvent.click(screen.getByRole('button', { name: 'Serve' }));
    await waitFor(() => expect(screen.getByTestId('error-dataset').textContent).toBe(refusal.message));
    expect(sent).toEqual([
      { kind: 'serve', model: 'cnn', model_version: 1, dataset: 'fashion-mnist', split: 'train', batch: 8, passes: 3, weight: 1 },
    ]);
    expect(screen.getByRole('button', { name: 'Serve' })).not.toHaveProperty('disabled', true);
    // Changing the field clears the cluster's complaint.
    type('dataset', '');
    expect(screen.queryByTestId('error-dataset')).toBeNull();
  });

  it('trains with the CLI defaults, checked before sending', async () => {
    const sent = open('/jobs/new?kind=train', () => json({ id: 'train-0000beef' }, 201));
    await screen.findByRole('form', { name: 'train a model' });
    expect(field('arch').value).toBe('cnn');
    expect(field('dataset').value).toBe('fashion-mnist');
    expect(field('epochs').value).toBe('5');
    expect(field('batch').value).toBe('128');
    expect(screen.getByTestId('command').textContent).toBe('idunno train cnn fashion-mnist');
    type('epochs', '0');
    fireEvent.click(screen.getByRole('button', { name: 'Train' }));
    expect(screen.getByTestId('error-epochs').textContent).toBe('--epochs must be between 1 and 10000, not 0');
    expect(sent).toEqual([]);
    type('epochs', '2');
    type('arch', 'mlp');
    type('limit', '3000');
    expect(screen.getByTestId('command').textContent).toBe('idunno train mlp fashion-mnist --epochs 2 --limit 3000');
    fireEvent.click(screen.getByRole('button', { name: 'Train' }));
    expect(await screen.findByText('job page of train-0000beef')).toBeTruthy();
    expect(sent).toEqual([
      { kind: 'train', arch: 'mlp', name: 'mlp', dataset: 'fashion-mnist', epochs: 2, batch: 128, lr: null, limit: 3000, seed: 0, workers: 1 },
    ]);
  });
});
