/**
 * One run: its header (status, counts, actions) and its graph, live; selecting an op
 * opens its details beside the graph.
 */
import React, { useCallback, useMemo, useRef, useState } from 'react';

import { closeIcon } from '@jupyterlab/ui-components';

import { FlowApiError } from '../api';
import { useFlow } from '../context';
import { usePoll } from '../hooks';
import { taskEdges } from '../layout';
import { baseName, elapsed, formatDuration, formatStarted, notebookIdle, taskCounts, taskLabel } from '../runs';
import { TERMINAL_RUN, type Run, type Task } from '../types';
import { cancelRun, openExecutedNotebook, rerunAsBatch } from './actions';
import { ChildRuns } from './ChildRuns';
import { GraphView, type GraphItem } from './GraphView';
import { CopyButton, ErrorMessage, StatusBadge } from './StatusBadge';
import { TaskDetails, type DetailsPoll } from './TaskDetails';

export interface RunViewProps {
  runId: string;
  active: boolean;
}

interface RunState {
  run: Run | null;
  tasks: Map<string, Task>;
  seq: number;
  /** A batch's executions or a notebook run's cell runs (null for other kinds). */
  children: Run[] | null;
  /** The last poll saw the run (and its child runs) finished: nothing more will change. */
  settled: boolean;
}

/** Runs whose work is in child runs: a batch (its executions), a notebook run (its cells). */
const PARENT_KINDS = new Set(['batch', 'notebook']);

export function RunView(props: RunViewProps): JSX.Element {
  const { runId, active } = props;
  const flow = useFlow();
  const [state, setState] = useState<RunState>({ run: null, tasks: new Map(), seq: -1, children: null, settled: false });
  const [error, setError] = useState<string | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [cancelError, setCancelError] = useState<string | null>(null);
  const [rerun, setRerun] = useState<{ id?: string; error?: string } | null>(null);
  const [openError, setOpenError] = useState<string | null>(null);

  const refresh = useCallback(async () => {
    try {
      const run = await flow.client.run(runId);
      const page = await flow.client.tasks(runId, state.seq >= 0 ? state.seq : undefined);
      const children = PARENT_KINDS.has(run.kind) ? (await flow.client.runs({ parent_id: runId, limit: 500 })).runs : null;
      const settled = TERMINAL_RUN.has(run.status) && (children ?? []).every(child => TERMINAL_RUN.has(child.status));
      setState(prev => {
        const sameRun = prev.run !== null && prev.run.seq === run.seq && prev.run.status === run.status;
        const sameChildren =
          JSON.stringify((prev.children ?? []).map(c => [c.id, c.seq])) ===
          JSON.stringify((children ?? []).map(c => [c.id, c.seq]));
        if (sameRun && sameChildren && page.tasks.length === 0 && prev.settled === settled) {
          return prev; // nothing changed: no re-render
        }
        const tasks = page.tasks.length ? new Map(prev.tasks) : prev.tasks;
        let seq = prev.seq;
        for (const task of page.tasks) {
          tasks.set(task.id, task);
          seq = Math.max(seq, task.seq);
        }
        return {
          run: sameRun ? prev.run : run,
          tasks,
          seq: Math.max(seq, 0),
          children: sameChildren ? prev.children : children,
          settled
        };
      });
      setError(null);
    } catch (err) {
      setError(err instanceof FlowApiError ? err.message : String(err));
    }
  }, [flow, runId, state.seq]);
  // One poll loop per view: it refreshes the run and, while the open op details have
  // something still to fetch (an op that runs, logs that grow), those too.
  const details = useRef<DetailsPoll | null>(null);
  const [detailsLive, setDetailsLive] = useState(false);
  const register = useCallback((poll: DetailsPoll | null, live: boolean) => {
    details.current = poll;
    setDetailsLive(live);
  }, []);
  const tick = useCallback(async () => {
    if (!state.settled) {
      await refresh();
    }
    await details.current?.();
  }, [refresh, state.settled]);
  usePoll(tick, 1000, active && (!state.settled || detailsLive));

  // A graph wider than tall (a pipeline) gets the tab's whole width, the op details under
  // it; a tall one (a fan-out) keeps the details beside it. Either way it can stay at a
  // zoom where labels are legible.
  const [wide, setWide] = useState(false);
  const onLayoutSize = useCallback((size: { width: number; height: number }) => {
    setWide(size.width >= 1.5 * size.height);
  }, []);
  const tasks = useMemo(() => [...state.tasks.values()].sort((a, b) => (a.id < b.id ? -1 : 1)), [state.tasks]);
  const edges = useMemo(() => taskEdges(tasks), [tasks]);
  const items: GraphItem[] = useMemo(
    () =>
      tasks.map(task => ({
        id: task.id,
        label: taskLabel(task),
        status: task.status,
        cached: task.cached,
        detail:
          task.status === 'WAITING'
            ? `waits for ${Object.entries(task.resources ?? {})
                .map(([name, n]) => `${name}=${n}`)
                .join(', ') || 'a worker'}`
            : task.status === 'CACHED'
              ? undefined
              : (task.reason ?? undefined)
      })),
    [tasks]
  );
  const byId = state.tasks;
  const neighbours = useMemo(() => {
    const up = new Map<string, string[]>();
    const down = new Map<string, string[]>();
    for (const edge of edges) {
      up.set(edge.target, [...(up.get(edge.target) ?? []), edge.source]);
      down.set(edge.source, [...(down.get(edge.source) ?? []), edge.target]);
    }
    return { up, down };
  }, [edges]);
  const describe = (ids: string[] | undefined): { id: string; name: string; status: string }[] =>
    (ids ?? []).flatMap(id => {
      const task = byId.get(id);
      return task ? [{ id, name: taskLabel(task), status: task.status }] : [];
    });

  const run = state.run;
  if (!run) {
    return (
      <div className="jp-flow-run" aria-label="run">
        <ErrorMessage error={error} />
        {!error ? <p className="jp-flow-muted">Loading run {runId}…</p> : null}
      </div>
    );
  }
  const counts = taskCounts(run.task_counts);
  const finished = TERMINAL_RUN.has(run.status);
  // A notebook run with its kernel alive and no cell running has nothing to cancel.
  const idle = notebookIdle(run, state.children ?? []);
  return (
    <div className="jp-flow-run" aria-label={`run ${run.name ?? run.id}`}>
      <header className="jp-flow-run-header">
        <StatusBadge status={run.status} idle={idle} />
        <h2 className="jp-flow-run-title">{run.name ?? run.id}</h2>
        <span className="jp-flow-muted">{run.kind}</span>
        <span className="jp-flow-mono jp-flow-muted" title={run.id}>
          {run.id}
        </span>
        <CopyButton text={run.id} label={`copy run id ${run.id}`} onCopy={flow.copy} />
        <span className="jp-flow-spacer" />
        {!finished && !idle ? (
          <button
            type="button"
            className="jp-flow-button jp-mod-warn"
            disabled={Boolean(run.cancel_requested_at)}
            aria-label={`cancel run ${run.name ?? run.id}`}
            onClick={() => {
              setCancelError(null);
              cancelRun(flow, run).then(
                updated => updated && setState(prev => ({ ...prev, run: updated })),
                err => setCancelError(String((err as Error).message))
              );
            }}
          >
            {run.cancel_requested_at ? 'Canceling…' : 'Cancel run'}
          </button>
        ) : null}
        {finished && run.kind === 'notebook' && run.notebook ? (
          <button
            type="button"
            className="jp-flow-button"
            aria-label={`rerun ${run.name ?? run.id} as a batch`}
            onClick={() => {
              setRerun(null);
              rerunAsBatch(flow, run).then(
                started => {
                  if (started) {
                    setRerun({ id: started.id });
                    flow.openRun?.(started.id, started.name ?? started.id);
                  }
                },
                err => setRerun({ error: String((err as Error).message) })
              );
            }}
          >
            Rerun as batch
          </button>
        ) : null}
        {run.outputs?.output_notebook && flow.openNotebook ? (
          <button
            type="button"
            className="jp-flow-button"
            aria-label={`open the executed notebook of ${run.id}`}
            title="Open the executed notebook (with its outputs) in JupyterLab"
            onClick={() => {
              setOpenError(null);
              openExecutedNotebook(flow, run).catch(err => setOpenError(String((err as Error).message)));
            }}
          >
            Open executed notebook
          </button>
        ) : null}
      </header>
      {rerun?.id ? <p className="jp-flow-muted">Started batch {rerun.id}</p> : null}
      <ErrorMessage error={rerun?.error ?? null} title="Rerun failed" />
      <ErrorMessage error={openError} title="Cannot open the notebook" />
      <div className="jp-flow-run-facts">
        <span>started {formatStarted(run.started_at ?? run.created_at)}</span>
        <span>{formatDuration(elapsed(run.started_at ?? run.created_at, run.ended_at))}</span>
        <span aria-label="task counts">
          ran {counts.ran} · cached {counts.cached} · failed {counts.failed} · {counts.total} ops
        </span>
        {run.notebook ? <span title={run.notebook}>{baseName(run.notebook)}</span> : null}
        {run.cluster ? <span>cluster {run.cluster}</span> : null}
      </div>
      <ErrorMessage error={cancelError} title="Cancel failed" />
      <ErrorMessage error={run.error ?? null} title="Run error" />
      <ErrorMessage error={error} />
      <div className={`jp-flow-run-body${wide ? ' jp-flow-run-body-stacked' : ''}`}>
        <div className="jp-flow-run-graph">
          {items.length ? (
            <GraphView
              items={items}
              edges={edges}
              selected={selected}
              onSelect={setSelected}
              label={`graph of run ${run.name ?? run.id}`}
              showMiniMap
              onLayoutSize={onLayoutSize}
            />
          ) : state.children?.length ? (
            <ChildRuns parent={run} runs={state.children} />
          ) : (
            <p className="jp-flow-muted">
              {PARENT_KINDS.has(run.kind) ? 'No runs under this one yet.' : 'This run has no ops yet.'}
            </p>
          )}
        </div>
        {selected && byId.has(selected) ? (
          <div className="jp-flow-run-details">
            <button
              type="button"
              className="jp-flow-icon-button jp-flow-close"
              aria-label="close op details"
              onClick={() => setSelected(null)}
            >
              <closeIcon.react tag="span" className="jp-flow-icon" />
            </button>
            <TaskDetails
              key={selected}
              taskId={selected}
              upstream={describe(neighbours.up.get(selected))}
              downstream={describe(neighbours.down.get(selected))}
              onSelect={setSelected}
              register={register}
            />
          </div>
        ) : null}
      </div>
    </div>
  );
}
