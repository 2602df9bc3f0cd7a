import { describe, expect, it } from 'vitest';
import { ServerConnection } from '@jupyterlab/services';

import { FlowApiError, FlowClient, MISSING_EXTENSION_MESSAGE, queryString } from '../src/api';

interface Call {
  url: string;
  method: string;
  headers: Headers;
  body: string | null;
}

/** A FlowClient whose fetch answers from `respond` and records each request. */
function client(respond: (call: Call) => Response | Promise<Response>): { flow: FlowClient; calls: Call[] } {
  const calls: Call[] = [];
  const fetchImpl = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = new Request(input as RequestInfo, init);
    const call = {
      // ServerConnection appends a cache-busting timestamp; the route is what matters here.
      url: request.url.replace(/[?&]\d{10,}$/, ''),
      method: request.method,
      headers: request.headers,
      body: request.method === 'GET' ? null : await request.text()
    };
    calls.push(call);
    return respond(call);
  };
  const settings = ServerConnection.makeSettings({
    baseUrl: 'http://127.0.0.1:8888/user/ana/',
    wsUrl: 'ws://127.0.0.1:8888/user/ana/',
    token: 'secret-token',
    appendToken: false,
    fetch: fetchImpl as typeof fetch,
    Request,
    Headers
  });
  return { flow: new FlowClient(settings), calls };
}

const json = (body: unknown, status = 200): Response =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });

describe('FlowClient', () => {
  it('lists runs under {base_url}jupyter-flow/api/ with filters and the token', async () => {
    const { flow, calls } = client(() => json({ runs: [], next_before: null, cursor: 7 }));
    const page = await flow.runs({ status: ['RUNNING', 'FAILED'], kind: ['cell'], name: 'train me', limit: 20 });
    expect(page.cursor).toBe(7);
    expect(calls[0].method).toBe('GET');
    expect(calls[0].url).toBe(
      'http://127.0.0.1:8888/user/ana/jupyter-flow/api/runs?status=RUNNING%2CFAILED&kind=cell&name=train%20me&limit=20'
    );
    expect(calls[0].headers.get('Authorization')).toBe('token secret-token');
  });

  it('polls the change feed with the cursor it was given', async () => {
    const { flow, calls } = client(() => json({ runs: [], cursor: 12 }));
    expect((await flow.changes(11)).cursor).toBe(12);
    expect(calls[0].url).toMatch(/\/jupyter-flow\/api\/runs\?changed_since=11&limit=500$/);
  });

  it('asks for only the tasks changed since a seq, and encodes ids', async () => {
    const { flow, calls } = client(() => json({ run_id: 'r/1', tasks: [] }));
    await flow.tasks('r/1', 3);
    await flow.tasks('r2');
    expect(calls[0].url).toMatch(/\/runs\/r%2F1\/tasks\?changed_since=3$/);
    expect(calls[1].url).toMatch(/\/runs\/r2\/tasks$/);
  });

  it('cancels with a POST', async () => {
    const { flow, calls } = client(() => json({ id: 'r1', status: 'RUNNING', cancel_requested_at: 'now' }, 202));
    const run = await flow.cancel('r1');
    expect(run.cancel_requested_at).toBe('now');
    expect(calls[0].method).toBe('POST');
    expect(calls[0].url).toMatch(/\/jupyter-flow\/api\/runs\/r1\/cancel$/);
  });

  it('reruns a notebook run as a batch with its notebook and params', async () => {
    const { flow, calls } = client(() => json({ id: 'b1', kind: 'batch', status: 'RUNNING' }, 202));
    const batch = await flow.rerunAsBatch({ id: 'n1', notebook: '/work/train.ipynb', params: { lr: 0.1 } } as never);
    expect(batch.id).toBe('b1');
    expect(calls[0].method).toBe('POST');
    expect(calls[0].url).toMatch(/\/jupyter-flow\/api\/batches$/);
    expect(JSON.parse(calls[0].body as string)).toEqual({ notebook: '/work/train.ipynb', params: { lr: 0.1 } });
  });

  it('reads a notebook\'s declared parameters', async () => {
    const { flow, calls } = client(() => json({ notebook: '/w/a b.ipynb', params: [{ name: 'n', type: 'int', default: 1 }] }));
    const answer = await flow.notebookParams('dir/a b.ipynb');
    expect(answer.params[0].name).toBe('n');
    expect(calls[0].url).toMatch(/\/jupyter-flow\/api\/notebooks\/params\?path=dir%2Fa%20b\.ipynb$/);
  });

  it('lists, creates, pauses, resumes and deletes schedules', async () => {
    const { flow, calls } = client(call =>
      call.method === 'DELETE'
        ? new Response(null, { status: 204 })
        : json({ id: 's/1', name: 'nightly', paused: call.body?.includes('true') ?? false }, call.method === 'POST' ? 201 : 200)
    );
    await flow.schedules();
    const made = await flow.createSchedule({ notebook: 'a.ipynb', cron: '0 3 * * *', params: { n: 2 }, misfire: 'skip' });
    expect(made.name).toBe('nightly');
    expect((await flow.setSchedulePaused('s/1', true)).paused).toBe(true);
    await flow.setSchedulePaused('s/1', false);
    expect(await flow.deleteSchedule('s/1')).toBeNull();
    expect(calls.map(c => `${c.method} ${c.url.replace(/^.*\/jupyter-flow\/api\//, '')}`)).toEqual([
      'GET schedules',
      'POST schedules',
      'PATCH schedules/s%2F1',
      'PATCH schedules/s%2F1',
      'DELETE schedules/s%2F1'
    ]);
    expect(JSON.parse(calls[1].body as string)).toEqual({ notebook: 'a.ipynb', cron: '0 3 * * *', params: { n: 2 }, misfire: 'skip' });
    expect(JSON.parse(calls[2].body as string)).toEqual({ paused: true });
    expect(JSON.parse(calls[3].body as string)).toEqual({ paused: false });
  });

  it('passes on the server\'s 422 message for a launch', async () => {
    const { flow } = client(() => json({ message: "parameter 'epochs' = 99 is above its maximum 10", reason: 'x' }, 422));
    const error = await flow.startBatch({ notebook: 'a.ipynb', params: { epochs: 99 } }).catch(e => e as FlowApiError);
    expect(error).toBeInstanceOf(FlowApiError);
    expect(error.kind).toBe('invalid');
    expect(error.message).toBe("parameter 'epochs' = 99 is above its maximum 10");
  });

  it('builds the artifact download link and previews with a size bound', async () => {
    const { flow, calls } = client(() => json({ hash: 'ab', kind: 'json', data: 1, producers: [] }));
    await flow.artifact('ab'.repeat(32), 4096);
    expect(calls[0].url).toMatch(new RegExp(`/artifacts/${'ab'.repeat(32)}\\?max_bytes=4096$`));
    expect(flow.artifactDownloadUrl('cd')).toBe('http://127.0.0.1:8888/user/ana/jupyter-flow/api/artifacts/cd?download=1');
  });
});

describe('requestAPI errors', () => {
  const failing = async (response: Response | Error): Promise<FlowApiError> => {
    const { flow } = client(() => {
      if (response instanceof Error) {
        throw response;
      }
      return response;
    });
    try {
      await flow.health();
    } catch (error) {
      return error as FlowApiError;
    }
    throw new Error('expected a failure');
  };

  it('says the server extension is missing when Jupyter answers 404 with its own page', async () => {
    const error = await failing(new Response('<html>404 Not Found</html>', { status: 404 }));
    expect(error.kind).toBe('missing');
    expect(error.message).toBe(MISSING_EXTENSION_MESSAGE);
  });

  it("passes on the API's own 404 message", async () => {
    const error = await failing(json({ message: "no run 'x' in the store", reason: 'Not Found' }, 404));
    expect(error.kind).toBe('not-found');
    expect(error.message).toBe("no run 'x' in the store");
  });

  it('says the server refused on 403', async () => {
    const error = await failing(json({ message: 'Forbidden', reason: 'Forbidden' }, 403));
    expect(error.kind).toBe('refused');
    expect(error.message).toMatch(/refused \(403\): Forbidden/);
  });

  it('reports a server that cannot be reached', async () => {
    const error = await failing(new TypeError('Failed to fetch'));
    expect(error.kind).toBe('network');
    expect(error.message).toMatch(/Cannot reach the Jupyter server/);
  });

  it('says the store cannot be opened, naming it, when the extension answers 503 with a store', async () => {
    const message =
      'jupyter_flow cannot open its store /home/ana/flow/flow.db: the file is not a readable SQLite database ' +
      '(file is not a database); it is probably corrupt. Move it aside (mv ...)';
    const error = await failing(
      json({ message, reason: 'Service Unavailable', store: '/home/ana/flow/flow.db' }, 503)
    );
    expect(error.kind).toBe('store');
    expect(error.status).toBe(503);
    expect(error.store).toBe('/home/ana/flow/flow.db');
    expect(error.message).toBe(message);
  });

  it('treats a 503 without a store (a proxy, say) as a server error', async () => {
    const error = await failing(new Response('<html>Service Unavailable</html>', { status: 503 }));
    expect(error.kind).toBe('server');
    expect(error.store).toBeNull();
  });

  it('keeps 409 and 500 messages', async () => {
    expect((await failing(json({ message: 'run r1 already finished', reason: 'Conflict' }, 409))).message).toBe(
      'run r1 already finished'
    );
    expect((await failing(json({ message: 'internal server error', reason: 'x' }, 500))).kind).toBe('server');
  });
});

describe('queryString', () => {
  it('drops empty values and joins lists', () => {
    expect(queryString({ a: undefined, b: null, c: '', d: [], e: ['x', 'y'], f: 0 })).toBe('?e=x%2Cy&f=0');
    expect(queryString({})).toBe('');
  });
});
