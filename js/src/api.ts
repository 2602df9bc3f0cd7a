/**
 * The client of the jupyter_flow REST API. Every request goes through `requestAPI()`,
 * which uses JupyterLab's ServerConnection so the token, XSRF cookie and base URL work
 * exactly as for JupyterLab's own requests.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type {
  ArtifactPreview,
  BatchRequest,
  Clusters,
  ExecutedNotebook,
  Health,
  Lineage,
  NotebookParams,
  Run,
  RunChanges,
  RunGraph,
  RunKind,
  RunPage,
  RunStatus,
  Schedule,
  ScheduleList,
  ScheduleRequest,
  Task,
  TaskList,
  TaskLogs
} from './types';

export const API_PATH = 'jupyter-flow/api';

/** Why a request failed, in words a user can act on. */
export type FailureKind = 'missing' | 'refused' | 'not-found' | 'invalid' | 'store' | 'server' | 'network';

export class FlowApiError extends Error {
  /**
   * `store` (kind 'store'): the store the server cannot open, as the server names it (a
   * SQLite file's path, or a database URL without its password).
   */
  constructor(
    message: string,
    readonly kind: FailureKind,
    readonly status: number | null,
    readonly store: string | null = null
  ) {
    super(message);
    this.name = 'FlowApiError';
  }
}

export const MISSING_EXTENSION_MESSAGE =
  'The jupyter_flow server extension is not running on this Jupyter server. ' +
  'Install jupyter_flow in the environment that runs the server, check ' +
  '`jupyter server extension list` shows jupyter_flow enabled, and restart JupyterLab.';

type Query = Record<string, string | number | boolean | string[] | null | undefined>;

/** `?a=1&b=x,y` from the defined entries of `query` (lists are comma-joined). */
export function queryString(query: Query = {}): string {
  const parts: string[] = [];
  for (const [name, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') {
      continue;
    }
    const text = Array.isArray(value) ? value.join(',') : String(value);
    if (text === '') {
      continue;
    }
    parts.push(`${encodeURIComponent(name)}=${encodeURIComponent(text)}`);
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

/**
 * Call the API route `endPoint` (relative to `{base_url}jupyter-flow/api/`) and return its
 * JSON body; any failure becomes a `FlowApiError`.
 */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, API_PATH, endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new FlowApiError(
      `Cannot reach the Jupyter server (${(error as Error).message}); is it still running?`,
      'network',
      null
    );
  }
  const text = await response.text();
  let body: unknown = null;
  if (text.length > 0) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!response.ok) {
    throw errorFor(response.status, body);
  }
  if (body === null && text.length > 0) {
    throw new FlowApiError(`The server answered ${endPoint} with something that is not JSON`, 'server', response.status);
  }
  return body as T;
}

function errorFor(status: number, body: unknown): FlowApiError {
  const field = (name: string): string | null => {
    const value = body && typeof body === 'object' ? (body as Record<string, unknown>)[name] : undefined;
    return typeof value === 'string' ? value : null;
  };
  const message = field('message');
  const store = field('store');
  if (status === 503 && message !== null && store !== null) {
    // The extension runs but cannot open its store; the message says why and what to do.
    return new FlowApiError(message, 'store', status, store);
  }
  if (status === 404 && message === null) {
    // Jupyter's own 404 page: no handler answers under jupyter-flow/api/.
    return new FlowApiError(MISSING_EXTENSION_MESSAGE, 'missing', status);
  }
  if (status === 401 || status === 403) {
    return new FlowApiError(
      `The server refused (${status}): ${message ?? 'not authorised to use jupyter_flow'}`,
      'refused',
      status
    );
  }
  if (status === 404) {
    return new FlowApiError(message ?? 'not found', 'not-found', status);
  }
  if (status >= 400 && status < 500) {
    return new FlowApiError(message ?? `request rejected (${status})`, 'invalid', status);
  }
  return new FlowApiError(message ?? `server error (${status})`, 'server', status);
}

export interface RunFilters {
  status?: RunStatus[];
  kind?: RunKind[];
  name?: string;
  notebook?: string;
  started_after?: string;
  parent_id?: string;
  limit?: number;
  before?: string;
}

/** Typed calls, one per route. */
export class FlowClient {
  constructor(readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  private get<T>(endPoint: string, query?: Query): Promise<T> {
    return requestAPI<T>(endPoint + queryString(query), { method: 'GET' }, this.settings);
  }

  private send<T>(method: 'POST' | 'PATCH' | 'DELETE', endPoint: string, body?: unknown): Promise<T> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
    }
    return requestAPI<T>(endPoint, init, this.settings);
  }

  health(): Promise<Health> {
    return this.get('health');
  }

  /** A page of runs, newest first; `cursor` starts the change feed. */
  runs(filters: RunFilters = {}): Promise<RunPage> {
    return this.get('runs', { ...filters });
  }

  /** Runs changed since `cursor` (oldest change first) and the cursor to poll with next. */
  changes(cursor: number, limit = 500): Promise<RunChanges> {
    return this.get('runs', { changed_since: cursor, limit });
  }

  run(runId: string): Promise<Run> {
    return this.get(`runs/${encodeURIComponent(runId)}`);
  }

  /** A run's tasks; with `changedSince`, only those whose `seq` is above it. */
  tasks(runId: string, changedSince?: number): Promise<TaskList> {
    return this.get(`runs/${encodeURIComponent(runId)}/tasks`, { changed_since: changedSince });
  }

  cancel(runId: string): Promise<Run> {
    return requestAPI<Run>(
      `runs/${encodeURIComponent(runId)}/cancel`,
      { method: 'POST', body: '{}' },
      this.settings
    );
  }

  /**
   * Write a batch execution's executed notebook under the server root
   * (`flow-executed/<notebook>.<run id>.ipynb`) and say where, for JupyterLab to open it.
   */
  executedNotebook(runId: string): Promise<ExecutedNotebook> {
    return this.send('POST', `runs/${encodeURIComponent(runId)}/notebook`, {});
  }

  /** Run a notebook run's notebook again, with the same parameters, as a new batch. */
  rerunAsBatch(run: Run): Promise<Run> {
    return this.startBatch({ notebook: run.notebook ?? '', params: run.params ?? {} });
  }

  /** Start a batch (the server validates the parameters: 422 names the bad one). */
  startBatch(request: BatchRequest): Promise<Run> {
    return this.send('POST', 'batches', request);
  }

  /** The parameters a notebook (path relative to the server root) declares. */
  notebookParams(path: string): Promise<NotebookParams> {
    return this.get('notebooks/params', { path });
  }

  schedules(): Promise<ScheduleList> {
    return this.get('schedules');
  }

  schedule(id: string): Promise<Schedule> {
    return this.get(`schedules/${encodeURIComponent(id)}`);
  }

  createSchedule(request: ScheduleRequest): Promise<Schedule> {
    return this.send('POST', 'schedules', request);
  }

  /** Pause (`true`) or resume (`false`): resuming computes the next firing from now. */
  setSchedulePaused(id: string, paused: boolean): Promise<Schedule> {
    return this.send('PATCH', `schedules/${encodeURIComponent(id)}`, { paused });
  }

  deleteSchedule(id: string): Promise<void> {
    return this.send<void>('DELETE', `schedules/${encodeURIComponent(id)}`);
  }

  clusters(): Promise<Clusters> {
    return this.get('clusters');
  }

  task(taskId: string): Promise<Task> {
    return this.get(`tasks/${encodeURIComponent(taskId)}`);
  }

  logs(taskId: string): Promise<TaskLogs> {
    return this.get(`tasks/${encodeURIComponent(taskId)}/logs`);
  }

  graph(runId: string): Promise<RunGraph> {
    return this.get(`graphs/${encodeURIComponent(runId)}`);
  }

  artifact(hash: string, maxBytes?: number): Promise<ArtifactPreview> {
    return this.get(`artifacts/${encodeURIComponent(hash)}`, { max_bytes: maxBytes });
  }

  /**
   * The whole value of a JSON artifact (the download, parsed), e.g. an op's displayed
   * outputs, which a bounded preview would cut in the middle of an image.
   */
  artifactJSON<T>(hash: string): Promise<T> {
    return this.get(`artifacts/${encodeURIComponent(hash)}`, { download: 1 });
  }

  /** URL that downloads an artifact's serialized bytes (for an `<a href>`). */
  artifactDownloadUrl(hash: string): string {
    const url = URLExt.join(this.settings.baseUrl, API_PATH, 'artifacts', encodeURIComponent(hash));
    return `${url}?download=1`;
  }

  lineage(ident: string): Promise<Lineage> {
    return this.get(`lineage/${encodeURIComponent(ident)}`);
  }
}
