/**
 * The launch form as data: one field per declared parameter, the values typed into it, and
 * the request it sends. Pure, so it is unit-tested. The server validates everything again
 * with the rule papermill injection uses (its 422 names the parameter); the checks here are
 * hints shown as the user types, never a reason not to ask the server.
 */
import type { BatchRequest, DeclaredParam, MisfirePolicy, ScheduleRequest } from './types';

export type FieldControl = 'number' | 'checkbox' | 'select' | 'text';

export interface ParamField {
  name: string;
  /** The declared type: int, float, bool, str (null: any value, edited as JSON text). */
  type: DeclaredParam['type'];
  control: FieldControl;
  min: number | null;
  max: number | null;
  /** `step` of a number input: whole numbers for int, any for float. */
  step: string | undefined;
  /** A select's choices, in the declared order (a field value is the index as text). */
  choices: unknown[];
  default: unknown;
  /** The form value the field starts with: text, a checkbox state, or a choice index. */
  initial: FieldValue;
  /** The declared help, then the bounds in words ("1 to 10"). */
  help: string;
}

export type FieldValue = string | boolean;

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** A choice or default as the user reads it: strings plain, the rest as JSON. */
export function display(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
}

function bounds(min: number | null, max: number | null): string {
  if (min !== null && max !== null) {
    return `${min} to ${max}`;
  }
  if (min !== null) {
    return `at least ${min}`;
  }
  return max !== null ? `at most ${max}` : '';
}

const numeric = (value: unknown): number | null =>
  typeof value === 'number' && Number.isFinite(value) ? value : null;

/**
 * The form's fields for a notebook's declared parameters.
 *
 * ```ts
 * paramFields([{ name: 'epochs', type: 'int', default: 3, min: 1, max: 10 }])
 * // [{ name: 'epochs', control: 'number', step: '1', initial: '3', help: '1 to 10', … }]
 * ```
 */
export function paramFields(params: readonly DeclaredParam[]): ParamField[] {
  return params.map(param => {
    const min = numeric(param.min);
    const max = numeric(param.max);
    const choices = Array.isArray(param.choices) ? param.choices : [];
    const help = [param.help ?? '', bounds(min, max)].filter(Boolean).join(' · ');
    const base = { name: param.name, type: param.type, min, max, choices, default: param.default, help };
    if (choices.length) {
      const index = choices.findIndex(choice => same(choice, param.default));
      return { ...base, control: 'select', step: undefined, initial: String(Math.max(index, 0)) };
    }
    if (param.type === 'bool') {
      return { ...base, control: 'checkbox', step: undefined, initial: param.default === true };
    }
    if (param.type === 'int' || param.type === 'float') {
      const initial = numeric(param.default) === null ? '' : String(param.default);
      return { ...base, control: 'number', step: param.type === 'int' ? '1' : 'any', initial };
    }
    const initial = param.default === null || param.default === undefined ? '' : display(param.default);
    return { ...base, control: 'text', step: undefined, initial };
  });
}

export interface FieldReading {
  /** What is sent; absent when the field is empty (the notebook's default applies). */
  value?: unknown;
  /** A hint for the user: what the server will most likely reject. */
  problem?: string;
}

/** The value a field holds, as the server expects it, and what looks wrong with it. */
export function readField(field: ParamField, raw: FieldValue): FieldReading {
  if (field.control === 'checkbox') {
    return { value: raw === true };
  }
  if (field.control === 'select') {
    const index = Number(raw);
    return Number.isInteger(index) && index >= 0 && index < field.choices.length
      ? { value: field.choices[index] }
      : { problem: `choose one of ${field.choices.map(display).join(', ')}` };
  }
  const text = String(raw);
  if (field.control === 'number') {
    if (text.trim() === '') {
      return {};
    }
    const value = Number(text);
    if (!Number.isFinite(value)) {
      // Sent as typed: the server's message says what it wanted.
      return { value: text, problem: `${field.name} must be a number` };
    }
    if (field.type === 'int' && !Number.isInteger(value)) {
      return { value, problem: `${field.name} must be a whole number` };
    }
    if (field.min !== null && value < field.min) {
      return { value, problem: `${field.name} = ${value} is below its minimum ${field.min}` };
    }
    if (field.max !== null && value > field.max) {
      return { value, problem: `${field.name} = ${value} is above its maximum ${field.max}` };
    }
    return { value };
  }
  if (field.type === 'str') {
    return { value: text };
  }
  if (text.trim() === '') {
    return {};
  }
  try {
    return { value: JSON.parse(text) };
  } catch {
    return { value: text };
  }
}

/**
 * The parameters to send: only values that differ from the declared default, so a
 * schedule keeps following the notebook's defaults for the ones left alone.
 */
export function changedParams(fields: readonly ParamField[], values: Readonly<Record<string, FieldValue>>): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  for (const field of fields) {
    const reading = readField(field, values[field.name] ?? field.initial);
    if ('value' in reading && !same(reading.value, field.default)) {
      params[field.name] = reading.value;
    }
  }
  return params;
}

export type LaunchMode = 'now' | 'schedule';

/** The rest of the form: how and where to run. */
export interface LaunchOptions {
  mode: LaunchMode;
  name: string;
  parallel: string;
  cluster: string;
  cron: string;
  timezone: string;
  misfire: MisfirePolicy;
}

export const DEFAULT_OPTIONS: LaunchOptions = {
  mode: 'now',
  name: '',
  parallel: '1',
  cluster: '',
  cron: '',
  timezone: 'UTC',
  misfire: 'once'
};

export const CRON_HINT =
  'minute hour day-of-month month day-of-week, e.g. "0 3 * * *" (03:00 daily) or "*/15 * * * 1-5"; ' +
  'with six fields the first counts seconds ("*/30 * * * * *": every 30 s)';

export const MISFIRE_HELP: Record<MisfirePolicy, string> = {
  skip: 'skip: firings missed while no server ran are dropped',
  once: 'run once: after missed firings, run once, then keep to the schedule',
  catchup: 'catch up: run once per missed firing, oldest first (at most 100)'
};

export type LaunchRequest = { mode: 'now'; body: BatchRequest } | { mode: 'schedule'; body: ScheduleRequest };

/** The POST batches or POST schedules body for the form's state (empty fields are left out). */
export function launchRequest(
  notebook: string,
  fields: readonly ParamField[],
  values: Readonly<Record<string, FieldValue>>,
  options: LaunchOptions
): LaunchRequest {
  const body: BatchRequest = { notebook };
  const params = changedParams(fields, values);
  if (Object.keys(params).length) {
    body.params = params;
  }
  if (options.name.trim()) {
    body.name = options.name.trim();
  }
  const parallel = options.parallel.trim();
  if (parallel && Number.isFinite(Number(parallel))) {
    body.parallel = Number(parallel); // 2.5 or 0 too: the server says what it allows
  }
  if (options.cluster.trim()) {
    body.cluster = options.cluster.trim();
  }
  if (options.mode === 'now') {
    return { mode: 'now', body };
  }
  return {
    mode: 'schedule',
    body: { ...body, cron: options.cron.trim(), timezone: options.timezone.trim() || 'UTC', misfire: options.misfire }
  };
}
