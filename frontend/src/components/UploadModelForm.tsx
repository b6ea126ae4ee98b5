import { useState, type FormEvent } from 'react';
import { useNavigate } from 'react-router';
import { ApiError, errorMessage, uploadModel, UnauthorizedError, type Dataset } from '../api.ts';
import { useUnauthorized } from '../authContext.ts';
import { tokenError, type FieldErrors } from '../jobForm.ts';
import { Field, textInput } from './Field.tsx';
import { SubmitRow } from './SubmitRow.tsx';

/** A comma-separated list of numbers, or why not ('' is fine: none). */
export function numbersError(flag: string, text: string): string | undefined {
  if (text.trim() === '') return undefined;
  const bad = text.split(',').find((v) => v.trim() === '' || !Number.isFinite(Number(v)));
  return bad === undefined ? undefined : `${flag}: ${JSON.stringify(bad.trim())} is not a number`;
}

/** Uploads a TorchScript model (`idunno model import`): stored, evaluated on the dataset's
 * test split by an import job, whose page then opens. */
export function UploadModelForm({ datasets }: { datasets: readonly Dataset[] }) {
  const navigate = useNavigate();
  const unauthorized = useUnauthorized();
  const [name, setName] = useState('');
  const [file, setFile] = useState<File | null>(null);
  const [dataset, setDataset] = useState(datasets[0]?.manifest.name ?? '');
  const [mean, setMean] = useState('');
  const [std, setStd] = useState('');
  const [tried, setTried] = useState(false);
  const [busy, setBusy] = useState(false);
  const [refusal, setRefusal] = useState<FieldErrors>({});

  const errors: FieldErrors = {
    name: tokenError('model name', name),
    file: file ? undefined : 'choose the TorchScript file (torch.jit.trace or script, then .save())',
    dataset: tokenError('dataset', dataset),
    mean: numbersError('--mean', mean),
    std: numbersError('--std', std),
  };
  const shown = { ...(tried ? errors : {}), ...refusal };
  const onSubmit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setTried(true);
    if (busy || !file || Object.values(errors).some(Boolean)) return;
    setBusy(true);
    setRefusal({});
    try {
      const id = await uploadModel(name, file, { dataset, mean, std });
      void navigate(`/jobs/${encodeURIComponent(id)}`);
    } catch (err) {
      if (err instanceof UnauthorizedError) unauthorized();
      const message = errorMessage(err);
      const field =
        err instanceof ApiError && err.reason === 'unknown_dataset'
          ? 'dataset'
          : /^--mean/.test(message) ? 'mean' : /^--std/.test(message) ? 'std' : /model name/.test(message) ? 'name' : 'form';
      setRefusal({ [field]: message });
      setBusy(false);
    }
  };

  return (
    <form className="grid card" noValidate onSubmit={(e) => void onSubmit(e)} aria-label="upload a model">
      <Field label="Model name" name="name" error={shown.name} hint="stored as models/<name>">
        <input {...textInput('name', name, setName, shown.name)} />
      </Field>
      <Field label="TorchScript file" name="file" error={shown.file}>
        <input
          type="file"
          name="file"
          accept=".pt,.pth,.ts,.torchscript"
          onChange={(e) => setFile(e.target.files?.[0] ?? null)}
        />
      </Field>
      <Field label="Dataset" name="dataset" error={shown.dataset} hint="whose inputs it takes; tested on its test split">
        <select name="dataset" value={dataset} onChange={(e) => setDataset(e.target.value)}>
          {datasets.map((d) => (
            <option key={d.manifest.name}>{d.manifest.name}</option>
          ))}
        </select>
      </Field>
      <Field label="Mean" name="mean" error={shown.mean} hint="per channel, of pixels in [0, 1]; Fashion-MNIST: 0.2860">
        <input {...textInput('mean', mean, setMean, shown.mean, { placeholder: 'none' })} />
      </Field>
      <Field label="Std" name="std" error={shown.std} hint="per channel; Fashion-MNIST: 0.3530">
        <input {...textInput('std', std, setStd, shown.std, { placeholder: 'none' })} />
      </Field>
      <SubmitRow
        busy={busy}
        label="Upload model"
        error={shown.form}
        command={name && file ? `idunno model import ${name} ${file.name} --dataset ${dataset}${mean ? ` --mean ${mean}` : ''}${std ? ` --std ${std}` : ''}` : null}
      />
    </form>
  );
}
