import { lazy, Suspense } from 'react';
import { Link, Route, Routes } from 'react-router';
import { AuthContext, useAuthContext } from './authContext.ts';
import { Header, Layout } from './components/Layout.tsx';
import { LoginForm } from './components/LoginForm.tsx';
import { useAuth } from './hooks/useAuth.ts';
import type { EventSourceLike } from './hooks/useLive.ts';
import { LiveProvider } from './live.tsx';
import { FilesPage } from './pages/FilesPage.tsx';
import { JobPage } from './pages/JobPage.tsx';
import { JobsPage } from './pages/JobsPage.tsx';
import { ModelPage } from './pages/ModelPage.tsx';
import { ModelsPage } from './pages/ModelsPage.tsx';
import { NewJobPage } from './pages/NewJobPage.tsx';
import { WorkersPage } from './pages/WorkersPage.tsx';

// The charts library is most of the bundle: load it with the Stats page only.
const StatsPage = lazy(() => import('./pages/StatsPage.tsx').then((m) => ({ default: m.StatsPage })));

export interface AppProps {
  /** Tests hand in a fake event stream. */
  createEventSource?: (url: string) => EventSourceLike;
}

/** The dashboard; the router around it is `BrowserRouter` in the page, a memory one in tests. */
export function App({ createEventSource }: AppProps) {
  const auth = useAuth();
  return (
    <AuthContext.Provider value={auth}>
      <Gate createEventSource={createEventSource} />
    </AuthContext.Provider>
  );
}

function Gate({ createEventSource }: AppProps) {
  const auth = useAuthContext();
  if (!auth || auth.status === 'checking') {
    return (
      <>
        <Header />
        <main>
          <p className="muted">loading…</p>
        </main>
      </>
    );
  }
  if (auth.status === 'login') {
    return (
      <>
        <Header />
        <main>
          <LoginForm />
        </main>
      </>
    );
  }
  // A new login remounts everything: the stream restarts and every view loads again.
  return (
    <LiveProvider key={auth.generation} createEventSource={createEventSource}>
      <Routes>
        <Route element={<Layout />}>
          <Route index element={<JobsPage />} />
          <Route path="jobs" element={<JobsPage />} />
          <Route path="jobs/new" element={<NewJobPage />} />
          <Route path="jobs/:id" element={<JobPage />} />
          <Route path="workers" element={<WorkersPage />} />
          <Route path="files" element={<FilesPage />} />
          <Route
            path="stats"
            element={
              <Suspense fallback={<p className="muted">loading…</p>}>
                <StatsPage />
              </Suspense>
            }
          />
          <Route path="models" element={<ModelsPage />} />
          <Route path="models/:name" element={<ModelPage />} />
          <Route path="*" element={<NotFound />} />
        </Route>
      </Routes>
    </LiveProvider>
  );
}

function NotFound() {
  return (
    <section>
      <h2>Not found</h2>
      <p>
        Nothing here. <Link to="/jobs">See the jobs.</Link>
      </p>
    </section>
  );
}
