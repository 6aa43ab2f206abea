/**
 * `dht status`: the cluster as one node sees it, in the manner of `nodetool status`.
 *
 * Asks one node (--host/--port) for DHT.STATUS (one bulk string of JSON: membership, ring
 * ownership, streaming progress), then asks every other member at its advertised client
 * address for its own DHT.STATUS, because only a node knows how many keys it holds and how far
 * its own streaming has got. A member that does not answer shows "?".
 *
 * Also the shared client side of the operator commands (impl/cli/ring.ts, impl/cli/ops.ts):
 * connecting with ioredis without endless reconnects, decoding DHT.STATUS with effect/Schema,
 * and the error text for "no node answers".
 */
import { Either } from "effect"
import { Redis } from "ioredis"
import { parseAddress } from "../node/config.ts"
import * as Args from "./args.ts"
import { table } from "./table.ts"

// ---------------------------------------------------------------------------------------------
// DHT.STATUS, decoded (its one schema: impl/wire/status.ts)

import type { MemberStatus, StatusReport, StreamingStatus } from "../wire/status.ts"
import { parseStatus, tombstoneEstimate } from "../wire/status.ts"

export type {
  ChordStatus,
  MemberStatus,
  ReclaimStatus,
  StatusReport,
  StreamingStatus,
} from "../wire/status.ts"
export { parseStatus }

// ---------------------------------------------------------------------------------------------
// Talking to nodes

export interface Target {
  readonly host: string
  readonly port: number
}

export const showTarget = (t: Target): string =>
  t.host.includes(":") ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`

/** A member's advertised client address ("host:port"), as a target. */
export const targetOf = (address: string): Target | undefined => parseAddress(address)

/** Why a node could not be asked: unreachable, or it answered with an error. */
export class NodeError extends Error {
  constructor(
    message: string,
    /** The node answered (with a Redis error); false when it could not be reached at all. */
    readonly answered: boolean,
  ) {
    super(message)
  }
}

/**
 * Connect, run `f`, disconnect. Connection failures and timeouts become a NodeError with
 * `answered: false`; Redis error replies a NodeError with `answered: true` and the node's text.
 */
export const withNode = async <A>(
  target: Target,
  f: (client: Redis) => Promise<A>,
  timeoutMs = 3000,
): Promise<A> => {
  const client = new Redis({
    host: target.host,
    port: target.port,
    lazyConnect: true,
    enableReadyCheck: false,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
  })
  let lastError: Error | undefined
  client.on("error", (e: Error) => {
    lastError = e
  })
  try {
    try {
      await client.connect()
    } catch (e) {
      const why = lastError?.message ?? (e instanceof Error ? e.message : String(e))
      throw new NodeError(`no node answers at ${showTarget(target)} (${why})`, false)
    }
    try {
      return await f(client)
    } catch (e) {
      if (e instanceof NodeError) throw e
      const message = e instanceof Error ? e.message : String(e)
      // ioredis marks replies that were Redis errors with the ReplyError class.
      const answered = e instanceof Error && e.name === "ReplyError"
      throw new NodeError(
        answered ? message : `node at ${showTarget(target)} did not answer: ${message}`,
        answered,
      )
    }
  } finally {
    client.disconnect()
  }
}

/** DHT.STATUS of the node at `target`. */
export const fetchStatus = (target: Target, timeoutMs = 3000): Promise<StatusReport> =>
  withNode(
    target,
    async (client) => {
      let reply: unknown
      try {
        reply = await client.call("DHT.STATUS")
      } catch (e) {
        if (e instanceof Error && /unknown command/i.test(e.message)) {
          throw new NodeError(
            `the node at ${showTarget(target)} does not know DHT.STATUS (an older version?)`,
            true,
          )
        }
        throw e
      }
      const report = parseStatus(reply)
      if (Either.isLeft(report)) throw new NodeError(report.left, true)
      return report.right
    },
    timeoutMs,
  )

/** DHT.STATUS of a member at its advertised client address; undefined if it does not answer. */
export const fetchMember = async (
  member: MemberStatus,
  timeoutMs = 1500,
): Promise<StatusReport | undefined> => {
  const target = targetOf(member.clientAddress)
  if (target === undefined || member.status === "removed") return undefined
  try {
    return await fetchStatus(target, timeoutMs)
  } catch {
    return undefined
  }
}

/** The node's error text without Redis's "ERR " prefix. */
export const nodeMessage = (e: unknown): string => {
  const text = e instanceof Error ? e.message : String(e)
  return text.replace(/^ERR /, "")
}

// ---------------------------------------------------------------------------------------------
// Rendering

/** nodetool's two letters: Up/Down as this node believes, then Normal/Joining/Leaving/Removed. */
export const stateLetters = (m: MemberStatus): string => {
  const liveness = m.status === "removed" ? "-" : m.reachable ? "U" : "D"
  const phase =
    m.status === "up"
      ? "N"
      : m.status === "joining"
        ? "J"
        : m.status === "leaving"
          ? "L"
          : m.status === "removed"
            ? "R"
            : "?"
  return `${liveness}${phase}`
}

export const percent = (fraction: number): string => `${(fraction * 100).toFixed(1)}%`

export const count = (n: number): string => n.toLocaleString("en-US")

/** One member's streaming, from its own report: "settled" or what is still going on. */
export const streamingText = (s: StreamingStatus): string => {
  // A node that never had to stream (pass 0) has not started a scan: `scanning` means nothing.
  if (s.settled && s.pending === 0) return "settled"
  const parts = [`pass ${s.pass}`]
  if (s.scanning) parts.push("scanning")
  if (s.pending > 0) parts.push(`${count(s.pending)} pending`)
  if (parts.length === 1) parts.push("finishing")
  return parts.join(", ")
}

/**
 * One member's keys split by the reaper's last complete pass: live and tombstones (dead
 * objects: tombstones and expired values not reclaimed yet), plus the keys it reclaimed.
 * "-" before its first pass; "?" for a node that does not report reclamation (older version).
 */
export const keyCounts = (
  own: StatusReport,
): { live: string; tombstones: string; reaped: string } => {
  const r = own.reclaim
  if (r === undefined) return { live: "?", tombstones: "?", reaped: "?" }
  const reaped = count(r.reaped)
  const dead = tombstoneEstimate(own.keys, r.lastPass)
  if (dead === undefined) return { live: "-", tombstones: "-", reaped }
  return { live: count(own.keys - dead), tombstones: count(dead), reaped }
}

export interface ClusterStatus {
  /** The node asked first, and its report (membership, ring, its own counts). */
  readonly target: Target
  readonly seenBy: StatusReport
  /** Each member's own report (keys, streaming), undefined where it did not answer. */
  readonly own: ReadonlyMap<string, StatusReport | undefined>
}

/** Ask `target`, then every non-removed member, in parallel. */
export const gather = async (target: Target, timeoutMs = 3000): Promise<ClusterStatus> => {
  const seenBy = await fetchStatus(target, timeoutMs)
  const own = new Map<string, StatusReport | undefined>()
  await Promise.all(
    seenBy.members.map(async (m) => {
      own.set(m.id, m.id === seenBy.self ? seenBy : await fetchMember(m, timeoutMs))
    }),
  )
  return { target, seenBy, own }
}

export const renderStatus = (s: ClusterStatus): string => {
  const r = s.seenBy
  const live = r.members.filter((m) => m.status !== "removed")
  const removed = r.members.filter((m) => m.status === "removed")
  const rows = live.map((m) => {
    const own = s.own.get(m.id)
    const split = own === undefined ? undefined : keyCounts(own)
    return [
      stateLetters(m),
      m.id === r.self ? `${m.id}*` : m.id,
      `${m.status}, ${m.reachable ? "reachable" : "DOWN"}`,
      m.clientAddress === "" ? "(not gossiped yet)" : m.clientAddress,
      own === undefined ? "?" : count(own.keys),
      split?.live ?? "?",
      split?.tombstones ?? "?",
      split?.reaped ?? "?",
      percent(m.owned),
      percent(m.replicated),
      String(m.tokens),
      own === undefined ? "?" : streamingText(own.streaming),
    ]
  })
  const lines = [
    `Cluster as seen by ${r.self} (${showTarget(s.target)}): mode ${r.mode}, N=${r.n} R=${r.r} W=${r.w}`,
    "Status=Up/Down (as this node believes)  State=Normal/Joining/Leaving",
    "",
    table(
      [
        "--",
        "node",
        "state",
        "address",
        "keys",
        "live",
        "tombstones",
        "reaped",
        "owns",
        "replicates",
        "tokens",
        "streaming",
      ],
      rows,
    ),
  ]
  if (removed.length > 0) lines.push(`removed: ${removed.map((m) => m.id).join(", ")}`)
  lines.push("", streamingSummary(s), reclaimSummary(s))
  return `${lines.join("\n")}\n`
}

/**
 * One line: dead objects still held, keys reclaimed, and what holds reclamation back. A dead
 * key is reclaimed only while every member is calm (no hint, nothing to hand over) and up: a
 * member that is down and not removed holds it back everywhere.
 */
export const reclaimSummary = (s: ClusterStatus): string => {
  const members = s.seenBy.members.filter((m) => m.status !== "removed")
  const reports = members.flatMap((m) => {
    const own = s.own.get(m.id)
    return own?.reclaim === undefined ? [] : [[m.id, own.reclaim] as const]
  })
  const dead = reports.reduce(
    (sum, [id, r]) => sum + (tombstoneEstimate(s.own.get(id)?.keys ?? 0, r.lastPass) ?? 0),
    0,
  )
  const reaped = reports.reduce((sum, [, r]) => sum + r.reaped, 0)
  const down = members.filter((m) => !m.reachable).map((m) => m.id)
  const silent = members
    .filter((m) => m.reachable && s.own.get(m.id) === undefined)
    .map((m) => m.id)
  const busy = reports.filter(([, r]) => !r.calm).map(([id]) => id)
  const held = [
    ...(down.length > 0 ? [`${down.join(", ")} down (restart or dht remove)`] : []),
    ...(silent.length > 0 ? [`${silent.join(", ")} not answering`] : []),
    ...(busy.length > 0 ? [`${busy.join(", ")} not calm (hints or keys to hand over)`] : []),
  ]
  const head =
    `reclamation: ${count(dead)} tombstones held across nodes (as of each one's last pass), ` +
    `${count(reaped)} keys reclaimed since start`
  return held.length === 0 ? head : `${head}; held back by ${held.join("; ")}`
}

/** One line: is data still moving anywhere, and how much has moved. */
export const streamingSummary = (s: ClusterStatus): string => {
  const reports = [...s.own.entries()].filter(
    (e): e is [string, StatusReport] => e[1] !== undefined,
  )
  const busy = reports.filter(([, o]) => streamingText(o.streaming) !== "settled")
  const streamed = reports.reduce((sum, [, o]) => sum + o.streaming.streamed, 0)
  const dropped = reports.reduce((sum, [, o]) => sum + o.streaming.dropped, 0)
  const pending = reports.reduce((sum, [, o]) => sum + o.streaming.pending, 0)
  const silent = s.seenBy.members.filter(
    (m) => m.status !== "removed" && s.own.get(m.id) === undefined,
  ).length
  const head =
    busy.length === 0
      ? "streaming: settled on every member that answered"
      : `streaming: in progress on ${busy.map(([id, o]) => `${id} (${streamingText(o.streaming)})`).join(", ")}; ${count(pending)} keys awaiting acks`
  const tail = `${count(streamed)} keys streamed, ${count(dropped)} dropped after handover since start`
  return `${head}; ${tail}${silent > 0 ? `; ${silent} member(s) did not answer` : ""}`
}

/** The JSON of --json: the asked node's report, with each member's own keys and streaming. */
export const statusJson = (s: ClusterStatus): unknown => ({
  ...s.seenBy,
  members: s.seenBy.members.map((m) => {
    const own = s.own.get(m.id)
    return {
      ...m,
      keys: own?.keys ?? null,
      hints: own?.hints ?? null,
      streaming: own?.streaming ?? null,
      reclaim: own?.reclaim ?? null,
    }
  }),
})

// ---------------------------------------------------------------------------------------------
// Chord routing: no node knows the members, so walk the ring by first successors

export interface ChordWalk {
  /** The walk came back to where it started. */
  readonly ok: boolean
  /** The reports in ring order, from the asked node. */
  readonly reports: ReadonlyArray<StatusReport>
  /** Why the walk stopped early, if it did. */
  readonly stoppedBy?: string
}

/** Follow first successors from `target`, at most `max` nodes. */
export const walkChord = async (
  target: Target,
  max = 1000,
  timeoutMs = 1500,
): Promise<ChordWalk> => {
  const reports: Array<StatusReport> = []
  let at: Target | undefined = target
  while (at !== undefined && reports.length < max) {
    let report: StatusReport
    try {
      report = await fetchStatus(at, timeoutMs)
    } catch (e) {
      return { ok: false, reports, stoppedBy: nodeMessage(e) }
    }
    if (reports.length > 0 && report.self === reports[0]!.self) return { ok: true, reports }
    if (reports.some((r) => r.self === report.self)) {
      return { ok: false, reports, stoppedBy: `the walk looped back to ${report.self}` }
    }
    reports.push(report)
    const next = report.chord?.next
    if (next === null || next === undefined) {
      return { ok: false, reports, stoppedBy: `${report.self} has no successor yet` }
    }
    at = targetOf(next)
  }
  return { ok: false, reports, stoppedBy: `more than ${max} nodes` }
}

export const renderChord = (walk: ChordWalk): string => {
  const first = walk.reports[0]
  if (first === undefined) return `no node answered${walk.stoppedBy ? `: ${walk.stoppedBy}` : ""}\n`
  const rows = walk.reports.map((r) => {
    const c = r.chord
    return [
      r.self,
      c ? (c.position / 2 ** 52).toFixed(4) : "?",
      c?.status ?? "?",
      c?.predecessor ?? "-",
      c?.successors.slice(0, 3).join(",") ?? "-",
      c ? String(c.distinctFingers) : "?",
      c ? String(c.tablePeers) : "?",
      count(r.keys),
      c ? count(c.lookups) : "?",
      c ? c.meanHops.toFixed(2) : "?",
    ]
  })
  const lines = [
    `Chord ring walked from ${first.self} by first successors: N=${first.n} R=${first.r} W=${first.w}`,
    "position: fraction of the ring; table: distinct peers in the routing table (successors, predecessor, fingers)",
    "",
    table(
      [
        "node",
        "position",
        "status",
        "predecessor",
        "successors",
        "fingers",
        "table",
        "keys",
        "lookups",
        "mean hops",
      ],
      rows,
    ),
    "",
    walk.ok
      ? `ring closed: ${walk.reports.length} nodes`
      : `ring walk stopped after ${walk.reports.length} nodes: ${walk.stoppedBy ?? "?"}`,
  ]
  return `${lines.join("\n")}\n`
}

// ---------------------------------------------------------------------------------------------
// The command

const spec: Args.CommandSpec = {
  name: "status",
  summary: "show the cluster's members, their load, ownership and streaming (like nodetool)",
  usage: "dht status [--host 127.0.0.1] [--port 7001] [--json] [--watch]",
  flags: [
    Args.flag("host", "string", "HOST", "a node's client address", "127.0.0.1"),
    Args.flag("port", "int", "PORT", "that node's client (RESP) port", "7001"),
    Args.flag("json", "bool", "", "print JSON instead of a table"),
    Args.flag("watch", "bool", "", "refresh every second until Ctrl-C"),
    Args.flag("timeout-ms", "int", "MS", "give up on a node that does not answer by then", "3000"),
  ],
  notes: [
    "Membership, ownership and tokens are the asked node's view (marked *). The load and the",
    "streaming of each member come from that member itself, at its advertised client address:",
    '"?" when it does not answer. Letters: U/D = up/down as the asked node believes (phi',
    "accrual), then N/J/L = normal/joining/leaving. keys = objects stored; tombstones = dead",
    'objects (deleted or expired, not reclaimed yet) as of the node\'s last reaper pass ("-"',
    "before it), live = keys minus tombstones; reaped = keys it reclaimed since start.",
  ],
  examples: ["dht status", "dht status --port 7002 --watch", "dht status --json | jq .members"],
}

export const targetFromFlags = (values: Args.Values): Target => ({
  host: Args.str(values, "host") ?? "127.0.0.1",
  port: Args.num(values, "port") ?? 7001,
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const run = async (parsed: Args.Parsed): Promise<number> => {
  if (parsed.positional.length > 0) {
    return Args.usageError(spec, `unexpected argument "${parsed.positional[0]}"`)
  }
  const target = targetFromFlags(parsed.values)
  const timeoutMs = Args.num(parsed.values, "timeout-ms") ?? 3000
  const json = Args.bool(parsed.values, "json")
  const once = async (): Promise<string> => {
    const asked = await fetchStatus(target, timeoutMs)
    if (asked.routing === "chord") {
      const walk = await walkChord(target, 1000, timeoutMs)
      return json ? `${JSON.stringify(walk)}\n` : renderChord(walk)
    }
    const s = await gather(target, timeoutMs)
    return json ? `${JSON.stringify(statusJson(s))}\n` : renderStatus(s)
  }
  if (!Args.bool(parsed.values, "watch")) {
    try {
      process.stdout.write(await once())
      return 0
    } catch (e) {
      process.stderr.write(`dht status: ${nodeMessage(e)}\n`)
      return 1
    }
  }
  let stopped = false
  const stop = () => {
    stopped = true
  }
  process.once("SIGINT", stop)
  process.once("SIGTERM", stop)
  try {
    while (!stopped) {
      let text: string
      try {
        text = await once()
      } catch (e) {
        text = `dht status: ${nodeMessage(e)} (retrying)\n`
      }
      const when = new Date().toISOString().replace("T", " ").slice(0, 19)
      const clear = process.stdout.isTTY && !json ? "\x1b[H\x1b[2J" : ""
      process.stdout.write(
        json ? text : `${clear}${when}  (every 1 s; Ctrl-C to stop)\n\n${text}\n`,
      )
      for (let waited = 0; waited < 1000 && !stopped; waited += 100) await sleep(100)
    }
  } finally {
    process.off("SIGINT", stop)
    process.off("SIGTERM", stop)
  }
  return 0
}

export const command: Args.Subcommand = {
  spec,
  run: (argv) => Args.withParsed(spec, argv, run),
}
