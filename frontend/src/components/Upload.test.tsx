import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import { MemoryRouter, Route, Routes } from 'react-router';
import { describe, expect, it, vi } from 'vitest';
import { datasets } from '../test/fixtures.ts';
import { describeCall, json } from '../test/render.tsx';
import { UploadDatasetForm } from './UploadDatasetForm.tsx';
import { UploadModelForm } from './UploadModelForm.tsx';

interface Sent {
  call: string;
  type: string | undefined;
  body: Blob;
}

function stub(answer: () => Response): Sent[] {
  const sent: Sent[] = [];
  vi.stubGlobal(
    'fetch',
    vi.fn<typeof fetch>((input, init) => {
      const headers = init?.headers as Record<string, string> | undefined;
      sent.push({ call: describeCall(input, init), type: headers?.['Content-Type'], body: init?.body as Blob });
      return Promise.resolve(answer());
    }),
  );
  return sent;
}

const input = (name: string): HTMLInputElement => {
  const el = document.querySelector(`[name="${name}"]`);
  if (!el) throw new Error(`no field ${name}`);
  return el as HTMLInputElement;
};

describe('UploadModelForm', () => {
  it('sends the TorchScript file with the import flags and opens the import job', async () => {
    const sent = stub(() => json({ id: 'import-0000cafe', upload: 'uploads/fancy-1.pt' }, 201));
    render(
      <MemoryRouter initialEntries={['/models']}>
        <Routes>
          <Route path="/models" element={<UploadModelForm datasets={datasets.datasets} />} />
          <Route path="/jobs/:id" element={<p>import job page</p>} />
        </Routes>
      </MemoryRouter>,
    );
    fireEvent.click(screen.getByRole('button', { name: 'Upload model' }));
    expect(screen.getByTestId('error-name').textContent).toBe('give the model name');
    expect(screen.getByTestId('error-file').textContent).toMatch(/choose the TorchScript file/);
    fireEvent.change(input('name'), { target: { value: 'fancy' } });
    fireEvent.change(input('mean'), { target: { value: '0.286,x' } });
    fireEvent.click(screen.getByRole('button', { name: 'Upload model' }));
    expect(screen.getByTestId('error-mean').textContent).toBe('--mean: "x" is not a number');
    fireEvent.change(input('mean'), { target: { value: '0.286' } });
    fireEvent.change(input('std'), { target: { value: '0.353' } });
    const file = new File([new Uint8Array([0x50, 0x4b, 3, 4])], 'fancy.pt');
    fireEvent.change(input('file'), { target: { files: [file] } });
    expect(sent).toEqual([]);
    fireEvent.click(screen.getByRole('button', { name: 'Upload model' }));
    expect(await screen.findByText('import job page')).toBeTruthy();
    expect(sent.map((s) => [s.call, s.type])).toEqual([
      ['POST /api/models/fancy/upload?dataset=fashion-mnist&mean=0.286&std=0.353', 'application/octet-stream'],
    ]);
    expect(sent[0]?.body).toBe(file);
  });
});

describe('UploadDatasetForm', () => {
  it('sends the picked folder as one tar archive and says what was imported', async () => {
    const manifest = {
      name: 'pics', source: 'image_folder', shape: [1, 28, 28], classes: ['a', 'b'],
      splits: { train: { count: 2 } }, mean: [], std: [], created_ms: 0,
    };
    const sent = stub(() => json({ manifest, bytes: 2000 }, 201));
    const done = vi.fn();
    render(<UploadDatasetForm onDone={done} />);
    fireEvent.change(input('name'), { target: { value: 'pics' } });
    const files = ['pics/train/a/1.png', 'pics/train/b/2.png'].map((path) => {
      const f = new File(['png bytes'], path.split('/').pop() ?? '');
      Object.defineProperty(f, 'webkitRelativePath', { value: path });
      return f;
    });
    fireEvent.change(input('folder'), { target: { files } });
    expect(screen.getByText('2 files, 18 B')).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: 'Upload dataset' }));
    await waitFor(() => expect(screen.getByTestId('dataset-uploaded').textContent).toBe('Imported pics: train 2.'));
    expect(sent.map((s) => [s.call, s.type])).toEqual([['POST /api/datasets/pics/upload', 'application/x-tar']]);
    // Two headers, two padded files, two end blocks.
    expect(sent[0]?.body.size).toBe(512 * 6);
    expect(done).toHaveBeenCalledOnce();
  });

  it('shows the cluster\'s refusal of the folder', async () => {
    const refusal = { reply: 'error', kind: 'bad_input', message: '"../x": a path in the archive must stay inside it' };
    stub(() => json(refusal, 400));
    render(<UploadDatasetForm onDone={vi.fn()} />);
    fireEvent.change(input('name'), { target: { value: 'pics' } });
    fireEvent.change(input('folder'), { target: { files: [new File(['x'], 'x.png')] } });
    fireEvent.click(screen.getByRole('button', { name: 'Upload dataset' }));
    await waitFor(() => expect(screen.getByTestId('error-folder').textContent).toBe(refusal.message));
  });
});
