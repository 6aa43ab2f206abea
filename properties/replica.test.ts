/**
 * The replica side of the storage machine (impl/core/node-replica.ts) stepped directly through
 * `Node.step`, against a small model of what it must do with hints and purges:
 *
 *  - HINT-1 (the machine's part): a hinted write is stored only when it adds to the hint held
 *    (and always acknowledged, after the write); hints go back to their owners in rounds, at
 *    most one round per handoff interval and at most `handoffBatch` hints a round, taken from
 *    the first `4·handoffBatch` hints of the store, only to owners the node believes up, and a
 *    hint already handed back is not sent again before its request timeout unless its owner
 *    acknowledged it; an acknowledgement drops exactly the hint it names (the store keeps a
 *    newer one) and ends the hand-back in flight.
 *  - KV-12 (the replica's part): a replica told to purge drops the values of its object, keeping
 *    the clock, only when it holds exactly the object the purge names.
 *
 * Peers are heard from (a `Heartbeat`) or fall silent, so owners come and go from the node's
 * view of who is up; which owners are up is read from the node's own detector (`believedUp`):
 * the detector is checked elsewhere (FD-*), the rounds here. Small key, owner and batch domains
 * make rounds that fill their batch, hints beyond the window, repeated hand-backs and
 * acknowledgements of hints that changed since all common.
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import type { Command, Event, PeerMessage } from "../impl/core/messages.ts"
import * as Node from "../impl/core/node.ts"
import { believedUp } from "../impl/core/node-state.ts"
import type { Ready } from "../impl/core/ready.ts"
import * as Version from "../impl/core/version.ts"
import { MemoryStore } from "../impl/sim/memory-store.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import { causalHistory } from "./helpers/histories.ts"
import { config as base, ids, keysWhere, purged } from "./helpers/machine.ts"
import { test } from "./helpers/test.ts"

const config: Node.Config = {
  ...base,
  handoffBatch: 2,
  handoffIntervalMs: 1000,
  requestTimeoutMs: 2000,
}
const keys = keysWhere("rep", true, 5)
const owners = ids.slice(1)

const historyArb = causalHistory({
  actors: ["n1", "n2", "n3"],
  values: fc.string({ maxLength: 2 }),
  maxWrites: 8,
})

type Move =
  | { _tag: "Tick"; dt: number }
  | { _tag: "Beat"; from: number }
  | { _tag: "HintedWrite"; owner: number; key: number; point: number; rid: number }
  | { _tag: "Ack"; from: number; key: number; point: number; held: boolean }
  | { _tag: "Write"; key: number; point: number }
  | { _tag: "Purge"; key: number; point: number; held: boolean }

const moveArb: fc.Arbitrary<Move> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      _tag: fc.constant("Tick" as const),
      dt: fc.constantFrom(0, 300, 1000, 1000, 2500, 8000),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({ _tag: fc.constant("Beat" as const), from: fc.nat(owners.length - 1) }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      _tag: fc.constant("HintedWrite" as const),
      owner: fc.nat(owners.length - 1),
      key: fc.nat(keys.length - 1),
      point: fc.nat(40),
      rid: fc.nat(9),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("Ack" as const),
      from: fc.nat(owners.length - 1),
      key: fc.nat(keys.length - 1),
      point: fc.nat(40),
      held: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Write" as const),
      key: fc.nat(keys.length - 1),
      point: fc.nat(40),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Purge" as const),
      key: fc.nat(keys.length - 1),
      point: fc.nat(40),
      held: fc.boolean(),
    }),
  },
)

const handoffs = (ready: Ready) =>
  ready.afterPersist.filter((c) => c._tag === "Send" && c.message._tag === "Handoff")

test("HINT-1, KV-12: the replica stores a hinted write only when it grows the hint, hands hints back in paced batches to owners believed up, drops a hint only on its owner's acknowledgement, and purges only the exact object named", () => {
  const seen = {
    steps: 0,
    rounds: 0,
    fullRounds: 0,
    handedBack: 0,
    skippedDown: 0,
    skippedInFlight: 0,
    resent: 0,
    beyondWindow: 0,
    hintsStored: 0,
    hintsUnchanged: 0,
    acks: 0,
    hintsDropped: 0,
    purged: 0,
    purgesRefused: 0,
  }
  fc.assert(
    fc.property(historyArb, fc.array(moveArb, { minLength: 1, maxLength: 80 }), (points, moves) => {
      const state = Node.init(config, 0)
      const store = new MemoryStore()
      let now = 1000
      // The model: when the next round may run, and when each hint was last handed back.
      let nextRoundAt = 0
      const inFlight = new Map<string, number>()
      const stats = { hintsStored: 0, hintsDelivered: 0 }
      const objAt = (point: number) => points[point % points.length]!
      for (const [i, m] of moves.entries()) {
        const what = `move ${i} (${m._tag})`
        let message: PeerMessage | undefined
        let from = owners[0]!
        // What the step must do, stated before it runs (from the store as it is).
        let wantPersist: ReadonlyArray<Command> | undefined
        let wantAfter: ReadonlyArray<Command> | undefined
        let wantHandoffs: ReadonlyArray<Command> | undefined
        switch (m._tag) {
          case "Tick": {
            now += m.dt
            const sends: Array<Command> = []
            if (now >= nextRoundAt) {
              seen.rounds++
              nextRoundAt = now + config.handoffIntervalMs
              const window = store.hints(4 * config.handoffBatch)
              if (store.hintMap.size > window.length) seen.beyondWindow++
              for (const h of window) {
                if (sends.length >= config.handoffBatch) break
                if (!believedUp(state, h.owner, now)) {
                  seen.skippedDown++
                  continue
                }
                const id = `${h.owner}/${h.key}`
                const since = inFlight.get(id)
                if (since !== undefined && now - since < config.requestTimeoutMs) {
                  seen.skippedInFlight++
                  continue
                }
                if (since !== undefined) seen.resent++
                inFlight.set(id, now)
                sends.push({
                  _tag: "Send",
                  to: h.owner,
                  message: { _tag: "Handoff", key: h.key, obj: h.obj, at: now },
                })
              }
              if (sends.length === config.handoffBatch) seen.fullRounds++
              seen.handedBack += sends.length
            }
            wantHandoffs = sends
            break
          }
          case "Beat":
            from = owners[m.from]!
            message = { _tag: "Heartbeat" }
            wantHandoffs = []
            break
          case "HintedWrite": {
            const owner = owners[m.owner]!
            const key = keys[m.key]!
            const obj = objAt(m.point)
            message = { _tag: "HintedWrite", rid: m.rid, key, obj, owner, at: now }
            const held = store.hint(owner, key) ?? Version.empty
            const merged = Version.sync(held, obj)
            const grows = !Version.equals(merged, held)
            if (grows) {
              stats.hintsStored++
              seen.hintsStored++
            } else seen.hintsUnchanged++
            wantPersist = grows ? [{ _tag: "PersistHint", owner, key, obj: merged }] : []
            wantAfter = [{ _tag: "Send", to: from, message: { _tag: "WriteAck", rid: m.rid } }]
            wantHandoffs = []
            break
          }
          case "Ack": {
            from = owners[m.from]!
            const key = keys[m.key]!
            const obj = (m.held ? store.hint(from, key) : undefined) ?? objAt(m.point)
            message = { _tag: "HandoffAck", key, obj }
            inFlight.delete(`${from}/${key}`)
            stats.hintsDelivered++
            seen.acks++
            wantPersist = [{ _tag: "DropHint", owner: from, key, obj }]
            wantAfter = []
            break
          }
          case "Write":
            // Gives purges an object to find (its merge is KV-10's business).
            message = { _tag: "Repair", key: keys[m.key]!, obj: objAt(m.point), at: now }
            break
          case "Purge": {
            const key = keys[m.key]!
            const local = store.get(key)
            const obj = (m.held ? local : undefined) ?? objAt(m.point)
            message = { _tag: "Purge", key, obj }
            const exact = local !== undefined && Version.equals(local, obj)
            if (exact) seen.purged++
            else seen.purgesRefused++
            wantPersist = exact ? [{ _tag: "Persist", key, obj: purged(local) }] : []
            wantAfter = []
            wantHandoffs = []
            break
          }
        }
        const event: Event =
          message === undefined
            ? { _tag: "TickElapsed", now }
            : { _tag: "MessageReceived", now, from, message }
        const hintsBefore = store.hintMap.size
        const ready = Node.step(state, event, store)[1]
        for (const c of ready.persist) store.apply(c)
        seen.steps++
        if (wantHandoffs !== undefined) {
          assert.deepEqual(handoffs(ready), wantHandoffs, `${what}: hints handed back`)
        }
        if (wantPersist !== undefined) {
          assert.deepEqual(ready.persist, wantPersist, `${what}: store writes`)
        }
        if (wantAfter !== undefined) {
          assert.deepEqual(ready.afterPersist, wantAfter, `${what}: released after the writes`)
        }
        if (m._tag === "Ack" && store.hintMap.size < hintsBefore) seen.hintsDropped++
        assert.equal(state.stats.hintsStored, stats.hintsStored, `${what}: hints stored`)
        assert.equal(state.stats.hintsDelivered, stats.hintsDelivered, `${what}: hints delivered`)
      }
    }),
    params(300),
  )
  console.log(`HINT-1 replica counts: ${JSON.stringify(seen)}`)
  assertFloors(seen, {
    rounds: 650,
    fullRounds: 140,
    handedBack: 400,
    skippedDown: 1200,
    skippedInFlight: 110,
    resent: 140,
    beyondWindow: 8,
    hintsStored: 600,
    hintsUnchanged: 350,
    acks: 700,
    hintsDropped: 100,
    purged: 60,
    purgesRefused: 400,
  })
})
