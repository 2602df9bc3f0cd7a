/**
 * Everything about one op execution: source, parameters, status and reason, timing,
 * attempts, where it ran, logs (polled while it runs), error and traceback, outputs with
 * previews, lineage, and "go to cell".
 */
import React, { useCallback, useEffect, useRef, useState } from 'react';

import { OutputAreaModel, SimplifiedOutputArea, type IOutputAreaModel } from '@jupyterlab/outputarea';
import { Widget } from '@lumino/widgets';

import { FlowApiError } from '../api';
import { useFlow } from '../context';
import { cellPrompt, elapsed, formatDuration, taskLabel } from '../runs';
import { TERMINAL_TASK, type ArtifactPreview, type Lineage, type Task, type TaskLogs } from '../types';
import { CopyButton, ErrorMessage, StatusBadge } from './StatusBadge';

export interface TaskDetailsProps {
  taskId: string;
  /** Names of the op's neighbours in the run graph, for quick navigation. */
  upstream: { id: string; name: string; status: string }[];
  downstream: { id: string; name: string; status: string }[];
  onSelect: (taskId: string) => void;
  /**
   * Hands the view's poll loop this op's refresh, and whether it still needs polling (the
   * op has not finished); `null` when the details close. The details never poll by
   * themselves, so a view has one loop however many ops a person clicks.
   */
  register: (poll: DetailsPoll | null, live: boolean) => void;
}

/** Fetches an op's record and logs once. */
export type DetailsPoll = () => Promise<void>;

function message(error: unknown): string {
  return error instanceof FlowApiError ? error.message : String(error);
}

export function TaskDetails(props: TaskDetailsProps): JSX.Element {
  const { taskId, register } = props;
  const flow = useFlow();
  const [task, setTask] = useState<Task | null>(null);
  const [logs, setLogs] = useState<TaskLogs | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [source, setSource] = useState<{ text: string; from: string | null } | null>(null);

  // The view keys these details by op, so one component shows one op: a late answer for
  // another op can never land here.
  const running = task === null || !TERMINAL_TASK.has(task.status);
  const mounted = useRef(true);
  const refresh = useCallback(async () => {
    try {
      const [next, nextLogs] = await Promise.all([flow.client.task(taskId), flow.client.logs(taskId)]);
      if (!mounted.current) {
        return;
      }
      setTask(prev => (prev && prev.seq === next.seq ? prev : next));
      setLogs(prev => (prev && JSON.stringify(prev) === JSON.stringify(nextLogs) ? prev : nextLogs));
      setError(null);
    } catch (err) {
      if (mounted.current) {
        setError(message(err));
      }
    }
  }, [flow, taskId]);
  // Fetched at once; then by the view's loop while the op runs (its logs grow).
  useEffect(() => {
    mounted.current = true;
    void refresh();
    return () => {
      mounted.current = false;
    };
  }, [refresh]);
  useEffect(() => {
    register(refresh, running);
  }, [register, refresh, running]);
  useEffect(() => () => register(null, false), [register]);

  // A cached op has no source of its own: it points at the execution that made its outputs.
  useEffect(() => {
    if (!task) {
      return;
    }
    if (task.provenance?.source) {
      setSource({ text: task.provenance.source, from: null });
      return;
    }
    const firstOutput = Object.values(task.outputs ?? {})[0];
    if (!task.cached || !firstOutput) {
      return;
    }
    let cancelled = false;
    void (async () => {
      try {
        const preview = await flow.client.artifact(firstOutput, 64);
        const producer = preview.producers.find(id => id !== task.id);
        if (!producer) {
          return;
        }
        const original = await flow.client.task(producer);
        if (!cancelled && original.provenance?.source) {
          setSource({ text: original.provenance.source, from: producer });
        }
      } catch {
        // The source stays unknown; the panel says so below.
      }
    })();
    return () => {
      cancelled = true;
    };
  }, [task?.id, task?.provenance?.source, task?.cached]);

  if (!task) {
    return (
      <section className="jp-flow-details" aria-label="op details">
        <ErrorMessage error={error} />
        {!error ? <p className="jp-flow-muted">Loading op…</p> : null}
      </section>
    );
  }

  const prov = task.provenance ?? {};
  const duration = task.duration ?? elapsed(task.started_at, task.ended_at);
  const params = (task.components?.params ?? prov.params ?? null) as Record<string, unknown> | null;
  const captured = (task.components?.globals ?? null) as Record<string, unknown> | null;
  const gpus = (prov.gpus ?? []).map(gpu => [gpu.name, gpu.uuid, gpu.driver && `driver ${gpu.driver}`].filter(Boolean).join(', '));
  const waitingFor = task.status === 'WAITING' ? resourcesText(task.resources) : '';
  const outputMeta = prov.outputs ?? {};
  // Values first; the recorded cell outputs last.
  const outputs = Object.entries(task.outputs ?? {}).sort(([a], [b]) => Number(a === DISPLAYS) - Number(b === DISPLAYS));

  return (
    <section className="jp-flow-details" aria-label={`op ${task.name} details`}>
      <header className="jp-flow-details-header">
        <h3 className="jp-flow-details-title">
          {taskLabel(task)}
        </h3>
        <StatusBadge status={task.status} cached={task.cached} />
        <CopyButton text={task.id} label={`copy task id ${task.id}`} onCopy={flow.copy} />
        {prov.notebook && flow.openCell ? (
          <button
            type="button"
            className="jp-flow-button"
            aria-label={`go to the cell of ${task.name} in ${prov.notebook}`}
            onClick={() => void flow.openCell?.(prov.notebook as string, prov.cell_id ?? null, prov.cell_index ?? null)}
          >
            Go to cell
          </button>
        ) : null}
      </header>
      <ErrorMessage error={error} />
      <dl className="jp-flow-facts">
        <Fact name="Task id" value={task.id} />
        <Fact name="Reason" value={task.reason ?? ''} />
        {waitingFor ? <Fact name="Waiting for" value={`a worker with ${waitingFor}`} /> : null}
        <Fact name="Duration" value={formatDuration(duration)} />
        <Fact name="Attempts" value={String(task.attempts)} />
        <Fact name="Worker" value={task.worker ?? prov.worker ?? ''} />
        <Fact name="Host" value={[prov.host, prov.pid ? `pid ${prov.pid}` : ''].filter(Boolean).join(', ')} />
        <Fact name="GPU" value={gpus.join('; ')} />
        <Fact name="Slurm job" value={prov.slurm_job_id ?? ''} />
        <Fact name="Resources" value={resourcesText(task.resources)} />
        <Fact name="Cache key" value={task.key ?? ''} mono />
        <Fact name="Notebook" value={prov.notebook ? `${prov.notebook}${cellPrompt(prov) ? ` (${cellPrompt(prov)})` : ''}` : ''} />
      </dl>

      {task.error || logs?.traceback ? (
        <Block title="Error">
          <pre className="jp-flow-pre jp-flow-traceback" aria-label="error and traceback">
            {logs?.traceback || task.error}
          </pre>
        </Block>
      ) : null}

      <Block title="Source">
        {source ? (
          <>
            {source.from ? <p className="jp-flow-muted">Restored from cache; source of task {source.from}.</p> : null}
            <pre className="jp-flow-pre jp-flow-source" aria-label="op source">
              {source.text}
            </pre>
          </>
        ) : (
          <p className="jp-flow-muted">No source recorded{task.cached ? ' (restored from cache)' : ''}.</p>
        )}
      </Block>

      {params && Object.keys(params).length ? (
        <Block title="Parameters">
          <KeyValues values={params} label="parameters" />
        </Block>
      ) : null}
      {captured && Object.keys(captured).length ? (
        <Block title="Captured values">
          <KeyValues values={captured} label="captured values" />
        </Block>
      ) : null}

      <Block title="Logs">
        {logs && (logs.stdout || logs.stderr) ? (
          <>
            {logs.from_task ? (
              <p className="jp-flow-muted jp-flow-logs-from">
                Restored from cache; printed by task {logs.from_task}
                {logs.from_run ? ` of run ${logs.from_run}` : ''}, which computed the value.
              </p>
            ) : null}
            {logs.truncated ? <p className="jp-flow-muted">Showing the last 256 KiB.</p> : null}
            {logs.stdout ? (
              <pre className="jp-flow-pre jp-flow-stdout" aria-label="stdout">
                {logs.stdout}
              </pre>
            ) : null}
            {logs.stderr ? (
              <pre className="jp-flow-pre jp-flow-stderr" aria-label="stderr">
                {logs.stderr}
              </pre>
            ) : null}
          </>
        ) : (
          <p className="jp-flow-muted">{running ? 'No output yet.' : 'No output.'}</p>
        )}
      </Block>

      <Block title="Outputs">
        {outputs.length ? (
          <ul className="jp-flow-outputs">
            {outputs.map(([name, hash]) => (
              <OutputItem key={name} name={name} hash={hash} meta={outputMeta[name]} />
            ))}
          </ul>
        ) : (
          <p className="jp-flow-muted">No outputs{running ? ' yet' : ''}.</p>
        )}
      </Block>

      <Block title="Lineage">
        <Neighbours title="Upstream" items={props.upstream} onSelect={props.onSelect} />
        <Neighbours title="Downstream" items={props.downstream} onSelect={props.onSelect} />
        <LineageSummary taskId={task.id} />
      </Block>
    </section>
  );
}

function resourcesText(resources: Record<string, number> | null | undefined): string {
  return Object.entries(resources ?? {})
    .map(([name, amount]) => `${name}=${amount}`)
    .join(', ');
}

function Fact(props: { name: string; value: string; mono?: boolean }): JSX.Element | null {
  if (!props.value) {
    return null;
  }
  return (
    <>
      <dt>{props.name}</dt>
      <dd className={props.mono ? 'jp-flow-mono' : undefined}>{props.value}</dd>
    </>
  );
}

function Block(props: { title: string; children: React.ReactNode }): JSX.Element {
  return (
    <div className="jp-flow-block">
      <h4>{props.title}</h4>
      {props.children}
    </div>
  );
}

function KeyValues(props: { values: Record<string, unknown>; label: string }): JSX.Element {
  return (
    <table className="jp-flow-table" aria-label={props.label}>
      <tbody>
        {Object.entries(props.values).map(([name, value]) => (
          <tr key={name}>
            <th scope="row">{name}</th>
            <td className="jp-flow-mono">{typeof value === 'string' ? value : JSON.stringify(value)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function formatBytes(size: number | undefined): string {
  if (size === undefined) {
    return '';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

// The op's recorded cell outputs (prints, displays, figures) are stored under this name.
const DISPLAYS = '__displays__';

function outputLabel(name: string): string {
  return name === DISPLAYS ? 'displayed outputs' : name;
}

const IMAGE_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);

function OutputItem(props: { name: string; hash: string; meta?: { size?: number; type?: string } }): JSX.Element {
  const flow = useFlow();
  const [preview, setPreview] = useState<ArtifactPreview | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [open, setOpen] = useState(false);
  // An op's displayed outputs render as in a notebook (where JupyterLab's renderers are at hand).
  const rendered = props.name === DISPLAYS && flow.rendermime !== undefined;
  useEffect(() => {
    if (!open || preview || rendered) {
      return;
    }
    flow.client.artifact(props.hash).then(setPreview, err => setError(message(err)));
  }, [open, props.hash]);
  return (
    <li className="jp-flow-output">
      <div className="jp-flow-output-head">
        <button
          type="button"
          className="jp-flow-link"
          aria-expanded={open}
          aria-label={`${open ? 'hide' : 'preview'} output ${props.name}`}
          onClick={() => setOpen(!open)}
        >
          {open ? '▾' : '▸'} {outputLabel(props.name)}
        </button>
        <span className="jp-flow-muted">
          {[props.meta?.type ?? preview?.type, formatBytes(props.meta?.size ?? preview?.size)].filter(Boolean).join(' · ')}
        </span>
        <span className="jp-flow-mono jp-flow-muted" title={props.hash}>
          {props.hash.slice(0, 12)}
        </span>
        <CopyButton text={props.hash} label={`copy artifact hash of ${props.name}`} onCopy={flow.copy} />
        <a className="jp-flow-link" href={flow.client.artifactDownloadUrl(props.hash)} aria-label={`download output ${props.name}`}>
          download
        </a>
      </div>
      {open && rendered ? (
        <div className="jp-flow-preview">
          <RenderedOutputs hash={props.hash} />
        </div>
      ) : open ? (
        <div className="jp-flow-preview">
          <ErrorMessage error={error} />
          {preview ? <PreviewBody preview={preview} /> : !error ? <p className="jp-flow-muted">Loading preview…</p> : null}
        </div>
      ) : null}
    </li>
  );
}

type NotebookOutputs = NonNullable<IOutputAreaModel.IOptions['values']>;

/**
 * An op's displayed outputs (prints, HTML, figures: nbformat outputs) rendered by the app's
 * renderers, as a notebook shows an untrusted output: HTML sanitized, no scripts run.
 */
function RenderedOutputs(props: { hash: string }): JSX.Element {
  const flow = useFlow();
  const host = useRef<HTMLDivElement>(null);
  const [shown, setShown] = useState<'loading' | 'shown' | 'empty'>('loading');
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const rendermime = flow.rendermime;
    if (!rendermime) {
      return;
    }
    let area: SimplifiedOutputArea | null = null;
    let cancelled = false;
    // Stored as {outputs: [...], modules?: {...}} (jupyter_flow/worker/capture.py).
    flow.client.artifactJSON<{ outputs?: NotebookOutputs } | NotebookOutputs>(props.hash).then(
      record => {
        if (cancelled || !host.current) {
          return;
        }
        const values = Array.isArray(record) ? record : Array.isArray(record?.outputs) ? record.outputs : [];
        area = new SimplifiedOutputArea({ model: new OutputAreaModel({ values, trusted: false }), rendermime });
        area.addClass('jp-flow-rendered-outputs');
        Widget.attach(area, host.current);
        setShown(values.length ? 'shown' : 'empty');
      },
      err => !cancelled && setError(message(err))
    );
    return () => {
      cancelled = true;
      if (area) {
        const model = area.model;
        area.dispose();
        model.dispose();
      }
    };
  }, [flow, props.hash]);
  return (
    <>
      <ErrorMessage error={error} />
      {shown === 'loading' && !error ? <p className="jp-flow-muted">Loading outputs…</p> : null}
      {shown === 'empty' ? <p className="jp-flow-muted">The op displayed nothing.</p> : null}
      <div ref={host} className="jp-flow-rendered-host" aria-label="displayed outputs" />
    </>
  );
}

function PreviewBody(props: { preview: ArtifactPreview }): JSX.Element {
  const { preview } = props;
  const note = preview.truncated ? <p className="jp-flow-muted">Preview truncated.</p> : null;
  if (preview.kind === 'image') {
    const image = preview.data as { mime?: string; base64?: string };
    if (image.mime && IMAGE_TYPES.has(image.mime) && image.base64) {
      return <img className="jp-flow-image" alt="output preview" src={`data:${image.mime};base64,${image.base64}`} />;
    }
  }
  if (preview.kind === 'table') {
    const table = preview.data as { columns: string[]; records: unknown[][] | Record<string, unknown>[]; total_rows?: number };
    const rows = (table.records ?? []).map(record =>
      Array.isArray(record) ? record : table.columns.map(column => (record as Record<string, unknown>)[column])
    );
    return (
      <>
        <div className="jp-flow-table-wrap">
          <table className="jp-flow-table" aria-label="table preview">
            <thead>
              <tr>
                {table.columns.map(column => (
                  <th key={column} scope="col">
                    {column}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.map((row, index) => (
                <tr key={index}>
                  {row.map((cell, column) => (
                    <td key={column}>{typeof cell === 'string' ? cell : JSON.stringify(cell)}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {table.total_rows !== undefined ? <p className="jp-flow-muted">{table.total_rows} rows in all.</p> : null}
        {note}
      </>
    );
  }
  const text = preview.kind === 'json' ? JSON.stringify(preview.data, null, 2) : String(preview.data ?? '');
  return (
    <>
      <pre className="jp-flow-pre" aria-label="output preview">
        {text}
      </pre>
      {note}
    </>
  );
}

function Neighbours(props: {
  title: string;
  items: { id: string; name: string; status: string }[];
  onSelect: (id: string) => void;
}): JSX.Element {
  return (
    <div className="jp-flow-neighbours">
      <span className="jp-flow-muted">{props.title}: </span>
      {props.items.length === 0 ? <span className="jp-flow-muted">none</span> : null}
      {props.items.map(item => (
        <button
          key={item.id}
          type="button"
          className="jp-flow-chip"
          aria-label={`select ${props.title.toLowerCase()} op ${item.name}`}
          onClick={() => props.onSelect(item.id)}
        >
          <span className={`jp-flow-dot jp-flow-status-${item.status}`} aria-hidden="true" />
          {item.name}
        </button>
      ))}
    </div>
  );
}

function LineageSummary(props: { taskId: string }): JSX.Element {
  const flow = useFlow();
  const [lineage, setLineage] = useState<Lineage | null>(null);
  const [open, setOpen] = useState(false);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    setLineage(null);
    setOpen(false);
  }, [props.taskId]);
  useEffect(() => {
    if (open && !lineage) {
      flow.client.lineage(props.taskId).then(setLineage, err => setError(message(err)));
    }
  }, [open, lineage, props.taskId]);
  return (
    <div className="jp-flow-lineage">
      <button type="button" className="jp-flow-link" aria-expanded={open} onClick={() => setOpen(!open)}>
        {open ? '▾' : '▸'} Full provenance (tasks and artifacts upstream)
      </button>
      <ErrorMessage error={error} />
      {open && lineage ? (
        <ul aria-label="lineage">
          {lineage.tasks.map(item => (
            <li key={item.id}>
              <span className={`jp-flow-dot jp-flow-status-${item.status}`} aria-hidden="true" /> {taskLabel(item)}{' '}
              <span className="jp-flow-muted jp-flow-mono">
                {item.status} · task {item.id} · run {item.run_id}
              </span>
            </li>
          ))}
          <li className="jp-flow-muted">
            {lineage.artifacts.length} artifact{lineage.artifacts.length === 1 ? '' : 's'}
            {lineage.truncated ? ' (truncated)' : ''}
          </li>
        </ul>
      ) : null}
    </div>
  );
}
