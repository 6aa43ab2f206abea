/**
 * The node's side of a GET (impl/core/node-get.ts), stepped directly through `Node.step`: the
 * get coordinator (get-coordinator.ts, checked by properties/coordinators.test.ts) decides; this
 * checks that the node applies every decision exactly, against a shadow coordinator fed the same
 * inputs:
 *
 *  - a GET asks every replica of its read set but itself (ReadRequest, at once), reads its own
 *    copy when it is one of them, and sets one deadline;
 *  - each answer and the deadline go to the request they name while it is open, and nowhere
 *    once it is over (the node forgets a request exactly when its coordinator says it is done);
 *  - a reply goes to the client after the step's writes; a read repair of another replica is
 *    sent after them (KV-10: it carries the merge, stamped with the read's start), one of this
 *    node is merged into the object it holds now (a write may have landed since the read);
 *  - KV-12: a purge goes to every other replica after the writes, and this node drops the
 *    tombstone's values only if it still holds exactly the object the purge names;
 *  - the counters of GETs, read repairs and purges count them.
 *
 * Answers come from replicas asked and from strangers, twice, late, for old requests, with the
 * object this node holds (so that tombstones are often held identically everywhere and purged)
 * or any point of a causal history with tombstones; writes land between a read and its purge.
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import * as Get from "../impl/core/get-coordinator.ts"
import type { Command, Event, PeerMessage } from "../impl/core/messages.ts"
import * as Node from "../impl/core/node.ts"
import { readSet } from "../impl/core/node-placement.ts"
import { reconcile } from "../impl/core/node-state.ts"
import * as Version from "../impl/core/version.ts"
import { MemoryStore } from "../impl/sim/memory-store.ts"
import { assertFixedBatch, assertFloors, params } from "./helpers/fc.ts"
import { causalHistory } from "./helpers/histories.ts"
import {
  config as base,
  ids,
  keysWhere,
  type Land,
  landArb,
  landing,
  purged,
  self,
  stepAndApply,
} from "./helpers/machine.ts"
import { test } from "./helpers/test.ts"

const config: Node.Config = { ...base, tombstoneGraceMs: 1000, requestTimeoutMs: 2000 }
/** Two keys this node replicates, one it does not (it still coordinates reads of it). */
const keys = [...keysWhere("get", true, 2), ...keysWhere("get", false, 1)]
const peers = ids.filter((id) => id !== self)

// Tombstones (null values) are frequent, and their timestamps (a few ms of wall clock) are long
// past the grace when the reads run.
const historyArb = causalHistory({
  actors: ["n1", "n2", "n3"],
  values: fc.constantFrom("a", "b"),
  maxWrites: 6,
})

type Move =
  | { _tag: "Start"; key: number; r: number }
  | {
      _tag: "Answer"
      from: number
      request: number
      point: number
      source: "point" | "held" | "echo"
      twice: boolean
    }
  | { _tag: "Deadline"; request: number }
  | Land
  | { _tag: "Tick"; dt: number }

const moveArb: fc.Arbitrary<Move> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Start" as const),
      key: fc.nat(keys.length - 1),
      r: fc.integer({ min: 1, max: 3 }),
    }),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      _tag: fc.constant("Answer" as const),
      // Index into the request's replicas, or past them: a stranger.
      from: fc.nat(3),
      request: fc.nat(3),
      point: fc.nat(20),
      // Any point of the history, what this node holds now, or the request's first answer (so
      // that every replica often answers with the same tombstone, and the read purges it).
      source: fc.constantFrom("point" as const, "held" as const, "echo" as const, "echo" as const),
      twice: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ _tag: fc.constant("Deadline" as const), request: fc.nat(3) }),
  },
  {
    weight: 2,
    arbitrary: landArb(keys.length),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Tick" as const),
      dt: fc.constantFrom(0, 100, 1500),
    }),
  },
)

/** A GET this node coordinates, as the model follows it. */
interface Shadow {
  readonly rid: number
  readonly key: string
  readonly client: number
  readonly asked: ReadonlyArray<(typeof ids)[number]>
  readonly request: Get.GetRequest
  done: boolean
}

/** 300 runs from seed 1 hold 3 refused purges (seeds 1-12 tried: 0 to 3). */
const FIXED_SEED = 1
const FIXED_RUNS = 300

test("KV-10, KV-12: a node applies its GET coordinator's decisions exactly: reads to every other replica asked, its own read, one reply after the writes, read repairs sent after the writes or merged into what it holds now, purges sent after the writes and applied here only to the object named", () => {
  const seen = {
    gets: 0,
    answers: 0,
    strangers: 0,
    duplicates: 0,
    afterDone: 0,
    deadlines: 0,
    replies: 0,
    remoteRepairs: 0,
    localRepairs: 0,
    purgesSent: 0,
    localPurges: 0,
    localPurgesRefused: 0,
  }
  const property = fc.property(
    historyArb,
    fc.array(fc.tuple(fc.nat(keys.length - 1), fc.nat(20)), { maxLength: 3 }),
    fc.array(moveArb, { minLength: 1, maxLength: 40 }),
    (points, preload, moves) => {
      const state = Node.init(config, 0)
      const store = new MemoryStore()
      const objAt = (point: number) => points[point % points.length]!
      for (const [k, point] of preload) {
        store.apply({ _tag: "Persist", key: keys[k]!, obj: objAt(point) })
      }
      let now = 10_000
      let client = 0
      const shadows: Array<Shadow> = []
      const stats = { gets: 0, readRepairs: 0, purges: 0 }

      /**
       * What applying a coordinator's outputs must write and release, from the store as it is
       * before the step (`local`: the object this node will hold, the step's writes so far
       * included).
       */
      const apply = (
        s: Shadow,
        input: Get.GetInput,
        persist: Array<Command>,
        after: Array<Command>,
      ): void => {
        const view: Get.GetView = {
          now,
          timeoutMs: config.requestTimeoutMs,
          tombstoneGraceMs: config.tombstoneGraceMs,
          reconcile: (obj) => reconcile(state, s.key, obj),
        }
        const { outputs, done } = Get.step(s.request, input, view)
        if (done) s.done = true
        for (const o of outputs) {
          switch (o._tag) {
            case "Reply":
              seen.replies++
              after.push({ _tag: "Reply", client: s.client, result: o.result })
              break
            case "Repair":
              stats.readRepairs++
              if (o.node === self) {
                seen.localRepairs++
                let local = store.get(s.key) ?? Version.empty
                for (const c of persist) if (c._tag === "Persist" && c.key === s.key) local = c.obj
                const merged = reconcile(state, s.key, Version.sync(local, o.obj))
                if (!Version.equals(merged, local)) {
                  persist.push({ _tag: "Persist", key: s.key, obj: merged })
                }
              } else {
                seen.remoteRepairs++
                const message: PeerMessage = {
                  _tag: "Repair",
                  key: s.key,
                  obj: o.obj,
                  at: o.at,
                }
                after.push({ _tag: "Send", to: o.node, message })
              }
              break
            case "Purge":
              stats.purges++
              for (const node of o.nodes) {
                if (node !== self) {
                  seen.purgesSent++
                  const message: PeerMessage = { _tag: "Purge", key: s.key, obj: o.obj }
                  after.push({ _tag: "Send", to: node, message })
                } else if (Version.equals(store.get(s.key) ?? Version.empty, o.obj)) {
                  seen.localPurges++
                  persist.push({ _tag: "Persist", key: s.key, obj: purged(o.obj) })
                } else seen.localPurgesRefused++
              }
              break
          }
        }
      }

      for (const [i, m] of moves.entries()) {
        const what = `move ${i} (${m._tag})`
        let event: Event
        let wantSend: Array<Command> | undefined
        let wantPersist: Array<Command> | undefined
        let wantAfter: Array<Command> | undefined
        let opened: Shadow | undefined
        const pick = (n: number): Shadow | undefined =>
          shadows.length === 0 ? undefined : shadows[shadows.length - 1 - (n % shadows.length)]
        switch (m._tag) {
          case "Start": {
            const key = keys[m.key]!
            const { asked, substitutes } = readSet(state, key, now, undefined)
            client++
            event = { _tag: "ClientRequested", now, client, op: { _tag: "Get", key, r: m.r } }
            if (asked.length - substitutes.size < m.r) break // refused: not this file's
            stats.gets++
            seen.gets++
            const rid = state.nextRid
            const s: Shadow = {
              rid,
              key,
              client,
              asked,
              request: Get.make(key, asked, m.r, substitutes, now),
              done: false,
            }
            opened = s
            wantSend = asked
              .filter((n) => n !== self)
              .map((to) => ({ _tag: "Send", to, message: { _tag: "ReadRequest", rid, key } }))
            wantPersist = []
            wantAfter = []
            if (asked.includes(self)) {
              const obj = store.get(key) ?? Version.empty
              apply(s, { _tag: "Read", from: self, obj }, wantPersist, wantAfter)
            }
            break
          }
          case "Answer": {
            const s = pick(m.request)
            if (s === undefined) {
              event = { _tag: "TickElapsed", now }
              break
            }
            const replicas = s.asked.filter((n) => n !== self)
            const from =
              m.from < replicas.length
                ? replicas[m.from]!
                : (peers.find((p) => !s.asked.includes(p)) ?? replicas[0]!)
            const first = s.request.responses.values().next().value
            const obj =
              (m.source === "held" ? store.get(s.key) : m.source === "echo" ? first : undefined) ??
              objAt(m.point)
            event = {
              _tag: "MessageReceived",
              now,
              from,
              message: { _tag: "ReadResponse", rid: s.rid, obj },
            }
            seen.answers++
            if (!s.asked.includes(from)) seen.strangers++
            if (s.request.responses.has(from)) seen.duplicates++
            wantSend = []
            wantPersist = []
            wantAfter = []
            if (s.done) seen.afterDone++
            else apply(s, { _tag: "Read", from, obj }, wantPersist, wantAfter)
            break
          }
          case "Deadline": {
            const s = pick(m.request)
            if (s === undefined) {
              event = { _tag: "TickElapsed", now }
              break
            }
            event = { _tag: "TimerFired", now, rid: s.rid, kind: "Deadline" }
            wantSend = []
            wantPersist = []
            wantAfter = []
            if (s.done) seen.afterDone++
            else {
              seen.deadlines++
              apply(s, { _tag: "Deadline" }, wantPersist, wantAfter)
            }
            break
          }
          case "Land": {
            // A write lands here, between a read and its purge among others (its merge is
            // KV-10's business): a point of the history, or a delete of what is held (a
            // tombstone long past its grace).
            const key = keys[m.key]!
            event = landing(m, key, store.get(key) ?? Version.empty, objAt(m.point), now, 1)
            break
          }
          case "Tick":
            now += m.dt
            event = { _tag: "TickElapsed", now }
            break
        }
        const ready = stepAndApply(state, event, store)
        if (wantSend !== undefined) {
          const reads = ready.send.filter(
            (c) => c._tag === "Send" && c.message._tag === "ReadRequest",
          )
          assert.deepEqual(reads, wantSend, `${what}: read requests`)
        }
        if (wantPersist !== undefined) {
          assert.deepEqual(ready.persist, wantPersist, `${what}: store writes`)
        }
        if (wantAfter !== undefined) {
          assert.deepEqual(ready.afterPersist, wantAfter, `${what}: released after the writes`)
        }
        if (opened !== undefined) {
          assert.deepEqual(
            ready.timers.filter((t) => t.rid === opened.rid),
            [{ _tag: "SetTimer", rid: opened.rid, kind: "Deadline", at: now + 2000 }],
            `${what}: the deadline`,
          )
          shadows.push(opened)
        }
        if (m._tag === "Answer" && m.twice && wantAfter !== undefined) {
          // The same answer again: a duplicate, never counted twice (KV-11's business), and
          // never a second reply or repair from this node.
          const again = stepAndApply(state, event, store)
          const s = pick(m.request)!
          const persist: Array<Command> = []
          const after: Array<Command> = []
          if (s.done) seen.afterDone++
          else if (event._tag === "MessageReceived" && event.message._tag === "ReadResponse") {
            seen.duplicates++
            apply(s, { _tag: "Read", from: event.from, obj: event.message.obj }, persist, after)
          }
          assert.deepEqual(again.persist, persist, `${what}, again: store writes`)
          assert.deepEqual(again.afterPersist, after, `${what}, again: released after the writes`)
        }
        for (const s of shadows) {
          assert.equal(state.pending.has(s.rid), !s.done, `${what}: request ${s.rid} open`)
        }
        assert.equal(state.stats.gets, stats.gets, `${what}: GETs counted`)
        assert.equal(state.stats.readRepairs, stats.readRepairs, `${what}: read repairs counted`)
        assert.equal(state.stats.purges, stats.purges, `${what}: purges counted`)
      }
    },
  )
  // A purge this node refuses (a write landed between the read and the purge) is rare: 4 to 12
  // in 1000 random runs over ten runs of the suite. A first batch from a fixed seed holds 3 of
  // them, which makes the floor certain on unchanged code.
  assertFixedBatch(property, FIXED_RUNS, FIXED_SEED)
  fc.assert(property, params(1000))
  console.log(`# GET path: ${JSON.stringify(seen)}`)
  assertFloors(seen, {
    gets: 500,
    answers: 1000,
    strangers: 50,
    duplicates: 200,
    afterDone: 200,
    deadlines: 50,
    replies: 300,
    remoteRepairs: 100,
    localRepairs: 30,
    purgesSent: 30,
    localPurges: 12,
    localPurgesRefused: 3,
  })
})
