import { useState, type FormEvent } from 'react';
import { errorMessage, uploadDataset, UnauthorizedError, type Dataset } from '../api.ts';
import { useUnauthorized } from '../authContext.ts';
import { formatBytes, formatCount } from '../format.ts';
import { tokenError, type FieldErrors } from '../jobForm.ts';
import { folderEntries, tarBlob } from '../tar.ts';
import { Field, textInput } from './Field.tsx';
import { SubmitRow } from './SubmitRow.tsx';

/** Uploads a folder as a dataset (`idunno dataset import <name> <dir>`): an image folder
 * (train|test/<class>/*.png), a folder of unlabelled images, or an MNIST-IDX folder. */
export function UploadDatasetForm({ onDone }: { onDone: (d: Dataset) => void }) {
  const unauthorized = useUnauthorized();
  const [name, setName] = useState('');
  const [files, setFiles] = useState<File[]>([]);
  const [tried, setTried] = useState(false);
  const [busy, setBusy] = useState(false);
  const [refusal, setRefusal] = useState<FieldErrors>({});
  const [done, setDone] = useState<string | null>(null);

  const errors: FieldErrors = {
    name: tokenError('dataset name', name),
    folder: files.length > 0 ? undefined : 'choose a folder',
  };
  const shown = { ...(tried ? errors : {}), ...refusal };
  const bytes = files.reduce((a, f) => a + f.size, 0);
  const onSubmit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setTried(true);
    setDone(null);
    if (busy || Object.values(errors).some(Boolean)) return;
    setBusy(true);
    setRefusal({});
    try {
      const dataset = await uploadDataset(name, tarBlob(folderEntries(files)));
      const splits = Object.entries(dataset.manifest.splits).map(([s, i]) => `${s} ${formatCount(i.count)}`);
      setDone(`Imported ${dataset.manifest.name}: ${splits.join(', ')}.`);
      onDone(dataset);
    } catch (err) {
      if (err instanceof UnauthorizedError) unauthorized();
      const message = errorMessage(err);
      setRefusal({ [/dataset name/.test(message) ? 'name' : 'folder']: message });
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="grid card" noValidate onSubmit={(e) => void onSubmit(e)} aria-label="upload a dataset">
      <Field label="Dataset name" name="name" error={shown.name} hint="stored as datasets/<name>/">
        <input {...textInput('name', name, setName, shown.name)} />
      </Field>
      <Field
        label="Folder"
        name="folder"
        error={shown.folder}
        hint={files.length > 0 ? `${formatCount(files.length)} files, ${formatBytes(bytes)}` : 'train|test/<class>/*.png, images, or MNIST-IDX files'}
      >
        <input
          type="file"
          name="folder"
          multiple
          // A folder picker: React passes the attribute through as it is.
          {...{ webkitdirectory: '' }}
          onChange={(e) => setFiles(Array.from(e.target.files ?? []))}
        />
      </Field>
      <SubmitRow busy={busy} label="Upload dataset" error={shown.form} command={null} />
      {done && (
        <p className="ok" role="status" data-testid="dataset-uploaded">
          {done}
        </p>
      )}
    </form>
  );
}
