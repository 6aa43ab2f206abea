/**
 * Transcripts, in the manner of etcd-raft's interaction tests: for each scenario a readable file
 * of the request-path events that went into each node and the Ready that came out (its send, persist, afterPersist and timers parts, each in order),
 * under properties/transcripts/. The runner replays the scenario in the deterministic simulator
 * and compares, line by line; a change in the protocol shows up as a diff a reviewer can read.
 *
 *   node --import tsx --test properties/transcript.test.ts         # compare
 *   npm run transcripts                                              # rewrite after a change
 *
 * Only the request path is written down (client requests, reads, writes, forwards and their
 * claims, hints and handoffs, repairs, purges, their timers, persists and replies): heartbeats,
 * gossip, anti-entropy and ticks would drown it.
 */
import assert from "node:assert/strict"
import { readFileSync, writeFileSync } from "node:fs"
import { test } from "./helpers/test.ts"
import type { NodeId } from "../impl/core/ids.ts"
import type { Command, Event, PeerMessage } from "../impl/core/messages.ts"
import type { Ready } from "../impl/core/ready.ts"
import * as Ring from "../impl/core/ring.ts"
import type * as Version from "../impl/core/version.ts"
import { defaultNetwork, Simulation } from "../impl/sim/sim.ts"

const dir = new URL("./transcripts/", import.meta.url)
const update = process.env.TRANSCRIPT_UPDATE === "1"

const REQUEST_PATH = new Set<string>([
  "ReadRequest",
  "ReadResponse",
  "WriteRequest",
  "WriteAck",
  "HintedWrite",
  "Handoff",
  "HandoffAck",
  "Repair",
  "Purge",
  "CoordinateRequest",
  "CoordinateResponse",
  "CoordinateClaim",
  "CoordinateGrant",
])

/** An object as `actor:counter[value@ts,…]` entries, tombstones as `⊥`. */
const showObj = (obj: Version.Obj): string =>
  `{${obj.entries
    .map(
      (e) =>
        `${e.actor}:${e.counter}[${e.values.map((v) => (v.value === null ? "⊥" : v.value)).join(",")}]`,
    )
    .join(" ")}}`

const showMessage = (m: PeerMessage): string => {
  switch (m._tag) {
    case "ReadRequest":
      return `ReadRequest rid=${m.rid} key=${m.key}`
    case "ReadResponse":
      return `ReadResponse rid=${m.rid} ${showObj(m.obj)}`
    case "WriteRequest":
      return `WriteRequest rid=${m.rid} key=${m.key} ${showObj(m.obj)}`
    case "WriteAck":
      return `WriteAck rid=${m.rid}`
    case "HintedWrite":
      return `HintedWrite rid=${m.rid} key=${m.key} for=${m.owner} ${showObj(m.obj)}`
    case "Handoff":
    case "HandoffAck":
    case "Repair":
    case "Purge":
      return `${m._tag} key=${m.key} ${showObj(m.obj)}`
    case "CoordinateRequest":
      return `CoordinateRequest rid=${m.rid} ${m.op.key}=${m.op.value ?? "⊥"}`
    case "CoordinateResponse":
      return `CoordinateResponse rid=${m.rid} ${m.result._tag}`
    case "CoordinateClaim":
      return `CoordinateClaim rid=${m.rid} put=${m.put}`
    case "CoordinateGrant":
      return `CoordinateGrant rid=${m.rid} ${m.granted ? "granted" : "refused"}`
    default:
      return m._tag
  }
}

const showEvent = (e: Event): string | undefined => {
  switch (e._tag) {
    case "ClientRequested":
      return e.op._tag === "Get"
        ? `client ${e.client}: GET ${e.op.key}`
        : e.op._tag === "Put"
          ? `client ${e.client}: ${e.op.value === null ? `DEL ${e.op.key}` : `SET ${e.op.key} ${e.op.value}`}`
          : `client ${e.client}: SCAN`
    case "MessageReceived":
      return REQUEST_PATH.has(e.message._tag)
        ? `from ${e.from}: ${showMessage(e.message)}`
        : undefined
    case "TimerFired":
      return e.kind === "Deadline" || e.kind === "Forward"
        ? `timer ${e.kind} rid=${e.rid}`
        : undefined
    default:
      return undefined
  }
}

const showCommand = (c: Command): string | undefined => {
  switch (c._tag) {
    case "Send":
      return REQUEST_PATH.has(c.message._tag)
        ? `send ${c.to}: ${showMessage(c.message)}`
        : undefined
    case "Reply": {
      const r = c.result
      const detail =
        r._tag === "GetOk"
          ? ` ${showObj(r.obj)}`
          : r._tag === "Failed"
            ? ` ${r.error._tag}: ${r.error.message}`
            : ""
      return `reply client ${c.client}: ${r._tag}${detail}`
    }
    case "Persist":
      return `persist ${c.key} ${showObj(c.obj)}`
    case "PersistHint":
      return `persist hint ${c.key} for=${c.owner} ${showObj(c.obj)}`
    case "DropHint":
      return `drop hint ${c.key} for=${c.owner}`
    case "SetTimer":
      return c.kind === "Deadline" || c.kind === "Forward"
        ? `timer ${c.kind} rid=${c.rid} at ${c.at}`
        : undefined
    default:
      return undefined
  }
}

/** Run `scenario` on a 4-node cluster, recording the request path of every node. */
const record = (scenario: (sim: Simulation, note: (text: string) => void) => void): string => {
  const lines: Array<string> = []
  let sim: Simulation | undefined
  const at = () => String(sim?.now ?? 0).padStart(6)
  sim = new Simulation({
    seed: 42,
    nodes: 4,
    network: defaultNetwork,
    node: { tombstoneGraceMs: 2000 },
    onReady: (node: NodeId, event: Event, ready: Ready) => {
      const shown = showEvent(event)
      const out: Array<string> = []
      const part = (name: string, commands: ReadonlyArray<Command>) => {
        for (const c of commands) {
          const text = showCommand(c)
          if (text !== undefined) out.push(`${name}: ${text}`)
        }
      }
      part("send", ready.send)
      part("persist", ready.persist)
      part("afterPersist", ready.afterPersist)
      part("timers", ready.timers)
      if (shown === undefined && out.length === 0) return
      const other =
        event._tag === "MessageReceived"
          ? `from ${event.from}: ${event.message._tag}${event.message._tag === "AntiEntropy" ? ` ${event.message.message._tag}` : ""}`
          : event._tag
      lines.push(`${at()} ${node} <- ${shown ?? other}`)
      for (const c of out) lines.push(`${" ".repeat(6)} ${node} -> ${c}`)
    },
  })
  sim.runFor(1000)
  lines.length = 0
  scenario(sim, (text) => lines.push(`# ${text}`))
  return `${lines.join("\n")}\n`
}

/** A key whose replicas are `replicas` in order, and the one node outside them. */
const keyOn = (
  sim: Simulation,
): { key: string; replicas: ReadonlyArray<NodeId>; other: NodeId } => {
  const ring = Ring.make(
    sim.ids.map((id) => ({ id, weight: 1 })),
    sim.stateOf(sim.ids[0]!)!.config.tokensPerNode,
  )
  const key = "k"
  const replicas = Ring.preferenceList(ring, key, 3)
  return { key, replicas, other: sim.ids.find((id) => !replicas.includes(id))! }
}

const scenarios: Record<string, (sim: Simulation, note: (text: string) => void) => void> = {
  "forward-claim-grant": (sim, note) => {
    const { key, other } = keyOn(sim)
    note(
      `SET through ${other}, which is not a replica: forward, claim, grant, quorum write, answer`,
    )
    sim.call(other, { _tag: "Put", key, value: "v1", context: null })
  },
  "failover-late-copy-refused": (sim, note) => {
    const { key, replicas, other } = keyOn(sim)
    note(
      `${replicas[0]} is paused; SET through ${other} fails over once the detector judges it down`,
    )
    sim.pause(replicas[0]!)
    sim.call(other, { _tag: "Put", key, value: "v1", context: null })
    note(`${replicas[0]} resumes and finds the stale copy: its claim is refused, nothing is minted`)
    sim.resume(replicas[0]!)
    sim.runFor(500)
  },
  "read-repair": (sim, note) => {
    const { key, replicas } = keyOn(sim)
    note(`${replicas[2]} is down while v1 is written`)
    sim.stop(replicas[2]!)
    sim.call(replicas[0]!, { _tag: "Put", key, value: "v1", context: null })
    sim.restart(replicas[2]!)
    sim.runFor(1500)
    note(`a GET hears the stale ${replicas[2]} and repairs it after answering`)
    sim.call(replicas[1]!, { _tag: "Get", key, r: 3 })
    sim.runFor(200)
  },
  "sloppy-write-handoff": (sim, note) => {
    const { key, replicas, other } = keyOn(sim)
    note(`${replicas[1]} is down and judged so: the write's copy for it goes to ${other} as a hint`)
    sim.stop(replicas[1]!)
    sim.runFor(8000)
    sim.call(replicas[0]!, { _tag: "Put", key, value: "v1", context: null })
    note(`${replicas[1]} returns: the hint is handed off and dropped once acknowledged`)
    sim.restart(replicas[1]!)
    sim.runFor(4000)
  },
  "delete-purge": (sim, note) => {
    const { key, replicas } = keyOn(sim)
    note("a value is written and deleted; after the grace a full read purges the tombstone")
    sim.call(replicas[0]!, { _tag: "Put", key, value: "v1", context: null })
    sim.call(replicas[0]!, { _tag: "Put", key, value: null, context: null })
    sim.runFor(2500)
    sim.call(replicas[1]!, { _tag: "Get", key, r: 3 })
    sim.runFor(200)
  },
}

for (const [name, scenario] of Object.entries(scenarios)) {
  test(`transcript ${name}: the request path matches properties/transcripts/${name}.txt`, () => {
    const actual = record(scenario)
    const file = new URL(`${name}.txt`, dir)
    if (update) writeFileSync(file, actual)
    let expected = ""
    try {
      expected = readFileSync(file, "utf8")
    } catch {
      assert.fail(`no transcript ${name}.txt yet: run npm run transcripts`)
    }
    assert.ok(actual.split("\n").length > 5, `the ${name} transcript recorded almost nothing`)
    assert.equal(
      actual,
      expected,
      `transcript ${name} changed; if intended, run npm run transcripts`,
    )
  })
}
