/**
 * The forwarder of a write (impl/core/node-forward.ts), stepped directly through `Node.step`
 * against a small model of its rules (KV-7, KV-9):
 *
 *  - a client's write of a key this node does not replicate goes to one replica, the ones
 *    believed up first in preference order, with a deadline and a failover timer;
 *  - a claim is granted to the first replica the write was sent to that claims it, again to
 *    the same claim, and refused otherwise (another replica, one never sent to, a second
 *    coordinator of the grantee, a request that is over);
 *  - once granted, only the grantee's answer reaches the client; before, a refusal as no
 *    replica fails over to the next replica, and any other answer goes to the client;
 *  - the failover timer waits while a grant is held or the current replica is believed up, and
 *    else sends the write to the next replica (never past the last);
 *  - the deadline fails the write, after the step's writes, naming every replica tried;
 *  - the counters of forwarded writes, refused claims and failures count them.
 *
 * Peers go quiet and come back (so that the order of replicas and the failover timer's verdict
 * change); claims, answers and timers come for the request they name or an old one, twice, from
 * strangers.
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import { ForwardTimeout, NotGranted, NotReplica } from "../impl/core/failure.ts"
import { NodeId } from "../impl/core/ids.ts"
import type { ClientResult, Command, Event, PutOp } from "../impl/core/messages.ts"
import * as Node from "../impl/core/node.ts"
import { preferred } from "../impl/core/node-placement.ts"
import { believedUp } from "../impl/core/node-state.ts"
import { MemoryStore } from "../impl/sim/memory-store.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import { config, ids, keysWhere, self, heartbeat, stepAndApply } from "./helpers/machine.ts"
import { test } from "./helpers/test.ts"

/** Keys this node does not replicate: a client's write of one is forwarded. */
const keys = keysWhere("fwd", false, 2)
const peers = ids.filter((id) => id !== self)
/** Not a member: every peer replicates the keys, so a stranger is from outside. */
const stranger = NodeId("n9")

type Move =
  | { _tag: "Start"; key: number }
  | { _tag: "Claim"; request: number; from: number; put: number }
  | {
      _tag: "Answer"
      request: number
      from: number
      result: "ok" | "notReplica" | "failed"
    }
  | { _tag: "Failover"; request: number }
  | { _tag: "Deadline"; request: number }
  | { _tag: "Beat"; from: number }
  | { _tag: "Tick"; dt: number }

const moveArb: fc.Arbitrary<Move> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({ _tag: fc.constant("Start" as const), key: fc.nat(keys.length - 1) }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      _tag: fc.constant("Claim" as const),
      request: fc.nat(3),
      // Index into the write's replicas, or past them: a stranger.
      from: fc.nat(3),
      put: fc.nat(1),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      _tag: fc.constant("Answer" as const),
      request: fc.nat(3),
      from: fc.nat(3),
      result: fc.constantFrom(
        "ok" as const,
        "notReplica" as const,
        "notReplica" as const,
        "failed" as const,
      ),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ _tag: fc.constant("Failover" as const), request: fc.nat(3) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ _tag: fc.constant("Deadline" as const), request: fc.nat(3) }),
  },
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

/** A forwarded write, as the model follows it. */
interface Forward {
  readonly rid: number
  readonly client: number
  readonly op: PutOp
  readonly candidates: ReadonlyArray<NodeId>
  attempt: number
  granted: { node: NodeId; put: number } | undefined
  done: boolean
}

const resultOf = (kind: "ok" | "notReplica" | "failed", from: NodeId): ClientResult => {
  switch (kind) {
    case "ok":
      return { _tag: "PutOk", context: [[from, 1]], dot: [from, 1], existed: false }
    case "notReplica":
      return { _tag: "Failed", error: new NotReplica() }
    case "failed":
      return { _tag: "Failed", error: new NotGranted() }
  }
}

test("KV-7, KV-9: a node forwards a write to one replica at a time, believed-up ones first, grants it to its first claimant only, relays only the grantee's answer, fails over only while nobody holds the grant and the replica is believed down, and fails the write at its deadline", () => {
  const seen = {
    forwards: 0,
    reordered: 0,
    claims: 0,
    granted: 0,
    regranted: 0,
    refusedClaims: 0,
    strangerClaims: 0,
    unsentClaims: 0,
    claimsAfterDone: 0,
    answers: 0,
    relayed: 0,
    ignoredAnswers: 0,
    failoversOnRefusal: 0,
    timersWaiting: 0,
    timersFailingOver: 0,
    timersPastLast: 0,
    deadlines: 0,
    afterDone: 0,
  }
  const property = fc.property(fc.array(moveArb, { minLength: 1, maxLength: 40 }), (moves) => {
    const state = Node.init(config, 0)
    const store = new MemoryStore()
    let now = 10_000
    let client = 0
    const forwards: Array<Forward> = []
    const stats = { forwarded: 0, claimsRefused: 0, failures: 0 }

    for (const [i, m] of moves.entries()) {
      const what = `move ${i} (${m._tag})`
      const send: Array<Command> = []
      const after: Array<Command> = []
      const timers: Array<Command> = []
      let checked = true
      let event: Event
      const pick = (n: number): Forward | undefined =>
        forwards.length === 0 ? undefined : forwards[forwards.length - 1 - (n % forwards.length)]
      const idle = (): Event => {
        checked = false
        return { _tag: "TickElapsed", now }
      }
      /** The write goes to its current replica, with a failover timer. */
      const sendTo = (f: Forward): void => {
        const to = f.candidates[f.attempt % f.candidates.length]!
        send.push({
          _tag: "Send",
          to,
          message: { _tag: "CoordinateRequest", rid: f.rid, op: f.op },
        })
        timers.push({
          _tag: "SetTimer",
          rid: f.rid,
          kind: "Forward",
          at: now + config.forwardTimeoutMs,
        })
      }
      const close = (f: Forward): void => {
        f.done = true
      }
      /** A node named by index into the write's replicas, or a stranger past them. */
      const nodeOf = (f: Forward, n: number): NodeId =>
        n < f.candidates.length ? f.candidates[n]! : stranger
      switch (m._tag) {
        case "Start": {
          const key = keys[m.key]!
          client++
          const op: PutOp = { _tag: "Put", key, value: "v", context: null }
          event = { _tag: "ClientRequested", now, client, op }
          const replicas = preferred(state, key, undefined)
          const up = replicas.filter((r) => believedUp(state, r, now))
          const f: Forward = {
            rid: state.nextRid,
            client,
            op,
            candidates: [...up, ...replicas.filter((r) => !up.includes(r))],
            attempt: 0,
            granted: undefined,
            done: false,
          }
          if (f.candidates.some((n, j) => n !== replicas[j])) seen.reordered++
          seen.forwards++
          stats.forwarded++
          timers.push({
            _tag: "SetTimer",
            rid: f.rid,
            kind: "Deadline",
            at: now + config.forwardDeadlineMs,
          })
          sendTo(f)
          forwards.push(f)
          break
        }
        case "Claim": {
          const f = pick(m.request)
          if (f === undefined) {
            event = idle()
            break
          }
          const from = nodeOf(f, m.from)
          const put = 1000 + m.put
          event = {
            _tag: "MessageReceived",
            now,
            from,
            message: { _tag: "CoordinateClaim", rid: f.rid, put },
          }
          seen.claims++
          if (!f.candidates.includes(from)) seen.strangerClaims++
          else if (!f.candidates.slice(0, f.attempt + 1).includes(from)) seen.unsentClaims++
          if (f.done) seen.claimsAfterDone++
          const sentTo = f.candidates.slice(0, f.attempt + 1)
          const grant =
            !f.done &&
            sentTo.includes(from) &&
            (f.granted === undefined || (f.granted.node === from && f.granted.put === put))
          if (grant) {
            if (f.granted === undefined) seen.granted++
            else seen.regranted++
            f.granted = { node: from, put }
          } else {
            seen.refusedClaims++
            stats.claimsRefused++
          }
          send.push({
            _tag: "Send",
            to: from,
            message: { _tag: "CoordinateGrant", rid: put, granted: grant },
          })
          break
        }
        case "Answer": {
          const f = pick(m.request)
          if (f === undefined) {
            event = idle()
            break
          }
          const from = nodeOf(f, m.from)
          const result = resultOf(m.result, from)
          event = {
            _tag: "MessageReceived",
            now,
            from,
            message: { _tag: "CoordinateResponse", rid: f.rid, result },
          }
          seen.answers++
          if (f.done) seen.afterDone++
          else if (f.granted !== undefined && f.granted.node !== from) seen.ignoredAnswers++
          else if (
            m.result === "notReplica" &&
            f.granted === undefined &&
            f.attempt + 1 < f.candidates.length
          ) {
            seen.failoversOnRefusal++
            f.attempt++
            sendTo(f)
          } else {
            seen.relayed++
            close(f)
            if (result._tag === "Failed") stats.failures++
            send.push({ _tag: "Reply", client: f.client, result })
          }
          break
        }
        case "Failover": {
          const f = pick(m.request)
          if (f === undefined) {
            event = idle()
            break
          }
          event = { _tag: "TimerFired", now, rid: f.rid, kind: "Forward" }
          if (f.done) {
            seen.afterDone++
            break
          }
          const current = f.candidates[f.attempt % f.candidates.length]!
          if (f.granted !== undefined || believedUp(state, current, now)) {
            seen.timersWaiting++
            timers.push({
              _tag: "SetTimer",
              rid: f.rid,
              kind: "Forward",
              at: now + config.forwardTimeoutMs,
            })
          } else {
            f.attempt++
            if (f.attempt < f.candidates.length) {
              seen.timersFailingOver++
              sendTo(f)
            } else seen.timersPastLast++
          }
          break
        }
        case "Deadline": {
          const f = pick(m.request)
          if (f === undefined) {
            event = idle()
            break
          }
          event = { _tag: "TimerFired", now, rid: f.rid, kind: "Deadline" }
          if (f.done) {
            seen.afterDone++
            break
          }
          seen.deadlines++
          close(f)
          stats.failures++
          after.push({
            _tag: "Reply",
            client: f.client,
            result: {
              _tag: "Failed",
              error: new ForwardTimeout({
                withinMs: config.forwardDeadlineMs,
                tried: f.candidates,
              }),
            },
          })
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
      const ready = stepAndApply(state, event, store)
      if (checked) {
        assert.deepEqual(ready.send, send, `${what}: sent at once`)
        assert.deepEqual(ready.afterPersist, after, `${what}: released after the writes`)
        assert.deepEqual(ready.timers, timers, `${what}: timers`)
        assert.deepEqual(ready.persist, [], `${what}: store writes`)
      }
      for (const f of forwards) {
        assert.equal(state.pending.has(f.rid), !f.done, `${what}: request ${f.rid} open`)
      }
      assert.equal(state.stats.forwarded, stats.forwarded, `${what}: forwarded writes counted`)
      assert.equal(
        state.stats.claimsRefused,
        stats.claimsRefused,
        `${what}: refused claims counted`,
      )
      assert.equal(state.stats.failures, stats.failures, `${what}: failures counted`)
    }
  })
  fc.assert(property, params(1000))
  console.log(`# forward path: ${JSON.stringify(seen)}`)
  // About half the smallest of three runs' draws (docs/verification.md, "Floor margins").
  assertFloors(seen, {
    forwards: 1100,
    reordered: 350,
    claims: 1400,
    granted: 200,
    regranted: 17,
    refusedClaims: 1200,
    strangerClaims: 350,
    unsentClaims: 500,
    claimsAfterDone: 650,
    answers: 1400,
    relayed: 350,
    ignoredAnswers: 110,
    failoversOnRefusal: 250,
    timersWaiting: 350,
    timersFailingOver: 170,
    timersPastLast: 21,
    deadlines: 180,
    afterDone: 1300,
  })
})
