/**
 * The runs feed of this page: the newest page of runs, then the change feed, polled once
 * for everyone who wants it. The sidebar list and the run-ended notifications read the same
 * copy; each says how often it needs news (`demand`), the feed polls at the shortest interval
 * asked for, and stops when nobody asks.
 */
import { Signal, type ISignal } from '@lumino/signaling';

import { FlowApiError, type FlowClient } from './api';
import { mergeRuns, retryDelay } from './runs';
import type { Run } from './types';

export interface FeedState {
  runs: Run[];
  /** The change-feed cursor; null until the first page has loaded. */
  cursor: number | null;
  nextBefore: string | null;
  failure: Error | null;
  /** Failed polls in a row (0 once the API answers); the pause before the next grows with it. */
  failures: number;
  /** True until the first answer (or failure). */
  loading: boolean;
}

/** What changed in one poll: `initial` for a first page (a start or a restart). */
export interface FeedUpdate {
  runs: Run[];
  initial: boolean;
}

export const PAGE_SIZE = 100;

const EMPTY: FeedState = { runs: [], cursor: null, nextBefore: null, failure: null, failures: 0, loading: true };

type FeedClient = Pick<FlowClient, 'runs' | 'changes'>;

export class RunFeed {
  private _state: FeedState = EMPTY;
  private readonly _polled = new Signal<this, FeedState>(this);
  private readonly _updated = new Signal<this, FeedUpdate>(this);
  private readonly demands = new Map<string, number>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private inFlight: Promise<void> | null = null;
  private again = false;
  private disposed = false;

  constructor(
    private readonly client: FeedClient,
    private readonly pageSize: number = PAGE_SIZE
  ) {}

  get state(): FeedState {
    return this._state;
  }

  /** After every poll (answered or failed), with the state then. */
  get polled(): ISignal<this, FeedState> {
    return this._polled;
  }

  /** Runs that arrived: a first page, or newer copies from the change feed. */
  get updated(): ISignal<this, FeedUpdate> {
    return this._updated;
  }

  /**
   * `consumer` wants news every `intervalMs` (null: no longer). A shorter interval than
   * before polls right away, so a panel that opens shows fresh runs.
   */
  demand(consumer: string, intervalMs: number | null): void {
    const before = this.interval();
    if (intervalMs === null) {
      this.demands.delete(consumer);
    } else {
      this.demands.set(consumer, intervalMs);
    }
    const after = this.interval();
    if (after === null) {
      this.cancelTimer();
    } else if (before === null || after < before) {
      this.pollSoon();
    }
  }

  /** Poll now (after an action, say), then keep to the schedule. */
  pollSoon(): void {
    if (this.disposed) {
      return;
    }
    this.cancelTimer();
    if (this.inFlight) {
      this.again = true;
    } else {
      void this.tick();
    }
  }

  /** One round: the first page, or the changes since the cursor. */
  async poll(): Promise<void> {
    const state = this._state;
    try {
      if (state.cursor === null) {
        const page = await this.client.runs({ limit: this.pageSize });
        this._state = {
          runs: page.runs,
          cursor: page.cursor,
          nextBefore: page.next_before,
          failure: null,
          failures: 0,
          loading: false
        };
        this._updated.emit({ runs: page.runs, initial: true });
      } else {
        const changes = await this.client.changes(state.cursor);
        const current = this._state;
        if (changes.runs.length || changes.cursor !== current.cursor || current.failure || current.loading) {
          this._state = {
            ...current,
            runs: mergeRuns(current.runs, changes.runs),
            cursor: changes.cursor,
            failure: null,
            failures: 0,
            loading: false
          };
        }
        if (changes.runs.length) {
          this._updated.emit({ runs: changes.runs, initial: false });
        }
      }
    } catch (error) {
      const current = this._state;
      // Once the store opens again (perhaps a new, empty one) start from its first page:
      // the old cursor and runs may mean nothing there.
      const restart = error instanceof FlowApiError && error.kind === 'store';
      const failures = current.failures + 1;
      this._state = restart
        ? { ...EMPTY, failure: error as Error, failures, loading: false }
        : { ...current, failure: error as Error, failures, loading: false };
    }
    this._polled.emit(this._state);
  }

  /** The page of runs older than those loaded (the list's "Load older runs"). */
  async loadOlder(): Promise<void> {
    const before = this._state.nextBefore;
    if (!before) {
      return;
    }
    try {
      const page = await this.client.runs({ limit: this.pageSize, before });
      this._state = { ...this._state, runs: mergeRuns(this._state.runs, page.runs), nextBefore: page.next_before };
    } catch (error) {
      this._state = { ...this._state, failure: error as Error };
    }
    this._polled.emit(this._state);
  }

  /** Runs known before the feed brings them (a cancel's answer, a batch just started). */
  merge(runs: Run[]): void {
    if (this._state.cursor === null || !runs.length) {
      return;
    }
    this._state = { ...this._state, runs: mergeRuns(this._state.runs, runs) };
    this._polled.emit(this._state);
  }

  dispose(): void {
    this.disposed = true;
    this.cancelTimer();
    this.demands.clear();
    Signal.clearData(this);
  }

  /** The pause before the next poll, or null when nobody wants news. */
  interval(): number | null {
    if (!this.demands.size) {
      return null;
    }
    const wanted = Math.min(...this.demands.values());
    // After failures, wait longer each time (see `retryDelay`); an answer resets it.
    const { failure, failures } = this._state;
    return failure ? Math.max(wanted, retryDelay(failure, failures)) : wanted;
  }

  private cancelTimer(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private async tick(): Promise<void> {
    this.inFlight = this.poll();
    try {
      await this.inFlight;
    } finally {
      this.inFlight = null;
    }
    const interval = this.interval();
    if (this.disposed || interval === null) {
      return;
    }
    const delay = this.again ? 0 : interval;
    this.again = false;
    this.cancelTimer();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.tick();
    }, delay);
  }
}
