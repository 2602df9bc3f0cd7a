import { describe, expect, it } from 'vitest';

import { misfireNote, nextFireText, relativeTime, replaceSchedule } from '../src/schedules';
import type { Schedule } from '../src/types';

const NOW = Date.parse('2024-05-01T12:00:00Z');
const at = (seconds: number): string => new Date(NOW + seconds * 1000).toISOString();

function schedule(extra: Partial<Schedule> = {}): Schedule {
  return {
    id: 's1',
    name: 'nightly',
    notebook: '/work/train.ipynb',
    cron: '0 3 * * *',
    timezone: 'UTC',
    parallel: 1,
    misfire: 'once',
    paused: false,
    created_at: at(-3600),
    next_fire_at: at(80),
    ...extra
  };
}

describe('relativeTime', () => {
  it('says how far ahead or behind, in the largest sensible unit', () => {
    expect(relativeTime(at(4), NOW)).toBe('in 4 s');
    expect(relativeTime(at(12 * 60), NOW)).toBe('in 12 min');
    expect(relativeTime(at(3 * 3600), NOW)).toBe('in 3 h');
    expect(relativeTime(at(2 * 86400), NOW)).toBe('in 2 days');
    expect(relativeTime(at(-300), NOW)).toBe('5 min ago');
    expect(relativeTime(at(0), NOW)).toBe('now');
    expect(relativeTime(null, NOW)).toBe('');
    expect(relativeTime('garbage', NOW)).toBe('');
  });
});

describe('misfireNote', () => {
  const time = (iso: string): string => iso.slice(11, 16);

  it('says how many firings were missed and what the policy did', () => {
    expect(misfireNote({ at: '2024-05-01T03:00:00Z', missed: 3, policy: 'once', fired: 1 }, time)).toBe(
      'missed 3 firings at 03:00: ran once'
    );
    expect(misfireNote({ at: '2024-05-01T03:00:00Z', missed: 1, policy: 'skip', fired: 0 }, time)).toBe(
      'missed 1 firing at 03:00: skipped'
    );
    expect(misfireNote({ at: '2024-05-01T03:00:00Z', missed: 4, policy: 'catchup', fired: 4 }, time)).toBe(
      'missed 4 firings at 03:00: caught up 4'
    );
    expect(misfireNote({ at: '2024-05-01T03:00:00Z', missed: 130, policy: 'catchup', fired: 100 }, time)).toBe(
      'missed 130 firings at 03:00: caught up 100, skipped 30'
    );
  });

  it('is empty when nothing was missed', () => {
    expect(misfireNote(null)).toBe('');
    expect(misfireNote({ at: '2024-05-01T03:00:00Z', missed: 0, policy: 'once', fired: 0 })).toBe('');
  });
});

describe('nextFireText', () => {
  it('counts down, says due once the time has passed, and paused while paused', () => {
    expect(nextFireText(schedule(), NOW)).toBe('in 80 s');
    expect(nextFireText(schedule({ next_fire_at: at(-2) }), NOW)).toBe('due now');
    expect(nextFireText(schedule({ paused: true }), NOW)).toBe('paused');
    expect(nextFireText(schedule({ next_fire_at: null }), NOW)).toBe('not scheduled');
  });
});

describe('replaceSchedule', () => {
  it('replaces by id and keeps name order', () => {
    const list = [schedule({ id: 'a', name: 'alpha' }), schedule({ id: 'b', name: 'beta' })];
    const updated = replaceSchedule(list, schedule({ id: 'a', name: 'alpha', paused: true }));
    expect(updated.map(s => [s.name, s.paused])).toEqual([
      ['alpha', true],
      ['beta', false]
    ]);
    expect(replaceSchedule(list, schedule({ id: 'c', name: 'aardvark' }))[0].id).toBe('c');
  });
});
