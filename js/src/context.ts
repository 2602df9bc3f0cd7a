import React from 'react';

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
  /** Ask the user to confirm something destructive (`reject` names the other button). */
  confirm: (title: string, body: string, accept: string, reject?: string) => Promise<boolean>;
}

export const FlowContext = React.createContext<FlowServices | null>(null);

export function useFlow(): FlowServices {
  const services = React.useContext(FlowContext);
  if (!services) {
    throw new Error('jupyter-flow components need a FlowContext provider');
  }
  return services;
}
