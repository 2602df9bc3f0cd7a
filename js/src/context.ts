import React from 'react';

import { FlowClient } from './api';

/** What the components need from JupyterLab, injected so they stay testable. */
export interface FlowServices {
  client: FlowClient;
  /**
   * Open a notebook at a cell (by id, else by its execution count); absent where no
   * document manager is available.
   */
  openCell?: (path: string, cellId: string | null, executionCount: number | null) => Promise<void>;
  /** Open a run's graph (in the main area). */
  openRun?: (runId: string, title: string) => void;
  copy: (text: string) => void;
  /** Ask the user to confirm something destructive. */
  confirm: (title: string, body: string, accept: string) => Promise<boolean>;
}

export const FlowContext = React.createContext<FlowServices | null>(null);

export function useFlow(): FlowServices {
  const services = React.useContext(FlowContext);
  if (!services) {
    throw new Error('jupyter-flow components need a FlowContext provider');
  }
  return services;
}
