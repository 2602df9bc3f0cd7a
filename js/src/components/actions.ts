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
