import React from 'react';
import { copyIcon } from '@jupyterlab/ui-components';

export const IDLE_TOOLTIP = 'kernel is alive; no cell running';

/**
 * A status in words and colour (colour is never the only cue). `idle`: a RUNNING notebook
 * run with no cell running shows as "idle" (see `notebookIdle`).
 */
export function StatusBadge(props: { status: string; cached?: boolean; idle?: boolean }): JSX.Element {
  const { status, cached, idle } = props;
  if (idle) {
    return (
      <span
        className="jp-flow-badge jp-flow-status-IDLE"
        aria-label={`status ${status}, idle: ${IDLE_TOOLTIP}`}
        title={`idle: ${IDLE_TOOLTIP}`}
      >
        idle
      </span>
    );
  }
  return (
    <span
      className={`jp-flow-badge jp-flow-status-${status}`}
      aria-label={`status ${status}${cached ? ', cached' : ''}`}
      title={status}
    >
      {status}
    </span>
  );
}

export function CopyButton(props: { text: string; label: string; onCopy: (text: string) => void }): JSX.Element {
  return (
    <button
      type="button"
      className="jp-flow-icon-button"
      aria-label={props.label}
      title={props.label}
      onClick={event => {
        event.stopPropagation();
        props.onCopy(props.text);
      }}
    >
      <copyIcon.react tag="span" className="jp-flow-icon" />
    </button>
  );
}

/** Shows a failure as a message the user can act on. */
export function ErrorMessage(props: { error: string | null; title?: string }): JSX.Element | null {
  if (!props.error) {
    return null;
  }
  return (
    <div className="jp-flow-error" role="alert">
      {props.title ? <strong>{props.title}: </strong> : null}
      {props.error}
    </div>
  );
}

/** A list that polls says so when its last poll failed (it keeps retrying). */
export function UpdatesPaused(props: { failure: { message: string } | null }): JSX.Element | null {
  if (!props.failure) {
    return null;
  }
  return (
    <div className="jp-flow-error" role="status">
      Updates paused: {props.failure.message}
    </div>
  );
}
