/**
 * "Launch with parameters…": a form generated from a notebook's declared parameters that
 * starts a batch now or makes a schedule. The server validates (its 422 message is shown
 * here); one request at a time, so a double click never launches twice.
 */
import React, { useCallback, useEffect, useMemo, useRef, useState } from 'react';

import { FlowApiError } from '../api';
import { useFlow } from '../context';
import {
  CRON_HINT,
  DEFAULT_OPTIONS,
  display,
  launchRequest,
  MISFIRE_HELP,
  paramFields,
  readField,
  type FieldValue,
  type LaunchMode,
  type LaunchOptions,
  type ParamField
} from '../launch';
import { baseName } from '../runs';
import { MISFIRE_POLICIES, type MisfirePolicy } from '../types';

interface Loaded {
  fields: ParamField[];
  /** The notebook's path as the server resolved it. */
  notebook: string;
}

export function LaunchForm(props: { path: string; mode: LaunchMode }): JSX.Element {
  const flow = useFlow();
  const [loaded, setLoaded] = useState<Loaded | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [values, setValues] = useState<Record<string, FieldValue>>({});
  const [options, setOptions] = useState<LaunchOptions>({ ...DEFAULT_OPTIONS, mode: props.mode });
  const [submitting, setSubmitting] = useState(false);
  const inFlight = useRef(false); // state updates are async: two quick clicks must not both submit
  const [serverError, setServerError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const [clusterNames, setClusterNames] = useState<string[]>([]);

  const load = useCallback(async () => {
    setLoadError(null);
    try {
      const answer = await flow.client.notebookParams(props.path);
      const fields = paramFields(answer.params);
      setLoaded({ fields, notebook: answer.notebook });
      setValues(Object.fromEntries(fields.map(field => [field.name, field.initial])));
    } catch (error) {
      setLoadError(error instanceof Error ? error.message : String(error));
    }
  }, [flow, props.path]);

  useEffect(() => {
    void load();
    // Cluster profiles and running clusters as suggestions; the field takes any name.
    flow.client.clusters().then(
      answer => setClusterNames([...new Set([...Object.keys(answer.profiles ?? {}), ...answer.clusters.map(c => c.profile ?? c.address ?? "").filter(Boolean)])]),
      () => setClusterNames([])
    );
  }, [flow, load]);

  useEffect(() => setOptions(prev => ({ ...prev, mode: props.mode })), [props.mode]);

  const hints = useMemo(() => {
    const found: Record<string, string> = {};
    for (const field of loaded?.fields ?? []) {
      const problem = readField(field, values[field.name] ?? field.initial).problem;
      if (problem) {
        found[field.name] = problem;
      }
    }
    return found;
  }, [loaded, values]);

  const submit = async (event: React.FormEvent): Promise<void> => {
    event.preventDefault();
    if (!loaded || inFlight.current) {
      return;
    }
    inFlight.current = true;
    setSubmitting(true);
    setServerError(null);
    setDone(null);
    try {
      // The path as typed in the lab (relative to the server root), which the server resolves.
      const request = launchRequest(props.path, loaded.fields, values, options);
      if (request.mode === 'now') {
        const run = await flow.client.startBatch(request.body);
        setDone(`Started batch ${run.name ?? run.id} (${run.id}).`);
        flow.started?.(run);
        flow.openRun?.(run.id, run.name ?? run.id);
      } else {
        const schedule = await flow.client.createSchedule(request.body);
        setDone(`Scheduled ${schedule.name} (${schedule.cron}).`);
        flow.scheduled?.(schedule);
      }
    } catch (error) {
      setServerError(error instanceof FlowApiError || error instanceof Error ? error.message : String(error));
    } finally {
      inFlight.current = false;
      setSubmitting(false);
    }
  };

  const option = <K extends keyof LaunchOptions>(name: K, value: LaunchOptions[K]): void => {
    setOptions(prev => ({ ...prev, [name]: value }));
    setServerError(null);
  };

  const title = baseName(props.path);
  if (loadError) {
    return (
      <div className="jp-flow-launch">
        <h2>Launch {title}</h2>
        <div className="jp-flow-error" role="alert">
          Cannot read the parameters of {props.path}: {loadError}
        </div>
        <button type="button" className="jp-flow-button" onClick={() => void load()}>
          Try again
        </button>
      </div>
    );
  }
  if (!loaded) {
    return (
      <div className="jp-flow-launch">
        <h2>Launch {title}</h2>
        <p className="jp-flow-muted">Reading the notebook's parameters…</p>
      </div>
    );
  }

  const schedule = options.mode === 'schedule';
  return (
    <form className="jp-flow-launch" noValidate onSubmit={event => void submit(event)} aria-label={`launch ${title}`}>
      <h2>Launch {title}</h2>
      <p className="jp-flow-muted jp-flow-mono" title="the notebook">
        {loaded.notebook}
      </p>
      <fieldset className="jp-flow-launch-params">
        <legend>Parameters</legend>
        {loaded.fields.length ? (
          loaded.fields.map(field => (
            <ParamInput
              key={field.name}
              field={field}
              value={values[field.name] ?? field.initial}
              hint={hints[field.name] ?? null}
              onChange={value => {
                setValues(prev => ({ ...prev, [field.name]: value }));
                setServerError(null);
              }}
            />
          ))
        ) : (
          <p className="jp-flow-muted">
            This notebook declares no parameters (<code>jf.param(...)</code> or a cell tagged <code>parameters</code>);
            it runs with its own values.
          </p>
        )}
        {loaded.fields.length ? (
          <p className="jp-flow-muted jp-flow-field-help">Values left at their default are not sent: the notebook's default applies.</p>
        ) : null}
      </fieldset>
      <fieldset className="jp-flow-launch-run">
        <legend>Run</legend>
        <div className="jp-flow-mode" role="radiogroup" aria-label="when to run">
          {(['now', 'schedule'] as LaunchMode[]).map(mode => (
            <label key={mode}>
              <input type="radio" name="mode" value={mode} checked={options.mode === mode} onChange={() => option('mode', mode)} />
              {mode === 'now' ? 'Run now' : 'Schedule'}
            </label>
          ))}
        </div>
        <label className="jp-flow-field">
          <span className="jp-flow-field-label">{schedule ? 'Schedule name' : 'Run name'}</span>
          <input
            type="text"
            className="jp-flow-input"
            name="name"
            value={options.name}
            placeholder={baseName(props.path).replace(/\.ipynb$/, '')}
            onChange={event => option('name', event.target.value)}
          />
        </label>
        <label className="jp-flow-field">
          <span className="jp-flow-field-label">Parallel</span>
          <input
            type="number"
            className="jp-flow-input"
            name="parallel"
            min={1}
            step={1}
            value={options.parallel}
            onChange={event => option('parallel', event.target.value)}
          />
          <span className="jp-flow-field-help">notebook executions at a time</span>
        </label>
        <label className="jp-flow-field">
          <span className="jp-flow-field-label">Cluster</span>
          <input
            type="text"
            className="jp-flow-input"
            name="cluster"
            list="jp-flow-cluster-names"
            value={options.cluster}
            placeholder="default"
            onChange={event => option('cluster', event.target.value)}
          />
          <datalist id="jp-flow-cluster-names">
            {clusterNames.map(name => (
              <option key={name} value={name} />
            ))}
          </datalist>
          <span className="jp-flow-field-help">a cluster profile or a running cluster; empty: the default</span>
        </label>
        {schedule ? (
          <>
            <label className="jp-flow-field">
              <span className="jp-flow-field-label">Cron</span>
              <input
                type="text"
                className="jp-flow-input jp-flow-mono"
                name="cron"
                value={options.cron}
                placeholder="0 3 * * *"
                onChange={event => option('cron', event.target.value)}
              />
              <span className="jp-flow-field-help">{CRON_HINT}</span>
            </label>
            <label className="jp-flow-field">
              <span className="jp-flow-field-label">Time zone</span>
              <input
                type="text"
                className="jp-flow-input"
                name="timezone"
                value={options.timezone}
                onChange={event => option('timezone', event.target.value)}
              />
              <span className="jp-flow-field-help">an IANA name such as Europe/Paris; the cron runs in it</span>
            </label>
            <label className="jp-flow-field">
              <span className="jp-flow-field-label">Missed firings</span>
              <select
                className="jp-flow-select"
                name="misfire"
                value={options.misfire}
                onChange={event => option('misfire', event.target.value as MisfirePolicy)}
              >
                {MISFIRE_POLICIES.map(policy => (
                  <option key={policy} value={policy}>
                    {MISFIRE_HELP[policy]}
                  </option>
                ))}
              </select>
            </label>
          </>
        ) : null}
      </fieldset>
      {serverError ? (
        <div className="jp-flow-error jp-flow-launch-error" role="alert">
          {serverError}
        </div>
      ) : null}
      {done ? (
        <p className="jp-flow-launch-done" role="status">
          {done}
        </p>
      ) : null}
      <div className="jp-flow-launch-actions">
        <button type="submit" className="jp-flow-button jp-mod-accept" disabled={submitting}>
          {submitting ? (schedule ? 'Scheduling…' : 'Starting…') : schedule ? 'Create schedule' : 'Run now'}
        </button>
      </div>
    </form>
  );
}

function ParamInput(props: {
  field: ParamField;
  value: FieldValue;
  hint: string | null;
  onChange: (value: FieldValue) => void;
}): JSX.Element {
  const { field, value, hint } = props;
  const id = `jp-flow-param-${field.name}`;
  let input: JSX.Element;
  if (field.control === 'checkbox') {
    input = (
      <input id={id} type="checkbox" name={field.name} checked={value === true} onChange={event => props.onChange(event.target.checked)} />
    );
  } else if (field.control === 'select') {
    input = (
      <select id={id} className="jp-flow-select" name={field.name} value={String(value)} onChange={event => props.onChange(event.target.value)}>
        {field.choices.map((choice, index) => (
          <option key={index} value={String(index)}>
            {display(choice)}
          </option>
        ))}
      </select>
    );
  } else {
    input = (
      <input
        id={id}
        className="jp-flow-input"
        type={field.control === 'number' ? 'number' : 'text'}
        name={field.name}
        min={field.min ?? undefined}
        max={field.max ?? undefined}
        step={field.step}
        value={String(value)}
        aria-invalid={hint ? true : undefined}
        onChange={event => props.onChange(event.target.value)}
      />
    );
  }
  return (
    <div className="jp-flow-field jp-flow-param" data-param={field.name} data-type={field.type}>
      <label className="jp-flow-field-label" htmlFor={id}>
        {field.name} <span className="jp-flow-muted">{field.type}</span>
      </label>
      {input}
      {field.help ? <span className="jp-flow-field-help">{field.help}</span> : null}
      {hint ? (
        <span className="jp-flow-field-hint" role="note">
          {hint}
        </span>
      ) : null}
    </div>
  );
}
