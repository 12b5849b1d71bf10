// Async iterables for long-lived streams, without an async generator per layer. Every generator
// between a stream and its transport keeps a few promises per message alive while the stream
// waits; with 10,000 waiting streams those were most of what each young-generation GC copied,
// and its pauses were what Revoke waited on during a storm. These delegate to the inner iterator
// and add at most one promise per message.

/** Iterates what `start` resolves to; `start` runs at the first next(), and its failure is that next()'s. */
export function lazily<T>(start: () => Promise<AsyncIterable<T>>): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      let inner: AsyncIterator<T> | undefined;
      let opening: Promise<AsyncIterator<T>> | undefined;
      const open = () => (opening ??= start().then((it) => (inner = it[Symbol.asyncIterator]())));
      return {
        next: () => (inner ? inner.next() : open().then((it) => it.next())),
        return: async (value?: unknown): Promise<IteratorResult<T>> => {
          const it = inner ?? (opening && (await opening.catch(() => undefined)));
          await it?.return?.();
          return { done: true, value: value as T };
        },
      };
    },
  };
}

/**
 * Passes every value of `source` to `onValue` once the consumer is done with it, that is when it
 * asks for the next one (a transport that writes a message before asking for the next has then
 * written it; one never asked past is never passed), and calls `onEnd` once: with the error, or
 * undefined.
 */
export function tap<T>(source: AsyncIterable<T>, onValue: (v: T) => void, onEnd: (err: unknown) => void): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      const it = source[Symbol.asyncIterator]();
      let ended = false;
      let holding = false;
      let held: T | undefined;
      const end = (err: unknown) => {
        if (ended) return;
        ended = true;
        onEnd(err);
      };
      return {
        next: () => {
          if (holding) {
            holding = false;
            onValue(held!);
            held = undefined;
          }
          return it.next().then(
            (r) => {
              if (r.done) end(undefined);
              else {
                holding = true;
                held = r.value;
              }
              return r;
            },
            (err: unknown) => {
              end(err);
              throw err;
            },
          );
        },
        return: async (value?: unknown): Promise<IteratorResult<T>> => {
          end(undefined);
          await it.return?.();
          return { done: true, value: value as T };
        },
      };
    },
  };
}
