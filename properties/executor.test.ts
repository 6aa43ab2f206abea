/**
 * The durability contract's one executor (impl/core/executor.ts), which the simulator and the
 * real driver both run: KV-1 holds by construction only if no Send, Reply or Removed ever leaves
 * before every store write emitted before it (in its own step or an earlier one) is durable.
 * Here the executor runs against a scripted store whose writes become durable in any order
 * fast-check picks, and the real driver (impl/node/driver.ts) against a store whose commits
 * the test settles by hand, including a failed commit and a machine exception (crash-stop).
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import * as Executor from "../impl/core/executor.ts"
import { NodeId } from "../impl/core/ids.ts"
import type { ClientOp, ClientResult, Command } from "../impl/core/messages.ts"
import * as Node from "../impl/core/node.ts"
import { commandsOf } from "../impl/core/ready.ts"
import * as Version from "../impl/core/version.ts"
import { Driver } from "../impl/node/driver.ts"
import type { Log } from "../impl/node/log.ts"
import { systemClock } from "../impl/node/runtime.ts"
import { makeMemory, type StoreShape } from "../impl/node/store.ts"
import { params } from "./helpers/fc.ts"

type Kind = "write" | "send" | "reply" | "timer"

type Step =
  /** The machine stepped and emitted these commands. */
  | { _tag: "Step"; kinds: ReadonlyArray<Kind>; durableAtOnce: ReadonlyArray<boolean> }
  /** The store reports one pending write (the pick-th, modulo) durable. */
  | { _tag: "Durable"; pick: number }
  /** One pending write fails to commit. */
  | { _tag: "Fail"; pick: number }

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .array(fc.constantFrom<Kind>("write", "send", "send", "reply", "timer"), { maxLength: 6 })
      .chain((kinds) =>
        fc.record({
          _tag: fc.constant("Step" as const),
          kinds: fc.constant(kinds),
          durableAtOnce: fc.array(fc.boolean(), {
            minLength: kinds.length,
            maxLength: kinds.length,
          }),
        }),
      ),
  },
  { weight: 4, arbitrary: fc.record({ _tag: fc.constant("Durable" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Fail" as const), pick: fc.nat() }) },
)

const obj = Version.empty

test("KV-1: the shared executor runs commands in order, and no Send or Reply leaves before every store write emitted before it, in any earlier step, is durable", () => {
  let heldAcrossSteps = 0
  let outOfOrderDurability = 0
  fc.assert(
    fc.property(fc.array(stepArb, { maxLength: 60, size: "max" }), (steps) => {
      /** Emission order of every command; writes durable so far; outbound commands run so far. */
      let emitted = 0
      const seqOf = new Map<Command, number>()
      const durable = new Set<number>()
      const writes: Array<number> = []
      const pending: Array<{ seq: number; ok: () => void; failed: (e: unknown) => void }> = []
      const ran: Array<number> = []
      const timers: Array<number> = []
      let failedWith: unknown
      let stepIndex = 0
      const stepOf = new Map<number, number>()
      const atOnce = new Map<number, boolean>()
      const executor = new Executor.Executor({
        write: (command) => {
          const seq = seqOf.get(command)!
          writes.push(seq)
          if (atOnce.get(seq)) {
            durable.add(seq)
            return undefined
          }
          return (ok, failed) => pending.push({ seq, ok, failed })
        },
        run: (command) => {
          const seq = seqOf.get(command)!
          assert.equal(failedWith, undefined, "a command ran after a failed commit")
          // Every write emitted before it is durable.
          for (const w of writes) {
            if (w < seq) assert.ok(durable.has(w), `command ${seq} ran before write ${w}`)
          }
          if (stepOf.get(seq)! < stepIndex) heldAcrossSteps++
          ran.push(seq)
        },
        setTimer: (command) => {
          // Never held: it runs in its own step.
          assert.equal(stepOf.get(seqOf.get(command)!), stepIndex)
          timers.push(seqOf.get(command)!)
        },
        writeFailed: (e) => {
          failedWith = e
        },
      })
      for (const step of steps) {
        stepIndex++
        if (step._tag === "Step") {
          const commands: Array<Command> = step.kinds.map((kind, i) => {
            const seq = emitted++
            atOnce.set(seq, step.durableAtOnce[i]!)
            stepOf.set(seq, stepIndex)
            const command: Command =
              kind === "write"
                ? { _tag: "Persist", key: `k${seq}`, obj }
                : kind === "send"
                  ? { _tag: "Send", to: NodeId("n1"), message: { _tag: "Heartbeat" } }
                  : kind === "reply"
                    ? { _tag: "Reply", client: seq, result: { _tag: "GetOk", obj } }
                    : { _tag: "SetTimer", rid: seq, kind: "Deadline", at: 0 }
            seqOf.set(command, seq)
            return command
          })
          executor.executeCommands(commands)
        } else if (pending.length > 0) {
          const i = step.pick % pending.length
          if (i > 0) outOfOrderDurability++
          const [p] = pending.splice(i, 1)
          if (step._tag === "Durable") {
            durable.add(p!.seq)
            p!.ok()
          } else {
            p!.failed(new Error("disk full"))
            assert.ok(failedWith instanceof Error, "a failed commit was not reported")
            assert.ok(executor.isStopped)
          }
        }
      }
      // Outbound commands ran in emission order.
      assert.deepEqual(
        ran,
        [...ran].sort((a, b) => a - b),
      )
      // Once everything is durable, everything ran (unless a commit failed).
      for (const p of pending.splice(0)) {
        durable.add(p.seq)
        p.ok()
      }
      if (failedWith === undefined) {
        const outbound = [...seqOf.entries()]
          .filter(([c]) => c._tag === "Send" || c._tag === "Reply")
          .map(([, seq]) => seq)
        assert.deepEqual(ran, outbound)
        assert.equal(executor.inFlight, 0)
      }
    }),
    params(300),
  )
  assert.ok(heldAcrossSteps > 0, "no command was ever held into a later step")
  assert.ok(outOfOrderDurability > 0, "writes never became durable out of order")
})

const quietLog: Log = { info: () => {}, warn: () => {}, error: () => {} }

/** A memory store whose writes become durable only when the test says so. */
const manualStore = () => {
  const inner = makeMemory()
  const commits: Array<{ resolve: () => void; reject: (e: Error) => void }> = []
  const store: StoreShape = {
    ...inner,
    put: (key, obj) => {
      inner.put(key, obj)
      return new Promise<void>((resolve, reject) => commits.push({ resolve, reject }))
    },
  }
  return { store, commits }
}

const single = (): Node.Config => ({
  ...Node.defaults,
  self: NodeId("n0"),
  members: [{ id: NodeId("n0"), weight: 1 }],
  n: 1,
  r: 1,
  w: 1,
})

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

test("KV-1: the driver acknowledges a write only once its commit is durable, and a failed commit stops the node with nothing released", async () => {
  const { store, commits } = manualStore()
  const fatal: Array<string> = []
  const driver = new Driver({
    machine: single(),
    store,
    clock: systemClock,
    tickMs: 1_000_000,
    log: quietLog,
    send: () => {},
    onFatal: (reason) => fatal.push(reason),
    onRemoved: () => {},
  })
  try {
    const results: Array<ClientResult> = []
    driver.submit({ _tag: "Put", key: "a", value: "1", context: null }, (r) => results.push(r))
    await turn()
    assert.equal(commits.length, 1, "the write was issued at once")
    assert.equal(results.length, 0, "acknowledged before the commit")
    assert.equal(driver.stats().persistsInFlight, 1)
    // A read of the not-yet-durable value waits behind it too (global holding).
    driver.submit({ _tag: "Get", key: "a" }, (r) => results.push(r))
    await turn()
    assert.equal(results.length, 0, "a read of an undurable write left before it was durable")
    commits.shift()!.resolve()
    await turn()
    assert.deepEqual(
      results.map((r) => r._tag),
      ["PutOk", "GetOk"],
    )
    // A failed commit: the reply never leaves, the node stops.
    driver.submit({ _tag: "Put", key: "b", value: "2", context: null }, (r) => results.push(r))
    await turn()
    commits.shift()!.reject(new Error("disk full"))
    await turn()
    assert.equal(results.length, 2, "a write whose commit failed was acknowledged")
    assert.equal(fatal.length, 1)
    assert.match(fatal[0]!, /store commit failed: disk full/)
  } finally {
    driver.stop()
  }
})

test("KV-1: a machine exception crash-stops the driver: onFatal is called, nothing more is stepped or answered", async () => {
  const fatal: Array<string> = []
  const driver = new Driver({
    machine: single(),
    store: makeMemory(),
    clock: systemClock,
    tickMs: 1_000_000,
    log: quietLog,
    send: () => {},
    onFatal: (reason) => fatal.push(reason),
    onRemoved: () => {},
  })
  try {
    const results: Array<ClientResult> = []
    driver.submit({ _tag: "Put", key: "a", value: "1", context: null }, (r) => results.push(r))
    assert.deepEqual(
      results.map((r) => r._tag),
      ["PutOk"],
    )
    // A key that is not a string makes the machine throw (hashing it): a bug, not a request.
    const bad = { _tag: "Put", key: undefined, value: "x", context: null } as unknown as ClientOp
    driver.submit(bad, (r) => results.push(r))
    assert.equal(fatal.length, 1, "the exception was swallowed")
    assert.match(fatal[0]!, /machine exception in step\(ClientRequested\)/)
    driver.submit({ _tag: "Get", key: "a" }, (r) => results.push(r))
    await turn()
    assert.equal(results.length, 1, "a stopped driver answered")
  } finally {
    driver.stop()
  }
})

test("executor: a Ready runs as its commandsOf list does (send, persist, afterPersist, timers): the same writes, releases and timers, in the same order", () => {
  const outArb = fc.array(fc.constantFrom("send", "reply"), { maxLength: 3 })
  const readyArb = fc.record({
    send: outArb,
    persist: fc.nat(3),
    afterPersist: outArb,
    timers: fc.nat(2),
  })
  const stepArb2 = fc.oneof(readyArb, fc.constant("durable" as const))
  fc.assert(
    fc.property(fc.array(stepArb2, { maxLength: 30 }), (steps) => {
      const logs: Array<Array<string>> = [[], []]
      const waiting: Array<Array<() => void>> = [[], []]
      const executors = [0, 1].map(
        (i) =>
          new Executor.Executor({
            write: (c) => {
              logs[i]!.push(`write ${c._tag === "Persist" ? c.key : ""}`)
              return (done) => waiting[i]!.push(done)
            },
            run: (c) => logs[i]!.push(`run ${JSON.stringify(c)}`),
            setTimer: (c) => logs[i]!.push(`timer ${c.rid}`),
            writeFailed: () => assert.fail("no write fails here"),
          }),
      )
      let id = 0
      const outbound = (kind: string): Executor.Outbound => {
        const n = id++
        return kind === "send"
          ? { _tag: "Send", to: NodeId("n1"), message: { _tag: "WriteAck", rid: n } }
          : { _tag: "Reply", client: n, result: { _tag: "PutSkipped" } }
      }
      for (const step of steps) {
        if (step === "durable") {
          for (const w of waiting) w.shift()?.()
          continue
        }
        const ready: Executor.Ready = {
          send: step.send.map(outbound),
          persist: Array.from({ length: step.persist }, () => ({
            _tag: "Persist" as const,
            key: `k${id++}`,
            obj: Version.empty,
          })),
          afterPersist: step.afterPersist.map(outbound),
          timers: Array.from({ length: step.timers }, () => ({
            _tag: "SetTimer" as const,
            rid: id++,
            kind: "Deadline" as const,
            at: 0,
          })),
        }
        executors[0]!.execute(ready)
        executors[1]!.executeCommands(commandsOf(ready))
        // No afterPersist leaves while a write of its step is in flight.
        for (const c of ready.afterPersist) {
          if (ready.persist.length > 0) {
            assert.ok(!logs[0]!.includes(`run ${JSON.stringify(c)}`), "afterPersist ran early")
          }
        }
      }
      assert.deepEqual(logs[0], logs[1])
    }),
    params(200),
  )
})
