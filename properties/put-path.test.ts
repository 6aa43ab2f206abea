/**
 * The node's side of a PUT/DEL (impl/core/node-put.ts), stepped directly through `Node.step`:
 * the put coordinator (put-coordinator.ts, checked by properties/coordinators.test.ts) decides;
 * this checks that the node applies every decision exactly, against a shadow coordinator fed
 * the same inputs:
 *
 *  - a write starts with the read set and local object the node has then, asks every other
 *    replica of it at once (ReadRequest), and sets one deadline; a forwarded write first claims
 *    the right to run from its forwarder (KV-9), unless failover is the unsafe kind;
 *  - each answer, grant, acknowledgement and the deadline go to the request they name while it
 *    is open, and nowhere once it is over; a grant counts only from the write's own forwarder;
 *  - the hybrid clock moves exactly where the coordinator moves it (RECLAIM-2: the event is
 *    minted over the object held when it is minted, writes landed since included);
 *  - the written object is persisted, and its copies (WriteRequest, or HintedWrite to a
 *    substitute) and the reply (to the client, or CoordinateResponse to the forwarder) leave
 *    only after the write is durable (KV-1);
 *  - a forwarded write of a key this node does not replicate is refused before anything runs;
 *  - the counters of PUTs and failures count them.
 *
 * Writes are plain, conditional, with a context from a causal history, deletes, or increments
 * (of values that are not integers, so that some fail after moving the clock); peers go quiet
 * and come back (so that copies go to substitutes as hints); writes land between a read and
 * its mint; answers come twice, late, from strangers, for old requests.
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import { NotReplica } from "../impl/core/failure.ts"
import type { NodeId } from "../impl/core/ids.ts"
import type { ClientResult, Command, Event, PeerMessage, PutOp } from "../impl/core/messages.ts"
import * as Node from "../impl/core/node.ts"
import {
  pendingOwnersOf,
  preferred,
  readSet,
  seesMajority,
  targetsOf,
} from "../impl/core/node-placement.ts"
import { reconcile } from "../impl/core/node-state.ts"
import * as Put from "../impl/core/put-coordinator.ts"
import * as Version from "../impl/core/version.ts"
import { MemoryStore } from "../impl/sim/memory-store.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import { causalHistory } from "./helpers/histories.ts"
import {
  config as base,
  ids,
  keysWhere,
  type Land,
  landArb,
  landing,
  self,
  heartbeat,
  stepAndApply,
} from "./helpers/machine.ts"
import { test } from "./helpers/test.ts"

/** Two keys this node replicates, one it does not (a client's write of it is forwarded). */
const keys = [...keysWhere("put", true, 2), ...keysWhere("put", false, 1)]
const peers = ids.filter((id) => id !== self)

const historyArb = causalHistory({
  actors: ["n1", "n2", "n3"],
  values: fc.constantFrom("a", "7"),
  maxWrites: 6,
})

type Kind = "set" | "del" | "nx" | "xx" | "cas" | "incr"

type Move =
  | {
      _tag: "Start"
      key: number
      kind: Kind
      withContext: boolean
      point: number
      w: number
      forwarder: number | null
    }
  | {
      _tag: "Answer"
      from: number
      request: number
      point: number
      source: "point" | "held"
      twice: boolean
    }
  | { _tag: "Ack"; from: number; request: number; twice: boolean }
  | { _tag: "Grant"; request: number; own: boolean; granted: boolean }
  | { _tag: "Deadline"; request: number }
  | Land
  | { _tag: "Beat"; from: number }
  | { _tag: "Tick"; dt: number }

const moveArb: fc.Arbitrary<Move> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("Start" as const),
      key: fc.nat(keys.length - 1),
      kind: fc.constantFrom<Kind>("set", "set", "del", "nx", "xx", "cas", "incr"),
      withContext: fc.boolean(),
      point: fc.nat(20),
      w: fc.integer({ min: 1, max: 3 }),
      // A client's write (two in three), or one a peer forwarded here.
      forwarder: fc.oneof(fc.constant(null), fc.constant(null), fc.nat(peers.length - 1)),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      _tag: fc.constant("Answer" as const),
      // Index into the request's other replicas, or past them: a stranger.
      from: fc.nat(3),
      request: fc.nat(3),
      point: fc.nat(20),
      source: fc.constantFrom("point" as const, "held" as const),
      twice: fc.boolean(),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      _tag: fc.constant("Ack" as const),
      from: fc.nat(3),
      request: fc.nat(3),
      twice: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("Grant" as const),
      request: fc.nat(3),
      own: fc.boolean(),
      granted: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ _tag: fc.constant("Deadline" as const), request: fc.nat(3) }),
  },
  { weight: 2, arbitrary: landArb(keys.length) },
  {
    weight: 2,
    arbitrary: fc.record({ _tag: fc.constant("Beat" as const), from: fc.nat(peers.length - 1) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Tick" as const),
      dt: fc.constantFrom(0, 100, 1500, 6000),
    }),
  },
)

/** A write this node coordinates, as the model follows it. */
interface Shadow {
  readonly rid: number
  readonly key: string
  /** The forwarder and its request id, or the client. */
  readonly origin: { node: NodeId; rid: number } | { client: number }
  readonly request: Put.PutRequest
  done: boolean
}

/** What one step must emit, per part of its Ready. */
interface Want {
  send: Array<Command>
  persist: Array<Command>
  after: Array<Command>
  /** Where the step leaves the hybrid clock (undefined: where it was, or moved by a merge). */
  clock: number | undefined
  failures: number
}

const opOf = (key: string, kind: Kind, context: Version.Clock | null, w: number): PutOp => {
  const op = { _tag: "Put" as const, key, context, w }
  switch (kind) {
    case "set":
      return { ...op, value: "v" }
    case "del":
      return { ...op, value: null }
    case "nx":
    case "xx":
      return { ...op, value: "v", cond: kind }
    case "cas":
      return { ...op, value: "v", cond: "context" }
    case "incr":
      return { ...op, value: null, incr: { by: "1", float: false } }
  }
}

test("KV-1, KV-9, RECLAIM-2: a node applies its PUT coordinator's decisions exactly: reads to every other replica, a claim to the forwarder, the clock moved where the coordinator moves it, the write persisted before its copies and its reply leave, grants only from the forwarder, nothing after the request is over", () => {
  const seen = {
    starts: 0,
    forwarded: 0,
    refused: 0,
    minority: 0,
    answers: 0,
    strangers: 0,
    duplicates: 0,
    afterDone: 0,
    grants: 0,
    refusedGrants: 0,
    foreignGrants: 0,
    acks: 0,
    deadlines: 0,
    clocks: 0,
    persists: 0,
    writeRequests: 0,
    hintedWrites: 0,
    okReplies: 0,
    failedReplies: 0,
    forwarderReplies: 0,
    skipped: 0,
  }
  const property = fc.property(
    historyArb,
    fc.constantFrom("ap" as const, "ap" as const, "cp" as const),
    fc.boolean(),
    fc.array(moveArb, { minLength: 1, maxLength: 40 }),
    (points, mode, unsafeFailover, moves) => {
      const config: Node.Config = {
        ...base,
        mode,
        unsafeFailover,
        tombstoneGraceMs: 1000,
        requestTimeoutMs: 2000,
      }
      const state = Node.init(config, 0)
      const store = new MemoryStore()
      const objAt = (point: number) => points[point % points.length]!
      let now = 10_000
      let client = 0
      let forwarderRid = 0
      const shadows: Array<Shadow> = []
      let puts = 0
      let failures = 0

      const reply = (s: Shadow, result: ClientResult, want: Want): void => {
        if (result._tag === "Failed") {
          seen.failedReplies++
          want.failures++
        } else if (result._tag === "PutOk") seen.okReplies++
        else seen.skipped++
        if ("client" in s.origin) {
          want.after.push({ _tag: "Reply", client: s.origin.client, result })
        } else {
          seen.forwarderReplies++
          const message: PeerMessage = { _tag: "CoordinateResponse", rid: s.origin.rid, result }
          want.after.push({ _tag: "Send", to: s.origin.node, message })
        }
      }

      /** What applying the coordinator's outputs for `input` must emit (from the state now). */
      const apply = (s: Shadow, input: Put.PutInput, want: Want): void => {
        const view: Put.PutView = {
          now,
          self,
          mode,
          r: config.r,
          timeoutMs: config.requestTimeoutMs,
          hlc: state.hlc,
          local: () => store.get(s.key) ?? Version.empty,
          reconcile: (obj) => reconcile(state, s.key, obj),
          placement: () => ({
            targets: targetsOf(state, s.key, now, undefined),
            pendingOwners: pendingOwnersOf(state, s.key, undefined),
          }),
        }
        const { outputs, done } = Put.step(s.request, input, view)
        if (done) s.done = true
        for (const o of outputs) {
          switch (o._tag) {
            case "Ask":
              want.send.push({
                _tag: "Send",
                to: o.node,
                message: { _tag: "ReadRequest", rid: s.rid, key: s.key },
              })
              break
            case "Clock":
              seen.clocks++
              want.clock = o.hlc
              break
            case "Persist":
              seen.persists++
              want.persist.push({ _tag: "Persist", key: s.key, obj: o.obj })
              break
            case "Replicate": {
              const { node, hintFor } = o.target
              const base = { rid: s.rid, key: s.key, obj: o.obj, at: now }
              const message: PeerMessage =
                hintFor === undefined
                  ? { _tag: "WriteRequest", ...base }
                  : { _tag: "HintedWrite", ...base, owner: hintFor }
              if (hintFor === undefined) seen.writeRequests++
              else seen.hintedWrites++
              want.after.push({ _tag: "Send", to: node, message })
              break
            }
            case "Reply":
              reply(s, o.result, want)
              break
          }
        }
      }

      for (const [i, m] of moves.entries()) {
        const what = `move ${i} (${m._tag})`
        const want: Want = { send: [], persist: [], after: [], clock: undefined, failures: 0 }
        let checked = true
        let event: Event
        let opened: Shadow | undefined
        const pick = (n: number): Shadow | undefined =>
          shadows.length === 0 ? undefined : shadows[shadows.length - 1 - (n % shadows.length)]
        const idle = (): Event => {
          checked = false
          return { _tag: "TickElapsed", now }
        }
        switch (m._tag) {
          case "Start": {
            const key = keys[m.key]!
            const context = m.withContext ? Version.context(objAt(m.point)) : null
            const op = opOf(key, m.kind, context, m.w)
            const replicated = preferred(state, key, undefined).includes(self)
            let origin: Shadow["origin"]
            if (m.forwarder === null) {
              client++
              origin = { client }
              event = { _tag: "ClientRequested", now, client, op }
              if (!replicated) {
                // Forwarded to a replica: node-forward.ts's business.
                checked = false
                break
              }
              if (mode === "cp" && !seesMajority(state, now)) {
                // Refused before a coordinator starts (PART-1 checks the error).
                seen.minority++
                checked = false
                break
              }
            } else {
              const node = peers[m.forwarder]!
              origin = { node, rid: ++forwarderRid }
              event = {
                _tag: "MessageReceived",
                now,
                from: node,
                message: { _tag: "CoordinateRequest", rid: origin.rid, op },
              }
              if (!replicated) {
                seen.refused++
                want.failures++
                const message: PeerMessage = {
                  _tag: "CoordinateResponse",
                  rid: origin.rid,
                  result: { _tag: "Failed", error: new NotReplica() },
                }
                want.after.push({ _tag: "Send", to: node, message })
                break
              }
              seen.forwarded++
            }
            seen.starts++
            puts++
            const rid = state.nextRid
            const { asked, substitutes, waitFor } = readSet(state, key, now, undefined)
            const waitsForGrant = "node" in origin && !unsafeFailover
            const s: Shadow = {
              rid,
              key,
              origin,
              request: Put.make({
                op,
                self,
                r: config.r,
                w: m.w,
                local: store.get(key) ?? Version.empty,
                asked,
                substitutes,
                waitFor,
                waitsForGrant,
              }),
              done: false,
            }
            opened = s
            if ("node" in origin && waitsForGrant) {
              const claim: PeerMessage = { _tag: "CoordinateClaim", rid: origin.rid, put: rid }
              want.send.push({ _tag: "Send", to: origin.node, message: claim })
            }
            apply(s, { _tag: "Start" }, want)
            break
          }
          case "Answer": {
            const s = pick(m.request)
            if (s === undefined) {
              event = idle()
              break
            }
            const others = s.request.replicas.filter((n) => n !== self)
            const from =
              m.from < others.length
                ? others[m.from]!
                : (peers.find((p) => !s.request.replicas.includes(p)) ?? others[0]!)
            const obj = (m.source === "held" ? store.get(s.key) : undefined) ?? objAt(m.point)
            event = {
              _tag: "MessageReceived",
              now,
              from,
              message: { _tag: "ReadResponse", rid: s.rid, obj },
            }
            seen.answers++
            if (!s.request.replicas.includes(from)) seen.strangers++
            if (s.request.responses.has(from)) seen.duplicates++
            if (s.done) seen.afterDone++
            else apply(s, { _tag: "Read", from, obj }, want)
            break
          }
          case "Ack": {
            const s = pick(m.request)
            if (s === undefined) {
              event = idle()
              break
            }
            const targets = s.request.targets.map((t) => t.node).filter((n) => n !== self)
            const others = targets.length > 0 ? targets : peers
            const from =
              m.from < others.length
                ? others[m.from]!
                : (peers.find((p) => !others.includes(p)) ?? others[0]!)
            event = {
              _tag: "MessageReceived",
              now,
              from,
              message: { _tag: "WriteAck", rid: s.rid },
            }
            seen.acks++
            if (s.done) seen.afterDone++
            else apply(s, { _tag: "Ack", from }, want)
            break
          }
          case "Grant": {
            const s = pick(m.request)
            if (s === undefined) {
              event = idle()
              break
            }
            const forwarder = "node" in s.origin ? s.origin.node : undefined
            const from =
              m.own && forwarder !== undefined
                ? forwarder
                : (peers.find((p) => p !== forwarder && !s.request.replicas.includes(p)) ??
                  peers.find((p) => p !== forwarder)!)
            event = {
              _tag: "MessageReceived",
              now,
              from,
              message: { _tag: "CoordinateGrant", rid: s.rid, granted: m.granted },
            }
            if (from !== forwarder) seen.foreignGrants++
            else if (s.done) seen.afterDone++
            else {
              seen.grants++
              if (!m.granted) seen.refusedGrants++
              apply(s, { _tag: "Grant", granted: m.granted }, want)
            }
            break
          }
          case "Deadline": {
            const s = pick(m.request)
            if (s === undefined) {
              event = idle()
              break
            }
            event = { _tag: "TimerFired", now, rid: s.rid, kind: "Deadline" }
            if (s.done) seen.afterDone++
            else {
              seen.deadlines++
              apply(s, { _tag: "Deadline" }, want)
            }
            break
          }
          case "Land": {
            // A write lands here: the next mint must be over it (RECLAIM-2).
            const key = keys[m.key]!
            event = landing(m, key, store.get(key) ?? Version.empty, objAt(m.point), now, 1)
            checked = false
            break
          }
          case "Beat":
            event = heartbeat(peers[m.from]!, now)
            checked = false
            break
          case "Tick":
            now += m.dt
            event = idle()
            break
        }
        const hlcBefore = state.hlc
        const ready = stepAndApply(state, event, store)
        if (checked) {
          failures += want.failures
          assert.deepEqual(ready.send, want.send, `${what}: sent at once`)
          assert.deepEqual(ready.persist, want.persist, `${what}: store writes`)
          assert.deepEqual(ready.afterPersist, want.after, `${what}: released after the writes`)
          assert.equal(state.hlc, want.clock ?? hlcBefore, `${what}: the hybrid clock`)
          if (opened !== undefined) {
            assert.deepEqual(
              ready.timers.filter((t) => t.rid === opened.rid),
              [{ _tag: "SetTimer", rid: opened.rid, kind: "Deadline", at: now + 2000 }],
              `${what}: the deadline`,
            )
          }
        }
        if (opened !== undefined) shadows.push(opened)
        if ((m._tag === "Answer" || m._tag === "Ack") && m.twice && checked) {
          // The same message again: never counted twice, never a second write or reply.
          const s = pick(m.request)!
          const again: Want = { send: [], persist: [], after: [], clock: undefined, failures: 0 }
          if (s.done) seen.afterDone++
          else if (event._tag === "MessageReceived") {
            seen.duplicates++
            apply(
              s,
              event.message._tag === "ReadResponse"
                ? { _tag: "Read", from: event.from, obj: event.message.obj }
                : { _tag: "Ack", from: event.from },
              again,
            )
          }
          const hlc = state.hlc
          const twice = stepAndApply(state, event, store)
          failures += again.failures
          assert.deepEqual(twice.send, again.send, `${what}, again: sent at once`)
          assert.deepEqual(twice.persist, again.persist, `${what}, again: store writes`)
          assert.deepEqual(twice.afterPersist, again.after, `${what}, again: released after`)
          assert.equal(state.hlc, again.clock ?? hlc, `${what}, again: the hybrid clock`)
        }
        for (const s of shadows) {
          assert.equal(state.pending.has(s.rid), !s.done, `${what}: request ${s.rid} open`)
        }
        assert.equal(state.stats.puts, puts, `${what}: PUTs counted`)
        if (checked) assert.equal(state.stats.failures, failures, `${what}: failures counted`)
        else failures = state.stats.failures
      }
    },
  )
  fc.assert(property, params(1500))
  console.log(`# PUT path: ${JSON.stringify(seen)}`)
  // About half the smallest of three runs' draws (docs/verification.md, "Floor margins").
  assertFloors(seen, {
    starts: 1000,
    forwarded: 400,
    refused: 200,
    minority: 150,
    answers: 1700,
    strangers: 700,
    duplicates: 1000,
    afterDone: 2500,
    grants: 100,
    refusedGrants: 50,
    foreignGrants: 600,
    acks: 1700,
    deadlines: 150,
    clocks: 350,
    persists: 340,
    writeRequests: 600,
    hintedWrites: 70,
    okReplies: 160,
    failedReplies: 180,
    forwarderReplies: 150,
    skipped: 100,
  })
})
