/**
 * CONN-1: one connection, one order. The real RESP server (impl/node/resp-server.ts) on a real
 * socket, in front of a scripted machine whose results arrive in an order fast-check chooses:
 * whatever that order, an operation on a key reaches the machine only after every earlier
 * operation of the same connection on that key has its result, and replies leave in the order
 * the commands were sent. Each generated pipeline is one socket write of SET/GET/DEL/MGET/MSET
 * commands over a few keys.
 *
 * The machine is a Map applied at submission time, so the replies also follow Redis's
 * semantics for one connection: a GET after a SET of the same key in the same pipeline reads
 * that value (read-your-writes within a connection).
 */
import assert from "node:assert/strict"
import * as net from "node:net"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import type { ClientOp, ClientResult, KeyOp } from "../impl/core/messages.ts"
import * as Version from "../impl/core/version.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import { withRespServer } from "./helpers/resp-server.ts"

const KEYS = ["a", "b", "c"]

type Command =
  | { _tag: "Set"; key: number; value: number }
  | { _tag: "Get"; key: number }
  | { _tag: "Del"; key: number }
  | { _tag: "MGet"; keys: ReadonlyArray<number> }
  | { _tag: "MSet"; pairs: ReadonlyArray<readonly [number, number]> }

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ _tag: fc.constant("Set" as const), key: fc.nat(2), value: fc.nat(99) }),
  fc.record({ _tag: fc.constant("Get" as const), key: fc.nat(2) }),
  fc.record({ _tag: fc.constant("Del" as const), key: fc.nat(2) }),
  fc.record({
    _tag: fc.constant("MGet" as const),
    keys: fc.array(fc.nat(2), { minLength: 1, maxLength: 3 }),
  }),
  fc.record({
    _tag: fc.constant("MSet" as const),
    pairs: fc.array(fc.tuple(fc.nat(2), fc.nat(99)), { minLength: 1, maxLength: 3 }),
  }),
)

const words = (c: Command): ReadonlyArray<string> => {
  switch (c._tag) {
    case "Set":
      return ["SET", KEYS[c.key]!, `v${c.value}`]
    case "Get":
      return ["GET", KEYS[c.key]!]
    case "Del":
      return ["DEL", KEYS[c.key]!]
    case "MGet":
      return ["MGET", ...c.keys.map((k) => KEYS[k]!)]
    case "MSet":
      return ["MSET", ...c.pairs.flatMap(([k, v]) => [KEYS[k]!, `v${v}`])]
  }
}

const encode = (args: ReadonlyArray<string>): string =>
  `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`

/** What Redis answers for the pipeline, run one command after another on a Map. */
const expected = (commands: ReadonlyArray<Command>): Array<string> => {
  const map = new Map<string, string>()
  const bulk = (v: string | undefined) => (v === undefined ? "$-1\r\n" : `$${v.length}\r\n${v}\r\n`)
  const answer = (c: Command): string => {
    switch (c._tag) {
      case "Set":
        map.set(KEYS[c.key]!, `v${c.value}`)
        return "+OK\r\n"
      case "Get":
        return bulk(map.get(KEYS[c.key]!))
      case "Del":
        return `:${map.delete(KEYS[c.key]!) ? 1 : 0}\r\n`
      case "MGet":
        return `*${c.keys.length}\r\n${c.keys.map((k) => bulk(map.get(KEYS[k]!))).join("")}`
      case "MSet":
        for (const [k, v] of c.pairs) map.set(KEYS[k]!, `v${v}`)
        return "+OK\r\n"
    }
  }
  return commands.map(answer)
}

interface Outstanding {
  readonly op: KeyOp
  readonly finish: () => void
}

/**
 * A scripted machine: applies each operation to a Map when it is submitted (as a coordinator
 * would when its quorum answers), and answers only when the test releases the result.
 */
class ScriptedMachine {
  readonly store = new Map<string, string>()
  readonly outstanding: Array<Outstanding> = []
  submitted = 0
  /** Submissions that overtook an unanswered earlier operation on the same key. */
  readonly overtaken: Array<string> = []

  submit = (op: ClientOp, onResult: (result: ClientResult) => void): void => {
    if (op._tag === "Scan") throw new Error("no SCAN in these pipelines")
    this.submitted++
    if (this.outstanding.some((o) => o.op.key === op.key)) {
      this.overtaken.push(`${op._tag} ${op.key} while an earlier operation on it was unanswered`)
    }
    let result: ClientResult
    if (op._tag === "Get") {
      const v = this.store.get(op.key)
      const obj =
        v === undefined
          ? Version.empty
          : Version.update(Version.empty, [], { value: v, ts: 1 }, "n0")
      result = { _tag: "GetOk", obj }
    } else {
      const existed = this.store.has(op.key)
      if (op.value === null) this.store.delete(op.key)
      else this.store.set(op.key, op.value)
      result = { _tag: "PutOk", context: [["n0", 1]], dot: ["n0", 1], existed }
    }
    const entry: Outstanding = {
      op,
      finish: () => {
        this.outstanding.splice(this.outstanding.indexOf(entry), 1)
        onResult(result)
      },
    }
    this.outstanding.push(entry)
  }
}

const withServer = <A>(machine: ScriptedMachine, body: (port: number) => Promise<A>): Promise<A> =>
  withRespServer({ submit: machine.submit }, body)

const settle = () => new Promise((resolve) => setImmediate(resolve))

test("CONN-1: a connection's operations on a key reach the machine in the order sent, one at a time, whatever order results arrive in; replies keep the command order", async () => {
  const seen = { pipelines: 0, commands: 0, heldBack: 0, reordered: 0 }
  await fc.assert(
    fc.asyncProperty(
      fc.array(commandArb, { minLength: 2, maxLength: 12, size: "max" }),
      fc.array(fc.nat(), { minLength: 64, maxLength: 64 }),
      async (commands, choices) => {
        const machine = new ScriptedMachine()
        await withServer(machine, async (port) => {
          const socket = net.connect(port, "127.0.0.1")
          await new Promise((resolve) => socket.once("connect", resolve))
          let received = ""
          socket.on("data", (chunk) => {
            received += chunk.toString("utf8")
          })
          const want = expected(commands).join("")
          const ops = commands.reduce(
            (n, c) =>
              n + (c._tag === "MGet" ? c.keys.length : c._tag === "MSet" ? c.pairs.length : 1),
            0,
          )
          socket.write(commands.map((c) => encode(words(c))).join(""))
          // Release results in an order fast-check chooses, until every operation answered.
          let step = 0
          for (let guard = 0; guard < 10_000 && received.length < want.length; guard++) {
            await settle()
            if (machine.outstanding.length === 0) continue
            const pick = choices[step++ % choices.length]! % machine.outstanding.length
            if (pick !== 0) seen.reordered++
            machine.outstanding[pick]!.finish()
          }
          for (let guard = 0; guard < 100 && received.length < want.length; guard++) await settle()
          socket.destroy()
          assert.deepEqual(machine.overtaken, [])
          assert.equal(machine.submitted, ops, "every operation reached the machine once")
          assert.equal(received, want)
          seen.heldBack += ops - new Set(commands.flatMap((c) => words(c).slice(1))).size
        })
        seen.pipelines++
        seen.commands += commands.length
      },
    ),
    params(100),
  )
  assertFloors(seen, { pipelines: 100, heldBack: 100, reordered: 100 })
})
