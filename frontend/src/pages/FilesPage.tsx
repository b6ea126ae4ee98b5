import { useState } from 'react';
import type { FileInfo } from '../api.ts';
import { formatBytes, formatDateTime } from '../format.ts';
import { useDebounced, useFiles } from '../hooks/useFiles.ts';
import { DataTable } from '../components/DataTable.tsx';

export function FilesPage() {
  const [prefix, setPrefix] = useState('');
  const asked = useDebounced(prefix, 300);
  const { data, error, loading } = useFiles(asked);
  // The server filters by the debounced prefix; filtering here too answers every keystroke.
  const files = data?.files.filter((f) => f.name.startsWith(prefix)) ?? [];
  const under = files.filter((f) => f.under_replicated).length;

  return (
    <section>
      <h2>Files</h2>
      <div className="toolbar">
        <label>
          Prefix{' '}
          <input
            type="search"
            value={prefix}
            placeholder="e.g. models/"
            onChange={(e) => setPrefix(e.target.value)}
          />
        </label>
        {data && (
          <span className="muted">
            {data.next !== null ? 'the first ' : ''}
            {files.length} file{files.length === 1 ? '' : 's'}
            {data.next !== null && <> (a narrower prefix shows the others)</>}
            {under > 0 && <>, {under} under-replicated</>}
            {data.replication !== null && <> · replication {data.replication}</>}
            {data.live_nodes !== null && (
              <> · {typeof data.live_nodes === 'number' ? data.live_nodes : data.live_nodes.length} live nodes</>
            )}
          </span>
        )}
      </div>
      {error && <p className="error">Could not list the files: {error}</p>}
      {loading ? (
        <p className="muted">loading…</p>
      ) : (
        <FilesTable files={files} />
      )}
    </section>
  );
}

const COLUMNS = ['name', 'versions', 'size', 'replicas', 'live / wanted', 'created'];

function FilesTable({ files }: { files: readonly FileInfo[] }) {
  return (
    <DataTable kind="files" columns={COLUMNS} empty={files.length === 0 ? 'no files' : null}>
      {files.map((f) => <FileRow key={f.name} file={f} />)}
    </DataTable>
  );
}

function FileRow({ file }: { file: FileInfo }) {
  const newest = file.versions[file.versions.length - 1];
  const live = file.live_replicas;
  const liveList = typeof live === 'number' ? null : new Set(live);
  const liveCount = typeof live === 'number' ? live : live.length;
  const isLive = (node: string): boolean => liveList === null || liveList.has(node);
  return (
    <tr data-testid={`file-row-${file.name}`} className={file.under_replicated ? 'under-replicated' : undefined}>
      <td className="mono">
        {file.name}
        {file.under_replicated && <span className="badge badge-warn">under-replicated</span>}
      </td>
      <td className="num">
        {file.versions.length}
        {newest && <span className="muted"> (newest v{newest.version})</span>}
      </td>
      <td className="num">{newest ? formatBytes(newest.size) : '—'}</td>
      <td className="mono replicas">
        {newest?.replicas.map((node, i) => (
          <span key={node}>
            {i > 0 && ', '}
            <span className={isLive(node) ? 'replica' : 'replica dead'} title={isLive(node) ? 'alive' : 'not alive'}>
              {node}
            </span>
          </span>
        ))}
      </td>
      <td className="num">
        {liveCount} / {file.wanted}
      </td>
      <td>{newest ? formatDateTime(newest.created_ms) : '—'}</td>
    </tr>
  );
}
