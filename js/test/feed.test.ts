import { afterEach, describe, expect, it, vi } from 'vitest';

import { FlowApiError } from '../src/api';
import { RunFeed, type FeedUpdate } from '../src/feed';
import type { Run, RunChanges, RunPage } from '../src/types';

function run(id: string, status: Run['status'] = 'RUNNING', seq = 1): Run {
  return { id, name: id, kind: 'batch', status, created_at: `2024-01-01T00:00:${id.slice(-2)}Z`, seq, task_counts: {}, pinned: false };
}

/** A client answering the first page and then each change-feed poll from a script. */
function scripted(page: RunPage, changes: (RunChanges | Error)[]) {
  const calls: string[] = [];
  const client = {
    runs: async () => {
      calls.push('runs');
      return page;
    },
    changes: async (cursor: number) => {
      calls.push(`changes ${cursor}`);
      const next = changes.shift() ?? { runs: [], cursor };
      if (next instanceof Error) {
        throw next;
      }
      return next;
    }
  };
  return { client, calls };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('RunFeed', () => {
  it('loads the first page, then merges changes from its cursor, telling listeners what arrived', async () => {
    const { client, calls } = scripted({ runs: [run('r01')], next_before: null, cursor: 5 }, [
      { runs: [run('r02'), run('r01', 'SUCCESS', 2)], cursor: 7 }
    ]);
    const feed = new RunFeed(client);
    const updates: FeedUpdate[] = [];
    feed.updated.connect((_, update) => void updates.push(update));
    await feed.poll();
    await feed.poll();
    expect(calls).toEqual(['runs', 'changes 5']);
    expect(feed.state.cursor).toBe(7);
    expect(feed.state.runs.map(r => [r.id, r.status])).toEqual([
      ['r02', 'RUNNING'],
      ['r01', 'SUCCESS']
    ]);
    expect(updates.map(u => [u.initial, u.runs.map(r => r.id)])).toEqual([
      [true, ['r01']],
      [false, ['r02', 'r01']]
    ]);
  });

  it('starts again from the first page when the store could not be opened', async () => {
    const { client, calls } = scripted({ runs: [run('r01')], next_before: null, cursor: 5 }, [
      new FlowApiError('cannot open the store', 'store', 503, '/x/flow.db')
    ]);
    const feed = new RunFeed(client);
    await feed.poll();
    await feed.poll();
    expect(feed.state.failure?.message).toBe('cannot open the store');
    expect(feed.state.cursor).toBeNull();
    expect(feed.state.runs).toEqual([]);
    await feed.poll();
    expect(calls).toEqual(['runs', 'changes 5', 'runs']);
    expect(feed.state.failure).toBeNull();
  });

  it('keeps its runs through other failures and says so', async () => {
    const { client } = scripted({ runs: [run('r01')], next_before: null, cursor: 5 }, [
      new FlowApiError('Cannot reach the Jupyter server', 'network', null)
    ]);
    const feed = new RunFeed(client);
    await feed.poll();
    await feed.poll();
    expect(feed.state.failure?.message).toBe('Cannot reach the Jupyter server');
    expect(feed.state.runs.map(r => r.id)).toEqual(['r01']);
  });

  it('polls at the shortest interval asked for, right away when it shortens, and stops when nobody asks', async () => {
    vi.useFakeTimers();
    const { client, calls } = scripted({ runs: [], next_before: null, cursor: 1 }, []);
    const feed = new RunFeed(client);
    feed.demand('notifications', 3000);
    await vi.advanceTimersByTimeAsync(0);
    expect(calls.length).toBe(1);
    await vi.advanceTimersByTimeAsync(3000);
    expect(calls.length).toBe(2);
    feed.demand('runs-list', 1000); // the sidebar opens: poll now, then every second
    await vi.advanceTimersByTimeAsync(0);
    expect(calls.length).toBe(3);
    await vi.advanceTimersByTimeAsync(2000);
    expect(calls.length).toBe(5);
    feed.demand('runs-list', null);
    feed.demand('notifications', null);
    await vi.advanceTimersByTimeAsync(10000);
    expect(calls.length).toBe(5);
    feed.dispose();
  });

  it('shows runs it is told about before the feed brings them', async () => {
    const { client } = scripted({ runs: [run('r01', 'SUCCESS')], next_before: null, cursor: 5 }, []);
    const feed = new RunFeed(client);
    await feed.poll();
    feed.merge([run('r02')]);
    expect(feed.state.runs.map(r => r.id)).toEqual(['r02', 'r01']);
  });
});
