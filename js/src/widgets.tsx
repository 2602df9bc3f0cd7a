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
import { SchedulesPanel } from './components/SchedulesPanel';
import { LaunchForm } from './components/LaunchForm';
import type { LaunchMode } from './launch';
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

export type SidebarView = 'runs' | 'schedules';

export class FlowSidebar extends FlowWidget {
  private view: SidebarView = 'runs';
  private highlight: string | null = null;

  constructor(private readonly services: FlowServices) {
    super();
    this.addClass('jp-flow-sidebar');
  }

  /** Show the runs list or the schedules (`highlight`: a schedule id to point at). */
  showView(view: SidebarView, highlight: string | null = null): void {
    this.view = view;
    this.highlight = highlight;
    this.update();
  }

  render(): JSX.Element {
    const tab = (view: SidebarView, label: string): JSX.Element => (
      <button
        type="button"
        role="tab"
        className={`jp-flow-tab${this.view === view ? ' jp-mod-current' : ''}`}
        aria-selected={this.view === view}
        onClick={() => this.showView(view)}
      >
        {label}
      </button>
    );
    return (
      <FlowContext.Provider value={this.services}>
        <div className="jp-flow-sidebar-header">
          <div className="jp-flow-tabs" role="tablist" aria-label="Flow views">
            {tab('runs', 'Runs')}
            {tab('schedules', 'Schedules')}
          </div>
        </div>
        {/* Both stay mounted (filters and scroll survive a switch); only the shown one polls. */}
        <Visible source={this}>
          {active => (
            <>
              <div className="jp-flow-view" role="tabpanel" aria-label="Runs" hidden={this.view !== 'runs'}>
                <RunsPanel active={active && this.view === 'runs'} />
              </div>
              <div className="jp-flow-view" role="tabpanel" aria-label="Schedules" hidden={this.view !== 'schedules'}>
                <SchedulesPanel active={active && this.view === 'schedules'} highlight={this.highlight} />
              </div>
            </>
          )}
        </Visible>
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

/** The launch form of one notebook, in the main area. */
export class FlowLaunchWidget extends ReactWidget {
  constructor(
    private readonly services: FlowServices,
    readonly path: string,
    private mode: LaunchMode
  ) {
    super();
    this.addClass('jp-flow-launch-widget');
  }

  setMode(mode: LaunchMode): void {
    this.mode = mode;
    this.update();
  }

  render(): JSX.Element {
    return (
      <FlowContext.Provider value={this.services}>
        <LaunchForm path={this.path} mode={this.mode} />
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
