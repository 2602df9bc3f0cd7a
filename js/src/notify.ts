/**
 * Which run endings the notification area announces. Pure: `RunWatcher` sees the runs the
 * feed delivers and says which ones just ended; index.ts shows them with `Notification`.
 */
import { TERMINAL_RUN, type Run, type RunStatus } from './types';

export type NoticeType = 'success' | 'error' | 'warning';

export interface RunNotice {
  type: NoticeType;
  message: string;
  runId: string;
  /** The run's name (or id), the title of the run view "Open run" opens. */
  title: string;
}

const ERROR_CHARS = 200;

/** The notice for a run that ended, or null while it has not. */
export function runNotice(run: Run): RunNotice | null {
  const title = run.name || run.id;
  const notice = (type: NoticeType, message: string): RunNotice => ({ type, message, runId: run.id, title });
  switch (run.status) {
    case 'SUCCESS':
      return notice('success', `Run ${title} succeeded`);
    case 'FAILED': {
      // The first line says what broke; the run view has the traceback.
      const first = (run.error ?? '').trim().split('\n')[0];
      const error = first.length > ERROR_CHARS ? `${first.slice(0, ERROR_CHARS - 1)}…` : first;
      return notice('error', error ? `Run ${title} failed: ${error}` : `Run ${title} failed`);
    }
    case 'LOST':
      return notice('warning', `Run ${title} was lost`);
    case 'CANCELED':
      return notice('warning', `Run ${title} was canceled`);
    default:
      return null;
  }
}

/**
 * Remembers the status of each top-level run it has seen and reports those that end while
 * this page is open. Runs already over when first seen are not announced (no flood when the
 * page loads), except runs created after `since` (ms) that began and ended between two polls.
 *
 * ```ts
 * const watcher = new RunWatcher(Date.now());
 * watcher.baseline(page.runs);         // the first page: remembered, never announced
 * watcher.update(changes.runs);        // [{ type: 'success', message: 'Run train succeeded', … }]
 * ```
 */
export class RunWatcher {
  private readonly statuses = new Map<string, RunStatus>();

  constructor(private readonly since: number) {}

  /** Remember `runs` as they are now, announcing nothing. */
  baseline(runs: readonly Run[]): void {
    for (const run of runs) {
      this.statuses.set(run.id, run.status);
    }
  }

  /** A run this page started (the launch form): its end is announced even if it is quick. */
  expect(run: Run): void {
    // Already seen by the feed (perhaps over already): that copy is the newer one.
    if (!this.statuses.has(run.id) && !TERMINAL_RUN.has(run.status)) {
      this.statuses.set(run.id, run.status);
    }
  }

  /** Newer copies of runs: the notices for top-level runs that ended since last seen. */
  update(runs: readonly Run[]): RunNotice[] {
    const notices: RunNotice[] = [];
    for (const run of runs) {
      const before = this.statuses.get(run.id);
      this.statuses.set(run.id, run.status);
      if (run.parent_id || !TERMINAL_RUN.has(run.status)) {
        continue; // a batch's notebook runs and a notebook's cells end inside their parent
      }
      const started = before === undefined ? this.createdSince(run) : !TERMINAL_RUN.has(before);
      const notice = started ? runNotice(run) : null;
      if (notice) {
        notices.push(notice);
      }
    }
    return notices;
  }

  private createdSince(run: Run): boolean {
    const created = Date.parse(run.created_at);
    return !Number.isNaN(created) && created >= this.since;
  }
}
