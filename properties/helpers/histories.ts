/**
 * A shared causal history of one key, as objects at several points: writes by `actors` with
 * contexts read from earlier points (so some are concurrent), tombstones among them, and joins
 * of two points every third write. Timestamps are `skew + (i + 1) · 1024` for the i-th write (a
 * skew ahead of a coordinator's wall clock stands for writers whose clocks ran fast). Point 0
 * is the empty object. Adversaries send any of them, in any order, any number of times.
 */
import fc from "fast-check"
import * as Version from "../../impl/core/version.ts"

export const causalHistory = (options: {
  readonly actors: ReadonlyArray<string>
  readonly values: fc.Arbitrary<string>
  readonly maxWrites: number
  readonly skew?: number
}): fc.Arbitrary<Array<Version.Obj>> =>
  fc
    .array(
      fc.tuple(
        fc.constantFrom(...options.actors),
        fc.nat(20),
        fc.option(options.values, { nil: null }),
      ),
      { minLength: 1, maxLength: options.maxWrites },
    )
    .map((writes) => {
      const points: Array<Version.Obj> = [Version.empty]
      writes.forEach(([actor, from, value], i) => {
        const base = points[from % points.length]!
        const local = points[points.length - 1]!
        const next = Version.update(
          Version.sync(local, base),
          Version.context(base),
          { value, ts: (options.skew ?? 0) + (i + 1) * 1024 },
          actor,
        )
        points.push(next)
        if (i % 3 === 2) points.push(Version.sync(points[from % points.length]!, next))
      })
      return points
    })
