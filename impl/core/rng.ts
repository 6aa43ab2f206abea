/**
 * mulberry32: a tiny seeded generator whose whole state is one 32-bit integer, so that the
 * machines that need randomness (gossip peer choice, Chord's stabilize jitter) keep it as plain
 * data and stay deterministic: the same seed and events give the same run.
 *
 * Owns nothing: the caller keeps the state. Must not: read Math.random or a clock.
 */
export interface Rng {
  rng: number
}

/** The next number of `state`'s sequence, uniform in [0, 1); advances `state` in place. */
export const uniform = (state: Rng): number => {
  state.rng = (state.rng + 0x6d2b79f5) | 0
  let t = state.rng
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
