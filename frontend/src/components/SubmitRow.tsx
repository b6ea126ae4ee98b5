/** A form's submit button, the error no field owns, and the CLI command it amounts to. */
export function SubmitRow({
  busy,
  label,
  error,
  command,
}: {
  busy: boolean;
  label: string;
  error?: string | undefined;
  command: string | null;
}) {
  return (
    <div className="actions">
      <button type="submit" className="primary" disabled={busy}>
        {busy ? 'Submitting…' : label}
      </button>
      {error && (
        <span className="error" role="alert" data-testid="error-form">
          {error}
        </span>
      )}
      {!error && command && (
        <span className="muted">
          the same as <code data-testid="command">{command}</code>
        </span>
      )}
    </div>
  );
}
