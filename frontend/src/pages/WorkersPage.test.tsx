import { screen, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { snapshot } from '../test/fixtures.ts';
import { renderPage } from '../test/render.tsx';
import { WorkersPage } from './WorkersPage.tsx';

describe('WorkersPage', () => {
  it('lists every member with state, coordinator, jobs, models, queries and resources', () => {
    renderPage(<WorkersPage />);
    const rows = screen.getAllByTestId(/^worker-row-/);
    expect(rows.map((r) => r.getAttribute('data-testid'))).toEqual([
      'worker-row-n1', 'worker-row-n2', 'worker-row-n3', 'worker-row-n4',
    ]);
    expect(screen.getByText('2 of 4 members alive, as seen by n2.')).toBeTruthy();

    const n1 = screen.getByTestId('worker-row-n1');
    expect(n1.getAttribute('data-state')).toBe('alive');
    expect(n1.className).toBe('');
    expect(within(n1).getByText('★')).toBeTruthy();
    expect(within(n1).getByRole('link', { name: 'train-aaaa1111' }).getAttribute('href')).toBe('/jobs/train-aaaa1111');
    expect(within(n1).getByRole('link', { name: 'serve-bbbb2222' })).toBeTruthy();

    const n2 = screen.getByTestId('worker-row-n2');
    const cells = within(n2).getAllByRole('cell').map((c) => c.textContent);
    expect(cells).toEqual([
      'n2', 'alive', 'vm2', '2', '0.2 s ago', '', 'serve-bbbb2222, serve-cccc3333', 'cnn v2, mlp v1', '5,700',
      '0.46/2', '300.0 MiB', '40.0 GiB of 100.0 GiB', '1', 'cpu', '127.0.0.1:9301',
    ]);
    // A node that did not answer its stat has no figures.
    const n1cells = within(n1).getAllByRole('cell').map((c) => c.textContent);
    expect(n1cells.slice(9, 14)).toEqual(['—', '—', '—', '—', '—']);
    expect(within(n2).queryByText('★')).toBeNull();
  });

  it('marks failed and departed members', () => {
    renderPage(<WorkersPage />);
    const n3 = screen.getByTestId('worker-row-n3');
    expect(n3.getAttribute('data-state')).toBe('failed');
    expect(n3.classList.contains('failed')).toBe(true);
    expect(within(n3).getByText('failed').className).toBe('badge badge-failed');
    expect(within(n3).getByText('7.4 s ago')).toBeTruthy();

    const n4 = screen.getByTestId('worker-row-n4');
    expect(n4.getAttribute('data-state')).toBe('left');
    expect(n4.classList.contains('left')).toBe(true);
    expect(within(n4).getByText('2 min ago')).toBeTruthy();
  });

  it('links a member\'s dashboard only when its http field is host:port', () => {
    const [base] = snapshot.workers;
    if (!base) throw new Error('the fixture has workers');
    const forged = [
      { ...base, id: 'n1', http: 'javascript:alert(1)' },
      { ...base, id: 'n2', http: 'evil.example/phish?x=1:80' },
      { ...base, id: 'n5', http: 'vm5.example:9305' },
    ];
    renderPage(<WorkersPage />, { live: { snapshot: { ...snapshot, workers: forged } } });
    const n1 = screen.getByTestId('worker-row-n1');
    expect(within(n1).getByText('javascript:alert(1)').tagName).toBe('TD');
    expect(within(n1).queryByRole('link', { name: 'javascript:alert(1)' })).toBeNull();
    const n2 = screen.getByTestId('worker-row-n2');
    expect(within(n2).queryByRole('link', { name: /evil/ })).toBeNull();
    const n5 = screen.getByTestId('worker-row-n5');
    expect(within(n5).getByRole('link', { name: 'vm5.example:9305' }).getAttribute('href')).toBe('http://vm5.example:9305/');
  });
});
