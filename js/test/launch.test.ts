import { describe, expect, it } from 'vitest';

import { DEFAULT_OPTIONS, launchRequest, paramFields, readField } from '../src/launch';
import type { DeclaredParam } from '../src/types';

const DECLARED: DeclaredParam[] = [
  { name: 'epochs', type: 'int', default: 3, min: 1, max: 10, choices: null, help: 'passes over the data' },
  { name: 'lr', type: 'float', default: 0.1, min: 0, max: null, choices: null, help: null },
  { name: 'model', type: 'str', default: 'small', min: null, max: null, choices: ['small', 'large'], help: null },
  { name: 'shuffle', type: 'bool', default: true, min: null, max: null, choices: null, help: null },
  { name: 'tag', type: 'str', default: 'nightly', min: null, max: null, choices: null, help: null }
];

describe('paramFields', () => {
  it('makes one field per declared parameter with its control, bounds and default', () => {
    const fields = paramFields(DECLARED);
    expect(fields.map(f => [f.name, f.control])).toEqual([
      ['epochs', 'number'],
      ['lr', 'number'],
      ['model', 'select'],
      ['shuffle', 'checkbox'],
      ['tag', 'text']
    ]);
    const [epochs, lr, model, shuffle, tag] = fields;
    expect(epochs).toMatchObject({ min: 1, max: 10, step: '1', initial: '3', help: 'passes over the data · 1 to 10' });
    expect(lr).toMatchObject({ min: 0, max: null, step: 'any', initial: '0.1', help: 'at least 0' });
    expect(model).toMatchObject({ choices: ['small', 'large'], initial: '0' });
    expect(shuffle.initial).toBe(true);
    expect(tag.initial).toBe('nightly');
  });

  it('selects the default among numeric choices and edits unknown types as JSON text', () => {
    const [batch, layers] = paramFields([
      { name: 'batch', type: 'int', default: 64, choices: [32, 64, 128] },
      { name: 'layers', type: 'list', default: [1, 2] }
    ]);
    expect(batch).toMatchObject({ control: 'select', initial: '1' });
    expect(readField(batch, '2')).toEqual({ value: 128 });
    expect(layers).toMatchObject({ control: 'text', initial: '[1,2]' });
    expect(readField(layers, '[3]')).toEqual({ value: [3] });
  });
});

describe('readField', () => {
  const [epochs, lr, model, shuffle, tag] = paramFields(DECLARED);

  it('reads typed values', () => {
    expect(readField(epochs, '7')).toEqual({ value: 7 });
    expect(readField(lr, '0.25')).toEqual({ value: 0.25 });
    expect(readField(model, '1')).toEqual({ value: 'large' });
    expect(readField(shuffle, false)).toEqual({ value: false });
    expect(readField(tag, '42')).toEqual({ value: '42' }); // a str stays a str
  });

  it('hints at what the server will refuse, but still sends it (the server decides)', () => {
    expect(readField(epochs, '11')).toEqual({ value: 11, problem: 'epochs = 11 is above its maximum 10' });
    expect(readField(epochs, '0')).toEqual({ value: 0, problem: 'epochs = 0 is below its minimum 1' });
    expect(readField(epochs, '2.5')).toEqual({ value: 2.5, problem: 'epochs must be a whole number' });
    expect(readField(lr, '-1').problem).toBe('lr = -1 is below its minimum 0');
    expect(readField(model, '9').problem).toBe('choose one of small, large');
  });

  it('leaves an emptied number out (the notebook default applies)', () => {
    expect(readField(epochs, '  ')).toEqual({});
  });
});

describe('launchRequest', () => {
  const fields = paramFields(DECLARED);
  const values = { epochs: '5', lr: '0.1', model: '1', shuffle: true, tag: 'nightly' };

  it('starts a batch with only the changed parameters', () => {
    const request = launchRequest('work/train.ipynb', fields, values, { ...DEFAULT_OPTIONS, name: ' sweep ', parallel: '2' });
    expect(request).toEqual({
      mode: 'now',
      body: { notebook: 'work/train.ipynb', params: { epochs: 5, model: 'large' }, name: 'sweep', parallel: 2 }
    });
  });

  it('makes a schedule with cron, time zone and misfire policy', () => {
    const request = launchRequest('train.ipynb', fields, {}, {
      ...DEFAULT_OPTIONS,
      mode: 'schedule',
      cron: ' */3 * * * * * ',
      timezone: '',
      misfire: 'catchup',
      cluster: 'gpu'
    });
    expect(request).toEqual({
      mode: 'schedule',
      body: { notebook: 'train.ipynb', parallel: 1, cluster: 'gpu', cron: '*/3 * * * * *', timezone: 'UTC', misfire: 'catchup' }
    });
  });
});
