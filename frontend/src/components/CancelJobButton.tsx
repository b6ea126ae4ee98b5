import { useState } from 'react';
import { cancelJob, errorMessage, UnauthorizedError } from '../api.ts';
import { useUnauthorized } from '../authContext.ts';

/**
 * "Cancel job" (shown while `active`): asks for confirmation, then `POST /api/jobs/{id}/cancel`.
 * The answer stays visible after the job ended.
 */
export function CancelJobButton({
  id,
  active,
  onDone,
}: {
  id: string;
  active: boolean;
  onDone?: () => void;
}) {
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<{ ok: boolean; text: string } | null>(null);
  const unauthorized = useUnauthorized();

  const cancel = async (): Promise<void> => {
    if (!window.confirm(`Cancel job ${id}?`)) return;
    setBusy(true);
    try {
      const job = await cancelJob(id);
      setResult({ ok: true, text: `Job ${job.id} is now ${job.state}.` });
      onDone?.();
    } catch (e: unknown) {
      if (e instanceof UnauthorizedError) unauthorized();
      setResult({ ok: false, text: `Could not cancel: ${errorMessage(e)}` });
    } finally {
      setBusy(false);
    }
  };

  return (
    <span className="cancel">
      {active && (
        <button type="button" className="danger" disabled={busy} onClick={() => void cancel()}>
          Cancel job
        </button>
      )}
      {result && (
        <span className={result.ok ? 'ok' : 'error'} role="status" data-testid="cancel-result">
          {result.text}
        </span>
      )}
    </span>
  );
}
