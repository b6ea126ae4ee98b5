// The login state, shared with every data hook so that a 401 anywhere shows the login form.
import { createContext, useContext } from 'react';

export type AuthStatus = 'checking' | 'ready' | 'login';

export interface AuthContextValue {
  /** `checking`: asking `/api/auth`; `login`: the login form is shown; `ready`: data may load. */
  status: AuthStatus;
  /** The API wants a token. */
  required: boolean;
  /** Why the last login failed. */
  error: string | null;
  /** Bumped at each successful login: the data views remount and load again. */
  generation: number;
  /** Sends the token; resolves `true` once logged in. */
  login: (token: string) => Promise<boolean>;
  logout: () => Promise<void>;
  /** A request was answered `401`: show the login form. */
  unauthorized: () => void;
}

export const AuthContext = createContext<AuthContextValue | null>(null);

const ignore = (): void => {};

/** The callback for a `401` answer (does nothing outside an `AuthContext`). */
export function useUnauthorized(): () => void {
  return useContext(AuthContext)?.unauthorized ?? ignore;
}

export function useAuthContext(): AuthContextValue | null {
  return useContext(AuthContext);
}
