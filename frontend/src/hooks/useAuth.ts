import { useCallback, useEffect, useState } from 'react';
import { errorMessage, fetchAuth, login as apiLogin, logout as apiLogout, UnauthorizedError } from '../api.ts';
import type { AuthContextValue, AuthStatus } from '../authContext.ts';

interface State {
  status: AuthStatus;
  required: boolean;
  error: string | null;
  generation: number;
}

/**
 * Asks `GET /api/auth` once: the login form is shown when a token is required and the
 * session has none, or later when any request is answered `401` (`unauthorized`).
 */
export function useAuth(): AuthContextValue {
  const [state, setState] = useState<State>({
    status: 'checking',
    required: false,
    error: null,
    generation: 0,
  });

  useEffect(() => {
    const ctrl = new AbortController();
    fetchAuth(ctrl.signal).then(
      (auth) => {
        const needLogin = auth.required && !auth.authenticated;
        setState((s) => ({ ...s, required: auth.required, status: needLogin ? 'login' : 'ready' }));
      },
      () => {
        // The node is unreachable or too old to know /api/auth: show the dashboard, whose
        // own requests tell what is wrong (and a 401 brings the login form back).
        if (!ctrl.signal.aborted) setState((s) => ({ ...s, status: 'ready' }));
      },
    );
    return () => ctrl.abort();
  }, []);

  const login = useCallback(async (token: string): Promise<boolean> => {
    try {
      await apiLogin(token);
      setState((s) => ({
        status: 'ready',
        required: true,
        error: null,
        generation: s.generation + 1,
      }));
      return true;
    } catch (e: unknown) {
      const error = e instanceof UnauthorizedError ? 'Wrong token.' : `Login failed: ${errorMessage(e)}`;
      setState((s) => ({ ...s, error }));
      return false;
    }
  }, []);

  const logout = useCallback(async (): Promise<void> => {
    try {
      await apiLogout();
    } finally {
      setState((s) => ({ ...s, status: 'login', required: true, error: null }));
    }
  }, []);

  const unauthorized = useCallback((): void => {
    setState((s) => (s.status === 'login' ? s : { ...s, status: 'login', required: true }));
  }, []);

  return { ...state, login, logout, unauthorized };
}
