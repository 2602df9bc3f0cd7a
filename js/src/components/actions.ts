import { FlowApiError } from '../api';
import type { FlowServices } from '../context';
import type { FeedState, RunFeed } from '../feed';
import { POLL_MS } from '../runs';
import { TERMINAL_RUN, type Run } from '../types';

/**
 * Resolves with the feed's copy of run `runId` once it has a final status (SUCCESS, FAILED,
 * …); while waited on, the feed polls every second. `stop()` ends the wait.
 */
export function whenRunEnds(feed: RunFeed, runId: string): { ended: Promise<Run>; stop: () => void } {
  const consumer = `run-ends:${runId}`;
  let stop = (): void => undefined;
  const ended = new Promise<Run>(resolve => {
    const check = (_: RunFeed, state: FeedState): void => {
      const run = state.runs.find(item => item.id === runId);
      if (run && TERMINAL_RUN.has(run.status)) {
        stop();
        resolve(run);
      }
    };
    stop = () => {
      feed.polled.disconnect(check);
      feed.demand(consumer, null);
    };
    feed.polled.connect(check);
    feed.demand(consumer, POLL_MS);
    check(feed, feed.state);
  });
  return { ended, stop };
}

/**
 * Ask, then request the cancel; returns the updated run, or null when the user said no. If
 * the run ends by itself while the question is open, the question closes and says so (a
 * cancel then would only be refused).
 */
export async function cancelRun(flow: FlowServices, run: Run): Promise<Run | null> {
  const name = run.name ?? run.id;
  const watch = whenRunEnds(flow.feed, run.id);
  let ok: boolean;
  try {
    ok = await flow.confirm(
      'Cancel run?',
      `Cancel run ${name} (${run.id})? Ops still running are stopped; finished ops keep their results.`,
      'Cancel run',
      'Keep running',
      watch.ended.then(ended => `Run ${name} already ended (${ended.status}); there is nothing to cancel.`)
    );
  } finally {
    watch.stop();
  }
  if (!ok) {
    return null;
  }
  try {
    return await flow.client.cancel(run.id);
  } catch (error) {
    throw new Error(error instanceof FlowApiError ? error.message : String(error));
  }
}

/** Ask, then start a batch that reruns a notebook run's notebook with its parameters. */
export async function rerunAsBatch(flow: FlowServices, run: Run): Promise<Run | null> {
  const ok = await flow.confirm(
    'Rerun as batch?',
    `Run ${run.notebook ?? 'the notebook'} again with the parameters of run ${run.id}? ` +
      'Unchanged %%flow cells are restored from the cache.',
    'Rerun',
    "Don't rerun"
  );
  if (!ok) {
    return null;
  }
  try {
    return await flow.client.rerunAsBatch(run);
  } catch (error) {
    throw new Error(error instanceof FlowApiError ? error.message : String(error));
  }
}

/** Open a batch execution's executed notebook in JupyterLab (written under the server root first). */
export async function openExecutedNotebook(flow: FlowServices, run: Run): Promise<string> {
  try {
    const written = await flow.client.executedNotebook(run.id);
    await flow.openNotebook?.(written.path);
    return written.path;
  } catch (error) {
    throw new Error(error instanceof FlowApiError ? error.message : String(error));
  }
}
