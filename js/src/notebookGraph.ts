import type { GraphItem } from './components/GraphView';
import type { Edge, NotebookGraph } from './types';

/** `%flow graph` data as graph items: "cached" and "stale" are shown as CACHED and STALE. */
export function notebookGraphItems(data: NotebookGraph): { items: GraphItem[]; edges: Edge[] } {
  const ids = new Set(data.nodes.map(node => node.id));
  const items = data.nodes.map(node => {
    const status = node.status.toUpperCase();
    const waits = Object.entries(node.resources ?? {})
      .map(([name, n]) => `${name}=${n}`)
      .join(', ');
    return {
      id: node.id,
      label: node.id,
      status,
      cached: status === 'CACHED',
      detail: status === 'CACHED' ? (waits ? `needs ${waits}` : undefined) : [node.reason, waits && `needs ${waits}`].filter(Boolean).join(' · ')
    };
  });
  const edges = data.edges.filter(edge => ids.has(edge.source) && ids.has(edge.target));
  return { items, edges };
}

