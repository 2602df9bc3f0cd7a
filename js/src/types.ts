/**
 * Shapes of the jupyter_flow REST API (jupyter_flow/server/openapi.json) and of the
 * `application/vnd.jupyter-flow.graph+json` output of `%flow graph`.
 */

export type RunStatus = 'PENDING' | 'RUNNING' | 'SUCCESS' | 'FAILED' | 'CANCELED' | 'LOST';
export type TaskStatus =
  | 'PENDING'
  | 'WAITING'
  | 'RUNNING'
  | 'SUCCESS'
  | 'CACHED'
  | 'FAILED'
  | 'CANCELED'
  | 'SKIPPED'
  | 'LOST';
export type RunKind = 'api' | 'cell' | 'graph' | 'notebook' | 'batch' | 'resume';

export const RUN_STATUSES: RunStatus[] = ['PENDING', 'RUNNING', 'SUCCESS', 'FAILED', 'CANCELED', 'LOST'];
export const RUN_KINDS: RunKind[] = ['api', 'cell', 'graph', 'notebook', 'batch', 'resume'];
export const TERMINAL_RUN: ReadonlySet<string> = new Set(['SUCCESS', 'FAILED', 'CANCELED', 'LOST']);
export const TERMINAL_TASK: ReadonlySet<string> = new Set([
  'SUCCESS',
  'CACHED',
  'FAILED',
  'CANCELED',
  'SKIPPED',
  'LOST'
]);

export interface Run {
  id: string;
  name: string | null;
  kind: RunKind;
  status: RunStatus;
  parent_id?: string | null;
  resumed_from?: string | null;
  user?: string | null;
  host?: string | null;
  params?: Record<string, unknown> | null;
  metrics?: Record<string, unknown> | null;
  /** What the run as a whole produced ({name: artifact hash}): a batch execution's output_notebook. */
  outputs?: Record<string, string> | null;
  cluster?: string | null;
  notebook?: string | null;
  error?: string | null;
  created_at: string;
  started_at?: string | null;
  ended_at?: string | null;
  cancel_requested_at?: string | null;
  /** The schedule whose firing started this batch, and the cron time it was for. */
  schedule_id?: string | null;
  scheduled_for?: string | null;
  seq: number;
  task_counts: Partial<Record<TaskStatus, number>>;
  pinned: boolean;
}

export interface RunPage {
  runs: Run[];
  next_before: string | null;
  cursor: number;
}

export interface RunChanges {
  runs: Run[];
  cursor: number;
}

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

export interface Task {
  id: string;
  run_id: string;
  node: string;
  name: string;
  index?: number | null;
  status: TaskStatus;
  cached: boolean;
  reason?: string | null;
  key?: string | null;
  components?: Record<string, unknown> | null;
  attempts: number;
  provenance?: Provenance | null;
  outputs?: Record<string, string> | null;
  upstream?: string[] | null;
  resources?: Record<string, number> | null;
  error?: string | null;
  worker?: string | null;
  created_at: string;
  started_at?: string | null;
  ended_at?: string | null;
  duration?: number | null;
  seq: number;
}

/** POST runs/{id}/notebook: where the executed notebook was written under the server root. */
export interface ExecutedNotebook {
  run_id: string;
  path: string;
  artifact: string;
}

export interface TaskList {
  run_id: string;
  tasks: Task[];
}

export interface TaskLogs {
  task_id: string;
  stdout: string;
  stderr: string;
  error: string;
  traceback: string;
  truncated: boolean;
  /** A cached task's logs are those of the execution that produced its value: that task. */
  from_task?: string | null;
  from_run?: string | null;
}

export interface Edge {
  source: string;
  target: string;
}

export interface GraphNode {
  id: string;
  node: string;
  name: string;
  index?: number | null;
  status: string;
  cached: boolean;
  key?: string | null;
  outputs: Record<string, string>;
}

export interface RunGraph {
  id: string;
  name: string | null;
  status: string;
  nodes: GraphNode[];
  edges: Edge[];
  targets: string[];
}

export interface ArtifactPreview {
  hash: string;
  type: string;
  serializer: string;
  size: number;
  kind: 'json' | 'text' | 'table' | 'image' | 'repr' | 'untrusted'; // untrusted: an unsigned pickle, never decoded
  data: unknown;
  truncated: boolean;
  created_at?: string | null;
  producers: string[];
}

export interface Lineage {
  root: { type: 'task' | 'artifact'; id: string };
  tasks: { id: string; run_id: string; name: string; index?: number | null; status: string; cached?: boolean }[];
  artifacts: string[];
  edges: Edge[];
  truncated: boolean;
}

/** A parameter a notebook declares (`jf.param(...)`, or `x = 1` in its parameters cell). */
export interface DeclaredParam {
  name: string;
  type: 'int' | 'float' | 'bool' | 'str' | string;
  default: unknown;
  min?: number | null;
  max?: number | null;
  choices?: unknown[] | null;
  help?: string | null;
}

export interface NotebookParams {
  notebook: string;
  params: DeclaredParam[];
}

export type MisfirePolicy = 'skip' | 'once' | 'catchup';
export const MISFIRE_POLICIES: MisfirePolicy[] = ['skip', 'once', 'catchup'];

/** What the scheduler decided after missed firings (downtime). */
export interface Misfire {
  at: string;
  missed: number;
  policy: MisfirePolicy | string;
  fired: number;
}

export interface Schedule {
  id: string;
  name: string;
  notebook: string;
  cron: string;
  timezone: string;
  params?: Record<string, unknown> | null;
  grid?: Record<string, unknown[]> | null;
  parallel: number;
  cluster?: string | null;
  misfire: MisfirePolicy | string;
  paused: boolean;
  created_by?: string | null;
  created_at: string;
  updated_at?: string | null;
  next_fire_at?: string | null;
  last_fire_at?: string | null;
  last_run_id?: string | null;
  last_misfire?: Misfire | null;
  last_run?: { id: string; status: RunStatus; ended_at?: string | null } | null;
}

export interface ScheduleList {
  schedules: Schedule[];
}

/** POST batches: run a notebook now (once per grid point). */
export interface BatchRequest {
  notebook: string;
  params?: Record<string, unknown>;
  grid?: Record<string, unknown[]>;
  parallel?: number;
  cluster?: string;
  name?: string;
}

/** POST schedules: run a notebook as a batch on a cron schedule. */
export interface ScheduleRequest extends BatchRequest {
  cron: string;
  timezone?: string;
  misfire?: MisfirePolicy;
}

export interface Clusters {
  clusters: { name: string; [other: string]: unknown }[];
  profiles: Record<string, unknown>;
  default_profile?: string | null;
}

export interface Health {
  status: 'ok';
  version: string;
  store: string;
  time: string;
  heartbeat_timeout: number;
}

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
