/** Lumino widgets around the React views: the sidebar, a run's tab, the MIME renderer. */
import React from 'react';
import { ReactWidget } from '@jupyterlab/apputils';
import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import type { Message } from '@lumino/messaging';
import { Signal, type ISignal } from '@lumino/signaling';

import { FlowContext, type FlowServices } from './context';
import { useVisible, type VisibilitySource } from './hooks';
import { GraphView } from './components/GraphView';
import { notebookGraphItems } from './notebookGraph';
import { RunsPanel } from './components/RunsPanel';
import { RunView } from './components/RunView';
import type { NotebookGraph } from './types';

/** A ReactWidget that tells its view when it is shown or hidden (polling pauses then). */
export abstract class FlowWidget extends ReactWidget implements VisibilitySource {
  private readonly _visibility = new Signal<this, boolean>(this);

  get visibilityChanged(): ISignal<this, boolean> {
    return this._visibility;
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._visibility.emit(true);
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this._visibility.emit(false);
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this._visibility.emit(this.isVisible);
  }

  protected onBeforeDetach(msg: Message): void {
    this._visibility.emit(false);
    super.onBeforeDetach(msg);
  }
}

function Visible(props: { source: VisibilitySource; children: (active: boolean) => JSX.Element }): JSX.Element {
  const active = useVisible(props.source);
  return props.children(active);
}

export class FlowSidebar extends FlowWidget {
  constructor(private readonly services: FlowServices) {
    super();
    this.addClass('jp-flow-sidebar');
  }

  render(): JSX.Element {
    return (
      <FlowContext.Provider value={this.services}>
        <div className="jp-flow-sidebar-header">
          <h2>Flow runs</h2>
        </div>
        <Visible source={this}>{active => <RunsPanel active={active} />}</Visible>
      </FlowContext.Provider>
    );
  }
}

export class FlowRunWidget extends FlowWidget {
  constructor(
    private readonly services: FlowServices,
    readonly runId: string
  ) {
    super();
    this.addClass('jp-flow-run-widget');
  }

  render(): JSX.Element {
    return (
      <FlowContext.Provider value={this.services}>
        <Visible source={this}>{active => <RunView runId={this.runId} active={active} />}</Visible>
      </FlowContext.Provider>
    );
  }
}

export class GraphRenderer extends ReactWidget implements IRenderMime.IRenderer {
  private data: NotebookGraph = { version: 1, nodes: [], edges: [] };

  constructor(private readonly mimeType: string) {
    super();
    this.addClass('jp-flow-mime');
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this.data = model.data[this.mimeType] as unknown as NotebookGraph;
    this.update();
    return Promise.resolve();
  }

  render(): JSX.Element {
    const { items, edges } = notebookGraphItems(this.data);
    if (!items.length) {
      return <p className="jp-flow-muted">No %%flow cells in this notebook yet.</p>;
    }
    return <GraphView items={items} edges={edges} label="graph of this notebook's flow cells" />;
  }
}
