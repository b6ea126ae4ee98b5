import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, render, screen, within } from '@testing-library/react';
import type { Member } from './api.ts';
import { MembersTable, formatLastHeard } from './MembersTable.tsx';

const members: Member[] = [
  { id: 'n1', generation: 1732620000000, incarnation: 0, state: 'alive', host: 'myhost', http: '127.0.0.1:8081', last_heard_ms: null },
  { id: 'n2', generation: 1732620000500, incarnation: 3, state: 'suspect', host: 'otherhost', http: '127.0.0.1:8082', last_heard_ms: 120 },
  { id: 'n3', generation: 1732620001000, incarnation: 1, state: 'failed', host: 'deadhost', http: null, last_heard_ms: 7400 },
];

afterEach(cleanup);

describe('MembersTable', () => {
  it('renders one row per member with state badges', () => {
    render(<MembersTable members={members} />);

    const rows = screen.getAllByRole('row');
    expect(rows).toHaveLength(1 + members.length); // header + members

    const failedRow = rows[3]!;
    expect(within(failedRow).getByText('n3')).toBeTruthy();
    const badge = within(failedRow).getByText('failed');
    expect(badge.className).toContain('badge-failed');
    expect(within(failedRow).getByText('7.4 s ago')).toBeTruthy();

    const n2 = rows[2]!;
    expect(within(n2).getByText('suspect').className).toContain('badge-suspect');
    expect(within(n2).getByText('0.1 s ago')).toBeTruthy();
    const link = within(n2).getByRole('link');
    expect(link.getAttribute('href')).toBe('http://127.0.0.1:8082/');

    expect(within(rows[1]!).getByText('alive').className).toContain('badge-alive');
  });

  it('formats last heard', () => {
    expect(formatLastHeard(null)).toBe('—');
    expect(formatLastHeard(120)).toBe('0.1 s ago');
    expect(formatLastHeard(125_000)).toBe('2 min ago');
  });
});
