/**
 * Left-to-right layout of a run's graph. Pure: ids and edges in, top-left positions out,
 * so it is unit-tested without a browser.
 *
 * dagre gives the nicest drawing but takes seconds for a few hundred ops (its crossing
 * minimisation and long-edge dummies), which would freeze JupyterLab; above
 * `DAGRE_MAX_NODES` a linear-time layered layout (longest-path ranks, barycenter ordering)
 * is used instead, so 500 ops lay out in milliseconds.
 */
import dagre from '@dagrejs/dagre';

import type { Edge, Task } from './types';

export interface LayoutOptions {
  nodeWidth: number;
  nodeHeight: number;
  rankSep: number;
  nodeSep: number;
}

export const DAGRE_MAX_NODES = 100;

export const DEFAULT_LAYOUT: LayoutOptions = { nodeWidth: 180, nodeHeight: 56, rankSep: 60, nodeSep: 16 };

export interface Point {
  x: number;
  y: number;
}

/**
 * Positions (top-left corners, as React Flow wants them) for `ids`; sources left of their
 * targets. Edges naming unknown ids are ignored.
 *
 * layoutGraph(['a', 'b'], [{source: 'a', target: 'b'}]).get('b').x > ….get('a').x
 */
export function layoutGraph(
  ids: readonly string[],
  edges: readonly Edge[],
  options: Partial<LayoutOptions> = {}
): Map<string, Point> {
  const opts = { ...DEFAULT_LAYOUT, ...options };
  if (ids.length > DAGRE_MAX_NODES) {
    return layeredLayout(ids, edges, opts);
  }
  const graph = new dagre.graphlib.Graph({ multigraph: false });
  graph.setGraph({ rankdir: 'LR', ranksep: opts.rankSep, nodesep: opts.nodeSep, marginx: 8, marginy: 8 });
  graph.setDefaultEdgeLabel(() => ({}));
  const known = new Set(ids);
  for (const id of ids) {
    graph.setNode(id, { width: opts.nodeWidth, height: opts.nodeHeight });
  }
  for (const edge of edges) {
    if (known.has(edge.source) && known.has(edge.target) && edge.source !== edge.target) {
      graph.setEdge(edge.source, edge.target);
    }
  }
  dagre.layout(graph);
  const positions = new Map<string, Point>();
  for (const id of ids) {
    const node = graph.node(id) as { x: number; y: number } | undefined;
    positions.set(id, {
      x: (node?.x ?? 0) - opts.nodeWidth / 2,
      y: (node?.y ?? 0) - opts.nodeHeight / 2
    });
  }
  return positions;
}

/**
 * A layered left-to-right layout in O(sweeps x (nodes + edges)): each op's column is the
 * longest path from a source; rows are ordered by the barycenter of neighbours, sweeping
 * forward and back a few times to remove most crossings. Ops on a cycle (bad data) go to
 * column 0.
 */
export function layeredLayout(
  ids: readonly string[],
  edges: readonly Edge[],
  options: Partial<LayoutOptions> = {}
): Map<string, Point> {
  const opts = { ...DEFAULT_LAYOUT, ...options };
  const index = new Map<string, number>();
  ids.forEach((id, i) => index.set(id, i));
  const preds: number[][] = ids.map(() => []);
  const succs: number[][] = ids.map(() => []);
  const indegree = ids.map(() => 0);
  for (const edge of edges) {
    const s = index.get(edge.source);
    const t = index.get(edge.target);
    if (s === undefined || t === undefined || s === t) {
      continue;
    }
    preds[t].push(s);
    succs[s].push(t);
    indegree[t] += 1;
  }
  // Ranks by longest path, in topological (Kahn) order.
  const rank = ids.map(() => 0);
  const queue: number[] = [];
  indegree.forEach((d, i) => d === 0 && queue.push(i));
  for (let head = 0; head < queue.length; head++) {
    const node = queue[head];
    for (const next of succs[node]) {
      rank[next] = Math.max(rank[next], rank[node] + 1);
      indegree[next] -= 1;
      if (indegree[next] === 0) {
        queue.push(next);
      }
    }
  }
  const layers: number[][] = [];
  ids.forEach((_, i) => {
    (layers[rank[i]] ??= []).push(i);
  });
  const layerList = layers.filter(Boolean);
  const row = ids.map(() => 0);
  const renumber = (layer: number[]): void => layer.forEach((node, i) => (row[node] = i));
  layerList.forEach(renumber);
  const barycenter = (node: number, neighbours: number[][]): number => {
    const list = neighbours[node];
    if (!list.length) {
      return row[node];
    }
    let sum = 0;
    for (const other of list) {
      sum += row[other];
    }
    return sum / list.length;
  };
  for (let sweep = 0; sweep < 4; sweep++) {
    const forward = sweep % 2 === 0;
    const order = forward ? layerList.slice(1) : layerList.slice(0, -1).reverse();
    for (const layer of order) {
      const keys = new Map(layer.map(node => [node, barycenter(node, forward ? preds : succs)]));
      layer.sort((a, b) => keys.get(a)! - keys.get(b)! || row[a] - row[b]);
      renumber(layer);
    }
  }
  const tallest = Math.max(...layerList.map(layer => layer.length));
  const step = opts.nodeHeight + opts.nodeSep;
  const positions = new Map<string, Point>();
  layerList.forEach((layer, column) => {
    const offset = ((tallest - layer.length) * step) / 2;
    layer.forEach((node, i) => {
      positions.set(ids[node], { x: 8 + column * (opts.nodeWidth + opts.rankSep), y: 8 + offset + i * step });
    });
  });
  return positions;
}

/**
 * A string that changes only when the graph's shape changes (not its statuses), so the
 * layout is recomputed only then and live status updates don't move nodes.
 */
export function structureKey(ids: readonly string[], edges: readonly Edge[]): string {
  return `${ids.join('\u0001')}\u0002${edges.map(e => `${e.source}>${e.target}`).join('\u0001')}`;
}

/** Edges (upstream task id -> task id) of a run, from each task's `upstream` node ids. */
export function taskEdges(tasks: readonly Task[]): Edge[] {
  const byNode = new Map<string, string>();
  for (const task of tasks) {
    byNode.set(task.node, task.id);
  }
  const edges: Edge[] = [];
  for (const task of tasks) {
    for (const node of task.upstream ?? []) {
      const source = byNode.get(node);
      if (source !== undefined) {
        edges.push({ source, target: task.id });
      }
    }
  }
  return edges;
}
