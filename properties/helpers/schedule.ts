/**
 * Generated schedules of client operations and membership changes, shared by the suites that
 * run a simulated cluster through them (REBAL-1 under ring routing, CHORD-7 under Chord).
 */
import fc from "fast-check"
import * as Version from "../../impl/core/version.ts"

export const KEYS: ReadonlyArray<string> = Array.from({ length: 12 }, (_, i) => `key${i}`)

export type Action =
  | { _tag: "Write"; key: number; node: number }
  | { _tag: "Read"; key: number; node: number }
  | { _tag: "Join" }
  | { _tag: "Leave"; node: number }
  | { _tag: "Crash"; node: number }
  | { _tag: "Restart" }
  /** Ring routing only: an operator removes a dead node. */
  | { _tag: "RemoveDead" }
  | { _tag: "Wait"; ms: number }

/** Writes and reads at random nodes (`node` is reduced modulo the live ones), and changes. */
export const actionArb = (options: { readonly removals: boolean }): fc.Arbitrary<Action> =>
  fc.oneof(
    {
      weight: 8,
      arbitrary: fc.record({
        _tag: fc.constant("Write" as const),
        key: fc.nat(KEYS.length - 1),
        node: fc.nat(9),
      }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        _tag: fc.constant("Read" as const),
        key: fc.nat(KEYS.length - 1),
        node: fc.nat(9),
      }),
    },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Join" as const) }) },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Leave" as const), node: fc.nat(9) }) },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Crash" as const), node: fc.nat(9) }) },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Restart" as const) }) },
    {
      weight: options.removals ? 1 : 0,
      arbitrary: fc.record({ _tag: fc.constant("RemoveDead" as const) }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        _tag: fc.constant("Wait" as const),
        ms: fc.integer({ min: 100, max: 3000 }),
      }),
    },
  )

/** The value a plain GET returns for an object: its resolved sibling (null if none or deleted). */
export const resolvedValue = (obj: Version.Obj): string | null =>
  Version.resolve(obj)?.sibling.value ?? null
