/**
 * The sidebar's Schedules view: each schedule's cron, next firing, last result (opening its
 * run), misfire policy and what it did after downtime; pause/resume and remove.
 */
import React, { useCallback, useEffect, useRef, useState } from 'react';

import { closeIcon } from '@jupyterlab/ui-components';

import { FlowApiError } from '../api';
import { useFlow } from '../context';
import { usePoll } from '../hooks';
import { baseName } from '../runs';
import {
  absoluteTime,
  MISFIRE_LABELS,
  misfireNote,
  nextFireText,
  relativeTime,
  replaceSchedule,
  SCHEDULES_POLL_MS
} from '../schedules';
import type { Schedule } from '../types';
import { ErrorMessage, StatusBadge, UpdatesPaused } from './StatusBadge';

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error));

const byName = (schedules: Schedule[]): Schedule[] => schedules.slice().sort((a, b) => a.name.localeCompare(b.name));

export function SchedulesPanel(props: { active: boolean; highlight: string | null }): JSX.Element {
  const flow = useFlow();
  const [schedules, setSchedules] = useState<Schedule[] | null>(null);
  const [failure, setFailure] = useState<FlowApiError | Error | null>(null);
  const [actionError, setActionError] = useState<string | null>(null);
  const [busy, setBusy] = useState<ReadonlySet<string>>(new Set());
  const [now, setNow] = useState(Date.now());

  const refresh = useCallback(async () => {
    try {
      const list = await flow.client.schedules();
      setSchedules(byName(list.schedules));
      setFailure(null);
    } catch (error) {
      setFailure(error as Error);
    }
  }, [flow]);
  usePoll(refresh, SCHEDULES_POLL_MS, props.active);
  // "in 4 s" counts down between polls.
  usePoll(async () => setNow(Date.now()), 1000, props.active);
  // A schedule just made elsewhere (the launch form): fetch the list with it now.
  useEffect(() => {
    if (props.active && props.highlight) {
      void refresh();
    }
  }, [props.active, props.highlight, refresh]);

  const act = async (schedule: Schedule, action: () => Promise<Schedule | null>): Promise<void> => {
    setActionError(null);
    setBusy(prev => new Set(prev).add(schedule.id));
    try {
      const updated = await action();
      if (updated) {
        setSchedules(prev => replaceSchedule(prev ?? [], updated));
      }
    } catch (error) {
      setActionError(`${schedule.name}: ${message(error)}`);
    } finally {
      setBusy(prev => {
        const next = new Set(prev);
        next.delete(schedule.id);
        return next;
      });
      void refresh();
    }
  };

  const togglePaused = (schedule: Schedule): Promise<void> =>
    act(schedule, () => flow.client.setSchedulePaused(schedule.id, !schedule.paused));

  const remove = (schedule: Schedule): Promise<void> =>
    act(schedule, async () => {
      const ok = await flow.confirm(
        'Remove schedule?',
        `Remove schedule ${schedule.name} (${schedule.cron}, ${baseName(schedule.notebook)})? ` +
          'It fires no more; the runs it started stay.',
        'Remove',
        'Keep'
      );
      if (ok) {
        await flow.client.deleteSchedule(schedule.id);
        setSchedules(prev => (prev ?? []).filter(item => item.id !== schedule.id));
      }
      return null;
    });

  if (failure && schedules === null) {
    return (
      <div className="jp-flow-panel-message" role="alert" data-failure={failure instanceof FlowApiError ? failure.kind : 'error'}>
        <h3>Cannot load schedules</h3>
        <p className="jp-flow-panel-reason">{failure.message}</p>
        <p className="jp-flow-muted">Retrying every {SCHEDULES_POLL_MS / 1000} seconds while this panel is open.</p>
      </div>
    );
  }

  return (
    <div className="jp-flow-schedules">
      <div className="jp-flow-toolbar">
        <button
          type="button"
          className="jp-flow-button"
          title="Schedule the current notebook, or the one selected in the file browser"
          onClick={() => flow.launch?.('schedule')}
          disabled={!flow.launch}
        >
          New schedule…
        </button>
      </div>
      <UpdatesPaused failure={failure} />
      <ErrorMessage error={actionError} />
      <ul className="jp-flow-run-list" aria-label="schedules">
        {(schedules ?? []).map(schedule => (
          <ScheduleRow
            key={schedule.id}
            schedule={schedule}
            now={now}
            busy={busy.has(schedule.id)}
            highlight={props.highlight === schedule.id}
            onToggle={() => void togglePaused(schedule)}
            onRemove={() => void remove(schedule)}
          />
        ))}
      </ul>
      {schedules !== null && schedules.length === 0 ? (
        <p className="jp-flow-muted jp-flow-empty">
          No schedules yet. Use “New schedule…” (or “Launch with parameters…” on a notebook),{' '}
          <code>jupyter flow schedule add</code> or <code>jf.schedule(...)</code>.
        </p>
      ) : null}
    </div>
  );
}

function ScheduleRow(props: {
  schedule: Schedule;
  now: number;
  busy: boolean;
  highlight: boolean;
  onToggle: () => void;
  onRemove: () => void;
}): JSX.Element {
  const { schedule, now } = props;
  const flow = useFlow();
  const row = useRef<HTMLLIElement>(null);
  useEffect(() => {
    if (props.highlight) {
      row.current?.scrollIntoView?.({ block: 'nearest' });
    }
  }, [props.highlight]);
  const last = schedule.last_run;
  const note = misfireNote(schedule.last_misfire);
  return (
    <li
      ref={row}
      className={`jp-flow-run-row jp-flow-schedule-row${props.highlight ? ' jp-mod-highlight' : ''}`}
      data-schedule-id={schedule.id}
      data-paused={schedule.paused ? 'true' : 'false'}
    >
      <div className="jp-flow-schedule-body">
        <div className="jp-flow-run-line jp-flow-schedule-head">
          <span className="jp-flow-run-name">{schedule.name}</span>
          {schedule.paused ? <span className="jp-flow-badge jp-flow-paused">PAUSED</span> : null}
          <span className="jp-flow-spacer" />
          <span className="jp-flow-row-actions">
            <button
              type="button"
              className="jp-flow-button jp-flow-small"
              aria-label={`${schedule.paused ? 'resume' : 'pause'} schedule ${schedule.name}`}
              disabled={props.busy}
              onClick={props.onToggle}
            >
              {schedule.paused ? 'Resume' : 'Pause'}
            </button>
            <button
              type="button"
              className="jp-flow-icon-button"
              aria-label={`remove schedule ${schedule.name}`}
              title="Remove schedule"
              disabled={props.busy}
              onClick={props.onRemove}
            >
              <closeIcon.react tag="span" className="jp-flow-icon" />
            </button>
          </span>
        </div>
        <div className="jp-flow-run-line jp-flow-muted">
          <code className="jp-flow-mono jp-flow-cron" title={`cron, in ${schedule.timezone}`}>
            {schedule.cron}
          </code>
          {schedule.timezone !== 'UTC' ? <span>{schedule.timezone}</span> : null}
          <span title={schedule.notebook}>{baseName(schedule.notebook)}</span>
        </div>
        <div className="jp-flow-run-line">
          <span className="jp-flow-next-fire" title={schedule.paused ? '' : absoluteTime(schedule.next_fire_at)}>
            next: {nextFireText(schedule, now)}
          </span>
        </div>
        <div className="jp-flow-run-line jp-flow-last-result">
          <span>last:</span>
          {last ? (
            <>
              <button
                type="button"
                className="jp-flow-link"
                aria-label={`open the last run of ${schedule.name}, ${last.status}`}
                title="Open this run"
                onClick={() => flow.openRun?.(last.id, `${schedule.name} ${last.id.slice(-6)}`)}
              >
                <StatusBadge status={last.status} />
              </button>
              <span className="jp-flow-muted" title={absoluteTime(schedule.last_fire_at)}>
                {relativeTime(schedule.last_fire_at, now)}
              </span>
            </>
          ) : (
            <span className="jp-flow-muted">never fired</span>
          )}
        </div>
        <div className="jp-flow-run-line jp-flow-muted">
          <span className="jp-flow-misfire" title="what happens to firings missed while no server runs the scheduler">
            misfire: {MISFIRE_LABELS[schedule.misfire] ?? schedule.misfire}
          </span>
          {note ? (
            <span className="jp-flow-misfire-note" title={absoluteTime(schedule.last_misfire?.at)}>
              {note}
            </span>
          ) : null}
        </div>
      </div>
    </li>
  );
}
