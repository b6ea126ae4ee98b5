import type { ReactNode } from 'react';
import { NavLink, Outlet, useLocation } from 'react-router';
import { useAuthContext } from '../authContext.ts';
import { useLiveContext } from '../live.tsx';
import { ConnectionBanner } from './ConnectionBanner.tsx';

const LINKS = [
  { to: '/jobs', label: 'Jobs' },
  { to: '/workers', label: 'Workers' },
  { to: '/files', label: 'Files' },
  { to: '/stats', label: 'Stats' },
  { to: '/models', label: 'Models' },
] as const;

/** Which node served the page and which one coordinates. */
function ClusterLine() {
  const { snapshot } = useLiveContext();
  return (
    <p className="meta">
      served by <span className="mono" data-testid="served-by">{snapshot?.node ?? '…'}</span> ·
      coordinator:{' '}
      <span className="mono" data-testid="coordinator">
        {snapshot ? (snapshot.coordinator ?? 'none') : '…'}
      </span>
    </p>
  );
}

export function Header({ children }: { children?: ReactNode }) {
  const auth = useAuthContext();
  return (
    <header className="top">
      <div className="brand">
        <h1>IDunno</h1>
        {children}
      </div>
      {auth?.required && auth.status === 'ready' && (
        <button type="button" className="link-button" onClick={() => void auth.logout()}>
          Log out
        </button>
      )}
    </header>
  );
}

export function Layout() {
  const { pathname } = useLocation();
  return (
    <>
      <Header>
        <ClusterLine />
      </Header>
      <nav className="tabs">
        {LINKS.map(({ to, label }) => (
          <NavLink
            key={to}
            to={to}
            className={({ isActive }) =>
              isActive || (to === '/jobs' && pathname === '/') ? 'tab active' : 'tab'
            }
          >
            {label}
          </NavLink>
        ))}
      </nav>
      <ConnectionBanner />
      <main>
        <Outlet />
      </main>
    </>
  );
}
