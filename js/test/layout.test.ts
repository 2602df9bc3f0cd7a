import { describe, expect, it } from 'vitest';

import { DAGRE_MAX_NODES, DEFAULT_LAYOUT, layeredLayout, layoutGraph, structureKey, taskEdges } from '../src/layout';
import { notebookGraphItems } from '../src/notebookGraph';
import type { Edge, Task } from '../src/types';

function overlaps(a: { x: number; y: number }, b: { x: number; y: number }): boolean {
  return Math.abs(a.x - b.x) < DEFAULT_LAYOUT.nodeWidth && Math.abs(a.y - b.y) < DEFAULT_LAYOUT.nodeHeight;
}

describe('layoutGraph', () => {
  it('puts each op right of the ops it depends on', () => {
    const positions = layoutGraph(['load', 'clean', 'train'], [
      { source: 'load', target: 'clean' },
      { source: 'clean', target: 'train' }
    ]);
    expect(positions.get('clean')!.x).toBeGreaterThan(positions.get('load')!.x);
    expect(positions.get('train')!.x).toBeGreaterThan(positions.get('clean')!.x);
  });

  it('stacks siblings of a fan-out in one column without overlap', () => {
    const ids = ['src', 'a', 'b', 'c', 'sink'];
    const edges: Edge[] = [
      { source: 'src', target: 'a' },
      { source: 'src', target: 'b' },
      { source: 'src', target: 'c' },
      { source: 'a', target: 'sink' },
      { source: 'b', target: 'sink' },
      { source: 'c', target: 'sink' }
    ];
    const positions = layoutGraph(ids, edges);
    const xs = new Set(['a', 'b', 'c'].map(id => positions.get(id)!.x));
    expect(xs.size).toBe(1);
    for (const a of ids) {
      for (const b of ids) {
        if (a < b) {
          expect(overlaps(positions.get(a)!, positions.get(b)!)).toBe(false);
        }
      }
    }
  });

  it('ignores edges to unknown ops and self-loops', () => {
    const positions = layoutGraph(['a', 'b'], [
      { source: 'a', target: 'missing' },
      { source: 'b', target: 'b' },
      { source: 'a', target: 'b' }
    ]);
    expect([...positions.keys()]).toEqual(['a', 'b']);
    expect(positions.get('b')!.x).toBeGreaterThan(positions.get('a')!.x);
  });

  it('lays out 500 ops (a map of 498 between a source and a reducer) quickly and without overlap', () => {
    const ids = ['load', ...Array.from({ length: 498 }, (_, i) => `map-${i}`), 'reduce'];
    const edges: Edge[] = [];
    for (let i = 0; i < 498; i++) {
      edges.push({ source: 'load', target: `map-${i}` }, { source: `map-${i}`, target: 'reduce' });
    }
    const started = performance.now();
    const positions = layoutGraph(ids, edges);
    const took = performance.now() - started;
    expect(positions.size).toBe(500);
    expect(took).toBeLessThan(500);
    const column = [...Array(498).keys()].map(i => positions.get(`map-${i}`)!.y).sort((a, b) => a - b);
    for (let i = 1; i < column.length; i++) {
      expect(column[i] - column[i - 1]).toBeGreaterThanOrEqual(DEFAULT_LAYOUT.nodeHeight);
    }
    expect(positions.get('reduce')!.x).toBeGreaterThan(positions.get('map-0')!.x);
  });

  it('lays out 500 ops of a random DAG fast, every edge pointing right, no overlaps', () => {
    let seed = 7;
    const random = (): number => (seed = (seed * 16807) % 2147483647) / 2147483647;
    const ids = Array.from({ length: 500 }, (_, i) => `n${i}`);
    const edges: Edge[] = [];
    for (let i = 1; i < 500; i++) {
      for (let k = 0; k < 2; k++) {
        edges.push({ source: `n${Math.floor(random() * i)}`, target: `n${i}` });
      }
    }
    const started = performance.now();
    const positions = layoutGraph(ids, edges);
    expect(performance.now() - started).toBeLessThan(500);
    for (const edge of edges) {
      expect(positions.get(edge.target)!.x).toBeGreaterThan(positions.get(edge.source)!.x);
    }
    const seen = new Set([...positions.values()].map(p => `${p.x},${p.y}`));
    expect(seen.size).toBe(500);
  });

  it('uses the same left-to-right rules in both layouts', () => {
    const ids = ['a', 'b', 'c'];
    const edges = [{ source: 'a', target: 'b' }, { source: 'a', target: 'c' }];
    for (const positions of [layoutGraph(ids, edges), layeredLayout(ids, edges)]) {
      expect(positions.get('b')!.x).toBe(positions.get('c')!.x);
      expect(positions.get('b')!.x).toBeGreaterThan(positions.get('a')!.x);
      expect(overlaps(positions.get('b')!, positions.get('c')!)).toBe(false);
    }
    expect(DAGRE_MAX_NODES).toBeGreaterThanOrEqual(50);
  });

  it('puts ops on a cycle (bad data) somewhere instead of hanging', () => {
    const ids = Array.from({ length: DAGRE_MAX_NODES + 1 }, (_, i) => `n${i}`);
    const positions = layoutGraph(ids, [{ source: 'n0', target: 'n1' }, { source: 'n1', target: 'n0' }]);
    expect(positions.size).toBe(ids.length);
  });

  it('lays out a chain of 500 left to right', () => {
    const ids = Array.from({ length: 500 }, (_, i) => `op-${i}`);
    const edges = ids.slice(1).map((id, i) => ({ source: ids[i], target: id }));
    const positions = layoutGraph(ids, edges);
    expect(positions.get('op-499')!.x).toBeGreaterThan(positions.get('op-0')!.x + 400 * DEFAULT_LAYOUT.nodeWidth);
  });
});

describe('structureKey', () => {
  it('changes with the shape, not with anything else', () => {
    const edges = [{ source: 'a', target: 'b' }];
    expect(structureKey(['a', 'b'], edges)).toBe(structureKey(['a', 'b'], [{ ...edges[0] }]));
    expect(structureKey(['a', 'b'], edges)).not.toBe(structureKey(['a', 'b', 'c'], edges));
    expect(structureKey(['a', 'b'], edges)).not.toBe(structureKey(['a', 'b'], []));
  });
});

function task(id: string, node: string, upstream: string[]): Task {
  return {
    id,
    run_id: 'r1',
    node,
    name: id,
    status: 'SUCCESS',
    cached: false,
    attempts: 1,
    created_at: '2024-01-01T00:00:00+00:00',
    seq: 1,
    upstream
  };
}

describe('taskEdges', () => {
  it('maps upstream node positions to task ids', () => {
    const tasks = [task('t-load', '0', []), task('t-clean', '1', ['0']), task('t-train', '2', ['0', '1', '9'])];
    expect(taskEdges(tasks)).toEqual([
      { source: 't-load', target: 't-clean' },
      { source: 't-load', target: 't-train' },
      { source: 't-clean', target: 't-train' }
    ]);
  });
});

describe('notebookGraphItems', () => {
  it('shows %flow graph output (cached/stale) as coloured items', () => {
    const { items, edges } = notebookGraphItems({
      version: 1,
      nodes: [
        { id: 'raw', inputs: [], outputs: ['raw'], status: 'cached', reason: 'cached' },
        { id: 'model', inputs: ['raw'], outputs: ['model'], status: 'stale', reason: 'code changed', resources: { GPU: 1 } }
      ],
      edges: [
        { source: 'raw', target: 'model', variable: 'raw' },
        { source: 'gone', target: 'model', variable: 'x' }
      ]
    });
    expect(items.map(item => [item.id, item.status, item.cached])).toEqual([
      ['raw', 'CACHED', true],
      ['model', 'STALE', false]
    ]);
    expect(items[1].detail).toBe('code changed · needs GPU=1');
    expect(edges).toEqual([{ source: 'raw', target: 'model', variable: 'raw' }]);
  });
});
