/** The words the Schedules view shows: relative times and what a misfire decision did. Pure. */
import { formatStarted } from './runs';
import type { Misfire, Schedule } from './types';

/** How often the Schedules view asks for the list while it is visible. */
export const SCHEDULES_POLL_MS = 5000;

/**
 * `iso` relative to `now`: "in 4 s", "in 12 min", "in 3 h", "in 2 days", or "5 min ago".
 *
 * ```ts
 * relativeTime('2024-01-01T00:01:30Z', Date.parse('2024-01-01T00:00:00Z'))  // 'in 2 min'
 * ```
 */
export function relativeTime(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) {
    return '';
  }
  const at = Date.parse(iso);
  if (Number.isNaN(at)) {
    return '';
  }
  const seconds = Math.round((at - now) / 1000);
  const size = Math.abs(seconds);
  let amount: string;
  if (size < 1) {
    return 'now';
  } else if (size < 90) {
    amount = `${size} s`;
  } else if (size < 90 * 60) {
    amount = `${Math.round(size / 60)} min`;
  } else if (size < 36 * 3600) {
    amount = `${Math.round(size / 3600)} h`;
  } else {
    const days = Math.round(size / 86400);
    amount = `${days} ${days === 1 ? 'day' : 'days'}`;
  }
  return seconds > 0 ? `in ${amount}` : `${amount} ago`;
}

/** A full local date and time, for a tooltip beside a relative time. */
export function absoluteTime(iso: string | null | undefined): string {
  if (!iso) {
    return '';
  }
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

/**
 * What the scheduler did about firings missed while nothing ran it.
 *
 * ```ts
 * misfireNote({ at: '…', missed: 3, policy: 'once', fired: 1 })  // 'missed 3 firings at 14:03:07: ran once'
 * ```
 */
export function misfireNote(
  misfire: Misfire | null | undefined,
  formatTime: (iso: string) => string = iso => formatStarted(iso)
): string {
  if (!misfire || !(misfire.missed > 0)) {
    return '';
  }
  const missed = `missed ${misfire.missed} ${misfire.missed === 1 ? 'firing' : 'firings'}`;
  const when = misfire.at ? ` at ${formatTime(misfire.at)}` : '';
  let decision: string;
  if (misfire.policy === 'skip') {
    decision = 'skipped';
  } else if (misfire.policy === 'once') {
    decision = 'ran once';
  } else if (misfire.policy === 'catchup') {
    const skipped = misfire.missed - misfire.fired;
    decision = skipped > 0 ? `caught up ${misfire.fired}, skipped ${skipped}` : `caught up ${misfire.fired}`;
  } else {
    decision = `${misfire.policy}: ran ${misfire.fired}`;
  }
  return `${missed}${when}: ${decision}`;
}

/** The next firing in words: "paused", "in 4 s", "due now", or "not scheduled". */
export function nextFireText(schedule: Schedule, now: number = Date.now()): string {
  if (schedule.paused) {
    return 'paused';
  }
  if (!schedule.next_fire_at) {
    return 'not scheduled';
  }
  const at = Date.parse(schedule.next_fire_at);
  // A firing the scheduler has not picked up yet: it fires on its next tick.
  return !Number.isNaN(at) && at <= now ? 'due now' : relativeTime(schedule.next_fire_at, now);
}

/** The misfire policy as the form's select names it. */
export const MISFIRE_LABELS: Record<string, string> = {
  skip: 'skip',
  once: 'run once',
  catchup: 'catch up'
};

/** `schedules` with `updated` replacing its old copy (or added), in name order. */
export function replaceSchedule(schedules: readonly Schedule[], updated: Schedule): Schedule[] {
  const rest = schedules.filter(schedule => schedule.id !== updated.id);
  return [...rest, updated].sort((a, b) => a.name.localeCompare(b.name));
}
