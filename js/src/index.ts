/** The "Flow" sidebar, run tabs, the launch form, run-ended notifications and commands. */
import {
  ILayoutRestorer,
  type JupyterFrontEnd,
  type JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Clipboard, Dialog, ICommandPalette, MainAreaWidget, Notification, ToolbarButton } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { INotebookTracker, type NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';

import { FlowClient } from './api';
import type { FlowServices } from './context';
import { RunFeed } from './feed';
import { flowIcon } from './icons';
import type { LaunchMode } from './launch';
import { RunWatcher, type RunNotice } from './notify';
import { FlowLaunchWidget, FlowRunWidget, FlowSidebar } from './widgets';

export const SIDEBAR_ID = 'jupyter-flow-sidebar';

namespace CommandIDs {
  export const openRun = 'jupyter-flow:open-run';
  export const showSidebar = 'jupyter-flow:show-sidebar';
  export const showSchedules = 'jupyter-flow:show-schedules';
  export const launch = 'jupyter-flow:launch';
}

/** How often the feed is polled for notifications while the runs list is not on screen. */
const NOTIFY_POLL_MS = 3000;
const NOTIFY_POLL_HIDDEN_MS = 30000;
/** The query parameter of lab links that open a run (the server's webhook links use it). */
export const RUN_URL_PARAM = 'flow-run';

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
  description: 'jupyter_flow runs, graphs, op details, provenance, schedules and a launch form',
  autoStart: true,
  optional: [ILayoutRestorer, IDocumentManager, ICommandPalette, INotebookTracker, IFileBrowserFactory, IRenderMimeRegistry],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    docManager: IDocumentManager | null,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null,
    browsers: IFileBrowserFactory | null,
    rendermime: IRenderMimeRegistry | null
  ) => {
    const runWidgets = new Map<string, MainAreaWidget<FlowRunWidget>>();
    const launchWidgets = new Map<string, MainAreaWidget<FlowLaunchWidget>>();
    const client = new FlowClient(app.serviceManager.serverSettings);
    const feed = new RunFeed(client);
    const watcher = new RunWatcher(Date.now());

    const services: FlowServices = {
      client,
      feed,
      copy: text => Clipboard.copyToSystem(text),
      confirm: async (title, body, accept, reject = 'Cancel', dismiss) => {
        const dialog = new Dialog({
          title,
          body,
          buttons: [Dialog.cancelButton({ label: reject }), Dialog.warnButton({ label: accept })]
        });
        let dismissed: string | null = null;
        void dismiss?.then(message => {
          if (!dialog.isDisposed) {
            dismissed = message;
            dialog.reject();
          }
        });
        const result = await dialog.launch();
        if (dismissed !== null) {
          Notification.info(dismissed, { autoClose: 8000 });
          return false;
        }
        return result.button.accept;
      },
      notify: message => void Notification.info(message, { autoClose: 8000 }),
      rendermime: rendermime ?? undefined,
      openNotebook: docManager
        ? async path => {
            const widget = docManager.openOrReveal(path);
            if (!widget) {
              throw new Error(`cannot open ${path}`);
            }
            await widget.context.ready;
          }
        : undefined,
      openRun: (runId, title) => void app.commands.execute(CommandIDs.openRun, { runId, title }),
      launch: mode => void app.commands.execute(CommandIDs.launch, { mode }),
      started: run => {
        watcher.expect(run);
        feed.merge([run]);
        feed.pollSoon();
      },
      scheduled: schedule => void app.commands.execute(CommandIDs.showSchedules, { id: schedule.id }),
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
    sidebar.node.setAttribute('aria-label', 'Flow: jupyter_flow runs and schedules');
    app.shell.add(sidebar, 'left', { rank: 650 });
    restorer?.add(sidebar, SIDEBAR_ID);

    app.commands.addCommand(CommandIDs.showSidebar, {
      label: 'Show Flow runs',
      execute: () => {
        sidebar.showView('runs');
        app.shell.activateById(SIDEBAR_ID);
      }
    });

    app.commands.addCommand(CommandIDs.showSchedules, {
      label: 'Show Flow schedules',
      describedBy: { args: { type: 'object', properties: { id: { type: 'string' } } } },
      execute: args => {
        sidebar.showView('schedules', typeof args.id === 'string' ? args.id : null);
        app.shell.activateById(SIDEBAR_ID);
      }
    });

    // -- launch form ------------------------------------------------------------------------

    /** The notebook a launch is for: the given path, the file browser's selection, the current notebook. */
    const launchPath = (args: Record<string, unknown>): string | null => {
      if (typeof args.path === 'string' && args.path) {
        return args.path;
      }
      const selected = (): string | null => {
        const browser = browsers?.tracker.currentWidget;
        const item = browser ? Array.from(browser.selectedItems()).find(model => model.path.endsWith('.ipynb')) : undefined;
        return item ? item.path : null;
      };
      if (args.from === 'filebrowser') {
        return selected();
      }
      const current = notebooks?.currentWidget;
      return current ? current.context.path : selected();
    };

    app.commands.addCommand(CommandIDs.launch, {
      label: 'Launch with parameters…',
      caption: "Run this notebook now or on a schedule, with a form for its jf.param parameters",
      icon: flowIcon,
      describedBy: {
        args: {
          type: 'object',
          properties: {
            path: { type: 'string', description: 'notebook path relative to the server root' },
            mode: { type: 'string', enum: ['now', 'schedule'] },
            from: { type: 'string', enum: ['filebrowser'] }
          }
        }
      },
      execute: args => {
        const path = launchPath(args);
        const mode: LaunchMode = args.mode === 'schedule' ? 'schedule' : 'now';
        if (!path) {
          Notification.warning('Open a notebook, or select one in the file browser, to launch it with parameters.', {
            autoClose: 8000
          });
          return;
        }
        const existing = launchWidgets.get(path);
        if (existing && !existing.isDisposed) {
          existing.content.setMode(mode);
          app.shell.activateById(existing.id);
          return;
        }
        const content = new FlowLaunchWidget(services, path, mode);
        const widget = new MainAreaWidget({ content });
        widget.id = `jupyter-flow-launch-${encodeURIComponent(path)}`;
        widget.title.label = `Launch: ${path.split('/').pop() ?? path}`;
        widget.title.caption = `Launch ${path} with parameters`;
        widget.title.icon = flowIcon;
        widget.title.closable = true;
        widget.disposed.connect(() => launchWidgets.delete(path));
        launchWidgets.set(path, widget);
        app.shell.add(widget, 'main', { mode: 'split-right' });
        app.shell.activateById(widget.id);
      }
    });
    palette?.addItem({ command: CommandIDs.launch, category: 'Flow' });
    palette?.addItem({ command: CommandIDs.showSchedules, category: 'Flow' });
    app.contextMenu.addItem({
      command: CommandIDs.launch,
      selector: '.jp-DirListing-item[data-file-type="notebook"]',
      args: { from: 'filebrowser' },
      rank: 60
    });
    app.contextMenu.addItem({ command: CommandIDs.launch, selector: '.jp-Notebook', rank: 60 });
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (panel: NotebookPanel) => {
        const button = new ToolbarButton({
          icon: flowIcon,
          label: 'Launch',
          className: 'jp-flow-launch-button',
          tooltip: 'Launch with parameters… (run now or schedule this notebook)',
          onClick: () => void app.commands.execute(CommandIDs.launch, { path: panel.context.path })
        });
        if (!panel.toolbar.insertAfter('cellType', 'jupyter-flow-launch', button)) {
          panel.toolbar.addItem('jupyter-flow-launch', button);
        }
        return button;
      }
    });

    // -- notifications when runs end -------------------------------------------------------

    const announce = (notice: RunNotice): void => {
      const options = {
        // Failures stay longer; all stay in the notification list.
        autoClose: notice.type === 'success' ? 8000 : 15000,
        actions: [
          {
            label: 'Open run',
            caption: `Open run ${notice.title}`,
            callback: () => void app.commands.execute(CommandIDs.openRun, { runId: notice.runId, title: notice.title })
          }
        ]
      };
      Notification[notice.type](notice.message, options);
    };
    feed.updated.connect((_, update) => {
      if (update.initial) {
        watcher.baseline(update.runs);
      } else {
        watcher.update(update.runs).forEach(announce);
      }
    });
    const notifyDemand = (): void =>
      feed.demand('notifications', document.visibilityState === 'hidden' ? NOTIFY_POLL_HIDDEN_MS : NOTIFY_POLL_MS);
    document.addEventListener('visibilitychange', notifyDemand);
    void app.restored.then(notifyDemand);

    // -- ?flow-run=<id> opens that run -----------------------------------------------------

    const url = new URL(window.location.href);
    const linked = url.searchParams.get(RUN_URL_PARAM);
    if (linked) {
      void app.restored.then(async () => {
        // A reload should not reopen it: the tab is restored with the layout anyway.
        url.searchParams.delete(RUN_URL_PARAM);
        window.history.replaceState(window.history.state, '', url.toString());
        let title = linked;
        try {
          const run = await client.run(linked);
          title = run.name ?? linked;
        } catch {
          // The run view says what is wrong (no such run, no extension).
        }
        await app.commands.execute(CommandIDs.openRun, { runId: linked, title });
      });
    }
  }
};

export default plugin;
