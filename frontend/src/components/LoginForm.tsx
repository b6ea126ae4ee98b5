import { useState, type FormEvent } from 'react';
import { useAuthContext } from '../authContext.ts';

/** The token form, shown when the API wants a token the session does not have. */
export function LoginForm() {
  const auth = useAuthContext();
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent<HTMLFormElement>): Promise<void> => {
    e.preventDefault();
    if (!auth || busy) return;
    setBusy(true);
    const ok = await auth.login(token);
    // On success the form unmounts; on failure the user corrects the token.
    if (!ok) setBusy(false);
  };

  return (
    <form className="login card" onSubmit={(e) => void submit(e)}>
      <h2>Log in</h2>
      <p className="muted">This cluster's API needs the token given to the nodes with --http-token.</p>
      <label>
        Token
        <input
          type="password"
          value={token}
          autoComplete="current-password"
          autoFocus
          onChange={(e) => setToken(e.target.value)}
        />
      </label>
      <button type="submit" disabled={busy || token === ''}>
        Log in
      </button>
      {auth?.error && (
        <p className="error" role="alert" data-testid="login-error">
          {auth.error}
        </p>
      )}
    </form>
  );
}
