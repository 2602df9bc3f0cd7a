/**
 * The runs under a batch (its executions: params, status, metrics, as `jupyter flow
 * compare` prints them) or under a notebook run (its cell runs), as a sortable table;
 * a row opens that run's own tab.
 */
import React, { useMemo, useState } from 'react';

import { useFlow } from '../context';
import { elapsed, formatDuration, taskCounts } from '../runs';
import { TERMINAL_RUN, type Run } from '../types';
import { openExecutedNotebook } from './actions';
import { ErrorMessage, StatusBadge } from './StatusBadge';

export interface ChildRunsProps {
  parent: Run;
  runs: Run[];
}

interface Column {
  key: string;
  label: string;
  value: (run: Run) => string | number | null;
  numeric?: boolean;
}

function shown(value: unknown): string | number | null {
  if (value === null || value === undefined) {
    return null;
  }
  if (typeof value === 'number' || typeof value === 'string') {
    return value;
  }
  return JSON.stringify(value);
}

function columnsFor(parent: Run, runs: Run[]): Column[] {
  const keys = (pick: (run: Run) => Record<string, unknown> | null | undefined): string[] => [
    ...new Set(runs.flatMap(run => Object.keys(pick(run) ?? {})))
  ];
  const columns: Column[] = [
    // A batch's executions share the notebook's name: the id tells them apart.
    { key: 'run', label: parent.kind === 'batch' ? 'execution' : 'run', value: run => (parent.kind === 'batch' ? run.id : (run.name ?? run.id)) },
    { key: 'status', label: 'status', value: run => run.status }
  ];
  if (parent.kind === 'batch') {
    for (const name of keys(run => run.params)) {
      columns.push({ key: `param:${name}`, label: name, value: run => shown(run.params?.[name]) });
    }
    for (const name of keys(run => run.metrics)) {
      columns.push({ key: `metric:${name}`, label: name, value: run => shown(run.metrics?.[name]), numeric: true });
    }
  } else {
    columns.push({ key: 'kind', label: 'kind', value: run => run.kind });
  }
  columns.push(
    {
      key: 'duration',
      label: 'duration',
      value: run => elapsed(run.started_at ?? run.created_at, run.ended_at),
      numeric: true
    },
    {
      key: 'counts',
      label: 'ran / cached / failed',
      value: run => {
        const counts = taskCounts(run.task_counts);
        return `${counts.ran} / ${counts.cached} / ${counts.failed}`;
      }
    }
  );
  return columns;
}

function compare(a: string | number | null, b: string | number | null): number {
  if (a === b) {
    return 0;
  }
  if (a === null) {
    return 1; // missing values last, whichever the direction
  }
  if (b === null) {
    return -1;
  }
  if (typeof a === 'number' && typeof b === 'number') {
    return a - b;
  }
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

export function ChildRuns(props: ChildRunsProps): JSX.Element {
  const { parent, runs } = props;
  const flow = useFlow();
  const columns = useMemo(() => columnsFor(parent, runs), [parent, runs]);
  const [sort, setSort] = useState<{ key: string; descending: boolean } | null>(null);
  const rows = useMemo(() => {
    const ordered = [...runs].sort((a, b) => (a.id < b.id ? -1 : 1)); // the order they were made
    const column = sort ? columns.find(c => c.key === sort.key) : undefined;
    if (!sort || !column) {
      return ordered;
    }
    return ordered.sort((a, b) => {
      const [x, y] = [column.value(a), column.value(b)];
      const order = compare(x, y);
      return sort.descending && x !== null && y !== null ? -order : order;
    });
  }, [runs, columns, sort]);
  const what = parent.kind === 'batch' ? 'executions' : 'runs';
  const [openError, setOpenError] = useState<string | null>(null);
  // A batch's executions each stored their executed notebook: a last column opens it.
  const notebooks = parent.kind === 'batch' && Boolean(flow.openNotebook);
  const openNotebook = (run: Run): void => {
    setOpenError(null);
    openExecutedNotebook(flow, run).catch(err => setOpenError(String((err as Error).message)));
  };
  return (
    <div className="jp-flow-children">
      <p className="jp-flow-muted">
        {runs.length} {runs.length === 1 ? what.replace(/s$/, '') : what} · click a column to sort, a row to open it
      </p>
      <ErrorMessage error={openError} title="Cannot open the notebook" />
      <div className="jp-flow-table-wrap">
        <table className="jp-flow-table jp-flow-children-table" aria-label={`${what} of ${parent.name ?? parent.id}`}>
          <thead>
            <tr>
              {columns.map(column => {
                const sorted = sort?.key === column.key;
                return (
                  <th
                    key={column.key}
                    aria-sort={sorted ? (sort?.descending ? 'descending' : 'ascending') : 'none'}
                  >
                    <button
                      type="button"
                      className="jp-flow-sort"
                      onClick={() =>
                        setSort(prev =>
                          prev?.key === column.key
                            ? { key: column.key, descending: !prev.descending }
                            : { key: column.key, descending: false }
                        )
                      }
                    >
                      {column.label}
                      {sorted ? (sort?.descending ? ' ▼' : ' ▲') : ''}
                    </button>
                  </th>
                );
              })}
              {notebooks ? <th>notebook</th> : null}
            </tr>
          </thead>
          <tbody>
            {rows.map(run => (
              <tr
                key={run.id}
                className="jp-flow-child-row"
                data-run-id={run.id}
                tabIndex={0}
                aria-label={`open run ${run.name ?? run.id} (${run.id})`}
                onClick={() => flow.openRun?.(run.id, run.name ?? run.id)}
                onKeyDown={event => {
                  if (event.key === 'Enter') {
                    flow.openRun?.(run.id, run.name ?? run.id);
                  }
                }}
              >
                {columns.map(column =>
                  column.key === 'status' ? (
                    <td key={column.key}>
                      <StatusBadge status={run.status} />
                    </td>
                  ) : (
                    <td key={column.key} className={column.numeric ? 'jp-flow-num' : undefined}>
                      {column.key === 'duration'
                        ? formatDuration(column.value(run) as number | null)
                        : String(column.value(run) ?? '')}
                    </td>
                  )
                )}
                {notebooks ? (
                  <td>
                    {run.outputs?.output_notebook ? (
                      <button
                        type="button"
                        className="jp-flow-link jp-flow-open-notebook"
                        aria-label={`open the executed notebook of ${run.id}`}
                        title="Open the executed notebook (with its outputs) in JupyterLab"
                        onClick={event => {
                          event.stopPropagation(); // not the row's "open run"
                          openNotebook(run);
                        }}
                        onKeyDown={event => event.stopPropagation()}
                      >
                        open
                      </button>
                    ) : (
                      <span className="jp-flow-muted">{TERMINAL_RUN.has(run.status) ? 'none' : '…'}</span>
                    )}
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}
