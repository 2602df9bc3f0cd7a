import { FlowApiError } from '../api';
import type { FlowServices } from '../context';
import type { Run } from '../types';

/** Ask, then request the cancel; returns the updated run, or null when the user said no. */
export async function cancelRun(flow: FlowServices, run: Run): Promise<Run | null> {
  const name = run.name ?? run.id;
  const ok = await flow.confirm(
    'Cancel run?',
    `Cancel run ${name} (${run.id})? Ops still running are stopped; finished ops keep their results.`,
    'Cancel run'
  );
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
    'Rerun'
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
