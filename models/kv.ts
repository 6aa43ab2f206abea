/**
 * Reference model of the key-value store seen by one sequential client: a Map from key to the
 * set of values a read may return. An acknowledged write makes its value the only possibility;
 * a failed write is indeterminate (it may or may not have taken effect, as in every
 * Dynamo-style store), so it adds its value to the possibilities. `null` stands for "absent".
 */
export class KvModel {
  private readonly possible = new Map<string, ReadonlySet<string | null>>()

  allowed(key: string): ReadonlySet<string | null> {
    return this.possible.get(key) ?? new Set([null])
  }

  /** An acknowledged write (value) or delete (null). */
  written(key: string, value: string | null): void {
    this.possible.set(key, new Set([value]))
  }

  /** A write or delete that failed: it may have happened. */
  indeterminate(key: string, value: string | null): void {
    this.possible.set(key, new Set([...this.allowed(key), value]))
  }
}
