/**
 * A small seeded generator (xoshiro128**, Blackman and Vigna), so that every simulated run is a
 * pure function of its seed. The state is four 32-bit words; `fork` derives an independent
 * stream (for one node, or one subsystem) from the parent deterministically.
 */

export class Prng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(seed: number) {
    // SplitMix32 expands the seed into four non-zero words.
    let s = seed >>> 0
    const next = (): number => {
      s = (s + 0x9e3779b9) | 0
      let z = s
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
      return (z ^ (z >>> 16)) >>> 0
    }
    this.a = next()
    this.b = next()
    this.c = next()
    this.d = next() | 1
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul((Math.imul(this.b, 5) << 7) | (Math.imul(this.b, 5) >>> 25), 9)
    const t = this.b << 9
    this.c ^= this.a
    this.d ^= this.b
    this.b ^= this.c
    this.a ^= this.d
    this.c ^= t
    this.d = (this.d << 11) | (this.d >>> 21)
    return result >>> 0
  }

  /** Uniform float in [0, 1). */
  float(): number {
    return this.nextU32() / 2 ** 32
  }

  /** Uniform integer in [0, bound). */
  int(bound: number): number {
    return Math.floor(this.float() * bound)
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return p > 0 && this.float() < p
  }

  /** An independent generator derived from this one. */
  fork(): Prng {
    return new Prng(this.nextU32())
  }

  /** In-place Fisher-Yates shuffle. */
  shuffle<T>(items: Array<T>): Array<T> {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1)
      const tmp = items[i]!
      items[i] = items[j]!
      items[j] = tmp
    }
    return items
  }
}
