/**
 * `dht node`: run one storage node in this process until Ctrl-C / SIGTERM.
 */
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { Effect, Either } from "effect"
import * as Config from "../node/config.ts"
import { runNode } from "../node/main.ts"
import * as Args from "./args.ts"
import * as Flags from "./flags.ts"

const spec: Args.CommandSpec = {
  name: "node",
  summary: "run one storage node (RESP for clients, TCP for peers)",
  usage: "dht node [--id n0] [--peers n0@HOST:PORT,n1@HOST:PORT,...] [options]",
  flags: [
    Args.flag("id", "string", "ID", "this node's id; must appear in --peers", "n0"),
    Args.flag("host", "string", "HOST", "address to listen on (clients and peers)", "127.0.0.1"),
    Args.flag(
      "client-port",
      "int",
      "PORT",
      "RESP port for clients",
      "7001 + i (i: position in --peers)",
    ),
    Args.flag(
      "peer-port",
      "int",
      "PORT",
      "port for peer connections",
      "this node's port in --peers, else 8001 + i",
    ),
    Args.flag("advertise", "string", "HOST", "host other nodes use to reach this one", "--host"),
    Args.flag(
      "peers",
      "string",
      "LIST",
      "every member, this node included: id@host:port[/weight],...",
      "this node alone",
    ),
    Args.flag(
      "join",
      "bool",
      "",
      "start as a new member joining the cluster of --peers (not listed there itself): stream its share of the data in, then serve",
    ),
    ...Flags.replication,
    Args.flag("data-dir", "string", "DIR", "lmdb data directory", "$TMPDIR/dht/<cluster>/<id>"),
    ...Flags.behaviour,
    Args.flag("stream-rate", "int", "KEYS/S", "budget for streaming on join/leave/remove", "2560"),
    Args.flag("handoff-rate", "int", "HINTS/S", "budget for hinted handoff", "64"),
    Args.flag("ae-rate", "int", "KEYS/S", "budget for anti-entropy repair", "1024"),
    Args.flag("request-timeout-ms", "int", "MS", "a request without quorum by then fails", "2000"),
  ],
  notes: [
    "Members are listed the same way on every node. Node i of a local cluster conventionally",
    "serves clients on 7001+i and peers on 8001+i; `dht cluster` starts such a cluster.",
  ],
  examples: [
    "dht node --id n0 --store memory",
    "dht node --id n1 --peers n0@127.0.0.1:8001,n1@127.0.0.1:8002,n2@127.0.0.1:8003",
    "dht node --id n3 --join --peers n0@127.0.0.1:8001,n1@127.0.0.1:8002,n2@127.0.0.1:8003",
    "dht node --id n7 --routing chord --peers n0@127.0.0.1:8001",
  ],
}

interface PeerEntry {
  readonly id: string
  readonly weight?: number
  readonly peerAddress: Config.Address
}

/** `id@host:port[/weight]`, host possibly `[ipv6]`. */
const parsePeer = (text: string): PeerEntry | string => {
  const m = /^([^@\s]+)@(\[[^\]]+\]|[^:/\s]+):(\d+)(?:\/([0-9.]+))?$/.exec(text.trim())
  if (m === null) return `bad member "${text}": expected id@host:port or id@host:port/weight`
  const host = m[2]!.startsWith("[") ? m[2]!.slice(1, -1) : m[2]!
  const port = Number(m[3])
  if (port < 1 || port > 65535) return `bad member "${text}": port must be from 1 to 65535`
  const weight = m[4] === undefined ? undefined : Number(m[4])
  if (weight !== undefined && !(weight > 0)) return `bad member "${text}": weight must be positive`
  return { id: m[1]!, peerAddress: { host, port }, ...(weight === undefined ? {} : { weight }) }
}

export const parsePeers = (text: string): ReadonlyArray<PeerEntry> | string => {
  const out: Array<PeerEntry> = []
  for (const part of text.split(",").filter((p) => p.trim().length > 0)) {
    const entry = parsePeer(part)
    if (typeof entry === "string") return entry
    out.push(entry)
  }
  return out.length === 0 ? "--peers is empty" : out
}

/** Position of the node for default ports: its place in --peers, else its id's number. */
const indexOf = (id: string, peers: ReadonlyArray<PeerEntry> | undefined): number => {
  const i = peers?.findIndex((p) => p.id === id) ?? -1
  if (i >= 0) return i
  const digits = /(\d+)$/.exec(id)
  return digits === null ? 0 : Number(digits[1])
}

/** Build the node configuration from parsed flags, or say what is wrong. */
export const configFromFlags = (values: Args.Values): Either.Either<Config.Config, string> => {
  const id = Args.str(values, "id") ?? "n0"
  const host = Args.str(values, "host") ?? Config.defaults.host
  const peersText = Args.str(values, "peers")
  const listed = peersText === undefined ? undefined : parsePeers(peersText)
  if (typeof listed === "string") return Either.left(listed)
  const i = indexOf(id, listed)
  const peerPort =
    Args.num(values, "peer-port") ??
    listed?.find((p) => p.id === id)?.peerAddress.port ??
    Config.defaults.peerPortBase + i
  const clientPort = Args.num(values, "client-port") ?? Config.defaults.clientPortBase + i
  const advertise = { host: Args.str(values, "advertise") ?? host, port: peerPort }
  const joining = Args.bool(values, "join")
  const routing = Args.str(values, "routing") ?? "ring"
  if (routing !== "ring" && routing !== "chord") {
    return Either.left(`--routing must be ring or chord, got "${routing}"`)
  }
  if (joining && listed === undefined) {
    return Either.left("--join needs --peers: the members (seeds) of the cluster to join")
  }
  const members = listed ?? [{ id, peerAddress: advertise }]
  const cluster = Args.str(values, "cluster") ?? Config.defaults.cluster
  const store = Args.str(values, "store") ?? Config.defaults.store
  if (store !== "lmdb" && store !== "memory") {
    return Either.left(`--store must be lmdb or memory, got "${store}"`)
  }
  const n =
    Args.num(values, "n") ??
    (routing === "chord" ? 3 : Math.min(3, members.length + (joining ? 1 : 0)))
  const dataDir = Args.str(values, "data-dir") ?? join(tmpdir(), "dht", cluster, id)
  const requestTimeoutMs = Args.num(values, "request-timeout-ms")
  const maxValueBytes = Args.num(values, "max-value-bytes")
  const lww = Args.str(values, "lww")
  const namespaces =
    lww === undefined
      ? undefined
      : lww
          .split(",")
          .map((p) => (p === "*" ? "" : p))
          .map((prefix) => ({ prefix, policy: "lww" as const }))
  const mode = Args.str(values, "mode")
  if (mode !== undefined && mode !== "ap" && mode !== "cp") {
    return Either.left(`--mode must be ap or cp, got "${mode}"`)
  }
  const secret = Args.str(values, "secret")
  const tombstoneGraceMs = Args.num(values, "tombstone-grace-ms")
  const maxMessageAgeMs = Args.num(values, "max-message-age-ms")
  const maxClockSkewMs = Args.num(values, "max-clock-skew-ms")
  const budgets: Array<
    readonly [string, "streamKeysPerSec" | "handoffHintsPerSec" | "aeKeysPerSec"]
  > = [
    ["stream-rate", "streamKeysPerSec"],
    ["handoff-rate", "handoffHintsPerSec"],
    ["ae-rate", "aeKeysPerSec"],
  ]
  const rates: Record<string, number> = {}
  for (const [flag, field] of budgets) {
    const rate = Args.num(values, flag)
    if (rate === undefined) continue
    if (!(rate > 0)) return Either.left(`--${flag} must be positive, got ${rate}`)
    rates[field] = rate
  }
  const made = Config.make({
    id,
    cluster,
    client: { host, port: clientPort },
    peer: { host, port: peerPort },
    advertise,
    members,
    joining,
    routing,
    n,
    r: Args.num(values, "r") ?? Math.min(2, n),
    w: Args.num(values, "w") ?? Math.min(2, n),
    store,
    dataDir: resolve(dataDir),
    ...(requestTimeoutMs === undefined ? {} : { requestTimeoutMs }),
    ...(maxValueBytes === undefined ? {} : { maxValueBytes }),
    ...(namespaces === undefined ? {} : { namespaces }),
    ...(mode === undefined ? {} : { mode }),
    ...(secret === undefined ? {} : { secret }),
    ...(tombstoneGraceMs === undefined ? {} : { tombstoneGraceMs }),
    ...(maxMessageAgeMs === undefined ? {} : { maxMessageAgeMs }),
    ...(maxClockSkewMs === undefined ? {} : { maxClockSkewMs }),
    ...rates,
  })
  return Either.mapLeft(made, (e) => e.message)
}

const run = (parsed: Args.Parsed): Promise<number> => {
  if (parsed.positional.length > 0) {
    return Promise.resolve(
      Args.usageError(
        spec,
        `unexpected argument "${parsed.positional[0]}" (flags are --name value)`,
      ),
    )
  }
  const config = configFromFlags(parsed.values)
  if (Either.isLeft(config)) return Promise.resolve(Args.usageError(spec, config.left))
  return Effect.runPromise(
    runNode(config.right).pipe(
      Effect.as(0),
      Effect.catchAll((e) =>
        Effect.sync(() => {
          process.stderr.write(`dht node: ${e.message}\n`)
          return 1
        }),
      ),
    ),
  )
}

export const command: Args.Subcommand = {
  spec,
  run: (argv) => Args.withParsed(spec, argv, run),
}
