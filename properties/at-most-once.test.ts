/**
 * KV-9 on the machine itself (no simulator): a forwarded write runs on at most one coordinator.
 * Both halves of the grant are driven by arbitrary, adversarial messages — claims from any
 * replica with any request id, duplicated and late, answers from nodes never asked, grants for
 * the wrong request or from the wrong node, timers in any order:
 *  - the forwarder grants each forwarded write to one (node, request) at most, never after it
 *    answered its client, and answers its client with the grantee's result only;
 *  - a coordinator mints and replicates a forwarded write only after its forwarder granted it
 *    that very request.
 * A negative control runs the coordinator half with `unsafeFailover` (the old behaviour) and
 * expects the exact violation.
 */
import { NotGranted, NotReplica } from "../impl/core/failure.ts"
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import type { NodeId } from "../impl/core/ids.ts"
import type { ClientResult, Command, Event, PeerMessage } from "../impl/core/messages.ts"
import * as Node from "../impl/core/node.ts"
import { commandsOf } from "../impl/core/ready.ts"
import * as Version from "../impl/core/version.ts"
import { MemoryStore } from "../impl/sim/memory-store.ts"
import { assertFloors, params, replaying } from "./helpers/fc.ts"
import { config, ids, keysWhere } from "./helpers/machine.ts"

const peers = ids.slice(1)
/** A key `self` does not replicate (it forwards writes of it) and one it does (it coordinates). */
const foreignKey = keysWhere("f", false, 1)[0]!
const ownKey = keysWhere("o", true, 1)[0]!

const ok: ClientResult = { _tag: "PutOk", context: [], dot: ["n1", 1], existed: false }
const failed: ClientResult = { _tag: "Failed", error: new NotGranted() }
const notReplica: ClientResult = { _tag: "Failed", error: new NotReplica() }

type ForwarderStep =
  /** `asked`: from one of the replicas the write was sent to (else from any peer). */
  | { _tag: "Claim"; from: number; asked: boolean; put: number; wrongRid: boolean }
  | { _tag: "Heartbeat"; from: number }
  | { _tag: "ForwardTimer" }
  | { _tag: "Deadline" }
  /** notReplica: the node refused before doing anything (the forwarder may try the next). */
  | { _tag: "Response"; from: number; ok: boolean; notReplica: boolean }

const forwarderStepArb: fc.Arbitrary<ForwarderStep> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      _tag: fc.constant("Claim" as const),
      from: fc.nat(2),
      asked: fc.boolean(),
      put: fc.integer({ min: 1, max: 3 }),
      wrongRid: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("Heartbeat" as const), from: fc.nat(2) }) },
  { weight: 3, arbitrary: fc.record({ _tag: fc.constant("ForwardTimer" as const) }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Deadline" as const) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Response" as const),
      from: fc.nat(2),
      ok: fc.boolean(),
      notReplica: fc.boolean(),
    }),
  },
)

test("KV-9: a forwarder grants a forwarded write to one coordinator at most, and answers with the grantee's result only", () => {
  const seen = { grants: 0, refusals: 0, failovers: 0, replies: 0, refusedAfterReply: 0 }
  fc.assert(
    fc.property(
      fc.array(fc.tuple(forwarderStepArb, fc.integer({ min: 1, max: 1500 })), {
        minLength: 10,
        maxLength: 40,
        size: "max",
      }),
      (steps) => {
        const state = Node.init(config, 0)
        const store = new MemoryStore()
        let now = 0
        let rid = -1
        const coordinators: Array<string> = []
        let grantee: string | undefined
        let replied: ClientResult | undefined
        let lastResponse = new Map<string, ClientResult>()
        const run = (event: Event) => {
          const commands = commandsOf(Node.step(state, event, store)[1])
          for (const c of commands) {
            if (c._tag === "Send" && c.message._tag === "CoordinateRequest") {
              // A grantee may run the write however late: sending it elsewhere is wasted work.
              assert.equal(grantee, undefined, `failed over to ${c.to} after granting ${grantee}`)
              rid = c.message.rid
              coordinators.push(c.to)
            }
            if (c._tag === "Send" && c.message._tag === "CoordinateGrant") {
              const claimant = `${c.to}/${c.message.rid}`
              if (c.message.granted) {
                assert.ok(replied === undefined, `granted ${claimant} after the client's answer`)
                assert.ok(
                  grantee === undefined || grantee === claimant,
                  `granted to ${grantee} and then to ${claimant}`,
                )
                grantee = claimant
                seen.grants++
              } else {
                seen.refusals++
                if (replied !== undefined) seen.refusedAfterReply++
              }
            }
            if (c._tag === "Reply") {
              assert.ok(replied === undefined, "the client was answered twice")
              replied = c.result
              seen.replies++
            }
          }
        }
        run({
          _tag: "ClientRequested",
          now,
          client: 1,
          op: { _tag: "Put", key: foreignKey, value: "v", context: null },
        })
        assert.ok(rid >= 0, "the write was not forwarded")
        for (const [s, dt] of steps) {
          now += dt
          const before = replied
          switch (s._tag) {
            case "Claim": {
              const message: PeerMessage = {
                _tag: "CoordinateClaim",
                rid: s.wrongRid ? rid + 1 : rid,
                put: s.put,
              }
              const from = s.asked ? coordinators[s.from % coordinators.length]! : peers[s.from]!
              run({ _tag: "MessageReceived", now, from: from as NodeId, message })
              break
            }
            case "Heartbeat":
              run({
                _tag: "MessageReceived",
                now,
                from: peers[s.from]!,
                message: { _tag: "Heartbeat" },
              })
              break
            case "ForwardTimer":
              run({ _tag: "TimerFired", now, rid, kind: "Forward" })
              break
            case "Deadline":
              run({ _tag: "TimerFired", now, rid, kind: "Deadline" })
              break
            case "Response": {
              const result = s.ok ? ok : s.notReplica ? notReplica : failed
              lastResponse = new Map(lastResponse).set(peers[s.from]!, result)
              const message: PeerMessage = { _tag: "CoordinateResponse", rid, result }
              run({ _tag: "MessageReceived", now, from: peers[s.from]!, message })
              // Once a coordinator holds the grant, only its answer reaches the client.
              if (before === undefined && replied !== undefined && grantee !== undefined) {
                assert.equal(grantee.split("/")[0], peers[s.from], "a refused copy answered")
              }
              break
            }
          }
        }
        seen.failovers += Math.max(0, coordinators.length - 1)
        // Once granted, the write never moves to another replica.
        if (grantee !== undefined) {
          const at = coordinators.indexOf(grantee.split("/")[0]!)
          assert.ok(at >= 0, `granted to ${grantee}, which was never asked`)
        }
      },
    ),
    params(200),
  )
  // Floors: the interesting cases happened, not just refusals of claims for unknown requests.
  assertFloors(seen, { grants: 32, refusals: 50, failovers: 10, refusedAfterReply: 10 })
})

type CoordinatorStep =
  | { _tag: "Read"; from: number; obj: Version.Obj; which: number }
  | { _tag: "Grant"; granted: boolean; from: number; which: number; wrongRid: boolean }
  | { _tag: "Duplicate" }
  | { _tag: "Deadline"; which: number }
  | { _tag: "Ack"; from: number; which: number }

const objArb = fc
  .array(fc.tuple(fc.constantFrom("n1", "n2", "n3"), fc.string({ maxLength: 2 })), { maxLength: 3 })
  .map((writes) =>
    writes.reduce(
      (obj, [actor, value], i) => Version.update(obj, Version.emptyClock, { value, ts: i }, actor),
      Version.empty,
    ),
  )

const coordinatorStepArb: fc.Arbitrary<CoordinatorStep> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("Read" as const),
      from: fc.nat(2),
      obj: objArb,
      which: fc.nat(3),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("Grant" as const),
      granted: fc.boolean(),
      // The forwarder is peers[0]; a grant from anybody else must not count.
      from: fc.nat(2),
      which: fc.nat(3),
      wrongRid: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Duplicate" as const) }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Deadline" as const), which: fc.nat(3) }) },
  {
    weight: 2,
    arbitrary: fc.record({ _tag: fc.constant("Ack" as const), from: fc.nat(2), which: fc.nat(3) }),
  },
)

/**
 * Drive one replica as the coordinator of a forwarded write (and of its duplicates); returns
 * what it did. Throws (an assertion) when it mints a request its forwarder never granted.
 */
const runCoordinator = (
  machineConfig: Node.Config,
  contextWrite: boolean,
  steps: ReadonlyArray<readonly [CoordinatorStep, number]>,
) => {
  const forwarder = peers[0]!
  const state = Node.init(machineConfig, 0)
  const store = new MemoryStore()
  let now = 0
  /** The coordinator's request id of each copy of the forwarded write it took up. */
  const puts: Array<number> = []
  const granted = new Set<number>()
  const refused = new Set<number>()
  const minted = new Set<number>()
  const run = (event: Event, grantFor?: { put: number; granted: boolean }) => {
    // A grant takes effect only from the forwarder and for a request it was claimed for.
    const commands = commandsOf(Node.step(state, event, store)[1])
    if (grantFor !== undefined) (grantFor.granted ? granted : refused).add(grantFor.put)
    for (const c of commands as ReadonlyArray<Command>) {
      store.apply(c)
      if (c._tag === "Send" && c.message._tag === "CoordinateClaim") {
        assert.equal(c.to, forwarder, "claimed from a node that did not forward")
        puts.push(c.message.put)
      }
      if (c._tag === "Send" && c.message._tag === "WriteRequest") {
        const put = c.message.rid
        assert.ok(granted.has(put), `request ${put} minted and replicated without a grant`)
        assert.ok(!refused.has(put), `request ${put} minted after its claim was refused`)
        minted.add(put)
      }
    }
  }
  const request = () =>
    run({
      _tag: "MessageReceived",
      now,
      from: forwarder,
      message: {
        _tag: "CoordinateRequest",
        rid: 41,
        op: {
          _tag: "Put",
          key: ownKey,
          value: "v",
          context: contextWrite ? Version.emptyClock : null,
        },
      },
    })
  request()
  for (const [s, dt] of steps) {
    now += dt
    const put = puts[s._tag === "Duplicate" ? 0 : s.which % Math.max(1, puts.length)]
    switch (s._tag) {
      case "Duplicate":
        request()
        break
      case "Read":
        if (put === undefined) break
        run({
          _tag: "MessageReceived",
          now,
          from: peers[s.from]!,
          message: { _tag: "ReadResponse", rid: put, obj: s.obj },
        })
        break
      case "Grant": {
        if (put === undefined) break
        const rid = s.wrongRid ? put + 1000 : put
        const real = s.from === 0 && !s.wrongRid
        run(
          {
            _tag: "MessageReceived",
            now,
            from: peers[s.from]!,
            message: { _tag: "CoordinateGrant", rid, granted: s.granted },
          },
          // Only the forwarder's answer for this very request is a grant; a refusal after a
          // grant (a confused forwarder) does not take a grant back.
          real && !(granted.has(put) && !s.granted) && !(refused.has(put) && s.granted)
            ? { put, granted: s.granted }
            : undefined,
        )
        break
      }
      case "Deadline":
        if (put === undefined) break
        run({ _tag: "TimerFired", now, rid: put, kind: "Deadline" })
        break
      case "Ack":
        if (put === undefined) break
        run({
          _tag: "MessageReceived",
          now,
          from: peers[s.from]!,
          message: { _tag: "WriteAck", rid: put },
        })
        break
    }
  }
  return { puts: puts.length, granted: granted.size, minted: minted.size }
}

const coordinatorSteps = fc.array(fc.tuple(coordinatorStepArb, fc.integer({ min: 1, max: 800 })), {
  minLength: 8,
  maxLength: 30,
  size: "max",
})

test("KV-9: a coordinator mints a forwarded write only after its forwarder granted it that very request", () => {
  const seen = { copies: 0, grants: 0, minted: 0 }
  fc.assert(
    fc.property(fc.boolean(), coordinatorSteps, (contextWrite, steps) => {
      const r = runCoordinator(config, contextWrite, steps)
      seen.copies += r.puts
      seen.grants += r.granted
      seen.minted += r.minted
    }),
    params(200),
  )
  assertFloors(seen, { minted: 15 })
  if (!replaying) assert.ok(seen.copies > seen.minted, JSON.stringify(seen))
})

test("KV-9: negative control: with the old failover (unsafeFailover) a coordinator mints without a grant", () => {
  const result = fc.check(
    fc.property(fc.boolean(), coordinatorSteps, (contextWrite, steps) => {
      runCoordinator({ ...config, unsafeFailover: true }, contextWrite, steps)
    }),
    params(200),
  )
  assert.ok(result.failed, "the unsafe failover went unnoticed")
  assert.match(String(result.errorInstance), /minted and replicated without a grant/)
})
