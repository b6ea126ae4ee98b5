import { useState } from 'react';
import { useNavigate } from 'react-router';
import { ApiError, errorMessage, submitJob, UnauthorizedError, type JobSpecInput } from '../api.ts';
import { useUnauthorized } from '../authContext.ts';
import { fieldOfRefusal, type FieldErrors } from '../jobForm.ts';

/** Submitting a job from a form: on success the job's page opens; a refusal of the cluster
 * becomes the error of the field it names. */
export function useJobSubmit(kind: 'train' | 'serve') {
  const navigate = useNavigate();
  const unauthorized = useUnauthorized();
  const [busy, setBusy] = useState(false);
  const [refusal, setRefusal] = useState<FieldErrors>({});

  const submit = async (spec: JobSpecInput): Promise<void> => {
    setBusy(true);
    setRefusal({});
    try {
      const id = await submitJob(spec);
      void navigate(`/jobs/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e instanceof UnauthorizedError) unauthorized();
      const field = e instanceof ApiError ? fieldOfRefusal(kind, e.reason, e.message) : 'form';
      setRefusal({ [field]: errorMessage(e) });
      setBusy(false);
    }
  };
  /** Forgets the cluster's refusal of `field` (its value changed). */
  const clear = (field: string): void => {
    if (refusal[field] !== undefined) setRefusal({});
  };
  return { busy, refusal, submit, clear };
}
