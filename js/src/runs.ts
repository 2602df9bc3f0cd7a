/**
 * The runs list as data: merging change-feed pages, nesting children under parents,
 * filtering, and the words and numbers the list shows. Pure, so it is unit-tested.
 */
import { FlowApiError } from './api';
import { TERMINAL_RUN, type Run, type RunKind, type RunStatus, type TaskStatus } from './types';

/** `current` with `changed` runs replacing or adding by id; newest first (ids sort by time). */
export function mergeRuns(current: readonly Run[], changed: readonly Run[]): Run[] {
  if (changed.length === 0) {
    return current as Run[];
  }
  const byId = new Map<string, Run>();
  for (const run of current) {
    byId.set(run.id, run);
  }
  for (const run of changed) {
    const known = byId.get(run.id);
    // A late page can carry an older copy of a run: keep the newer change.
    if (!known || run.seq >= known.seq) {
      byId.set(run.id, run);
    }
  }
  return [...byId.values()].sort(newestFirst);
}

export function newestFirst(a: Run, b: Run): number {
  if (a.created_at !== b.created_at) {
    return a.created_at < b.created_at ? 1 : -1;
  }
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

export interface RunFilter {
  search: string;
  statuses: RunStatus[];
  kinds: RunKind[];
}

export const NO_FILTER: RunFilter = { search: '', statuses: [], kinds: [] };

export function matches(run: Run, filter: RunFilter): boolean {
  if (filter.statuses.length && !filter.statuses.includes(run.status)) {
    return false;
  }
  if (filter.kinds.length && !filter.kinds.includes(run.kind)) {
    return false;
  }
  const search = filter.search.trim().toLowerCase();
  if (search) {
    const haystack = [run.id, run.name ?? '', run.notebook ?? '', run.kind, run.status].join(' ').toLowerCase();
    return haystack.includes(search);
  }
  return true;
}

export interface RunRow {
  run: Run;
  depth: number;
  children: number;
}

/**
 * Rows to show: runs matching `filter`, each child right under its parent (notebook under
 * batch, cells under notebook). A child whose parent is not loaded, or is filtered out
 * while the child matches, shows at the top level. `collapsed` hides a parent's children.
 */
export function runRows(
  runs: readonly Run[],
  filter: RunFilter = NO_FILTER,
  collapsed: ReadonlySet<string> = new Set()
): RunRow[] {
  const visible = runs.filter(run => matches(run, filter));
  const ids = new Set(visible.map(run => run.id));
  const children = new Map<string, Run[]>();
  const roots: Run[] = [];
  for (const run of visible) {
    if (run.parent_id && ids.has(run.parent_id) && run.parent_id !== run.id) {
      const list = children.get(run.parent_id) ?? [];
      list.push(run);
      children.set(run.parent_id, list);
    } else {
      roots.push(run);
    }
  }
  const rows: RunRow[] = [];
  const seen = new Set<string>();
  const visit = (run: Run, depth: number): void => {
    if (seen.has(run.id)) {
      return; // a parent cycle in bad data must not hang the panel
    }
    seen.add(run.id);
    const kids = (children.get(run.id) ?? []).slice().sort(newestFirst);
    rows.push({ run, depth, children: kids.length });
    if (!collapsed.has(run.id)) {
      for (const kid of kids) {
        visit(kid, depth + 1);
      }
    }
  };
  for (const run of roots.slice().sort(newestFirst)) {
    visit(run, 0);
  }
  return rows;
}

export interface Counts {
  ran: number;
  cached: number;
  failed: number;
  total: number;
}

/** Tasks that executed (finished or running), restored from cache, and failed. */
export function taskCounts(counts: Partial<Record<TaskStatus, number>>): Counts {
  const get = (status: TaskStatus): number => counts[status] ?? 0;
  const total = Object.values(counts).reduce((sum: number, n) => sum + (n ?? 0), 0);
  return {
    ran: get('SUCCESS') + get('RUNNING') + get('FAILED'),
    cached: get('CACHED'),
    failed: get('FAILED'),
    total
  };
}

/** Seconds as "0.4 s", "12 s", "3 min 05 s", "2 h 04 min". */
/** An op as graphs and chips name it: a mapped element carries its index (`square[3]`). */
export function taskLabel(task: { name: string; index?: number | null }): string {
  return task.index !== null && task.index !== undefined ? `${task.name}[${task.index}]` : task.name;
}

/** Where a task's cell stands: its prompt (`In [7]`), and in a batch, in which copy. */
export function cellPrompt(prov: { cell_index?: number | null; executed_copy?: boolean | null }): string {
  if (!prov.cell_index) {
    return '';
  }
  return prov.executed_copy ? `In [${prov.cell_index}] of the executed copy` : `In [${prov.cell_index}]`;
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) {
    return '';
  }
  if (seconds < 10) {
    return `${seconds.toFixed(1)} s`;
  }
  if (seconds < 60) {
    return `${Math.round(seconds)} s`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes} min ${String(Math.round(seconds % 60)).padStart(2, '0')} s`;
  }
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}

/** Seconds between two ISO times, or from `start` to `now` while running. */
export function elapsed(start?: string | null, end?: string | null, now: number = Date.now()): number | null {
  if (!start) {
    return null;
  }
  const from = Date.parse(start);
  const to = end ? Date.parse(end) : now;
  if (Number.isNaN(from) || Number.isNaN(to)) {
    return null;
  }
  return Math.max(0, (to - from) / 1000);
}

/** "14:03:07" today, "3 Mar 14:03" otherwise (the viewer's time zone). */
export function formatStarted(iso: string | null | undefined, now: Date = new Date()): string {
  if (!iso) {
    return '';
  }
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) {
    return '';
  }
  if (date.toDateString() === now.toDateString()) {
    return date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }
  return date.toLocaleString(undefined, { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
}

/** The last path part of a notebook path. */
export function baseName(path: string | null | undefined): string {
  if (!path) {
    return '';
  }
  const parts = path.split('/');
  return parts[parts.length - 1];
}

/** How often the list polls: live updates, and while the server cannot open its store. */
export const POLL_MS = 1000;
export const STORE_RETRY_MS = 5000;
/** The longest pause between tries while the API does not answer (no extension, server down). */
export const RETRY_MAX_MS = 30000;

/**
 * How long to wait before the next try after `failures` failed tries in a row: the store's
 * own retry period while the server cannot open it (it answers, just not yet usefully);
 * otherwise 1 s, 2 s, 4 s, … up to 30 s, so a lab without the server extension (or a server
 * that went away) is not asked once a second forever. An answer resets the count.
 *
 * retryDelay(new FlowApiError('…', 'missing', 404), 3) === 4000
 */
export function retryDelay(failure: Error, failures: number): number {
  if (failure instanceof FlowApiError && failure.kind === 'store') {
    return STORE_RETRY_MS;
  }
  const doublings = Math.max(0, Math.min(failures - 1, 16));
  return Math.min(POLL_MS * 2 ** doublings, RETRY_MAX_MS);
}

/** "1 second", "8 seconds". */
export function formatPause(ms: number): string {
  const seconds = Math.round(ms / 1000);
  return seconds === 1 ? '1 second' : `${seconds} seconds`;
}

/** What the panel shows in place of the runs list when it cannot load them. */
export interface PanelFailure {
  title: string;
  message: string;
  /** The store the server cannot open (its path, or URL without password), if that is why. */
  store: string | null;
  /** The pause before the next try. */
  retryMs: number;
  /** Whether the pause grows with each failed try (everything but a store that cannot open). */
  backoff: boolean;
}

export function panelFailure(failure: Error, failures = 1): PanelFailure {
  const retryMs = retryDelay(failure, failures);
  if (failure instanceof FlowApiError && failure.kind === 'store') {
    // The server retries opening its store every few seconds; no need to ask every second.
    return {
      title: 'The jupyter_flow store cannot be opened',
      message: failure.message,
      store: failure.store,
      retryMs,
      backoff: false
    };
  }
  const unavailable = failure instanceof FlowApiError && (failure.kind === 'missing' || failure.kind === 'refused');
  return {
    title: unavailable ? 'jupyter_flow is not available' : 'Cannot load runs',
    message: failure.message,
    store: null,
    retryMs,
    backoff: true
  };
}

/** Task statuses that mean work is going on or waiting to go. */
const BUSY_TASKS: readonly TaskStatus[] = ['PENDING', 'WAITING', 'RUNNING'];

/**
 * Whether `run` is a notebook run whose kernel is alive with no cell running: RUNNING, no
 * unfinished child (cell) run among `runs`, and no task of its own or its children's
 * (task counts roll up) pending or running. The sidebar shows it as "idle", without a
 * Cancel button: there is nothing to cancel; it ends when the kernel shuts down.
 *
 * notebookIdle({kind: 'notebook', status: 'RUNNING', task_counts: {SUCCESS: 3}, …}, []) === true
 */
export function notebookIdle(run: Run, runs: readonly Run[]): boolean {
  if (run.kind !== 'notebook' || run.status !== 'RUNNING') {
    return false;
  }
  if (BUSY_TASKS.some(status => (run.task_counts[status] ?? 0) > 0)) {
    return false;
  }
  return !runs.some(child => child.parent_id === run.id && child.id !== run.id && !TERMINAL_RUN.has(child.status));
}

/** The tooltip of a run row: everything the compact row leaves out, one fact a line. */
export function runTooltip(run: Run, now: number = Date.now()): string {
  const counts = taskCounts(run.task_counts);
  const started = run.started_at ?? run.created_at;
  return [
    `${run.name ?? run.id} (${run.kind}, ${run.status})`,
    `id ${run.id}`,
    run.notebook ? `notebook ${run.notebook}` : '',
    `started ${formatStarted(started)}${run.ended_at ? '' : ', still going'}`,
    `duration ${formatDuration(elapsed(started, run.ended_at, now))}`,
    `ran ${counts.ran} · cached ${counts.cached} · failed ${counts.failed} · ${counts.total} ops`,
    run.error ? `error: ${run.error.split('\n')[0]}` : ''
  ]
    .filter(Boolean)
    .join('\n');
}
