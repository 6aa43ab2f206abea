/**
 * Versions of one key: dotted version vector sets (Preguiça, Baquero et al., "Dotted Version
 * Vectors: Logical Clocks for Optimistic Replication", 2010; the DVVSet of riak_kv's dvvset.erl).
 *
 * An object is a set of entries, one per actor (a replica that coordinated a write to the key):
 * `{ actor, counter, values }`, where `values[j]` is the sibling written by the event
 * (actor, counter - j). Siblings are the values no other known event has superseded. The clock's
 * size is bounded by the number of replicas that ever coordinated a write to the key, never by
 * the number of clients, because only coordinating replicas mint events.
 *
 * Every function here is pure and total; objects are plain JSON-able data so that they cross the
 * wire and land on disk unchanged (impl/wire/schema.ts holds their schema).
 *
 * Deliberately not here: which actor coordinates, wall-clock time (the `ts` of a sibling is a
 * hybrid logical timestamp handed in by the caller), policy (lww pruning is `pruneLww`, applied
 * by the caller for lww namespaces).
 *
 * Owns: objects, clocks and counters as immutable values (every function returns a new one; the
 * inputs are shared, never changed). Must not: mint an event on its own (the coordinator passes
 * the actor and the timestamp), or read a clock.
 *
 * Invariants kept: VER-1 (merge is a least upper bound), VER-2 (sync keeps exactly the
 * undominated siblings), VER-3 (clock size bounded by the coordinating replicas).
 */

/** One written value, or a tombstone (`value: null`). `ts` orders plain-GET resolution and lww. */
export interface Sibling {
  readonly value: string | null
  /** Hybrid logical timestamp of the write (see impl/core/hlc.ts). */
  readonly ts: number
  /**
   * Expiry (SET … EX, EXPIRE): wall-clock milliseconds from which the value reads as a
   * tombstone, judged by the clock of the node that reads it. Absent: never expires. Part of
   * the write's event, so it replicates and merges with it and never changes afterwards.
   */
  readonly exp?: number | undefined
  /**
   * A counter (INCR and friends): a PN-counter whose entries are per coordinating replica, over
   * the string value it started from. `value` holds its total, for readers that see one sibling.
   */
  readonly counter?: Counter | undefined
}

/**
 * A PN-counter (Shapiro et al., "A comprehensive study of CRDTs", 2011) as Riak's counters keep
 * it: per actor the sum of its increments (`p`) and of its decrements (`n`), decimal strings
 * (integers of any size, or doubles once INCRBYFLOAT touched it: `float`). `base` is the
 * integer the counter started from (the string value an INCR found) and `baseTs` that write's
 * timestamp. Merge: pointwise max of p and n, the base of the later `baseTs`.
 */
export interface Counter {
  readonly base: string
  readonly baseTs: number
  readonly p: ReadonlyArray<readonly [string, string]>
  readonly n: ReadonlyArray<readonly [string, string]>
  readonly float: boolean
}

/** The sibling is a tombstone, or its expiry has passed at wall-clock time `now`. */
export const dead = (s: Sibling, now: number): boolean =>
  s.value === null || (s.exp !== undefined && s.exp <= now)

/**
 * When a dead sibling died, in wall-clock ms: its expiry, or for a tombstone the wall time of
 * its write (the grace period of a purge counts from here).
 */
export const diedAt = (s: Sibling, wallMs: (ts: number) => number): number =>
  s.value !== null && s.exp !== undefined ? s.exp : wallMs(s.ts)

export interface Entry {
  readonly actor: string
  readonly counter: number
  /** Newest first: values[j] carries the dot (actor, counter - j). */
  readonly values: ReadonlyArray<Sibling>
}

/** A key's object: entries sorted by actor, unique actors. */
export interface Obj {
  readonly entries: ReadonlyArray<Entry>
}

/** A version vector: [actor, counter] pairs sorted by actor, counters > 0. */
export type Clock = ReadonlyArray<readonly [string, number]>

export const empty: Obj = { entries: [] }
export const emptyClock: Clock = []

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

const clockGet = (clock: Clock, actor: string): number => {
  for (const [a, n] of clock) if (a === actor) return n
  return 0
}

/** The causal context of an object: the version vector of every event it has seen. */
export const context = (obj: Obj): Clock =>
  obj.entries.filter((e) => e.counter > 0).map((e) => [e.actor, e.counter] as const)

/** Least upper bound of two version vectors. */
export const mergeClocks = (a: Clock, b: Clock): Clock => {
  const out: Array<readonly [string, number]> = []
  let i = 0
  let j = 0
  while (i < a.length || j < b.length) {
    const x = a[i]
    const y = b[j]
    if (y === undefined || (x !== undefined && x[0] < y[0])) {
      out.push(x!)
      i++
    } else if (x === undefined || y[0] < x[0]) {
      out.push(y)
      j++
    } else {
      out.push([x[0], Math.max(x[1], y[1])])
      i++
      j++
    }
  }
  return out
}

/** `a` has seen every event `b` has seen. */
export const descends = (a: Clock, b: Clock): boolean =>
  b.every(([actor, n]) => clockGet(a, actor) >= n)

/** Neither descends from the other. */
export const concurrent = (a: Clock, b: Clock): boolean => !descends(a, b) && !descends(b, a)

/** Merge two entries of the same actor, keeping the values either side still holds or is newer. */
const mergeEntry = (x: Entry, y: Entry): Entry => {
  const [hi, lo] = x.counter >= y.counter ? [x, y] : [y, x]
  // A value of `hi` with dot k survives if k > lo.counter (lo never saw it) or lo still holds it
  // (k > lo.counter - lo.values.length).
  const keep = Math.min(hi.values.length, hi.counter - lo.counter + lo.values.length)
  return { actor: hi.actor, counter: hi.counter, values: hi.values.slice(0, Math.max(0, keep)) }
}

/**
 * Sync two replicas' objects of one key: the result has seen every event either has seen, and
 * holds exactly the siblings that neither side's clock has superseded. Commutative, associative,
 * idempotent.
 */
export const sync = (a: Obj, b: Obj): Obj => {
  const out: Array<Entry> = []
  let i = 0
  let j = 0
  while (i < a.entries.length || j < b.entries.length) {
    const x = a.entries[i]
    const y = b.entries[j]
    if (y === undefined || (x !== undefined && x.actor < y.actor)) {
      out.push(mergeEntry(x!, { actor: x!.actor, counter: 0, values: [] }))
      i++
    } else if (x === undefined || y.actor < x.actor) {
      out.push(mergeEntry(y, { actor: y.actor, counter: 0, values: [] }))
      j++
    } else {
      out.push(mergeEntry(x, y))
      i++
      j++
    }
  }
  return { entries: out }
}

/** Drop every value whose event the clock has seen; raise counters to the clock's. */
const discard = (obj: Obj, clock: Clock): Obj => {
  const entries: Array<Entry> = []
  for (const e of obj.entries) {
    const seen = clockGet(clock, e.actor)
    const counter = Math.max(e.counter, seen)
    const keep = Math.max(0, Math.min(e.values.length, e.counter - seen))
    entries.push({ actor: e.actor, counter, values: e.values.slice(0, keep) })
  }
  for (const [actor, n] of clock) {
    if (!entries.some((e) => e.actor === actor)) entries.push({ actor, counter: n, values: [] })
  }
  entries.sort((x, y) => cmp(x.actor, y.actor))
  return { entries }
}

/**
 * A new write coordinated by `actor`: it supersedes exactly the events in `clock` (the context
 * the client read) and nothing else, so values written concurrently stay as siblings. `local` is
 * the coordinator's stored object for the key, which supplies the actor's last counter so that
 * dots are never reused.
 *
 * `floor`: the counter the new dot must reach at least, when the actor holds no sibling of its
 * own in the object. Coordinators pass the write's hybrid timestamp, which strictly increases on
 * a node: a key that was reclaimed (removed everywhere, its clock forgotten) and written again
 * then gets dots above every dot the actor minted for it before (RECLAIM-2), with no per-key
 * memory. 0: plain DVV counting (1, 2, 3, …), as the reference model counts.
 */
export const update = (
  local: Obj,
  clock: Clock,
  sibling: Sibling,
  actor: string,
  floor = 0,
): Obj => {
  const base = discard(local, clock)
  const entries = base.entries.map((e) =>
    e.actor === actor
      ? {
          actor,
          // With no value of its own left, the entry may skip ahead: the skipped dots carry no
          // value anywhere, so counting them as seen changes nothing but makes the counter
          // follow the floor (RECLAIM-2). With values, dots must stay contiguous.
          counter: e.values.length === 0 ? Math.max(e.counter + 1, floor) : e.counter + 1,
          values: [sibling, ...e.values],
        }
      : e,
  )
  if (!entries.some((e) => e.actor === actor)) {
    entries.push({ actor, counter: Math.max(1, floor), values: [sibling] })
    entries.sort((x, y) => cmp(x.actor, y.actor))
  }
  return { entries }
}

export interface Dotted {
  readonly actor: string
  readonly counter: number
  readonly sibling: Sibling
}

/** Every sibling with its dot, in a deterministic order (actor, then newest first). */
export const siblings = (obj: Obj): ReadonlyArray<Dotted> => {
  const out: Array<Dotted> = []
  for (const e of obj.entries) {
    e.values.forEach((sibling, j) => {
      out.push({ actor: e.actor, counter: e.counter - j, sibling })
    })
  }
  return out
}

/** Later by (ts, actor, counter): the total order used for plain GET and for lww. */
export const later = (a: Dotted, b: Dotted): boolean =>
  a.sibling.ts !== b.sibling.ts
    ? a.sibling.ts > b.sibling.ts
    : a.actor !== b.actor
      ? a.actor > b.actor
      : a.counter > b.counter

/** The single sibling a plain Redis GET sees: the latest by `later`; undefined if none. */
export const resolve = (obj: Obj): Dotted | undefined => {
  let best: Dotted | undefined
  for (const d of siblings(obj)) if (best === undefined || later(d, best)) best = d
  return best
}

/** Live (non-tombstone) sibling values. */
export const values = (obj: Obj): ReadonlyArray<string> =>
  siblings(obj)
    .map((d) => d.sibling.value)
    .filter((v): v is string => v !== null)

/** Sibling values live at wall-clock time `now`: neither tombstones nor expired. */
export const valuesAt = (obj: Obj, now: number): ReadonlyArray<string> =>
  siblings(obj)
    .filter((d) => !dead(d.sibling, now))
    .map((d) => d.sibling.value as string)

/**
 * What a plain Redis GET returns at wall-clock time `now`: the resolved sibling (the latest by
 * `later`), unless it is a tombstone or has expired. An expired sibling is a tombstone from its
 * expiry on, so it hides an older concurrent sibling exactly as a concurrent DEL would.
 */
export const readAt = (obj: Obj, now: number): Dotted | undefined => {
  const best = resolve(obj)
  return best === undefined || dead(best.sibling, now) ? undefined : best
}

/** Every sibling is dead at `now` (tombstone or expired), and there is at least one. */
export const isDeletedAt = (obj: Obj, now: number): boolean => {
  const all = siblings(obj)
  return all.length > 0 && all.every((d) => dead(d.sibling, now))
}

/**
 * When the key's last live value died, if no live value remains at `now` (RECLAIM-1): the
 * latest `diedAt` of its siblings, or 0 for a clock with no sibling left (a purged tombstone).
 * Undefined while a sibling is live, and for the empty object (nothing to reclaim).
 */
export const deadSince = (
  obj: Obj,
  now: number,
  wallMs: (ts: number) => number,
): number | undefined => {
  if (obj.entries.length === 0) return undefined
  let died = 0
  for (const d of siblings(obj)) {
    if (!dead(d.sibling, now)) return undefined
    died = Math.max(died, diedAt(d.sibling, wallMs))
  }
  return died
}

/** True when the object has siblings and every one is a tombstone. */
export const isDeleted = (obj: Obj): boolean => {
  const all = siblings(obj)
  return all.length > 0 && all.every((d) => d.sibling.value === null)
}

/**
 * The key was written and no live value remains: every sibling is a tombstone, or a purged
 * tombstone left only its clock. (A key never written has no clock and is not "deleted".)
 */
export const wasDeleted = (obj: Obj): boolean => obj.entries.length > 0 && values(obj).length === 0

/** Last-write-wins: keep only the latest sibling; the clock is untouched. */
export const pruneLww = (obj: Obj): Obj => {
  const best = resolve(obj)
  if (best === undefined) return obj
  return {
    entries: obj.entries.map((e) =>
      e.actor === best.actor ? { ...e, values: [best.sibling] } : { ...e, values: [] },
    ),
  }
}

// ---------------------------------------------------------------------------------------------
// Counters

const num = (text: string, float: boolean): number | bigint => (float ? Number(text) : BigInt(text))

const bigger = (a: string, b: string, float: boolean): string =>
  float ? (Number(a) >= Number(b) ? a : b) : BigInt(a) >= BigInt(b) ? a : b

const mergeEntries = (
  a: ReadonlyArray<readonly [string, string]>,
  b: ReadonlyArray<readonly [string, string]>,
  float: boolean,
): ReadonlyArray<readonly [string, string]> => {
  const out = new Map<string, string>(a)
  for (const [actor, v] of b) {
    const mine = out.get(actor)
    out.set(actor, mine === undefined ? v : bigger(mine, v, float))
  }
  return [...out.entries()].sort((x, y) => cmp(x[0], y[0]))
}

/** Promote an integer counter to a float one (INCRBYFLOAT on it, or merging with one). */
const asFloat = (c: Counter): Counter =>
  c.float
    ? c
    : {
        base: String(Number(c.base)),
        baseTs: c.baseTs,
        p: c.p.map(([a, v]) => [a, String(Number(v))] as const),
        n: c.n.map(([a, v]) => [a, String(Number(v))] as const),
        float: true,
      }

/** Join of two counters: commutative, associative, idempotent (CTR-1). */
export const mergeCounter = (a: Counter, b: Counter): Counter => {
  const float = a.float || b.float
  const x = float ? asFloat(a) : a
  const y = float ? asFloat(b) : b
  const [base, baseTs] =
    x.baseTs > y.baseTs || (x.baseTs === y.baseTs && x.base >= y.base)
      ? [x.base, x.baseTs]
      : [y.base, y.baseTs]
  return {
    base,
    baseTs,
    p: mergeEntries(x.p, y.p, float),
    n: mergeEntries(x.n, y.n, float),
    float,
  }
}

/** The counter's value as Redis prints it. */
export const counterTotal = (c: Counter): string => {
  if (c.float) {
    let t = Number(c.base)
    for (const [, v] of c.p) t += Number(v)
    for (const [, v] of c.n) t -= Number(v)
    return String(t)
  }
  let t = BigInt(c.base)
  for (const [, v] of c.p) t += BigInt(v)
  for (const [, v] of c.n) t -= BigInt(v)
  return t.toString()
}

/** Add `delta` (a decimal string) to `actor`'s entries. */
export const increment = (c: Counter, actor: string, delta: string, float: boolean): Counter => {
  const base = float ? asFloat(c) : c
  const d = num(delta, base.float)
  const positive = typeof d === "bigint" ? d >= 0n : d >= 0
  const which = positive ? base.p : base.n
  const mag = typeof d === "bigint" ? (d < 0n ? -d : d) : Math.abs(d)
  const prior = which.find(([a]) => a === actor)?.[1]
  const next =
    typeof mag === "bigint"
      ? (BigInt(prior ?? "0") + mag).toString()
      : String(Number(prior ?? "0") + mag)
  const entries = mergeEntries(
    which.filter(([a]) => a !== actor),
    [[actor, next]],
    base.float,
  )
  return positive ? { ...base, p: entries } : { ...base, n: entries }
}

/**
 * What a plain GET reads at `now` (EXP-1, CTR-1): the resolved live sibling's value, except
 * that when it is a counter, the join of every live counter sibling (the increments of every
 * side of a partition) gives the total.
 */
export const readValueAt = (obj: Obj, now: number): string | null => {
  const best = readAt(obj, now)
  if (best === undefined) return null
  if (best.sibling.counter === undefined) return best.sibling.value
  return counterTotal(liveCounterAt(obj, now)!)
}

/** The join of every live counter sibling at `now`; undefined if none. */
export const liveCounterAt = (obj: Obj, now: number): Counter | undefined => {
  let out: Counter | undefined
  for (const d of siblings(obj)) {
    const c = d.sibling.counter
    if (c === undefined || dead(d.sibling, now)) continue
    out = out === undefined ? c : mergeCounter(out, c)
  }
  return out
}

/** Structural equality (objects are canonical: sorted entries, newest-first values). */
export const equals = (a: Obj, b: Obj): boolean => {
  if (a.entries.length !== b.entries.length) return false
  for (let i = 0; i < a.entries.length; i++) {
    const x = a.entries[i]!
    const y = b.entries[i]!
    if (x.actor !== y.actor || x.counter !== y.counter || x.values.length !== y.values.length) {
      return false
    }
    for (let k = 0; k < x.values.length; k++) {
      const u = x.values[k]!
      const v = y.values[k]!
      if (u.value !== v.value || u.ts !== v.ts || u.exp !== v.exp) return false
      if (u.counter !== v.counter && JSON.stringify(u.counter) !== JSON.stringify(v.counter)) {
        return false
      }
    }
  }
  return true
}

/** Bytes of causal metadata (actor ids and counters) — for the metadata benchmark. */
export const metadataBytes = (obj: Obj): number =>
  obj.entries.reduce((sum, e) => sum + e.actor.length + 8 + e.values.length * 16, 0)
