/**
 * Reference model of causality for one key: a clock is the *set of write events* it has seen,
 * an object is that set plus the siblings (event → value) not yet superseded. Events are dots
 * "actor:counter". Obviously correct and slow; properties/version.test.ts checks the dotted
 * version vectors of impl/core/version.ts against it (VER-1, VER-2).
 */

export type Dot = string

export interface CausalObj {
  readonly history: ReadonlySet<Dot>
  readonly siblings: ReadonlyMap<Dot, string | null>
}

export const emptyObj: CausalObj = { history: new Set(), siblings: new Map() }

export const dot = (actor: string, counter: number): Dot => `${actor}:${counter}`

const counterOf = (history: ReadonlySet<Dot>, actor: string): number => {
  let max = 0
  for (const d of history) {
    const i = d.lastIndexOf(":")
    if (d.slice(0, i) === actor) max = Math.max(max, Number(d.slice(i + 1)))
  }
  return max
}

/** A sibling survives a sync unless the other side has seen its event and dropped it. */
export const sync = (a: CausalObj, b: CausalObj): CausalObj => {
  const siblings = new Map<Dot, string | null>()
  for (const [x, y] of [
    [a, b],
    [b, a],
  ] as const) {
    for (const [d, v] of x.siblings) {
      if (!y.history.has(d) || y.siblings.has(d)) siblings.set(d, v)
    }
  }
  return { history: new Set([...a.history, ...b.history]), siblings }
}

/** A write by `actor` that supersedes exactly the events in `context`. */
export const update = (
  local: CausalObj,
  context: ReadonlySet<Dot>,
  value: string | null,
  actor: string,
): CausalObj => {
  const history = new Set([...local.history, ...context])
  const d = dot(actor, counterOf(history, actor) + 1)
  history.add(d)
  const siblings = new Map([...local.siblings].filter(([s]) => !context.has(s)))
  siblings.set(d, value)
  return { history, siblings }
}
