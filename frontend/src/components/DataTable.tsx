import type { ReactNode } from 'react';

/** A table with a header row of `columns`, and one `empty` line instead of rows when set. */
export function DataTable({
  kind,
  testId,
  columns,
  empty,
  children,
}: {
  /** Extra class: `jobs`, `files`, … */
  kind: string;
  testId?: string;
  columns: readonly string[];
  /** Shown across the table when there are no rows; `null` when there are. */
  empty: string | null;
  children: ReactNode;
}) {
  return (
    <table className={`data ${kind}`} data-testid={testId}>
      <thead>
        <tr>
          {columns.map((c) => (
            <th key={c}>{c}</th>
          ))}
        </tr>
      </thead>
      <tbody>
        {empty === null ? (
          children
        ) : (
          <tr>
            <td colSpan={columns.length} className="empty">
              {empty}
            </td>
          </tr>
        )}
      </tbody>
    </table>
  );
}
