import { useLiveContext } from '../live.tsx';

/** Shown only while the event stream is down (not while it first connects). */
export function ConnectionBanner() {
  const { status } = useLiveContext();
  if (status !== 'lost') return null;
  return (
    <div className="banner" role="alert" data-testid="connection-banner">
      Connection to the cluster lost — reconnecting…
    </div>
  );
}
