import React from 'react';
import type { IRenderMimeRegistry } from '@jupyterlab/rendermime';

import { FlowClient } from './api';
import type { RunFeed } from './feed';
import type { LaunchMode } from './launch';
import type { Run, Schedule } from './types';

/** What the components need from JupyterLab, injected so they stay testable. */
export interface FlowServices {
  client: FlowClient;
  /** The page's runs feed (the sidebar list and the notifications share it). */
  feed: RunFeed;
  /**
   * Open a notebook at a cell (by id, else by its execution count); absent where no
   * document manager is available.
   */
  openCell?: (path: string, cellId: string | null, executionCount: number | null) => Promise<void>;
  /** Open a run's graph (in the main area). */
  openRun?: (runId: string, title: string) => void;
  /** Open the launch form for the current notebook (or the one selected in the file browser). */
  launch?: (mode: LaunchMode) => void;
  /** A batch this page just started: show it in the list, announce its end. */
  started?: (run: Run) => void;
  /** A schedule this page just made: show it in the sidebar's Schedules view. */
  scheduled?: (schedule: Schedule) => void;
  copy: (text: string) => void;
  /**
   * Ask the user to confirm something destructive (`reject` names the other button, "Cancel"
   * by default). When `dismiss` resolves first, the question closes without an answer (false)
   * and its message is shown instead ("run already ended").
   */
  confirm: (title: string, body: string, accept: string, reject?: string, dismiss?: Promise<string>) => Promise<boolean>;
  /** Show the user a short message (JupyterLab's notifications). */
  notify?: (message: string) => void;
  /** The app's renderers for MIME bundles (op outputs render as in a notebook, untrusted). */
  rendermime?: IRenderMimeRegistry;
  /** Open a notebook (path relative to the server root) in JupyterLab. */
  openNotebook?: (path: string) => Promise<void>;
}

export const FlowContext = React.createContext<FlowServices | null>(null);

export function useFlow(): FlowServices {
  const services = React.useContext(FlowContext);
  if (!services) {
    throw new Error('jupyter-flow components need a FlowContext provider');
  }
  return services;
}
