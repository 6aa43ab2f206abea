/**
 * A token-bucket budget for background work: anti-entropy key transfers, hint delivery, range
 * streaming. The bucket holds at most `burst` tokens and refills at `ratePerSec` tokens per
 * second of the caller's clock; work of size `amount` (bytes, keys, items: the caller picks the
 * unit) runs only if the bucket holds `amount` tokens, which it then spends. Background work
 * thereby never takes more than its share from foreground requests (Dynamo, DeCandia et al.
 * SOSP 2007, section 6.5 "Balancing background vs. foreground tasks", which admits background
 * work by a controller; a token bucket is the simplest such controller).
 *
 * Pure values: `take` returns a new budget, the old one is untouched. Time is the `now` (ms)
 * handed in; no clock is read here.
 *
 * Exactness: the level is kept in thousandths of a token ("credit"), and a refill over `dt` ms
 * adds `dt · ratePerSec` credit. With integer rates, bursts, amounts and times every quantity
 * is an integer below 2^53, so the bound below holds exactly, not up to rounding.
 *
 * A clock that steps backwards refills nothing (the bucket keeps its last time), so a skewed or
 * reset clock can delay work but never mint tokens.
 *
 * Deliberately not here: partial grants (ask for `available` and take that), priorities,
 * sharing one bucket between nodes, refunds (unused grants are spent: the bound stays simple).
 *
 * Owns: one token bucket, an immutable value (`take` and `refill` return a new one). Must not:
 * read a clock (the caller passes `now`) or grant more than the bucket holds.
 *
 * Invariant kept: BUDGET-1 (over any window of t ms, grants total at most
 * ratePerSec · t / 1000 + burst).
 */

export interface Budget {
  /** Tokens added per second of the caller's clock, >= 0. */
  readonly ratePerSec: number
  /** Capacity: the most that can be granted at once, and the most saved up while idle. */
  readonly burst: number
  /** Current level in thousandths of a token, in [0, burst · 1000]. */
  readonly credit: number
  /** Time (ms) of the last refill; never decreases. */
  readonly at: number
}

export interface Taken {
  readonly budget: Budget
  readonly granted: boolean
  /**
   * When to ask again: `now` if granted; otherwise the earliest time at which the same request
   * would be granted if nothing else is taken meanwhile; Infinity if it never can be
   * (amount > burst, or a zero rate with too little left).
   */
  readonly retryAtMs: number
}

const CREDIT_PER_TOKEN = 1000

/** A full bucket. Throws on a negative or non-finite rate or burst (a configuration bug). */
export const make = (ratePerSec: number, burst: number, now: number): Budget => {
  if (!(Number.isFinite(ratePerSec) && ratePerSec >= 0)) {
    throw new Error(`budget: rate must be a finite number >= 0, got ${ratePerSec}`)
  }
  if (!(Number.isFinite(burst) && burst >= 0)) {
    throw new Error(`budget: burst must be a finite number >= 0, got ${burst}`)
  }
  return { ratePerSec, burst, credit: burst * CREDIT_PER_TOKEN, at: now }
}

/** The bucket as of `now`: refilled for the time elapsed since its last refill, capped. */
export const refill = (budget: Budget, now: number): Budget => {
  if (!(now > budget.at)) return budget
  const capacity = budget.burst * CREDIT_PER_TOKEN
  const credit = Math.min(capacity, budget.credit + (now - budget.at) * budget.ratePerSec)
  return { ...budget, credit, at: now }
}

/** Tokens available at `now`. */
export const available = (budget: Budget, now: number): number =>
  refill(budget, now).credit / CREDIT_PER_TOKEN

/** Spend `amount` tokens at `now` if the bucket holds them; all or nothing. */
export const take = (budget: Budget, amount: number, now: number): Taken => {
  const current = refill(budget, now)
  if (!(amount > 0)) return { budget: current, granted: true, retryAtMs: now }
  const need = amount * CREDIT_PER_TOKEN
  if (need <= current.credit) {
    return { budget: { ...current, credit: current.credit - need }, granted: true, retryAtMs: now }
  }
  const never = amount > current.burst || current.ratePerSec === 0
  const retryAtMs = never
    ? Number.POSITIVE_INFINITY
    : current.at + Math.ceil((need - current.credit) / current.ratePerSec)
  return { budget: current, granted: false, retryAtMs }
}
