// One event stream for the whole page, shared through a context.
import { createContext, useContext, type ReactNode } from 'react';
import { useUnauthorized } from './authContext.ts';
import { INITIAL_LIVE_STATE, useLive, type EventSourceLike, type LiveState } from './hooks/useLive.ts';

export const LiveContext = createContext<LiveState>(INITIAL_LIVE_STATE);

export function LiveProvider({
  children,
  createEventSource,
}: {
  children: ReactNode;
  createEventSource?: (url: string) => EventSourceLike;
}) {
  const onUnauthorized = useUnauthorized();
  const live = useLive({ onUnauthorized, createEventSource });
  return <LiveContext.Provider value={live}>{children}</LiveContext.Provider>;
}

export function useLiveContext(): LiveState {
  return useContext(LiveContext);
}
