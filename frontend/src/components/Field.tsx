import type { ReactNode } from 'react';

/** A labelled form field with its hint and, when wrong, its error beside it. */
export function Field({
  label,
  name,
  error,
  hint,
  children,
}: {
  label: string;
  /** The field's name: its error is `data-testid="error-<name>"`. */
  name: string;
  error?: string | undefined;
  hint?: ReactNode;
  children: ReactNode;
}) {
  return (
    <label className={error ? 'field invalid' : 'field'}>
      <span className="field-label">{label}</span>
      {children}
      {hint && !error && <span className="hint muted">{hint}</span>}
      {error && (
        <span className="field-error error" role="alert" data-testid={`error-${name}`}>
          {error}
        </span>
      )}
    </label>
  );
}

/** The props of a text input bound to `value`, marked invalid when `error` is set. */
export function textInput(
  name: string,
  value: string,
  set: (v: string) => void,
  error: string | undefined,
  extra: { placeholder?: string; numeric?: boolean } = {},
) {
  return {
    name,
    value,
    type: 'text',
    'aria-invalid': error ? true : undefined,
    inputMode: extra.numeric ? ('decimal' as const) : undefined,
    placeholder: extra.placeholder,
    onChange: (e: { target: { value: string } }) => set(e.target.value),
  };
}
