/** The "Flow" sidebar, run tabs and commands. */
import {
  ILayoutRestorer,
  type JupyterFrontEnd,
  type JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Clipboard, Dialog, MainAreaWidget, showDialog } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import type { NotebookPanel } from '@jupyterlab/notebook';

import { FlowClient } from './api';
import type { FlowServices } from './context';
import { flowIcon } from './icons';
import { FlowRunWidget, FlowSidebar } from './widgets';

export const SIDEBAR_ID = 'jupyter-flow-sidebar';

namespace CommandIDs {
  export const openRun = 'jupyter-flow:open-run';
  export const showSidebar = 'jupyter-flow:show-sidebar';
}

/** A notebook path as the contents API wants it (relative to the server root). */
export function serverPath(path: string, root: string = PageConfig.getOption('serverRoot')): string {
  const normalized = path.replace(/\\/g, '/');
  const base = root.replace(/\\/g, '/').replace(/\/+$/, '');
  if (base && normalized.startsWith(`${base}/`)) {
    return normalized.slice(base.length + 1);
  }
  return normalized.replace(/^\.\//, '');
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-flow:plugin',
  description: 'jupyter_flow runs, graphs, op details and provenance in a sidebar',
  autoStart: true,
  optional: [ILayoutRestorer, IDocumentManager],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null, docManager: IDocumentManager | null) => {
    const runWidgets = new Map<string, MainAreaWidget<FlowRunWidget>>();

    const services: FlowServices = {
      client: new FlowClient(app.serviceManager.serverSettings),
      copy: text => Clipboard.copyToSystem(text),
      confirm: async (title, body, accept) => {
        const result = await showDialog({
          title,
          body,
          buttons: [Dialog.cancelButton({ label: 'Keep running' }), Dialog.warnButton({ label: accept })]
        });
        return result.button.accept;
      },
      openRun: (runId, title) => void app.commands.execute(CommandIDs.openRun, { runId, title }),
      openCell: docManager
        ? async (path, cellId, executionCount) => {
            const widget = docManager.openOrReveal(serverPath(path)) as NotebookPanel | undefined;
            if (!widget) {
              throw new Error(`cannot open ${path}`);
            }
            await widget.context.ready;
            const notebook = (widget as Partial<NotebookPanel>).content;
            if (!notebook) {
              return;
            }
            // The kernel records the cell id where the frontend sends it (JupyterLab does);
            // otherwise the execution count is the best clue to the cell.
            const index = cellId
              ? notebook.widgets.findIndex(cell => cell.model.id === cellId)
              : notebook.widgets.findIndex(
                  cell => executionCount !== null && (cell.model as { executionCount?: number | null }).executionCount === executionCount
                );
            if (index >= 0) {
              notebook.activeCellIndex = index;
              await notebook.scrollToItem(index, 'center');
            }
          }
        : undefined
    };

    app.commands.addCommand(CommandIDs.openRun, {
      label: 'Open jupyter_flow run',
      describedBy: {
        args: {
          type: 'object',
          properties: { runId: { type: 'string' }, title: { type: 'string' } },
          required: ['runId']
        }
      },
      execute: args => {
        const runId = String(args.runId);
        const existing = runWidgets.get(runId);
        if (existing && !existing.isDisposed) {
          app.shell.activateById(existing.id);
          return;
        }
        const content = new FlowRunWidget(services, runId);
        const widget = new MainAreaWidget({ content });
        widget.id = `jupyter-flow-run-${runId}`;
        widget.title.label = `Flow: ${String(args.title ?? runId)}`;
        widget.title.caption = `jupyter_flow run ${runId}`;
        widget.title.icon = flowIcon;
        widget.title.closable = true;
        widget.disposed.connect(() => runWidgets.delete(runId));
        runWidgets.set(runId, widget);
        app.shell.add(widget, 'main');
        app.shell.activateById(widget.id);
      }
    });

    const sidebar = new FlowSidebar(services);
    sidebar.id = SIDEBAR_ID;
    sidebar.title.icon = flowIcon;
    sidebar.title.caption = 'Flow';
    sidebar.title.label = '';
    sidebar.node.setAttribute('aria-label', 'Flow: jupyter_flow runs');
    app.shell.add(sidebar, 'left', { rank: 650 });
    restorer?.add(sidebar, SIDEBAR_ID);

    app.commands.addCommand(CommandIDs.showSidebar, {
      label: 'Show Flow runs',
      execute: () => app.shell.activateById(SIDEBAR_ID)
    });
  }
};

export default plugin;
