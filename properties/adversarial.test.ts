/**
 * The storage machine stepped directly (no simulator) by an adversary: every peer message a
 * network or a confused peer can produce — duplicated, reordered, late, unsolicited, from nodes
 * never asked, for request ids long gone, carrying stale objects or objects too old to accept.
 *
 *  - KV-10: a replica's object never regresses: after any message it descends what it held
 *    (the join of everything it took in), a message too old changes nothing, and a key goes
 *    only on a `Reap` naming exactly the object held. A hint goes only when its owner
 *    acknowledged exactly that hint.
 *  - KV-11: coordinators count each asked replica once: a GET answers once, only after R
 *    distinct replicas it asked answered, with the join of their first answers; a PUT answers
 *    once, only after W distinct targets acknowledged; unsolicited and late answers change
 *    nothing.
 *  - HLC-1: the hybrid clock's laws: tick strictly increases, observe is monotone and never
 *    goes back, a tick after observing t is above t.
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import * as Hlc from "../impl/core/hlc.ts"
import { NodeId } from "../impl/core/ids.ts"
import type { Command, Event, PeerMessage } from "../impl/core/messages.ts"
import * as Node from "../impl/core/node.ts"
import { commandsOf } from "../impl/core/ready.ts"
import * as Phi from "../impl/core/phi.ts"
import * as Version from "../impl/core/version.ts"
import { MemoryStore } from "../impl/sim/memory-store.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import { config, ids, keysWhere } from "./helpers/machine.ts"
import { causalHistory } from "./helpers/histories.ts"
import { test } from "./helpers/test.ts"

const key = keysWhere("adv", true, 1)[0]!
const STRANGER = NodeId("n9")
const peers = [...ids.slice(1), STRANGER]

/**
 * A shared causal history of one key, as objects at several points: writes by n1..n3 with
 * contexts read from earlier points (so some are concurrent), tombstones among them, and joins.
 * The adversary sends any of them, in any order, any number of times.
 */
const historyArb = causalHistory({
  actors: ["n1", "n2", "n3"],
  values: fc.string({ maxLength: 2 }),
  maxWrites: 12,
})

type Adversary = {
  kind: "WriteRequest" | "Repair" | "Handoff" | "StreamPush" | "HintedWrite" | "Reap" | "HandoffAck"
  point: number
  from: number
  rid: number
  /** 0: fresh; 1: stamped far in the past (older than the message-age bound). */
  old: boolean
}

const adversaryArb: fc.Arbitrary<Adversary> = fc.record({
  kind: fc.constantFrom(
    "WriteRequest" as const,
    "Repair" as const,
    "Handoff" as const,
    "StreamPush" as const,
    "HintedWrite" as const,
    "Reap" as const,
    "HandoffAck" as const,
  ),
  point: fc.nat(40),
  from: fc.nat(peers.length - 1),
  rid: fc.nat(5),
  old: fc.boolean(),
})

const messageOf = (a: Adversary, obj: Version.Obj, now: number): PeerMessage => {
  const at = a.old ? now - 10 * (config.maxMessageAgeMs + config.maxClockSkewMs) : now
  switch (a.kind) {
    case "WriteRequest":
      return { _tag: "WriteRequest", rid: a.rid, key, obj, at }
    case "Repair":
      return { _tag: "Repair", key, obj, at }
    case "Handoff":
      return { _tag: "Handoff", key, obj, at }
    case "StreamPush":
      return { _tag: "StreamPush", key, obj, at }
    case "HintedWrite":
      return { _tag: "HintedWrite", rid: a.rid, key, obj, owner: ids[1]!, at }
    case "Reap":
      return { _tag: "Reap", key, obj, at }
    case "HandoffAck":
      return { _tag: "HandoffAck", key, obj }
  }
}

test("KV-10: a replica's object never regresses under duplicated, reordered, stale, late and unsolicited object messages; a key goes only on a Reap naming it exactly, a hint only on its owner's acknowledgement of it", () => {
  const seen = { steps: 0, grew: 0, unchanged: 0, dropped: 0, reaped: 0, hintsDropped: 0 }
  fc.assert(
    fc.property(
      historyArb,
      fc.array(adversaryArb, { minLength: 1, maxLength: 60 }),
      (points, script) => {
        const state = Node.init(config, 0)
        const store = new MemoryStore()
        let now = 1000
        for (const a of script) {
          now += 7
          const obj = points[a.point % points.length]!
          const from = peers[a.from]!
          const before = store.get(key)
          const hintBefore = store.hint(ids[1]!, key)
          const message = messageOf(a, obj, now)
          const event: Event = { _tag: "MessageReceived", now, from, message }
          const commands = commandsOf(Node.step(state, event, store)[1])
          for (const c of commands as ReadonlyArray<Command>) store.apply(c)
          const after = store.get(key)
          seen.steps++
          const objectMessage = a.kind !== "HandoffAck" && a.kind !== "HintedWrite"
          if (a.old && a.kind !== "HandoffAck") {
            assert.ok(
              Version.equals(after ?? Version.empty, before ?? Version.empty),
              `a ${a.kind} older than the bound changed the object`,
            )
            seen.dropped++
            continue
          }
          if (after === undefined) {
            if (before === undefined) continue
            assert.equal(a.kind, "Reap", `the key went on a ${a.kind}`)
            assert.ok(Version.equals(before, obj), "a Reap removed an object it did not name")
            seen.reaped++
            continue
          }
          // The object held now descends the one held before: nothing it had seen is forgotten.
          assert.ok(
            Version.equals(Version.sync(before ?? Version.empty, after), after),
            `after a ${a.kind} the replica's object regressed`,
          )
          if (objectMessage && a.kind !== "Reap") {
            // And it is exactly the join of what it held and what it took in.
            assert.ok(
              Version.equals(after, Version.sync(before ?? Version.empty, obj)),
              `after a ${a.kind} the object is not the join`,
            )
            if (Version.equals(after, before ?? Version.empty)) seen.unchanged++
            else seen.grew++
          }
          const hintAfter = store.hint(ids[1]!, key)
          if (hintBefore !== undefined && hintAfter === undefined) {
            assert.equal(a.kind, "HandoffAck", `a hint went on a ${a.kind}`)
            assert.equal(from, ids[1], "a hint went on another node's acknowledgement")
            assert.ok(
              Version.equals(hintBefore, obj),
              "a hint went on an acknowledgement of another",
            )
            seen.hintsDropped++
          }
        }
      },
    ),
    params(300),
  )
  console.log(`# KV-10: ${JSON.stringify(seen)}`)
  assertFloors(seen, { grew: 280, unchanged: 200, dropped: 500, reaped: 5, hintsDropped: 5 })
})

type Move =
  /** A request asking for quorum `q` (R for a GET, W for a PUT). */
  | { _tag: "Get"; q: number }
  | { _tag: "Put"; q: number }
  /** Answer a request the node sent (rid `which` back), or one it never sent. */
  | { _tag: "Read"; which: number; from: number; point: number }
  | { _tag: "Ack"; which: number; from: number }
  | { _tag: "Deadline"; which: number }

const moveArb: fc.Arbitrary<Move> = fc.oneof(
  {
    weight: 1,
    arbitrary: fc.record({ _tag: fc.constant("Get" as const), q: fc.constantFrom(2, 3) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ _tag: fc.constant("Put" as const), q: fc.constantFrom(2, 3) }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      _tag: fc.constant("Read" as const),
      which: fc.nat(6),
      from: fc.nat(peers.length - 1),
      point: fc.nat(40),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      _tag: fc.constant("Ack" as const),
      which: fc.nat(6),
      from: fc.nat(peers.length - 1),
    }),
  },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Deadline" as const), which: fc.nat(6) }) },
)

interface Request {
  readonly client: number
  readonly kind: "Get" | "Put"
  rid: number | undefined
  /** Nodes this request asked (ReadRequest) and wrote to (WriteRequest/HintedWrite). */
  readonly asked: Set<NodeId>
  readonly targets: Set<NodeId>
  /** Distinct asked nodes that answered, and their first answers; distinct targets that acked. */
  readonly answers: Map<NodeId, Version.Obj>
  readonly acks: Set<NodeId>
  replies: number
  /** The coordinator's own answer: its object when the request arrived. */
  readonly local: Version.Obj
  /** The quorum it asked for. */
  readonly q: number
}

test("KV-11: a coordinator counts each replica it asked once: one answer per request, a GET only after R distinct answers (their join), a PUT only after W distinct acknowledgements, whatever duplicates, strangers and late answers arrive", () => {
  const seen = { getOk: 0, putOk: 0, strangers: 0, duplicates: 0, late: 0, failed: 0 }
  fc.assert(
    fc.property(historyArb, fc.array(moveArb, { minLength: 1, maxLength: 80 }), (points, moves) => {
      const state = Node.init({ ...config, mode: "cp" }, 0)
      const store = new MemoryStore()
      const requests: Array<Request> = []
      const byRid = new Map<number, Request>()
      let now = 1000
      let client = 0
      const step = (event: Event) => {
        const commands = commandsOf(Node.step(state, event, store)[1])
        for (const c of commands as ReadonlyArray<Command>) {
          store.apply(c)
          if (c._tag === "Send") {
            const m = c.message
            const rid = "rid" in m ? (m.rid as number) : undefined
            const current = requests[requests.length - 1]
            if (event._tag === "ClientRequested" && current !== undefined && rid !== undefined) {
              if (current.rid === undefined) {
                current.rid = rid
                byRid.set(rid, current)
              }
            }
            const r = rid === undefined ? undefined : byRid.get(rid)
            if (r !== undefined && m._tag === "ReadRequest") r.asked.add(c.to)
            if (r !== undefined && (m._tag === "WriteRequest" || m._tag === "HintedWrite")) {
              r.targets.add(c.to)
            }
          }
          if (c._tag === "Reply") {
            const r = requests.find((q) => q.client === c.client)!
            r.replies++
            assert.equal(r.replies, 1, `request ${r.client} answered twice`)
            if (c.result._tag === "GetOk") {
              seen.getOk++
              // Self answers locally; every other answer came from a distinct asked replica.
              const answered = r.answers.size + 1
              assert.ok(answered >= r.q, `GetOk after ${answered} answers (R=${r.q})`)
              let join = r.local
              for (const o of r.answers.values()) join = Version.sync(join, o)
              assert.ok(Version.equals(c.result.obj, join), "GetOk is not the join of the answers")
            } else if (c.result._tag === "PutOk") {
              seen.putOk++
              const acked = r.acks.size + 1
              assert.ok(acked >= r.q, `PutOk after ${acked} acknowledgements (W=${r.q})`)
            } else if (c.result._tag === "Failed") {
              seen.failed++
            }
          }
        }
      }
      for (const move of moves) {
        now += 3
        switch (move._tag) {
          case "Get":
          case "Put": {
            const r: Request = {
              client: client++,
              kind: move._tag,
              rid: undefined,
              asked: new Set(),
              targets: new Set(),
              answers: new Map(),
              acks: new Set(),
              replies: 0,
              local: store.get(key) ?? Version.empty,
              q: move.q,
            }
            requests.push(r)
            const op =
              move._tag === "Get"
                ? { _tag: "Get" as const, key, r: move.q }
                : { _tag: "Put" as const, key, value: `v${r.client}`, context: null, w: move.q }
            step({ _tag: "ClientRequested", now, client: r.client, op })
            break
          }
          case "Read":
          case "Ack": {
            const r = requests[requests.length - 1 - (move.which % Math.max(1, requests.length))]
            const rid = r?.rid ?? 999_999
            const from = peers[move.from]!
            if (r !== undefined) {
              const asked = move._tag === "Read" ? r.asked : r.targets
              const mine = move._tag === "Read" ? r.answers.has(from) : r.acks.has(from)
              if (!asked.has(from)) seen.strangers++
              else if (mine) seen.duplicates++
              else if (r.replies > 0) seen.late++
              if (asked.has(from) && !mine && r.replies === 0) {
                if (move._tag === "Read") r.answers.set(from, points[move.point % points.length]!)
                else r.acks.add(from)
              }
            }
            const message: PeerMessage =
              move._tag === "Read"
                ? { _tag: "ReadResponse", rid, obj: points[move.point % points.length]! }
                : { _tag: "WriteAck", rid }
            step({ _tag: "MessageReceived", now, from, message })
            break
          }
          case "Deadline": {
            const r = requests[requests.length - 1 - (move.which % Math.max(1, requests.length))]
            if (r?.rid !== undefined) {
              step({ _tag: "TimerFired", now, rid: r.rid, kind: "Deadline" })
            }
            break
          }
        }
      }
    }),
    params(300),
  )
  console.log(`# KV-11: ${JSON.stringify(seen)}`)
  assertFloors(seen, {
    getOk: 100,
    putOk: 50,
    strangers: 200,
    duplicates: 200,
    late: 100,
    failed: 20,
  })
})

test("HLC-1: tick strictly increases, observe is monotone and never goes back, and a tick after observing t is above t", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.record({ tick: fc.integer({ min: 0, max: 2 ** 40 }) }),
          fc.record({ observe: fc.integer({ min: 0, max: 2 ** 50 }) }),
        ),
        { minLength: 1, maxLength: 50 },
      ),
      (ops) => {
        let last = 0
        for (const op of ops) {
          if ("tick" in op) {
            const next = Hlc.tick(last, op.tick)
            assert.ok(next > last, "tick did not increase")
            assert.ok(Hlc.wallMs(next) >= Math.floor(op.tick), "tick fell behind the wall clock")
            last = next
          } else {
            const next = Hlc.observe(last, op.observe)
            assert.ok(next >= last && next >= op.observe, "observe went back")
            assert.ok(Hlc.tick(next, 0) > op.observe, "a tick after observing t is not above t")
            last = next
          }
        }
      },
    ),
    params(500),
  )
})

test("KV-12: a read purges a tombstone only when every replica answered with the same dead object and its grace has passed", () => {
  const seen = { reads: 0, purged: 0, refusedYoung: 0, refusedDiffer: 0 }
  const grace = 1000
  fc.assert(
    fc.property(
      historyArb,
      fc.array(
        fc.tuple(
          fc.nat(40),
          fc.nat(40),
          fc.nat(40),
          fc.integer({ min: 0, max: 3000 }),
          // Often every replica holds the same object: the only case where a purge may happen.
          fc.boolean(),
        ),
        { minLength: 1, maxLength: 20 },
      ),
      (points, reads) => {
        const state = Node.init({ ...config, mode: "cp", tombstoneGraceMs: grace }, 0)
        const store = new MemoryStore()
        let client = 0
        for (const [mine, a, b, age, same] of reads) {
          const objs = (same ? [mine, mine, mine] : [mine, a, b]).map(
            (i) => points[i % points.length]!,
          )
          // Put this node's answer in its store; the others answer from `objs`.
          store.apply({ _tag: "Persist", key, obj: objs[0]! })
          const died = Math.max(
            0,
            ...objs.flatMap((o) => Version.siblings(o).map((d) => Hlc.wallMs(d.sibling.ts))),
          )
          const now = died + age
          let rid = -1
          const asked: Array<NodeId> = []
          const handle = (commands: ReadonlyArray<Command>) => {
            for (const c of commands) {
              store.apply(c)
              if (c._tag === "Send" && c.message._tag === "ReadRequest") {
                rid = c.message.rid
                asked.push(c.to)
              }
              const purge =
                (c._tag === "Send" && c.message._tag === "Purge") ||
                (c._tag === "Persist" &&
                  c.obj.entries.length > 0 &&
                  Version.siblings(c.obj).length === 0)
              if (!purge) continue
              seen.purged++
              assert.ok(
                objs.every((o) => Version.equals(o, objs[0]!)),
                "purged although the replicas' objects differ",
              )
              assert.ok(Version.isDeletedAt(objs[0]!, now), "purged a live object")
              const deadAt = Math.max(
                ...Version.siblings(objs[0]!).map((d) => Version.diedAt(d.sibling, Hlc.wallMs)),
              )
              assert.ok(deadAt + grace <= now, "purged before the grace passed")
            }
          }
          const first = commandsOf(
            Node.step(
              state,
              { _tag: "ClientRequested", now, client: client++, op: { _tag: "Get", key } },
              store,
            )[1],
          )
          handle(first)
          asked.forEach((from, i) => {
            const obj = objs[1 + (i % 2)]!
            const message: PeerMessage = { _tag: "ReadResponse", rid, obj }
            const commands = commandsOf(
              Node.step(state, { _tag: "MessageReceived", now, from, message }, store)[1],
            )
            handle(commands)
          })
          seen.reads++
          const alike = objs.every((o) => Version.equals(o, objs[0]!))
          if (alike && Version.isDeletedAt(objs[0]!, now) && age < grace) seen.refusedYoung++
          if (!alike && objs.some((o) => Version.isDeleted(o))) seen.refusedDiffer++
        }
      },
    ),
    params(300),
  )
  console.log(`# KV-12: ${JSON.stringify(seen)}`)
  assertFloors(seen, { reads: 1000, purged: 55, refusedYoung: 10, refusedDiffer: 80 })
})

test("FD-7: every threshold of the phi detector points the right way: phi never falls with silence, a higher threshold suspects later, a longer acceptable pause or a slower history suspects later, and a heartbeat clears suspicion", () => {
  let checks = 0
  fc.assert(
    fc.property(
      // Intervals the detector records even when doubled (up to maxSampleIntervalMs).
      fc.array(fc.integer({ min: 1, max: Phi.defaults.maxSampleIntervalMs / 2 }), {
        minLength: 1,
        maxLength: 30,
      }),
      fc.integer({ min: 0, max: 20_000 }),
      fc.integer({ min: 0, max: 20_000 }),
      fc.double({ min: 0.5, max: 16, noNaN: true }),
      fc.double({ min: 0.5, max: 16, noNaN: true }),
      fc.integer({ min: 0, max: 2000 }),
      (gaps, s1, s2, t1, t2, pause) => {
        const peer = NodeId("p")
        const feed = (config: Partial<Phi.Config>, scale = 1) => {
          const st = Phi.make(config)
          let now = 0
          Phi.heartbeat(st, peer, now)
          for (const g of gaps) {
            now += g * scale
            Phi.heartbeat(st, peer, now)
          }
          return { st, last: now }
        }
        const { st, last } = feed({})
        const [a, b] = s1 <= s2 ? [s1, s2] : [s2, s1]
        // Silence only raises phi.
        assert.ok(
          Phi.phi(st, peer, last + a) <= Phi.phi(st, peer, last + b),
          "phi fell with silence",
        )
        // A higher threshold believes the peer up at least as long.
        const [lo, hi] = t1 <= t2 ? [t1, t2] : [t2, t1]
        if (!Phi.isAvailable(st, peer, last + b, hi)) {
          assert.ok(!Phi.isAvailable(st, peer, last + b, lo), "a lower threshold trusted longer")
        }
        // A longer acceptable pause suspects no sooner.
        const longer = feed({ acceptablePauseMs: Phi.defaults.acceptablePauseMs + pause })
        assert.ok(
          Phi.phi(longer.st, peer, longer.last + b) <= Phi.phi(st, peer, last + b),
          "a longer acceptable pause raised phi",
        )
        // A peer that always heartbeated more slowly is suspected no sooner after the same silence.
        const slow = feed({}, 2)
        assert.ok(
          Phi.phi(slow.st, peer, slow.last + b) <= Phi.phi(st, peer, last + b),
          "a slower history raised phi",
        )
        // A heartbeat clears suspicion at once.
        Phi.heartbeat(st, peer, last + b)
        assert.ok(Phi.isAvailable(st, peer, last + b, lo), "a heartbeat did not clear suspicion")
        checks++
      },
    ),
    params(500),
  )
  assert.ok(checks >= 500, `only ${checks} histories checked`)
})
