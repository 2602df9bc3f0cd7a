/**
 * A graph of ops, left to right, coloured by status. Used by the run view (tasks of a
 * run) and by the MIME renderer (`%flow graph` output). Layout is recomputed only when
 * the graph's shape changes, so live status updates never move nodes or flicker.
 */
import React, { useCallback, useEffect, useMemo, useRef } from 'react';
import {
  Background,
  Controls,
  Handle,
  MiniMap,
  Position,
  ReactFlow,
  ReactFlowProvider,
  useReactFlow,
  type Edge as FlowEdge,
  type Node as FlowNode,
  type NodeChange,
  type NodeProps
} from '@xyflow/react';

import { DEFAULT_LAYOUT, layoutGraph, structureKey } from '../layout';
import type { Edge } from '../types';

export interface OpNodeData extends Record<string, unknown> {
  label: string;
  status: string;
  cached: boolean;
  /** A second line: reason, what a WAITING op waits for, … */
  detail?: string;
}

export interface GraphItem extends OpNodeData {
  id: string;
}

type OpNode = FlowNode<OpNodeData, 'op'>;

function OpNodeView(props: NodeProps<OpNode>): JSX.Element {
  const { label, status, cached, detail } = props.data;
  return (
    <div
      className={`jp-flow-node jp-flow-status-border-${status}${props.selected ? ' jp-flow-node-selected' : ''}`}
      title={`${label}: ${status}${detail ? ` — ${detail}` : ''}`}
      data-status={status}
    >
      <Handle type="target" position={Position.Left} isConnectable={false} />
      <div className="jp-flow-node-label">{label}</div>
      <div className="jp-flow-node-status">
        <span className={`jp-flow-dot jp-flow-status-${status}`} aria-hidden="true" />
        {status}
        {cached && status !== 'CACHED' ? ' · cached' : ''}
      </div>
      {detail ? <div className="jp-flow-node-detail">{detail}</div> : null}
      <Handle type="source" position={Position.Right} isConnectable={false} />
    </div>
  );
}

const NODE_TYPES = { op: OpNodeView };
// Fitting never zooms out below 0.8 (13 px labels stay above 10 px when op details take
// space beside the graph); a larger graph is panned, with the minimap as the overview.
export const FIT_MIN_ZOOM = 0.8;
const FIT_OPTIONS = { padding: 0.15, maxZoom: 1.2, minZoom: FIT_MIN_ZOOM };

/** Minimap nodes in their status colour (op nodes draw no background of their own). */
function miniMapColor(node: OpNode): string {
  return STATUS_COLOR[node.data.status] ?? 'var(--jp-layout-color4)';
}

const STATUS_COLOR: Record<string, string> = {
  SUCCESS: 'var(--jp-flow-ok)',
  CACHED: 'var(--jp-flow-cached)',
  RUNNING: 'var(--jp-flow-busy)',
  WAITING: 'var(--jp-flow-wait)',
  STALE: 'var(--jp-flow-wait)',
  FAILED: 'var(--jp-flow-bad)',
  LOST: 'var(--jp-flow-bad)'
};

export interface GraphViewProps {
  items: GraphItem[];
  edges: Edge[];
  selected?: string | null;
  onSelect?: (id: string) => void;
  /** Accessible name of the whole graph. */
  label: string;
  showMiniMap?: boolean;
  /** The laid-out graph's size at zoom 1, whenever its shape changes. */
  onLayoutSize?: (size: { width: number; height: number }) => void;
}

export function GraphView(props: GraphViewProps): JSX.Element {
  return (
    <ReactFlowProvider>
      <GraphCanvas {...props} />
    </ReactFlowProvider>
  );
}

function GraphCanvas(props: GraphViewProps): JSX.Element {
  const { items, edges, selected, onSelect, label, showMiniMap } = props;
  const ids = useMemo(() => items.map(item => item.id), [items]);
  const shape = structureKey(ids, edges);
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const positions = useMemo(() => layoutGraph(ids, edges), [shape]);
  const { onLayoutSize } = props;
  useEffect(() => {
    if (!onLayoutSize || positions.size === 0) {
      return;
    }
    let width = 0;
    let height = 0;
    for (const { x, y } of positions.values()) {
      width = Math.max(width, x + DEFAULT_LAYOUT.nodeWidth);
      height = Math.max(height, y + DEFAULT_LAYOUT.nodeHeight);
    }
    onLayoutSize({ width, height });
  }, [positions, onLayoutSize]);
  const nodes: OpNode[] = useMemo(
    () =>
      items.map(({ id, ...data }) => ({
        id,
        type: 'op',
        position: positions.get(id) ?? { x: 0, y: 0 },
        // The layout's size until React Flow measures the node. The nodes are controlled and
        // measurements never come back into them, so without this the minimap (which draws
        // only nodes with a size) was an empty box.
        initialWidth: DEFAULT_LAYOUT.nodeWidth,
        initialHeight: DEFAULT_LAYOUT.nodeHeight,
        data,
        selected: id === selected,
        draggable: false,
        connectable: false,
        ariaLabel: `op ${data.label}, ${data.status}${data.cached ? ', cached' : ''}`
      })),
    [items, positions, selected]
  );
  const flowEdges: FlowEdge[] = useMemo(
    () =>
      edges.map(edge => ({
        id: `${edge.source}->${edge.target}`,
        source: edge.source,
        target: edge.target,
        animated: false,
        focusable: false
      })),
    [edges]
  );
  const onNodeClick = useCallback((_: React.MouseEvent, node: OpNode) => onSelect?.(node.id), [onSelect]);
  // Selection is controlled by `selected`: only a person's click or Enter on a node (a
  // "select" change) selects. Reacting to React Flow's selection state instead
  // (onSelectionChange) echoed the previous selection back after every prop change, and
  // two ops then selected each other in turn forever.
  const onNodesChange = useCallback(
    (changes: NodeChange<OpNode>[]) => {
      for (const change of changes) {
        if (change.type === 'select' && change.selected) {
          onSelect?.(change.id);
        }
      }
    },
    [onSelect]
  );
  const large = items.length > 150;
  const wrapper = useRef<HTMLDivElement>(null);
  const { fitView } = useReactFlow();
  // Fit again when the space changes (op details opening beside the graph, a resized
  // panel); not when a hidden tab reports 0 x 0, so coming back keeps the user's view.
  useEffect(() => {
    const element = wrapper.current;
    if (!element || typeof ResizeObserver === 'undefined') {
      return;
    }
    let last = '';
    let frame = 0;
    const observer = new ResizeObserver(entries => {
      const { width, height } = entries[0].contentRect;
      const size = `${Math.round(width)}x${Math.round(height)}`;
      if (width === 0 || height === 0 || size === last) {
        return;
      }
      const first = last === '';
      last = size;
      if (!first) {
        cancelAnimationFrame(frame);
        frame = requestAnimationFrame(() => void fitView(FIT_OPTIONS));
      }
    });
    observer.observe(element);
    return () => {
      observer.disconnect();
      cancelAnimationFrame(frame);
    };
  }, [fitView]);
  return (
    <div className="jp-flow-graph" role="group" aria-label={label} ref={wrapper}>
      <ReactFlow<OpNode, FlowEdge>
        key={shape.length > 2000 ? String(ids.length) : shape}
        nodes={nodes}
        edges={flowEdges}
        nodeTypes={NODE_TYPES}
        onNodeClick={onNodeClick}
        onNodesChange={onNodesChange}
        fitView
        fitViewOptions={FIT_OPTIONS}
        minZoom={0.02}
        maxZoom={2.5}
        nodesDraggable={false}
        nodesConnectable={false}
        elementsSelectable={true}
        onlyRenderVisibleElements={large}
        proOptions={{ hideAttribution: true }}
      >
        <Background gap={24} size={1} />
        <Controls showInteractive={false} aria-label="graph zoom controls" />
        {showMiniMap && items.length > 12 ? <MiniMap<OpNode> pannable zoomable ariaLabel="graph overview" nodeColor={miniMapColor} nodeStrokeWidth={0} /> : null}
      </ReactFlow>
    </div>
  );
}
