/**
 * Types of the jupyter_flow REST API, generated from jupyter_flow/server/models.py.
 * Do not edit: change the models and run `python -m jupyter_flow.server.schema`.
 */

/* eslint-disable */

/** Every 4xx/5xx answer: a message naming what is wrong and what to do. */
export interface Error {
  message: string;
  reason: string | null;
}

/** 503: the store cannot be opened or stopped answering. */
export interface StoreUnavailable {
  /** what is wrong with the store, naming it, and what to do */
  message: string;
  reason: string | null;
  /** the store: a SQLite file's path, or the database URL with its password hidden */
  store: string;
}

export interface Health {
  status: "ok";
  version: string;
  /** SQL dialect: sqlite or postgresql */
  store: string;
  time: string;
  heartbeat_timeout: number;
}

/** A run with its task counts by status (its own tasks and its descendant runs'). */
export interface Run {
  id: string;
  name: string | null;
  kind: RunKind;
  status: RunStatus;
  parent_id: string | null;
  resumed_from: string | null;
  owner_id: string | null;
  /** the Jupyter user the run belongs to (the hub user on JupyterHub) */
  owner: string | null;
  /** the OS user that ran it */
  user: string | null;
  host: string | null;
  /** secret-named values are redacted */
  params: Record<string, unknown> | null;
  /** jf.record values: {name: value} */
  metrics: Record<string, unknown> | null;
  graph: Record<string, unknown> | null;
  snapshot: string | null;
  cluster: string | null;
  environment: Record<string, unknown> | null;
  /** what the run as a whole produced: {name: artifact hash}; a batch execution's output_notebook */
  outputs: Record<string, string> | null;
  notebook: string | null;
  error: string | null;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  cancel_requested_at: string | null;
  cancel_requested_by: string | null;
  /** change-feed position of the run's last change */
  seq: number;
  /** the schedule that fired this batch run */
  schedule_id: string | null;
  /** the cron time the firing was for */
  scheduled_for: string | null;
  /** number of tasks by status */
  task_counts: Record<string, number>;
  pinned: boolean;
}

/** A task (logs omitted: ``tasks/{id}/logs`` serves them). */
export interface Task {
  id: string;
  run_id: string;
  node: string;
  name: string;
  index: number | null;
  status: TaskStatus;
  cached: boolean;
  reason: string | null;
  key: string | null;
  components: Record<string, unknown> | null;
  attempts: number;
  provenance: Record<string, unknown> | null;
  /** {output name: artifact hash} */
  outputs: Record<string, string> | null;
  upstream: string[] | null;
  /** {resource name: amount}, e.g. {"GPU": 1} */
  resources: Record<string, number> | null;
  error: string | null;
  /** why the task did not succeed (null unless FAILED, CANCELED or SKIPPED) */
  failure_kind: FailureKind | null;
  worker: string | null;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  duration: number | null;
  seq: number;
  /** jf.record values recorded inside the op: {name: value} */
  metrics: Record<string, unknown> | null;
}

export interface RunPage {
  runs: Run[];
  /** pass as `before` for the next page; null on the last page */
  next_before: string | null;
  /** change-feed position taken before this page was read */
  cursor: number;
}

export interface RunChanges {
  /** runs changed after the cursor, oldest change first */
  runs: Run[];
  /** pass as `changed_since` to get later changes */
  cursor: number;
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
  /** a field kept only its last 256 KiB */
  truncated: boolean;
  /** for a task restored from the cache (status CACHED): the task whose execution produced the cached value, whose logs these are; null when the logs are the task's own (or that task is gone, or is another user's) */
  from_task: string | null;
  /** the run of from_task */
  from_run: string | null;
}

export interface GraphSummary {
  id: string;
  name: string | null;
  kind: RunKind;
  status: RunStatus;
  created_at: string;
  nodes: number;
}

export interface GraphPage {
  graphs: GraphSummary[];
  next_before: string | null;
}

export interface Edge {
  source: string;
  target: string;
}

export interface GraphNode {
  id: string;
  node: string;
  name: string;
  index: number | null;
  status: TaskStatus;
  cached: boolean;
  key: string | null;
  outputs: Record<string, string>;
}

/** A run's task graph: nodes (tasks) and edges (upstream task -> task). */
export interface Graph {
  id: string;
  name: string | null;
  status: RunStatus;
  nodes: GraphNode[];
  edges: Edge[];
  targets: string[];
}

export interface ArtifactPreview {
  hash: string;
  type: string;
  serializer: string;
  size: number;
  kind: "json" | "text" | "table" | "image" | "repr" | "untrusted";
  /** json: the value; text/repr: a string; table: {columns, records, rows, total_rows, total_columns}; image: {mime, base64}; untrusted: a string saying why the pickle was not decoded */
  data: unknown;
  truncated: boolean;
  created_at: string | null;
  /** ids of the tasks that output it */
  producers: string[];
}

export interface LineageRoot {
  type: "task" | "artifact";
  id: string;
}

export interface LineageTask {
  id: string;
  run_id: string;
  name: string;
  index: number | null;
  status: TaskStatus;
  cached: boolean;
  key: string | null;
  outputs: Record<string, string> | null;
}

export interface Lineage {
  root: LineageRoot;
  tasks: LineageTask[];
  artifacts: string[];
  edges: Edge[];
  truncated: boolean;
}

/** A cluster in use, registered by the process that owns it. */
export interface ClusterInfo {
  id: string;
  owner_id: string | null;
  profile: string | null;
  address: string | null;
  dashboard: string | null;
  created_at: string;
  closed_at: string | null;
}

export interface Clusters {
  clusters: ClusterInfo[];
  /** configured cluster profiles (secrets hidden) */
  profiles: Record<string, Record<string, unknown>>;
  default_profile: string;
}

/**
 * The last time firings were missed (the scheduler was down longer than its grace) and
 * what the misfire policy did.
 */
export interface Misfire {
  /** when the scheduler noticed */
  at: string;
  /** cron times missed */
  missed: number;
  policy: MisfirePolicy;
  /** batch runs fired for them */
  fired: number;
}

/** The batch run of a schedule's last firing. */
export interface LastRun {
  id: string;
  status: RunStatus;
  ended_at: string | null;
}

export interface Schedule {
  id: string;
  name: string;
  /** absolute path */
  notebook: string;
  cron: string;
  timezone: string;
  /** secret-named values are redacted */
  params: Record<string, unknown> | null;
  /** secret-named values are redacted */
  grid: Record<string, unknown[]> | null;
  parallel: number;
  cluster: string | null;
  misfire: MisfirePolicy;
  paused: boolean;
  created_by: string | null;
  created_at: string;
  updated_at: string;
  /** next cron time (UTC); null while paused */
  next_fire_at: string | null;
  last_fire_at: string | null;
  last_run_id: string | null;
  last_misfire: Misfire | null;
  last_run: LastRun | null;
}

export interface ScheduleList {
  schedules: Schedule[];
}

/** A parameter a notebook declares (``jf.param(...)``, or ``x = 1`` in its parameters cell). */
export interface DeclaredParam {
  name: string;
  /** null when the default is not a literal of these types (any value is accepted then) */
  type: "int" | "float" | "bool" | "str" | null;
  /** the notebook's value (secret-named ones redacted) */
  default: unknown;
  min: number | null;
  max: number | null;
  choices: unknown[] | null;
  help: string | null;
}

export interface NotebookParams {
  /** absolute path */
  notebook: string;
  params: DeclaredParam[];
}

export interface ExecutedNotebook {
  run_id: string;
  /** relative to the server root, e.g. flow-executed/sweep.01J….ipynb */
  path: string;
  /** the executed notebook's artifact hash */
  artifact: string;
}

/** POST batches: run a notebook now, once per grid point (papermill). */
export interface BatchRequest {
  /** path of an .ipynb file relative to the server root, or absolute under it */
  notebook: string;
  /** fixed parameter values */
  params?: Record<string, unknown> | null;
  /** parameter name -> list of values; one execution per point of the cartesian product (at most 10000 points) */
  grid?: Record<string, unknown[]> | null;
  parallel?: number;
  /** profile or scheduler address for the notebooks' %%flow ops */
  cluster?: string | null;
  name?: string | null;
}

/** POST schedules: run a notebook as a batch on a cron schedule. */
export interface ScheduleRequest {
  /** path of an .ipynb file relative to the server root, or absolute under it */
  notebook: string;
  /** fixed parameter values of every firing (secret-named values are redacted in responses) */
  params?: Record<string, unknown> | null;
  /** parameter name -> list of values; one execution per point of the cartesian product (at most 10000 points) */
  grid?: Record<string, unknown[]> | null;
  parallel?: number;
  /** profile or scheduler address for the notebooks' %%flow ops */
  cluster?: string | null;
  /** unique; default: the notebook's file name without .ipynb */
  name?: string | null;
  /** cron expression: 5 fields (minute hour day month weekday), or 6 with seconds first ("*\/2 * * * * *": every 2 s) */
  cron: string;
  /** IANA time zone the cron expression is read in */
  timezone?: string | null;
  misfire?: MisfirePolicy | null;
}

/** PATCH schedules/{id}: pause or resume. */
export interface SchedulePatch {
  paused: boolean;
}

/** POST runs/{id}/cancel and runs/{id}/notebook take no fields. */
export type EmptyBody = Record<string, never>;

/** Why a task did not succeed, as the engine saw it (``tasks.failure_kind``). */
export type FailureKind = "exception" | "timeout" | "worker" | "canceled" | "upstream";

/**
 * What happens to firings missed while no scheduler ran: skip them, fire once, or fire
 * each (oldest first, at most 100).
 */
export type MisfirePolicy = "skip" | "once" | "catchup";

export type RunKind = "api" | "cell" | "graph" | "notebook" | "batch" | "resume";

export type RunStatus = "PENDING" | "RUNNING" | "SUCCESS" | "FAILED" | "CANCELED" | "LOST";

export type TaskStatus = "PENDING" | "WAITING" | "RUNNING" | "SUCCESS" | "CACHED" | "FAILED" | "CANCELED" | "SKIPPED" | "LOST";
