/**
 * The node's one writer of its store (impl/core/node-store.ts), called directly, step by step,
 * against a model of the store as it will be once the step's writes have run:
 *
 *  - `mergeLocal` emits the join of what the key will hold and what came in, with the key's
 *    policy applied, and only when that changes it, and says whether it did (KV-10);
 *  - `persist` emits the object; `drop` emits a delete that takes effect only if the key still
 *    holds exactly the object named;
 *  - `current` shows every write of the step so far, and the store after the step equals the
 *    model;
 *  - every kept anti-entropy tree equals the tree built afresh from the store after every
 *    step, and the tree being built holds exactly the keys its scan has passed (AE-9), with
 *    writes of keys before, at and after the scan's cursor, of keys the tree's pair of nodes
 *    holds and of keys it does not.
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import * as Merkle from "../impl/core/merkle.ts"
import * as Node from "../impl/core/node.ts"
import { keeps, pairRange } from "../impl/core/node-ae.ts"
import { reconcile } from "../impl/core/node-state.ts"
import { current, drop, endStep, mergeLocal, persist } from "../impl/core/node-store.ts"
import { Out } from "../impl/core/ready.ts"
import * as Version from "../impl/core/version.ts"
import { MemoryStore } from "../impl/sim/memory-store.ts"
import { treesOutOfStep } from "../impl/sim/sim.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import { causalHistory } from "./helpers/histories.ts"
import { config, ids, self } from "./helpers/machine.ts"
import { test } from "./helpers/test.ts"

const keys = Array.from({ length: 12 }, (_, i) => `sw${String(i).padStart(2, "0")}`)
const peers = ids.filter((id) => id !== self)
const shape: Merkle.Shape = { fanout: 4, depth: 2 }

type Op =
  | { _tag: "Merge"; key: number; point: number }
  | { _tag: "Persist"; key: number; point: number }
  /** Drop what the key will hold (`held`), or a point of the history. */
  | { _tag: "Drop"; key: number; point: number; held: boolean }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    _tag: fc.constant("Merge" as const),
    key: fc.nat(keys.length - 1),
    point: fc.nat(20),
  }),
  fc.record({
    _tag: fc.constant("Persist" as const),
    key: fc.nat(keys.length - 1),
    point: fc.nat(20),
  }),
  fc.record({
    _tag: fc.constant("Drop" as const),
    key: fc.nat(keys.length - 1),
    point: fc.nat(20),
    held: fc.boolean(),
  }),
)

test("AE-9, KV-10: the store's one writer emits each write as the model says, shows the step's writes to the rest of the step, and keeps every kept tree and the tree being built in step with the store", () => {
  const seen = {
    merges: 0,
    mergesChanging: 0,
    persists: 0,
    drops: 0,
    dropsRefused: 0,
    atCursor: 0,
    beforeCursor: 0,
    afterCursor: 0,
    notHeld: 0,
    noCursor: 0,
    steps: 0,
  }
  fc.assert(
    fc.property(
      causalHistory({
        actors: ["n1", "n2", "n3"],
        values: fc.constantFrom("a", "b"),
        maxWrites: 6,
      }),
      fc.array(fc.tuple(fc.nat(keys.length - 1), fc.nat(20)), { maxLength: 8 }),
      fc.nat(peers.length - 1),
      fc.nat(peers.length - 1),
      // The build's cursor: none yet, or one of the keys.
      fc.option(fc.nat(keys.length - 1), { nil: undefined }),
      fc.array(fc.array(opArb, { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 6 }),
      (points, preload, keptPeer, buildPeer, cursorAt, steps) => {
        const state = Node.init(config, 0)
        const store = new MemoryStore()
        const objAt = (point: number) => points[point % points.length]!
        for (const [k, point] of preload) {
          store.apply({ _tag: "Persist", key: keys[k]!, obj: objAt(point) })
        }
        const all = () => store.scan(undefined, Number.MAX_SAFE_INTEGER)
        const kept = peers[keptPeer]!
        state.aeTrees.set("kept", {
          peer: kept,
          tree: Merkle.build(
            pairRange(self, kept),
            shape,
            all().filter(([key]) => keeps(state, kept, key)),
          ),
        })
        const peer = peers[buildPeer]!
        const cursor = cursorAt === undefined ? undefined : keys[cursorAt]!
        const passed = () =>
          all().filter(([key]) => cursor !== undefined && key <= cursor && keeps(state, peer, key))
        const range = pairRange(self, peer)
        state.aeBuild = {
          range,
          peer,
          phase: "Hash",
          count: 0,
          tree: Merkle.add(Merkle.begin(range, shape), passed()),
          cursor,
        }
        if (cursor === undefined) seen.noCursor++
        for (const [i, ops] of steps.entries()) {
          seen.steps++
          const out = new Out()
          const will = new Map(keys.map((k) => [k, store.get(k)]))
          let writes = 0
          for (const [j, op] of ops.entries()) {
            const what = `step ${i}, op ${j} (${op._tag})`
            const key = keys[op.key]!
            const held = will.get(key)
            if (cursor !== undefined) {
              if (key === cursor) seen.atCursor++
              else if (key < cursor) seen.beforeCursor++
              else seen.afterCursor++
            }
            if (!keeps(state, peer, key)) seen.notHeld++
            const want: Array<unknown> = []
            switch (op._tag) {
              case "Merge": {
                seen.merges++
                const local = held ?? Version.empty
                const merged = reconcile(state, key, Version.sync(local, objAt(op.point)))
                const changes = !Version.equals(merged, local)
                if (changes) {
                  seen.mergesChanging++
                  want.push({ _tag: "Persist", key, obj: merged })
                  will.set(key, merged)
                }
                assert.equal(
                  mergeLocal(state, store, key, objAt(op.point), out),
                  changes,
                  `${what}: whether the merge changed the key`,
                )
                break
              }
              case "Persist":
                seen.persists++
                want.push({ _tag: "Persist", key, obj: objAt(op.point) })
                will.set(key, objAt(op.point))
                persist(state, store, key, objAt(op.point), out)
                break
              case "Drop": {
                seen.drops++
                const obj = op.held && held !== undefined ? held : objAt(op.point)
                want.push({ _tag: "Drop", key, obj })
                if (held !== undefined && Version.equals(held, obj)) will.set(key, undefined)
                else seen.dropsRefused++
                drop(state, store, key, obj, out)
                break
              }
            }
            assert.deepEqual(out.persist.slice(writes), want, `${what}: the writes emitted`)
            writes = out.persist.length
            for (const k of keys) {
              assert.deepEqual(
                current(state, store, k),
                will.get(k),
                `${what}: what ${k} will hold`,
              )
            }
          }
          for (const c of out.persist) store.apply(c)
          endStep(state)
          for (const k of keys) {
            assert.deepEqual(store.get(k), will.get(k), `step ${i}: ${k} in the store`)
          }
          // Dropping a tree would hide a bad update from the check below: both must stay.
          assert.ok(state.aeTrees.has("kept"), `step ${i}: the kept tree was dropped`)
          assert.ok(
            state.aeBuild?.tree !== undefined,
            `step ${i}: the tree being built was dropped`,
          )
          assert.deepEqual(treesOutOfStep(state, store), [], `step ${i}: trees out of step`)
        }
      },
    ),
    params(400),
  )
  console.log(`# store writer: ${JSON.stringify(seen)}`)
  // About half of one run's draws (docs/verification.md, "Floor margins").
  assertFloors(seen, {
    merges: 600,
    mergesChanging: 350,
    persists: 600,
    drops: 600,
    dropsRefused: 450,
    atCursor: 110,
    beforeCursor: 700,
    afterCursor: 700,
    notHeld: 1000,
    noCursor: 35,
    steps: 650,
  })
})
