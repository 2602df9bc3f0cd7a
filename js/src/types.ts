/**
 * Shapes of the jupyter_flow REST API and of the `application/vnd.jupyter-flow.graph+json`
 * output of `%flow graph`.
 *
 * The API's records are generated from the server's pydantic models
 * (jupyter_flow/server/models.py) into ./generated/api-types.ts by
 * `python -m jupyter_flow.server.schema`; this file re-exports them and adds what only the
 * UI needs (richer provenance, constants).
 */

import type * as api from './generated/api-types';

export type {
  ArtifactPreview,
  BatchRequest,
  ClusterInfo,
  Clusters,
  DeclaredParam,
  Edge,
  ExecutedNotebook,
  FailureKind,
  GraphNode,
  GraphPage,
  GraphSummary,
  Health,
  LastRun,
  Lineage,
  LineageTask,
  Misfire,
  MisfirePolicy,
  NotebookParams,
  Run,
  RunChanges,
  RunKind,
  RunPage,
  RunStatus,
  Schedule,
  ScheduleList,
  SchedulePatch,
  ScheduleRequest,
  StoreUnavailable,
  TaskLogs,
  TaskStatus
} from './generated/api-types';

/** The body of every 4xx/5xx answer. */
export type ApiErrorBody = api.Error;
/** GET graphs/{id}: a run's task graph. */
export type RunGraph = api.Graph;

export const RUN_STATUSES: api.RunStatus[] = ['PENDING', 'RUNNING', 'SUCCESS', 'FAILED', 'CANCELED', 'LOST'];
export const RUN_KINDS: api.RunKind[] = ['api', 'cell', 'graph', 'notebook', 'batch', 'resume'];
export const TERMINAL_RUN: ReadonlySet<string> = new Set(['SUCCESS', 'FAILED', 'CANCELED', 'LOST']);
export const TERMINAL_TASK: ReadonlySet<string> = new Set([
  'SUCCESS',
  'CACHED',
  'FAILED',
  'CANCELED',
  'SKIPPED',
  'LOST'
]);

export interface OutputMeta {
  hash: string;
  size?: number;
  type?: string;
  uri?: string;
  serializer?: string;
}

/** What the engine records about where and how a task ran (all optional). */
export interface Provenance {
  op?: string;
  source?: string;
  source_hash?: string;
  key?: string;
  worker?: string;
  host?: string;
  pid?: number;
  slurm_job_id?: string;
  gpus?: { name?: string; uuid?: string; driver?: string; index?: number }[];
  notebook?: string;
  cell_id?: string;
  cell_index?: number;
  /** true where the cell ran in a batch's executed copy (its prompts count papermill's injected cell) */
  executed_copy?: boolean;
  outputs?: Record<string, OutputMeta>;
  params?: Record<string, unknown>;
  [other: string]: unknown;
}


/** A task, with the provenance fields the UI reads typed. */
export interface Task extends Omit<api.Task, 'provenance'> {
  provenance: Provenance | null;
}

export interface TaskList extends Omit<api.TaskList, 'tasks'> {
  tasks: Task[];
}

export const MISFIRE_POLICIES: api.MisfirePolicy[] = ['skip', 'once', 'catchup'];

/**
 * `application/vnd.jupyter-flow.graph+json`, written by `%flow graph`
 * (jupyter_flow/kernel/graph_view.py):
 *
 * ```json
 * {"version": 1,
 *  "nodes": [{"id": "clean", "inputs": ["raw"], "captured": ["threshold"], "outputs": ["df"],
 *             "status": "cached" | "stale", "reason": "cached" | "code changed" | …,
 *             "resources": {"GPU": 1}}],
 *  "edges": [{"source": "load", "target": "clean", "variable": "raw"}]}
 * ```
 * `status` may also be a task status (SUCCESS, RUNNING, …); both are coloured.
 */
export interface NotebookGraph {
  version: number;
  nodes: {
    id: string;
    inputs?: string[];
    captured?: string[];
    outputs?: string[];
    status: string;
    reason?: string;
    resources?: Record<string, number> | null;
  }[];
  edges: { source: string; target: string; variable?: string }[];
}

export const GRAPH_MIME_TYPE = 'application/vnd.jupyter-flow.graph+json';
