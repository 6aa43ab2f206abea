/**
 * `dht ring`: the consistent-hash ring as one node sees it: per node its tokens, the fraction of
 * the ring it owns as primary and the fraction it holds as one of N replicas (from DHT.STATUS),
 * the balance (max and mean ownership), and a picture of the ring in B buckets, each labelled
 * by the owner of its midpoint.
 *
 * Token positions are not in DHT.STATUS; they are a pure function of member ids, weights and
 * the tokens per node (impl/core/ring.ts), so the picture is rebuilt here from the membership
 * and checked against the ownership the node reports. While nodes join or leave, the ring after
 * the change (joining members in, leaving ones out) is drawn below the current one.
 */
import { RING_SIZE } from "../core/hash.ts"
import { NodeId } from "../core/ids.ts"
import * as Ring from "../core/ring.ts"
import * as Args from "./args.ts"
import * as Status from "./status.ts"
import { table } from "./table.ts"

const spec: Args.CommandSpec = {
  name: "ring",
  summary: "show tokens, ownership and a picture of the ring",
  usage: "dht ring [--host 127.0.0.1] [--port 7001] [--buckets 64] [--json]",
  flags: [
    Args.flag("host", "string", "HOST", "a node's client address", "127.0.0.1"),
    Args.flag("port", "int", "PORT", "that node's client (RESP) port", "7001"),
    Args.flag("buckets", "int", "B", "buckets in the picture (8..1024)", "64"),
    Args.flag("json", "bool", "", "print JSON instead of text"),
    Args.flag("timeout-ms", "int", "MS", "give up if the node does not answer by then", "3000"),
  ],
  notes: [
    "The ring is split into B equal arcs; each is drawn as the letter of the node owning the",
    "arc's midpoint (its primary replica). The legend maps letters to nodes.",
  ],
  examples: ["dht ring", "dht ring --port 7002 --buckets 128"],
}

const LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

/** Tokens per unit of weight, recovered from a member on the ring (its tokens / its weight). */
const tokensPerNode = (members: ReadonlyArray<Status.MemberStatus>): number => {
  const on = members.find((m) => m.tokens > 0)
  return on === undefined ? Ring.DEFAULT_TOKENS_PER_NODE : Math.round(on.tokens / on.weight)
}

const ringOf = (members: ReadonlyArray<Status.MemberStatus>, tpn: number): Ring.Ring =>
  Ring.make(
    members.map((m) => ({ id: NodeId(m.id), weight: m.weight })),
    tpn,
  )

/** The owner (primary) of each bucket's midpoint. */
export const bucketOwners = (ring: Ring.Ring, buckets: number): ReadonlyArray<NodeId> => {
  if (ring.tokens.length === 0) return []
  const out: Array<NodeId> = []
  for (let b = 0; b < buckets; b++) {
    const mid = ((b + 0.5) / buckets) * RING_SIZE
    out.push(ring.nodes[ring.owners[Ring.successorIndex(ring, mid)]!]!)
  }
  return out
}

export interface RingView {
  /** The first line; the token ring's when absent. */
  readonly title?: string
  readonly seenBy: string
  readonly n: number
  readonly tokensPerNode: number
  readonly rows: ReadonlyArray<{
    readonly id: string
    readonly status: string
    readonly weight: number
    readonly tokens: number
    readonly owned: number
    readonly replicated: number
  }>
  readonly maxOwned: number
  readonly meanOwned: number
  readonly current: ReadonlyArray<string>
  /** The ring once joins and leaves in progress complete; undefined when nothing is pending. */
  readonly future: ReadonlyArray<string> | undefined
  readonly legend: ReadonlyArray<readonly [string, string]>
  /** Largest difference between the ownership computed here and the node's. */
  readonly mismatch: number
}

export const view = (report: Status.StatusReport, buckets: number): RingView => {
  const members = report.members.filter((m) => m.status !== "removed")
  const onRing = members.filter((m) => m.status === "up" || m.status === "leaving")
  const after = members.filter((m) => m.status === "up" || m.status === "joining")
  const tpn = tokensPerNode(members)
  const current = ringOf(onRing, tpn)
  const computed = Ring.ownership(current)
  let mismatch = 0
  for (const m of onRing) {
    mismatch = Math.max(mismatch, Math.abs((computed.get(NodeId(m.id)) ?? 0) - m.owned))
  }
  const pending = after.length !== onRing.length || after.some((m) => !onRing.includes(m))
  const letters = new Map(members.map((m, i) => [m.id, LETTERS[i % LETTERS.length]!]))
  const draw = (ring: Ring.Ring) => bucketOwners(ring, buckets).map((id) => letters.get(id) ?? "?")
  const owned = onRing.map((m) => m.owned)
  return {
    seenBy: report.self,
    n: report.n,
    tokensPerNode: tpn,
    rows: members.map((m) => ({
      id: m.id,
      status: m.status,
      weight: m.weight,
      tokens: m.tokens,
      owned: m.owned,
      replicated: m.replicated,
    })),
    maxOwned: owned.length === 0 ? 0 : Math.max(...owned),
    meanOwned: owned.length === 0 ? 0 : owned.reduce((a, b) => a + b, 0) / owned.length,
    current: draw(current),
    future: pending ? draw(ringOf(after, tpn)) : undefined,
    legend: [...letters.entries()].map(([id, letter]) => [letter, id] as const),
    mismatch,
  }
}

/**
 * Chord routing: one position per node, no tokens; each node owns (predecessor, self]. The
 * members come from a walk of the ring by first successors (no node knows them all).
 */
export const chordView = (walk: Status.ChordWalk, buckets: number): RingView => {
  const nodes = walk.reports
    .filter((r) => r.chord != null)
    .map((r) => ({ id: r.self, pos: r.chord!.position }))
    .sort((a, b) => a.pos - b.pos)
  const n = walk.reports[0]?.n ?? 3
  const owned = nodes.map((node, i) => {
    const pred = nodes[(i - 1 + nodes.length) % nodes.length]!
    return nodes.length === 1
      ? 1
      : ((((node.pos - pred.pos) % RING_SIZE) + RING_SIZE) % RING_SIZE) / RING_SIZE
  })
  const replicated = nodes.map((_, i) => {
    let sum = 0
    for (let k = 0; k < Math.min(n, nodes.length); k++)
      sum += owned[(i - k + nodes.length) % nodes.length]!
    return sum
  })
  const letters = new Map(nodes.map((node, i) => [node.id, LETTERS[i % LETTERS.length]!]))
  const current: Array<string> = []
  for (let b = 0; b < buckets && nodes.length > 0; b++) {
    const mid = ((b + 0.5) / buckets) * RING_SIZE
    const owner = nodes.find((node) => node.pos >= mid) ?? nodes[0]!
    current.push(letters.get(owner.id)!)
  }
  return {
    title:
      `Chord ring walked from ${walk.reports[0]?.self ?? "?"}: N=${n}, one position per node ` +
      `(no virtual nodes)${walk.ok ? "" : `; walk incomplete: ${walk.stoppedBy ?? "?"}`}`,
    seenBy: walk.reports[0]?.self ?? "?",
    n,
    tokensPerNode: 1,
    rows: nodes.map((node, i) => ({
      id: node.id,
      status: "up",
      weight: 1,
      tokens: 1,
      owned: owned[i]!,
      replicated: replicated[i]!,
    })),
    maxOwned: owned.length === 0 ? 0 : Math.max(...owned),
    meanOwned: owned.length === 0 ? 0 : owned.reduce((a, b) => a + b, 0) / owned.length,
    current,
    future: undefined,
    legend: [...letters.entries()].map(([id, letter]) => [letter, id] as const),
    mismatch: 0,
  }
}

const picture = (cells: ReadonlyArray<string>): ReadonlyArray<string> => {
  const lines: Array<string> = []
  for (let i = 0; i < cells.length; i += 64) {
    const part = cells.slice(i, i + 64)
    // Groups of 8 buckets, so that positions can be read off.
    const groups: Array<string> = []
    for (let j = 0; j < part.length; j += 8) groups.push(part.slice(j, j + 8).join(""))
    lines.push(`  |${groups.join(" ")}|`)
  }
  return lines
}

export const render = (v: RingView, buckets: number): string => {
  const lines = [
    v.title ??
      `Ring as seen by ${v.seenBy}: N=${v.n}, ${v.tokensPerNode} tokens per unit of weight`,
    "",
    table(
      ["node", "status", "weight", "tokens", "owns", "replicates"],
      v.rows.map((r) => [
        r.id,
        r.status,
        String(r.weight),
        String(r.tokens),
        Status.percent(r.owned),
        Status.percent(r.replicated),
      ]),
    ),
    "",
    v.rows.some((r) => r.tokens > 0)
      ? `ownership: max ${Status.percent(v.maxOwned)}, mean ${Status.percent(v.meanOwned)}, ` +
        `max/mean ${(v.meanOwned > 0 ? v.maxOwned / v.meanOwned : 0).toFixed(3)}`
      : "ownership: the ring is empty",
    "",
    `ring, ${buckets} buckets (each: the owner of its midpoint), clockwise from position 0:`,
    ...picture(v.current),
  ]
  if (v.future !== undefined) {
    lines.push("after the joins/leaves in progress:", ...picture(v.future))
  }
  lines.push(`  ${v.legend.map(([letter, id]) => `${letter}=${id}`).join("  ")}`)
  if (v.mismatch > 1e-9) {
    lines.push(
      `note: the picture assumes impl/core/ring.ts token placement; it differs from the node's ` +
        `ownership by up to ${Status.percent(v.mismatch)}`,
    )
  }
  return `${lines.join("\n")}\n`
}

const run = async (parsed: Args.Parsed): Promise<number> => {
  if (parsed.positional.length > 0) {
    return Args.usageError(spec, `unexpected argument "${parsed.positional[0]}"`)
  }
  const buckets = Args.num(parsed.values, "buckets") ?? 64
  if (buckets < 8 || buckets > 1024) {
    return Args.usageError(spec, `--buckets must be from 8 to 1024, got ${buckets}`)
  }
  const target = Status.targetFromFlags(parsed.values)
  let report: Status.StatusReport
  try {
    report = await Status.fetchStatus(target, Args.num(parsed.values, "timeout-ms") ?? 3000)
  } catch (e) {
    process.stderr.write(`dht ring: ${Status.nodeMessage(e)}\n`)
    return 1
  }
  const v =
    report.routing === "chord"
      ? chordView(await Status.walkChord(target), buckets)
      : view(report, buckets)
  process.stdout.write(
    Args.bool(parsed.values, "json") ? `${JSON.stringify(v)}\n` : render(v, buckets),
  )
  return 0
}

export const command: Args.Subcommand = {
  spec,
  run: (argv) => Args.withParsed(spec, argv, run),
}
