import { describe, expect, it } from 'vitest';

import { FlowApiError, MISSING_EXTENSION_MESSAGE } from '../src/api';
import {
  elapsed,
  formatDuration,
  mergeRuns,
  notebookIdle,
  panelFailure,
  POLL_MS,
  retryDelay,
  runRows,
  STORE_RETRY_MS,
  taskCounts
} from '../src/runs';
import type { Run } from '../src/types';

function run(id: string, extra: Partial<Run> = {}): Run {
  return {
    id,
    name: id,
    kind: 'api',
    status: 'SUCCESS',
    created_at: `2024-01-01T00:00:${id.slice(-2)}+00:00`,
    seq: 1,
    task_counts: {},
    pinned: false,
    ...extra
  };
}

describe('mergeRuns', () => {
  it('adds new runs on top and replaces changed ones', () => {
    const current = [run('r02'), run('r01')];
    const merged = mergeRuns(current, [run('r03'), run('r01', { status: 'FAILED', seq: 5 })]);
    expect(merged.map(r => r.id)).toEqual(['r03', 'r02', 'r01']);
    expect(merged[2].status).toBe('FAILED');
  });

  it('keeps the newer copy when an older change arrives late', () => {
    const merged = mergeRuns([run('r01', { status: 'CANCELED', seq: 9 })], [run('r01', { status: 'RUNNING', seq: 4 })]);
    expect(merged[0].status).toBe('CANCELED');
  });

  it('returns the same array when nothing changed (no re-render)', () => {
    const current = [run('r01')];
    expect(mergeRuns(current, [])).toBe(current);
  });
});

describe('runRows', () => {
  const runs = [
    run('r05', { kind: 'cell', parent_id: 'r03' }),
    run('r04', { kind: 'cell', parent_id: 'r03', status: 'FAILED' }),
    run('r03', { kind: 'notebook', parent_id: 'r01', notebook: 'work/analysis.ipynb' }),
    run('r02', { name: 'other', kind: 'api', status: 'RUNNING' }),
    run('r01', { kind: 'batch' })
  ];

  it('nests cells under their notebook and notebooks under their batch', () => {
    const rows = runRows(runs);
    expect(rows.map(row => [row.run.id, row.depth])).toEqual([
      ['r02', 0],
      ['r01', 0],
      ['r03', 1],
      ['r05', 2],
      ['r04', 2]
    ]);
    expect(rows.find(row => row.run.id === 'r03')!.children).toBe(2);
  });

  it('hides the children of a collapsed parent', () => {
    const rows = runRows(runs, undefined, new Set(['r03']));
    expect(rows.map(row => row.run.id)).toEqual(['r02', 'r01', 'r03']);
  });

  it('filters by status, kind and search; a matching child of a hidden parent moves up', () => {
    expect(runRows(runs, { search: '', statuses: ['FAILED'], kinds: [] }).map(r => [r.run.id, r.depth])).toEqual([
      ['r04', 0]
    ]);
    expect(runRows(runs, { search: '', statuses: [], kinds: ['api'] }).map(r => r.run.id)).toEqual(['r02']);
    expect(runRows(runs, { search: 'ANALYSIS', statuses: [], kinds: [] }).map(r => r.run.id)).toEqual(['r03']);
  });

  it('survives a parent cycle in bad data', () => {
    const rows = runRows([run('r01', { parent_id: 'r02' }), run('r02', { parent_id: 'r01' })]);
    expect(rows.length).toBeLessThanOrEqual(2);
  });
});

describe('taskCounts and durations', () => {
  it('counts ran, cached and failed ops', () => {
    expect(taskCounts({ SUCCESS: 2, RUNNING: 1, CACHED: 4, FAILED: 1, SKIPPED: 2 })).toEqual({
      ran: 4,
      cached: 4,
      failed: 1,
      total: 10
    });
  });

  it('formats durations the way people read them', () => {
    expect(formatDuration(0.42)).toBe('0.4 s');
    expect(formatDuration(42)).toBe('42 s');
    expect(formatDuration(185)).toBe('3 min 05 s');
    expect(formatDuration(7440)).toBe('2 h 04 min');
    expect(formatDuration(null)).toBe('');
    expect(elapsed('2024-01-01T00:00:00Z', '2024-01-01T00:01:30Z')).toBe(90);
    expect(elapsed('2024-01-01T00:00:00Z', null, Date.parse('2024-01-01T00:00:05Z'))).toBe(5);
  });
});

describe('panelFailure', () => {
  it('shows why the store cannot be opened, and the store, and polls less often', () => {
    const message = 'jupyter_flow cannot open its store /srv/flow.db: ... upgrade jupyter_flow';
    const shown = panelFailure(new FlowApiError(message, 'store', 503, '/srv/flow.db'));
    expect(shown.title).toBe('The jupyter_flow store cannot be opened');
    expect(shown.message).toBe(message);
    expect(shown.store).toBe('/srv/flow.db');
    expect(shown.retryMs).toBe(STORE_RETRY_MS);
  });

  it('keeps the extension-missing screen and the generic one', () => {
    const missing = panelFailure(new FlowApiError(MISSING_EXTENSION_MESSAGE, 'missing', 404));
    expect(missing.title).toBe('jupyter_flow is not available');
    expect(missing.store).toBeNull();
    expect(missing.retryMs).toBe(POLL_MS);
    expect(panelFailure(new Error('boom')).title).toBe('Cannot load runs');
  });
});

describe('retryDelay', () => {
  it('doubles from 1 s up to 30 s while the API does not answer, and keeps the store period', () => {
    const missing = new FlowApiError(MISSING_EXTENSION_MESSAGE, 'missing', 404);
    expect([1, 2, 3, 4, 5, 6, 7, 20].map(n => retryDelay(missing, n))).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000
    ]);
    expect(retryDelay(new FlowApiError('no store', 'store', 503, '/x.db'), 9)).toBe(STORE_RETRY_MS);
    expect(panelFailure(missing, 4)).toMatchObject({ retryMs: 8000, backoff: true });
  });
});

describe('notebookIdle', () => {
  const notebook = (counts: Run['task_counts'] = { SUCCESS: 2 }): Run => ({
    id: 'NB', name: 'nb', kind: 'notebook', status: 'RUNNING', created_at: '2024-01-01T00:00:00Z', seq: 1,
    task_counts: counts, pinned: false
  });
  const cell = (status: Run['status']): Run => ({ ...notebook(), id: 'C1', kind: 'cell', status, parent_id: 'NB' });

  it('is idle with its kernel alive and no cell running', () => {
    expect(notebookIdle(notebook(), [cell('SUCCESS')])).toBe(true);
  });
  it('is busy while a cell run is unfinished or a task pending or running', () => {
    expect(notebookIdle(notebook(), [cell('RUNNING')])).toBe(false);
    expect(notebookIdle(notebook({ RUNNING: 1 }), [])).toBe(false);
    expect(notebookIdle({ ...notebook(), status: 'SUCCESS' }, [])).toBe(false);
    expect(notebookIdle({ ...notebook(), kind: 'batch' }, [])).toBe(false);
  });
});
