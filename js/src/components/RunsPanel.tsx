/**
 * The sidebar: runs newest first, children nested under parents, search and filters,
 * kept live through the change feed (one cheap request a second while visible).
 */
import React, { useMemo, useState } from 'react';

import { stopIcon } from '@jupyterlab/ui-components';

import { FlowApiError } from '../api';
import { useFlow } from '../context';
import { useFeed } from '../hooks';
import {
  elapsed,
  formatDuration,
  formatPause,
  formatStarted,
  notebookIdle,
  panelFailure,
  POLL_MS,
  RETRY_MAX_MS,
  runRows,
  runTooltip,
  taskCounts,
  type RunFilter
} from '../runs';
import { RUN_KINDS, RUN_STATUSES, TERMINAL_RUN, type RunKind, type RunStatus } from '../types';
import { cancelRun } from './actions';
import { CopyButton, ErrorMessage, IDLE_TOOLTIP, StatusBadge, UpdatesPaused } from './StatusBadge';

export function RunsPanel(props: { active: boolean }): JSX.Element {
  const flow = useFlow();
  // One cheap change-feed request a second while the list is on screen.
  const feed = useFeed(flow.feed, 'runs-list', props.active ? POLL_MS : null);
  const failure = feed.failure;
  const [filter, setFilter] = useState<RunFilter>({ search: '', statuses: [], kinds: [] });
  const [collapsed, setCollapsed] = useState<Set<string>>(new Set());
  const [actionError, setActionError] = useState<string | null>(null);
  const now = Date.now(); // running durations tick with each poll (useFeed re-renders then)

  const loadOlder = (): Promise<void> => flow.feed.loadOlder();

  const rows = useMemo(() => runRows(feed.runs, filter, collapsed), [feed.runs, filter, collapsed]);

  if (failure && feed.cursor === null) {
    const shown = panelFailure(failure, feed.failures);
    const kind = failure instanceof FlowApiError ? failure.kind : 'error';
    return (
      <div className="jp-flow-panel-message" role="alert" data-failure={kind}>
        <h3>{shown.title}</h3>
        <p className="jp-flow-panel-reason">{shown.message}</p>
        {shown.store ? (
          <p>
            Store: <code className="jp-flow-mono jp-flow-store-name">{shown.store}</code>
          </p>
        ) : null}
        <p className="jp-flow-muted jp-flow-retry" data-retry-ms={shown.retryMs}>
          {shown.backoff
            ? `Tried ${feed.failures} time${feed.failures === 1 ? '' : 's'}; trying again in ${formatPause(shown.retryMs)} ` +
              `(each failed try waits twice as long, up to ${formatPause(RETRY_MAX_MS)}) while this panel is open.`
            : `Retrying every ${formatPause(shown.retryMs)} while this panel is open.`}
        </p>
        <button type="button" className="jp-flow-button" onClick={() => flow.feed.pollSoon()}>
          Retry now
        </button>
      </div>
    );
  }

  const toggle = (id: string): void => {
    const next = new Set(collapsed);
    if (next.has(id)) {
      next.delete(id);
    } else {
      next.add(id);
    }
    setCollapsed(next);
  };

  return (
    <div className="jp-flow-runs">
      <div className="jp-flow-toolbar" role="search">
        <input
          type="search"
          className="jp-flow-search"
          placeholder="Search runs"
          aria-label="search runs by name, notebook or id"
          value={filter.search}
          onChange={event => setFilter({ ...filter, search: event.target.value })}
        />
        <select
          className="jp-flow-select"
          aria-label="filter by status"
          value={filter.statuses[0] ?? ''}
          onChange={event =>
            setFilter({ ...filter, statuses: event.target.value ? [event.target.value as RunStatus] : [] })
          }
        >
          <option value="">All statuses</option>
          {RUN_STATUSES.map(status => (
            <option key={status} value={status}>
              {status}
            </option>
          ))}
        </select>
        <select
          className="jp-flow-select"
          aria-label="filter by kind"
          value={filter.kinds[0] ?? ''}
          onChange={event => setFilter({ ...filter, kinds: event.target.value ? [event.target.value as RunKind] : [] })}
        >
          <option value="">All kinds</option>
          {RUN_KINDS.map(kind => (
            <option key={kind} value={kind}>
              {kind}
            </option>
          ))}
        </select>
      </div>
      <UpdatesPaused failure={failure} />
      <ErrorMessage error={actionError} />
      <ul className="jp-flow-run-list" aria-label="runs, newest first">
        {rows.map(({ run, depth, children }) => {
          const counts = taskCounts(run.task_counts);
          const idle = notebookIdle(run, feed.runs);
          const finished = TERMINAL_RUN.has(run.status) || idle;
          const title = run.name ?? run.id;
          return (
            <li
              key={run.id}
              className="jp-flow-run-row"
              data-run-id={run.id}
              data-status={run.status}
              data-idle={idle ? 'true' : undefined}
              style={{ paddingLeft: `${4 + depth * 14}px` }}
            >
              {children ? (
                <button
                  type="button"
                  className="jp-flow-icon-button"
                  aria-expanded={!collapsed.has(run.id)}
                  aria-label={`${collapsed.has(run.id) ? 'show' : 'hide'} ${children} child runs of ${title}`}
                  onClick={() => toggle(run.id)}
                >
                  {collapsed.has(run.id) ? '▸' : '▾'}
                </button>
              ) : (
                <span className="jp-flow-icon-spacer" />
              )}
              {/* Two lines at any sidebar width: badge and name; kind, duration, counts,
                  start (cut with an ellipsis when narrow). The tooltip has everything. */}
              <button
                type="button"
                className="jp-flow-run-open"
                aria-label={`open run ${title}, ${run.kind}, ${idle ? 'idle' : run.status}`}
                title={runTooltip(run, now) + (idle ? `\nidle: ${IDLE_TOOLTIP}` : '')}
                onClick={() => flow.openRun?.(run.id, title)}
              >
                <div className="jp-flow-run-line">
                  <StatusBadge status={run.status} idle={idle} />
                  <span className="jp-flow-run-name">{title}</span>
                </div>
                <div className="jp-flow-run-line jp-flow-run-meta jp-flow-muted">
                  <span className="jp-flow-kind">{run.kind}</span>
                  <span className="jp-flow-duration">
                    {formatDuration(elapsed(run.started_at ?? run.created_at, run.ended_at, now))}
                  </span>
                  <span className="jp-flow-counts" aria-label={`ran ${counts.ran}, cached ${counts.cached}, failed ${counts.failed}`}>
                    ran {counts.ran} · cached {counts.cached}
                    {counts.failed ? <span className="jp-flow-failed"> · failed {counts.failed}</span> : ' · failed 0'}
                  </span>
                  <span>{formatStarted(run.started_at ?? run.created_at)}</span>
                </div>
              </button>
              <span className="jp-flow-row-actions">
                <CopyButton text={run.id} label={`copy run id ${run.id}`} onCopy={flow.copy} />
                {!finished ? (
                  <button
                    type="button"
                    className="jp-flow-icon-button"
                    aria-label={`cancel run ${title}`}
                    title="Cancel run"
                    disabled={Boolean(run.cancel_requested_at)}
                    onClick={() => {
                      setActionError(null);
                      cancelRun(flow, run).then(
                        updated => updated && flow.feed.merge([updated]),
                        err => setActionError(String((err as Error).message))
                      );
                    }}
                  >
                    <stopIcon.react tag="span" className="jp-flow-icon" />
                  </button>
                ) : null}
              </span>
            </li>
          );
        })}
      </ul>
      {!feed.loading && rows.length === 0 ? (
        <p className="jp-flow-muted jp-flow-empty">
          {feed.runs.length ? 'No run matches the filters.' : 'No runs yet. Run a %%flow cell or jf.run(...) to see it here.'}
        </p>
      ) : null}
      {feed.nextBefore ? (
        <button type="button" className="jp-flow-button jp-flow-more" onClick={() => void loadOlder()}>
          Load older runs
        </button>
      ) : null}
    </div>
  );
}
