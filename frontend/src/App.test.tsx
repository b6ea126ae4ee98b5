import { act, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { App } from './App.tsx';
import { createFakeEventSource, FakeEventSource } from './test/fakeEventSource.ts';
import { rawFiles, rawSnapshot } from './test/fixtures.ts';
import { describeCall, json } from './test/render.tsx';

beforeEach(() => FakeEventSource.reset());

type Route = (call: string, init?: RequestInit) => Response | undefined;

function stubApi(route: Route) {
  const mock = vi.fn<typeof fetch>((input, init) => {
    const call = describeCall(input, init);
    const answer = route(call, init) ?? json({ reply: 'error', kind: 'not_found', message: `no ${call}` }, 404);
    return Promise.resolve(answer);
  });
  vi.stubGlobal('fetch', mock);
  return mock;
}

function renderApp(path = '/') {
  return render(
    <MemoryRouter initialEntries={[path]}>
      <App createEventSource={createFakeEventSource} />
    </MemoryRouter>,
  );
}

/** The app's event stream, once the effect that opens it has run. */
async function stream(count = 1): Promise<FakeEventSource> {
  await waitFor(() => expect(FakeEventSource.instances).toHaveLength(count));
  return FakeEventSource.latest();
}

const open: Route = (call) => (call === 'GET /api/auth' ? json({ required: false, authenticated: false }) : undefined);

describe('App layout', () => {
  it('has the navigation and names the serving node and the coordinator', async () => {
    stubApi(open);
    renderApp();
    const nav = await screen.findByRole('navigation');
    expect(within(nav).getAllByRole('link').map((a) => [a.textContent, a.getAttribute('href')])).toEqual([
      ['Jobs', '/jobs'],
      ['Workers', '/workers'],
      ['Files', '/files'],
      ['Stats', '/stats'],
      ['Models', '/models'],
    ]);
    expect(screen.getByRole('heading', { level: 1 }).textContent).toBe('IDunno');
    // `/` is the jobs page.
    expect(within(nav).getByText('Jobs').className).toContain('active');

    const es = await stream();
    act(() => {
      es.open();
      es.emit('snapshot', rawSnapshot);
    });
    expect(screen.getByTestId('coordinator').textContent).toBe('n1');
    expect(screen.getByTestId('served-by').textContent).toBe('n2');
    expect(screen.getByRole('heading', { name: 'Running' })).toBeTruthy();

    act(() => es.emit('snapshot', { ...rawSnapshot, coordinator: null }));
    expect(screen.getByTestId('coordinator').textContent).toBe('none');
  });

  it('shows the banner while the stream is down, and hides it when it is back', async () => {
    stubApi(open);
    renderApp('/workers');
    await screen.findByRole('navigation');
    const es = await stream();
    act(() => {
      es.open();
      es.emit('snapshot', rawSnapshot);
    });
    expect(screen.queryByTestId('connection-banner')).toBeNull();
    act(() => es.fail());
    expect(screen.getByTestId('connection-banner').textContent).toContain('Connection to the cluster lost');
    // The last data stays on screen.
    expect(screen.getByTestId('worker-row-n1')).toBeTruthy();
    act(() => es.open());
    expect(screen.queryByTestId('connection-banner')).toBeNull();
  });

  it('routes to the pages', async () => {
    stubApi((call) => open(call) ?? (call.startsWith('GET /api/files') ? json(rawFiles) : undefined));
    renderApp('/files');
    expect(await screen.findByTestId('file-row-notes.txt')).toBeTruthy();
    fireEvent.click(screen.getByRole('link', { name: 'Workers' }));
    const es = await stream();
    act(() => es.emit('snapshot', rawSnapshot));
    expect(screen.getByTestId('worker-row-n3').getAttribute('data-state')).toBe('failed');
    fireEvent.click(screen.getByRole('link', { name: 'Jobs' }));
    fireEvent.click(screen.getByRole('link', { name: 'serve-bbbb2222' }));
    expect(await screen.findByText('← all jobs')).toBeTruthy();
  });
});

describe('login', () => {
  it('asks for the token when the API needs one, and shows a wrong token', async () => {
    let loggedIn = false;
    const mock = stubApi((call, init) => {
      if (call === 'GET /api/auth') return json({ required: true, authenticated: loggedIn });
      if (call === 'POST /api/login') {
        const { token } = JSON.parse(String(init?.body)) as { token: string };
        if (token !== 's3cret') return json({ reply: 'error', kind: 'unauthorized', message: 'wrong token' }, 401);
        loggedIn = true;
        return new Response(null, { status: 204 });
      }
      return undefined;
    });
    renderApp();

    const input = await screen.findByLabelText('Token');
    expect(input.getAttribute('type')).toBe('password');
    expect(screen.queryByRole('navigation')).toBeNull();
    expect(FakeEventSource.instances).toHaveLength(0);

    fireEvent.change(input, { target: { value: 'guess' } });
    fireEvent.click(screen.getByRole('button', { name: 'Log in' }));
    expect((await screen.findByTestId('login-error')).textContent).toBe('Wrong token.');

    fireEvent.change(input, { target: { value: 's3cret' } });
    fireEvent.click(screen.getByRole('button', { name: 'Log in' }));
    expect(await screen.findByRole('navigation')).toBeTruthy();
    expect(screen.queryByLabelText('Token')).toBeNull();
    await stream(1);
    const login = mock.mock.calls.filter(([i, init]) => describeCall(i, init) === 'POST /api/login');
    expect(login).toHaveLength(2);
    expect(login[1]?.[1]?.credentials).toBe('same-origin');
    expect(screen.getByRole('button', { name: 'Log out' })).toBeTruthy();
  });

  it('shows the login form when a request is answered 401, then reloads the data', async () => {
    // /api/auth says the session is fine, but the cookie is refused (e.g. the token changed).
    let tokenAccepted = false;
    const mock = stubApi((call) => {
      if (call === 'GET /api/auth') return json({ required: true, authenticated: true });
      if (call === 'POST /api/login') {
        tokenAccepted = true;
        return new Response(null, { status: 204 });
      }
      if (call.startsWith('GET /api/files')) {
        return tokenAccepted
          ? json(rawFiles)
          : json({ reply: 'error', kind: 'unauthorized', message: 'token required' }, 401);
      }
      return undefined;
    });
    renderApp('/files');
    const input = await screen.findByLabelText('Token');
    expect(mock.mock.calls.some(([i, init]) => describeCall(i, init) === 'GET /api/files')).toBe(true);
    const streams = FakeEventSource.instances.length;
    expect(streams).toBeGreaterThan(0);
    // The stream is closed by the effect of the render that shows the form, maybe a tick later.
    await waitFor(() => expect(FakeEventSource.latest().closed).toBe(true));

    fireEvent.change(input, { target: { value: 'anything' } });
    fireEvent.click(screen.getByRole('button', { name: 'Log in' }));
    expect(await screen.findByTestId('file-row-notes.txt')).toBeTruthy();
    // The stream is started again.
    expect((await stream(streams + 1)).closed).toBe(false);
  });

  it('shows the login form when the stream is closed for want of a token', async () => {
    let authenticated = true;
    stubApi((call) => (call === 'GET /api/auth' ? json({ required: true, authenticated }) : undefined));
    renderApp('/workers');
    await screen.findByRole('navigation');
    const es = await stream();
    authenticated = false;
    act(() => es.fail(true));
    expect(await screen.findByLabelText('Token')).toBeTruthy();
    await waitFor(() => expect(FakeEventSource.latest().closed).toBe(true));
  });
});
