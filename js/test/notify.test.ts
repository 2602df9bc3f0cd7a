import { describe, expect, it } from 'vitest';

import { RunWatcher, runNotice } from '../src/notify';
import type { Run } from '../src/types';

const LOAD = Date.parse('2024-05-01T12:00:00Z');

function run(id: string, status: Run['status'], extra: Partial<Run> = {}): Run {
  return {
    id,
    name: id,
    kind: 'batch',
    status,
    created_at: '2024-05-01T11:00:00Z',
    seq: 1,
    task_counts: {},
    pinned: false,
    ...extra
  };
}

describe('runNotice', () => {
  it('words each ending with its notification type', () => {
    expect(runNotice(run('train', 'SUCCESS'))).toEqual({
      type: 'success',
      message: 'Run train succeeded',
      runId: 'train',
      title: 'train'
    });
    expect(runNotice(run('train', 'FAILED', { error: 'ValueError: lr too big\nTraceback…' }))?.message).toBe(
      'Run train failed: ValueError: lr too big'
    );
    expect(runNotice(run('train', 'FAILED'))?.message).toBe('Run train failed');
    expect(runNotice(run('t', 'LOST'))).toMatchObject({ type: 'warning', message: 'Run t was lost' });
    expect(runNotice(run('t', 'CANCELED'))).toMatchObject({ type: 'warning', message: 'Run t was canceled' });
    expect(runNotice(run('t', 'RUNNING'))).toBeNull();
    expect(runNotice(run('r1', 'SUCCESS', { name: null }))?.message).toBe('Run r1 succeeded');
  });

  it('keeps a long error to its first 200 characters', () => {
    const message = runNotice(run('t', 'FAILED', { error: 'x'.repeat(500) }))?.message ?? '';
    expect(message.length).toBeLessThan(230);
    expect(message.endsWith('…')).toBe(true);
  });
});

describe('RunWatcher', () => {
  it('announces nothing for the runs already over when the page loads', () => {
    const watcher = new RunWatcher(LOAD);
    watcher.baseline([run('old', 'SUCCESS'), run('busy', 'RUNNING')]);
    // A later copy of a finished run (pinned, say) is not a new ending.
    expect(watcher.update([run('old', 'SUCCESS', { seq: 5 })])).toEqual([]);
  });

  it('announces a top-level run seen running that ends, once', () => {
    const watcher = new RunWatcher(LOAD);
    watcher.baseline([run('busy', 'RUNNING')]);
    expect(watcher.update([run('busy', 'RUNNING', { seq: 2 })])).toEqual([]);
    expect(watcher.update([run('busy', 'FAILED', { seq: 3, error: 'boom' })]).map(n => n.message)).toEqual([
      'Run busy failed: boom'
    ]);
    expect(watcher.update([run('busy', 'FAILED', { seq: 4 })])).toEqual([]);
  });

  it('ignores child runs: a batch announces its notebooks, a notebook its cells', () => {
    const watcher = new RunWatcher(LOAD);
    watcher.baseline([run('nb', 'RUNNING', { parent_id: 'b1' })]);
    expect(watcher.update([run('nb', 'SUCCESS', { parent_id: 'b1' })])).toEqual([]);
  });

  it('announces a run created after the page loaded even if it ended between two polls', () => {
    const watcher = new RunWatcher(LOAD);
    watcher.baseline([]);
    const quick = run('quick', 'SUCCESS', { created_at: '2024-05-01T12:00:03Z' });
    const old = run('old', 'LOST', { created_at: '2024-04-30T09:00:00Z' }); // beyond the first page
    expect(watcher.update([quick, old]).map(n => n.runId)).toEqual(['quick']);
  });

  it('announces the end of a run this page started, however fast', () => {
    const watcher = new RunWatcher(Date.parse('2030-01-01T00:00:00Z')); // a browser clock ahead
    watcher.baseline([]);
    watcher.expect(run('launched', 'RUNNING'));
    expect(watcher.update([run('launched', 'SUCCESS')]).map(n => n.message)).toEqual(['Run launched succeeded']);
  });
});
