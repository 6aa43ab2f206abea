/**
 * Laws of the dotted version vector sets (VER-*), and the DVVs checked step by step against the
 * causal reference model of models/causal.ts (a clock is the set of events it has seen).
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import * as Version from "../impl/core/version.ts"
import * as Causal from "../models/causal.ts"
import { assertFloors, params } from "./helpers/fc.ts"

const ACTORS = ["a", "b", "c"]

/** Expand a version vector into the set of events it covers. */
const eventsOf = (clock: Version.Clock): Set<string> => {
  const out = new Set<string>()
  for (const [actor, n] of clock) for (let i = 1; i <= n; i++) out.add(Causal.dot(actor, i))
  return out
}

const siblingsOf = (obj: Version.Obj): Map<string, string | null> =>
  new Map(Version.siblings(obj).map((d) => [Causal.dot(d.actor, d.counter), d.sibling.value]))

type Step =
  | { kind: "update"; replica: number; from: number; value: string | null }
  | { kind: "blind"; replica: number; value: string }
  | { kind: "sync"; replica: number; from: number }

const steps = fc.array(
  fc.oneof(
    fc.record({
      kind: fc.constant("update" as const),
      replica: fc.nat(2),
      from: fc.nat(2),
      value: fc.option(fc.string({ maxLength: 3 }), { nil: null }),
    }),
    fc.record({
      kind: fc.constant("blind" as const),
      replica: fc.nat(2),
      value: fc.string({ maxLength: 3 }),
    }),
    fc.record({ kind: fc.constant("sync" as const), replica: fc.nat(2), from: fc.nat(2) }),
  ),
  { maxLength: 40 },
)

/** Run a history of writes (with contexts read at some replica) and syncs on both sides. */
const runBoth = (history: ReadonlyArray<Step>) => {
  const real: Array<Version.Obj> = ACTORS.map(() => Version.empty)
  const model: Array<Causal.CausalObj> = ACTORS.map(() => Causal.emptyObj)
  let ts = 0
  for (const s of history) {
    const i = s.replica
    if (s.kind === "sync") {
      real[i] = Version.sync(real[i]!, real[s.from]!)
      model[i] = Causal.sync(model[i]!, model[s.from]!)
    } else {
      // A client read replica `from` (or nothing: a blind write) and writes through replica i.
      const ctxReal = s.kind === "update" ? Version.context(real[s.from]!) : Version.emptyClock
      const ctxModel = s.kind === "update" ? new Set(model[s.from]!.history) : new Set<string>()
      real[i] = Version.update(real[i]!, ctxReal, { value: s.value, ts: ts++ }, ACTORS[i]!)
      model[i] = Causal.update(model[i]!, ctxModel, s.value, ACTORS[i]!)
    }
  }
  return { real, model }
}

test("VER-2: sync and update keep exactly the siblings the causal model keeps", () => {
  fc.assert(
    fc.property(steps, (history) => {
      const { real, model } = runBoth(history)
      for (let i = 0; i < ACTORS.length; i++) {
        assert.deepEqual(eventsOf(Version.context(real[i]!)), new Set(model[i]!.history))
        assert.deepEqual(siblingsOf(real[i]!), new Map(model[i]!.siblings))
      }
    }),
    params(300),
  )
})

const objects = steps.map((h) => runBoth(h).real)

test("VER-1: sync is commutative, associative, idempotent and a least upper bound", () => {
  fc.assert(
    fc.property(objects, objects, (xs, ys) => {
      const [a, b, c] = [xs[0]!, xs[1]!, ys[2]!]
      const eq = (x: Version.Obj, y: Version.Obj) => {
        assert.deepEqual(siblingsOf(x), siblingsOf(y))
        assert.deepEqual(Version.context(x), Version.context(y))
      }
      eq(Version.sync(a, b), Version.sync(b, a))
      eq(Version.sync(Version.sync(a, b), c), Version.sync(a, Version.sync(b, c)))
      eq(Version.sync(a, a), a)
      const ab = Version.context(Version.sync(a, b))
      assert.ok(
        Version.descends(ab, Version.context(a)) && Version.descends(ab, Version.context(b)),
      )
      assert.deepEqual(ab, Version.mergeClocks(Version.context(a), Version.context(b)))
      // Least: any clock that descends both descends the merge.
      const ca = Version.context(c)
      if (Version.descends(ca, Version.context(a)) && Version.descends(ca, Version.context(b))) {
        assert.ok(Version.descends(ca, ab))
      }
    }),
    params(300),
  )
})

test("VER-3: clock size is bounded by the coordinating replicas, not by the clients", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 300 }),
      fc.integer({ min: 1, max: 3 }),
      (clients, replicas) => {
        let obj = Version.empty
        for (let client = 0; client < clients; client++) {
          // Each client reads and writes back through some replica.
          const actor = ACTORS[client % replicas]!
          obj = Version.update(
            obj,
            Version.context(obj),
            { value: `c${client}`, ts: client },
            actor,
          )
        }
        assert.ok(obj.entries.length <= replicas)
        assert.equal(Version.siblings(obj).length, 1)
      },
    ),
    params(50),
  )
})

test("VER-3: with stale contexts too, the clock stays bounded by the coordinating replicas while siblings pile up", () => {
  let stale = 0
  let piled = 0
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(2), fc.nat(10)), { minLength: 1, maxLength: 200 }),
      fc.integer({ min: 1, max: 3 }),
      (writes, replicas) => {
        let obj = Version.empty
        const contexts: Array<Version.Clock> = [Version.emptyClock]
        writes.forEach(([replica, age], i) => {
          // A client writes back a context read `age` writes ago (0: the latest).
          const ctx = contexts[Math.max(0, contexts.length - 1 - age)]!
          if (age > 0 && contexts.length > 1) stale++
          const actor = ACTORS[replica % replicas]!
          obj = Version.update(obj, ctx, { value: `w${i}`, ts: i }, actor)
          contexts.push(Version.context(obj))
        })
        assert.ok(obj.entries.length <= replicas, `${obj.entries.length} clock entries`)
        if (Version.siblings(obj).length > 1) piled++
      },
    ),
    params(100),
  )
  assertFloors({ stale, piled }, { stale: 500, piled: 20 })
})

/**
 * A history run twice, once with plain counting and once with every write's counter floored at
 * a strictly increasing "hybrid timestamp" (as coordinators mint, RECLAIM-2): the dots differ,
 * the values every replica keeps never do.
 */
test("RECLAIM-2: minting with a floor renames dots and changes nothing else: every replica keeps the same values as with plain counting", () => {
  let jumps = 0
  fc.assert(
    fc.property(steps, fc.array(fc.nat(5), { minLength: 40, maxLength: 40 }), (history, gaps) => {
      const plain: Array<Version.Obj> = ACTORS.map(() => Version.empty)
      const floored: Array<Version.Obj> = ACTORS.map(() => Version.empty)
      let ts = 0
      let floor = 0
      history.forEach((s, k) => {
        const i = s.replica
        if (s.kind === "sync") {
          plain[i] = Version.sync(plain[i]!, plain[s.from]!)
          floored[i] = Version.sync(floored[i]!, floored[s.from]!)
        } else {
          floor += 1 + gaps[k % gaps.length]!
          const sib = { value: s.value, ts: ts++ }
          const ctxP = s.kind === "update" ? Version.context(plain[s.from]!) : Version.emptyClock
          const ctxF = s.kind === "update" ? Version.context(floored[s.from]!) : Version.emptyClock
          plain[i] = Version.update(plain[i]!, ctxP, sib, ACTORS[i]!)
          floored[i] = Version.update(floored[i]!, ctxF, sib, ACTORS[i]!, floor)
          const p = plain[i]!.entries.find((e) => e.actor === ACTORS[i])!.counter
          const f = floored[i]!.entries.find((e) => e.actor === ACTORS[i])!.counter
          if (f !== p) jumps++
        }
        for (let r = 0; r < ACTORS.length; r++) {
          const values = (o: Version.Obj) =>
            Version.siblings(o)
              .map((d) => `${d.sibling.value}@${d.sibling.ts}`)
              .sort()
          assert.deepEqual(values(floored[r]!), values(plain[r]!), `replica ${r} after step ${k}`)
        }
      })
    }),
    params(300),
  )
  assertFloors({ jumps }, { jumps: 1000 })
})

test("RECLAIM-2: after a key is reclaimed everywhere, a coordinator minting with its hybrid timestamp as floor never repeats a dot (negative control: plain counting does)", () => {
  let reclaims = 0
  const mint = (floored: boolean) =>
    fc.check(
      fc.property(
        fc.array(fc.oneof(fc.constant("write" as const), fc.constant("reclaim" as const)), {
          minLength: 2,
          maxLength: 60,
        }),
        (ops) => {
          let obj = Version.empty
          let hlc = 1000
          const minted = new Set<string>()
          for (const op of ops) {
            if (op === "reclaim") {
              // Every replica deleted the key, clock and all.
              obj = Version.empty
              reclaims++
              continue
            }
            hlc += 1
            const sib = { value: `v${hlc}`, ts: hlc }
            obj = Version.update(obj, Version.context(obj), sib, "a", floored ? hlc : 0)
            const dot = `a:${obj.entries.find((e) => e.actor === "a")!.counter}`
            assert.ok(!minted.has(dot), `dot ${dot} minted twice`)
            minted.add(dot)
          }
        },
      ),
      params(200),
    )
  assert.equal(mint(true).failed, false, "no dot repeats with the floor")
  const unsafe = mint(false)
  assert.ok(unsafe.failed, "negative control: plain counting repeats a dot after a reclamation")
  assert.match(String(unsafe.errorInstance), /minted twice/)
  assert.ok(reclaims > 100, `only ${reclaims} reclamations tried`)
})

test("VER-4: a key is deleted when it was written and no live value remains, purged or not", () => {
  const written = Version.update(Version.empty, [], { value: "v", ts: 1 }, "a")
  const deleted = Version.update(written, Version.context(written), { value: null, ts: 2 }, "a")
  const purged = { entries: deleted.entries.map((e) => ({ ...e, values: [] })) }
  assert.equal(Version.wasDeleted(Version.empty), false)
  assert.equal(Version.wasDeleted(written), false)
  assert.equal(Version.wasDeleted(deleted), true)
  assert.equal(Version.wasDeleted(purged), true)
  // A tombstone concurrent with a live value: not deleted (the value survives as a sibling).
  const concurrent = Version.update(written, [], { value: null, ts: 3 }, "b")
  assert.equal(Version.wasDeleted(concurrent), false)
})
