import { useEffect, useRef, useState } from 'react';
import type { ISignal } from '@lumino/signaling';

import type { FeedState, RunFeed } from './feed';
import { TERMINAL_RUN } from './types';

/**
 * Calls `tick` now and then every `intervalMs` after the previous call settles, while
 * `active`; stops when it turns false or the component unmounts (no overlapping calls).
 */
export function usePoll(tick: () => Promise<void>, intervalMs: number, active: boolean): void {
  const latest = useRef(tick);
  latest.current = tick;
  useEffect(() => {
    if (!active) {
      return;
    }
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async (): Promise<void> => {
      try {
        await latest.current();
      } finally {
        if (!stopped) {
          timer = setTimeout(run, intervalMs);
        }
      }
    };
    void run();
    return () => {
      stopped = true;
      if (timer !== undefined) {
        clearTimeout(timer);
      }
    };
  }, [active, intervalMs]);
}

/** Something that says whether it is on screen (see `FlowWidget`). */
export interface VisibilitySource {
  readonly isVisible: boolean;
  readonly visibilityChanged: ISignal<unknown, boolean>;
}

/** Whether the widget is shown and the browser tab is visible; re-renders on change. */
export function useVisible(source: VisibilitySource | null): boolean {
  const [shown, setShown] = useState(source ? source.isVisible : true);
  const [pageVisible, setPageVisible] = useState(
    typeof document === 'undefined' ? true : document.visibilityState !== 'hidden'
  );
  useEffect(() => {
    if (!source) {
      return;
    }
    const changed = (_: unknown, visible: boolean): void => setShown(visible);
    source.visibilityChanged.connect(changed);
    setShown(source.isVisible);
    return () => {
      source.visibilityChanged.disconnect(changed);
    };
  }, [source]);
  useEffect(() => {
    const changed = (): void => setPageVisible(document.visibilityState !== 'hidden');
    document.addEventListener('visibilitychange', changed);
    return () => document.removeEventListener('visibilitychange', changed);
  }, []);
  return shown && pageVisible;
}

/**
 * The runs feed's state, re-rendering when it changes (and after each poll while some run
 * is still going, so running durations tick); while `demandMs` is set the feed polls at
 * least that often for `consumer`. With `demandMs` null (hidden) it does not re-render.
 */
export function useFeed(feed: RunFeed, consumer: string, demandMs: number | null): FeedState {
  const [state, setState] = useState<FeedState>(feed.state);
  const [, setTicks] = useState(0);
  const listening = demandMs !== null;
  useEffect(() => {
    if (!listening) {
      return; // hidden: no re-renders; the state is caught up when shown again
    }
    const polled = (_: RunFeed, next: FeedState): void => {
      setState(next);
      if (next.runs.some(run => !TERMINAL_RUN.has(run.status))) {
        setTicks(n => n + 1);
      }
    };
    feed.polled.connect(polled);
    setState(feed.state);
    return () => {
      feed.polled.disconnect(polled);
    };
  }, [feed, listening]);
  useEffect(() => {
    feed.demand(consumer, demandMs);
    return () => feed.demand(consumer, null);
  }, [feed, consumer, demandMs]);
  return state;
}
